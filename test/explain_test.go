//go:build integration

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

// explainOut runs "xlbctl explain SVC CLIENT -o json" against the real
// xlbd.
func (e *daemonEnv) explainOut(svc string, client netip.AddrPort) api.Explain {
	e.t.Helper()
	out, err := exec.Command(bins.Xlbctl(), "--api", e.Socket(), "explain", svc, client.String(), "-o", "json").CombinedOutput()
	if err != nil {
		e.t.Fatalf("xlbctl explain %s %s: %v\n%s", svc, client, err, out)
	}
	var x api.Explain
	if err := json.Unmarshal(out, &x); err != nil {
		e.t.Fatalf("xlbctl explain: %v\n%s", err, out)
	}
	return x
}

// TestExplain runs xlbctl explain against a real xlbd with real HTTP-ish
// backends whose greeting names the server: for an open connection it
// names the connection-table entry and the backend that serves it; for a
// new flow from an unused port it predicts the backend, and a connection
// from that port lands there, with persistence (the client's backend,
// though the port's own slot holds another) and without (the slot).
func TestExplain(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3})
	serveAll(t, topo, 8080)
	serveAll(t, topo, 9090)
	cfg := labConfig(topo, 8080) + "    persistence: 300s\n"
	cfg += fmt.Sprintf("  - vip: %s\n    port: 9090\n    protocol: tcp\n    backends:\n", topo.VIP4)
	for _, h := range topo.Backends {
		cfg += fmt.Sprintf("      - address: %s\n", h.Addr4)
	}
	e := newDaemonEnv(t, topo, cfg)
	e.Start()
	persistent := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	plain := fmt.Sprintf("%s:9090/tcp", topo.VIP4)
	e.waitAllUp(persistent)
	e.waitAllUp(plain)
	addrOf := map[string]string{}
	for _, h := range topo.Backends {
		addrOf[h.Name] = h.Addr4.String()
	}
	client := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(topo.Client.Addr4, port) }

	// (1) An open connection: explain names its entry and the backend
	// that answered.
	src := client(41000)
	c, err := topo.Client.Dial(src, netip.AddrPortFrom(topo.VIP4, 8080), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }() // closed below; this is for early failures
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	r, err := lab.ParseReply(line)
	if err != nil || r.Client != src {
		t.Fatalf("greeting %q: %+v, %v (want client %s)", line, r, err, src)
	}
	served := addrOf[r.Server]
	x := e.explainOut(persistent, src)
	if x.Conntrack == nil || !x.Conntrack.Used || x.Conntrack.State != "established" || x.Conntrack.Backend != served ||
		x.NextPacket.By != "conntrack" || x.NextPacket.Backend != served {
		t.Fatalf("open connection served by %s: conntrack %+v, next packet %+v", served, x.Conntrack, x.NextPacket)
	}
	if x.PersistenceEntry == nil || !x.PersistenceEntry.Used || x.PersistenceEntry.Backend != served {
		t.Errorf("persistence entry %+v: want the first connection's backend %s", x.PersistenceEntry, served)
	}
	t.Logf("open connection from %s, served by %s (%s):\n%s", src, r.Server, served, e.explainText(persistent, src))

	// (2) A new flow of the client, from a port whose own slot holds
	// another backend: persistence decides, and the connection lands there.
	var port uint16
	for p := uint16(42000); p < 42200; p++ {
		x = e.explainOut(persistent, client(p))
		if x.Conntrack != nil || x.NewFlow.By != "persistence" || x.NewFlow.Backend != served {
			t.Fatalf("port %d: new flow %+v, conntrack %+v: want %s by persistence", p, x.NewFlow, x.Conntrack, served)
		}
		if x.Slot.Backend != "" && x.Slot.Backend != served {
			port = p
			break
		}
	}
	if port == 0 {
		t.Fatal("no port in 200 hashed to another backend than the persistent one")
	}
	t.Logf("new flow from port %d:\n%s", port, e.explainText(persistent, client(port)))
	if r, err := topo.Client.Query("tcp", client(port), netip.AddrPortFrom(topo.VIP4, 8080), 3*time.Second); err != nil || addrOf[r.Server] != served {
		t.Errorf("port %d: landed on %s (%v), explain said %s (persistence; its slot holds %s)", port, addrOf[r.Server], err, served, x.Slot.Backend)
	}

	// (3) No persistence: the slot decides, for each new port.
	landed := map[string]bool{}
	for p := uint16(43000); p < 43012; p++ {
		x = e.explainOut(plain, client(p))
		if x.NewFlow.By != "scheduler" || x.NewFlow.Backend == "" || x.NewFlow.Backend != x.Slot.Backend || x.NextPacket.Backend != x.NewFlow.Backend {
			t.Fatalf("port %d, no persistence: new flow %+v, next %+v, slot %+v", p, x.NewFlow, x.NextPacket, x.Slot)
		}
		r, err := topo.Client.Query("tcp", client(p), netip.AddrPortFrom(topo.VIP4, 9090), 3*time.Second)
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		if addrOf[r.Server] != x.NewFlow.Backend {
			t.Errorf("port %d: landed on %s, explain said %s", p, addrOf[r.Server], x.NewFlow.Backend)
		}
		landed[addrOf[r.Server]] = true
	}
	if len(landed) < 2 {
		t.Errorf("12 ports all landed on %v: the test shows nothing", landed)
	}

	// The client closes the first connection (FIN): the entry is closing.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for x = e.explainOut(persistent, src); x.Conntrack == nil || x.Conntrack.State != "closing"; x = e.explainOut(persistent, src) {
		if time.Now().After(deadline) {
			t.Fatalf("after the client's FIN: conntrack %+v, want closing", x.Conntrack)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after the client's FIN:\n%s", e.explainText(persistent, src))
}

// explainText is xlbctl explain's table, for the log.
func (e *daemonEnv) explainText(svc string, client netip.AddrPort) string {
	out, err := exec.Command(bins.Xlbctl(), "--api", e.Socket(), "explain", svc, client.String()).CombinedOutput()
	if err != nil {
		e.t.Fatalf("xlbctl explain %s %s: %v\n%s", svc, client, err, out)
	}
	return string(out)
}
