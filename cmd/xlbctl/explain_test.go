package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
)

// runIn runs xlbctl against the socket and returns exit code, stdout and
// stderr.
func runIn(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Now: func() time.Time { return testNow }}, append([]string{"--api", sock}, args...))
	return code, out.String(), errOut.String()
}

func explainJSON(t *testing.T, sock string, args ...string) api.Explain {
	t.Helper()
	code, out, errOut := runIn(t, sock, append(append([]string{"explain"}, args...), "-o", "json")...)
	if code != 0 {
		t.Fatalf("explain %q: exit %d, %s", args, code, errOut)
	}
	var e api.Explain
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// explain against xlbd's real handlers over the model of the data plane:
// the connection-table entry wins while its backend is usable; a drained
// backend keeps it; a new flow goes to the persistent backend, else to the
// slot the data plane's hash picks in the service's table.
func TestExplainEndToEnd(t *testing.T) {
	sock, dp, rec := startXlbd(t)
	const svc = "198.18.1.1:80/tcp"
	key := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	if code, _, errOut := runIn(t, sock, "service", "add", svc, "--backend", "198.18.0.11", "--backend", "198.18.0.12", "--backend", "198.18.0.13"); code != 0 {
		t.Fatal(errOut)
	}
	client := netip.MustParseAddrPort("198.18.2.10:40000")
	flow := lb.FlowKey{Src: client, Dst: netip.MustParseAddrPort("198.18.1.1:80"), Proto: lb.TCP}
	table, err := dp.Table(key)
	if err != nil {
		t.Fatal(err)
	}
	slot := maps.Slot(lb.Maglev, flow, uint32(len(table)))
	hashed := table[slot].String()
	// The flow's entry names another backend than the slot's.
	other := "198.18.0.11"
	if hashed == other {
		other = "198.18.0.12"
	}
	dp.SetFlows([]lb.FlowEntry{{Key: flow, Backend: netip.MustParseAddr(other), Idle: 3 * time.Second}})

	e := explainJSON(t, sock, svc, client.String())
	if e.NextPacket.Backend != other || e.NextPacket.By != "conntrack" || e.Conntrack == nil || !e.Conntrack.Used || e.Conntrack.State != "established" || e.Conntrack.AgeSeconds != 3 {
		t.Errorf("next packet %+v, conntrack %+v: want %s by conntrack", e.NextPacket, e.Conntrack, other)
	}
	if e.NewFlow.Backend != hashed || e.NewFlow.By != "scheduler" || e.Slot.Slot == nil || *e.Slot.Slot != slot || e.Slot.Backend != hashed {
		t.Errorf("new flow %+v, slot %+v: want %s in slot %d", e.NewFlow, e.Slot, hashed, slot)
	}
	if e.OtherPort.Backend != "" || !strings.Contains(e.OtherPort.Why, "each source port") {
		t.Errorf("other port %+v: maglev hashes each port", e.OtherPort)
	}
	if e.PersistenceEntry != nil || e.HalfOpen != nil {
		t.Errorf("entries that were never set: %+v %+v", e.PersistenceEntry, e.HalfOpen)
	}

	// The text: the verdicts first, then where they come from.
	code, out, _ := runIn(t, sock, "explain", svc, client.String())
	for _, want := range []string{
		"flow tcp 198.18.2.10:40000 -> 198.18.1.1:80 (maglev, no persistence)\n",
		"next packet  " + other + "  conntrack: the flow's connection-table entry\n",
		"new flow     " + hashed + "  scheduler: maglev: 5-tuple hash",
		"conntrack    " + other + "  established  3s    15m      used\n",
		"half-open    none",
		"5-tuple hash 0x",
		"\nBACKEND      STATE  WEIGHT  REASON\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain: exit %d, no %q in\n%s", code, want, out)
		}
	}

	// Drained, the backend keeps its flow; down, the flow is rescheduled.
	runIn(t, sock, "backend", "drain", svc, other)
	if e := explainJSON(t, sock, svc, client.String()); e.NextPacket.Backend != other || e.Backends[0].State != api.StateDrain {
		t.Errorf("drained: next %+v, backends %+v", e.NextPacket, e.Backends)
	}
	runIn(t, sock, "backend", "del", svc, other)
	e = explainJSON(t, sock, svc, client.String())
	if e.Conntrack == nil || e.Conntrack.Used || !strings.Contains(e.Conntrack.Ignored, "reschedules") || e.NextPacket.By != "scheduler" {
		t.Errorf("backend deleted: conntrack %+v, next %+v", e.Conntrack, e.NextPacket)
	}

	// Persistence: a new flow of the client, from any port, goes to its
	// persistent backend while the entry is live.
	runIn(t, sock, "service", "set", svc, "--persistence", "60s")
	dp.SetPersist(key, client.Addr(), netip.MustParseAddr(hashed), 10*time.Second)
	e = explainJSON(t, sock, svc, "198.18.2.10:40001")
	if e.NewFlow.Backend != hashed || e.NewFlow.By != "persistence" || e.OtherPort.Backend != hashed || e.PersistenceEntry == nil || !e.PersistenceEntry.Used {
		t.Errorf("persistence: new %+v, other %+v, entry %+v", e.NewFlow, e.OtherPort, e.PersistenceEntry)
	}
	dp.SetPersist(key, client.Addr(), netip.MustParseAddr(hashed), 61*time.Second)
	if e := explainJSON(t, sock, svc, "198.18.2.10:40001"); e.NewFlow.By != "scheduler" || e.PersistenceEntry.State != "expired" {
		t.Errorf("expired persistence: new %+v, entry %+v", e.NewFlow, e.PersistenceEntry)
	}

	// Source hash: every port of the client goes to one slot.
	runIn(t, sock, "service", "set", svc, "--scheduler", "sh", "--persistence", "0")
	e = explainJSON(t, sock, svc, client.String())
	if e.OtherPort.Backend == "" || e.OtherPort.Backend != e.NewFlow.Backend || e.Slot.HashOf != "client address" {
		t.Errorf("source-hash: new %+v, other %+v, slot %+v", e.NewFlow, e.OtherPort, e.Slot)
	}

	var found bool
	for _, r := range rec.requests {
		found = found || r == "GET /v1/services/198.18.1.1:80%2Ftcp/explain?client=198.18.2.10%3A40000"
	}
	if !found {
		t.Errorf("no explain request in %q", rec.requests)
	}
}

// Bad arguments: exit 2, nothing sent; an unknown service: xlbd's error,
// exit 1.
func TestExplainErrors(t *testing.T) {
	sock, _, rec := startXlbd(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"explain", "198.18.1.1:80/tcp"}, 2, "xlbctl: explain: missing CLIENT:PORT (usage: xlbctl explain VIP:PORT/PROTO CLIENT:PORT [-o table|json])"},
		{[]string{"explain", "198.18.1.1:80", "198.18.2.10:1"}, 2, `xlbctl: explain: service "198.18.1.1:80": want VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp or [2001:2::1]:443/udp`},
		{[]string{"explain", "198.18.1.1:80/tcp", "198.18.2.10"}, 2, `xlbctl: explain: client "198.18.2.10": want CLIENT:PORT, an IP address and a port, e.g. 198.18.2.10:40000 or '[2001:2::10]:40000'`},
		{[]string{"explain", "198.18.1.1:80/tcp", "198.18.2.10:0"}, 2, `xlbctl: explain: client "198.18.2.10:0": port 0: out of range 1-65535`},
		{[]string{"explain", "198.18.1.1:80/tcp", "[2001:2::10]:5"}, 2, `xlbctl: explain: client "[2001:2::10]:5": not of the family of vip 198.18.1.1: a flow stays within one address family`},
		{[]string{"explain", "198.18.1.1:80/tcp", "198.18.2.10:5", "-o", "yaml"}, 2, `xlbctl: explain: output "yaml": want table or json`},
		{[]string{"explain", "198.18.1.1:81/tcp", "198.18.2.10:5"}, 1, "xlbctl: explain: service 198.18.1.1:81/tcp: no such service"},
	} {
		code, out, errOut := runIn(t, sock, tc.args...)
		if code != tc.code || errOut != tc.want+"\n" || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\n  want exit %d, %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if len(rec.requests) != 1 || !strings.HasPrefix(rec.requests[0], "GET /v1/services/198.18.1.1:81%2Ftcp/explain?") {
		t.Errorf("requests %q: want the unknown service's only", rec.requests)
	}
}

// explain has its help, and the overview lists it.
func TestExplainHelp(t *testing.T) {
	for _, args := range [][]string{{"explain", "--help"}, {"help", "explain"}} {
		r := xlbctl(t, &fakeClient{}, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: xlbctl explain VIP:PORT/PROTO CLIENT:PORT [-o table|json]\n") ||
			!strings.Contains(r.stdout, "\nExamples:\n  xlbctl explain ") || len(r.calls) != 0 {
			t.Errorf("%q: exit %d, stdout:\n%s", args, r.code, r.stdout)
		}
	}
	if r := xlbctl(t, &fakeClient{}, "--help"); !strings.Contains(r.stdout, "\n  explain VIP:PORT/PROTO CLIENT:PORT  ") {
		t.Errorf("overview lacks explain:\n%s", r.stdout)
	}
}
