package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

func TestStatus(t *testing.T) {
	fc := &fakeClient{status: sampleStatus()}
	r := mustRun(t, fc, "status")
	sameLines(t, "status", r.stdout, `Interface:      eth0
XDP mode:       native
Version:        v0.3.0
Flows:          42
Idle timeouts:  tcp 15m, tcp-fin 2m, udp 5m

Service 198.18.1.1:80/tcp, scheduler maglev, persistence off, forward dsr-l2
  check: http GET /healthz, expect 200-399, every 2s, timeout 1s, rise 2, fall 3
  ADDRESS      WEIGHT  STATE   LAST-CHECK     MAC                ACTIVE  PACKETS  NEW-FLOWS  REASON                                SINCE
  198.18.0.11  1       up      ok http 200    02:00:00:00:00:11  12      1000     20         -                                     3m12s
  198.18.0.12  0       drain   fail http 503  02:00:00:00:00:12  3       500      10         drained; http check failed: http 503  2h5m
  198.18.0.13  2       no-mac  -              -                  0       0        0          MAC not resolved yet (ARP/NDP)        -

Service [2001:2::1]:53/udp, scheduler source-hash, persistence off, forward dsr-l2
  check: none (backends count as up)
  no backends: its traffic is dropped
`)
	if want := []string{"Status"}; !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls %q, want %q", r.calls, want)
	}

	// Every backend down: the policy is spelt out.
	st := api.Status{Interface: "eth1", XDPMode: "native", Version: "dev", Services: []api.ServiceStatus{
		{Service: "198.18.1.2:80/tcp", Scheduler: "maglev", Forward: "dsr-l2", AllDown: string(lb.AllDownKeepLast),
			Health: &config.Health{Type: "tcp", AllDown: string(lb.AllDownKeepLast)},
			Backends: []api.BackendStatus{{Address: "198.18.0.11", Weight: 1, MAC: "02:00:00:00:00:11", State: "down", Usable: true, InTable: true,
				Reason: "kept by all_down keep-last; tcp check failed: timeout",
				Check:  &api.CheckResult{Reason: "timeout", Seconds: 1}}}},
		{Service: "198.18.1.3:80/tcp", Scheduler: "maglev", Forward: "dsr-l2", AllDown: string(lb.AllDownDrop),
			Health: &config.Health{Type: "icmp"}},
	}}
	r = mustRun(t, &fakeClient{status: st}, "status")
	sameLines(t, "all down", r.stdout, `Interface:  eth1
XDP mode:   native
Version:    dev
Flows:      0

Service 198.18.1.2:80/tcp, scheduler maglev, persistence off, forward dsr-l2
  check: tcp, all down: keep-last
  ALL BACKENDS DOWN: traffic still goes to the last healthy backends (all_down keep-last)
  ADDRESS      WEIGHT  STATE  LAST-CHECK    MAC                ACTIVE  PACKETS  NEW-FLOWS  REASON                                                 SINCE
  198.18.0.11  1       down   fail timeout  02:00:00:00:00:11  0       0        0          kept by all_down keep-last; tcp check failed: timeout  -

Service 198.18.1.3:80/tcp, scheduler maglev, persistence off, forward dsr-l2
  check: icmp
  ALL BACKENDS DOWN: traffic is dropped (all_down drop)
  no backends: its traffic is dropped
`)

	r = mustRun(t, &fakeClient{status: api.Status{Interface: "eth1", XDPMode: "generic", Version: "dev"}}, "status", "--output", "table")
	sameLines(t, "empty status", r.stdout, "Interface:  eth1\nXDP mode:   generic\nVersion:    dev\nFlows:      0\n\nNo services.\n")
}

// -o json prints the API's answer, indented, and it decodes back whole.
func TestReadCommandsJSON(t *testing.T) {
	st := sampleStatus()
	flows := []api.Flow{{Protocol: "tcp", Client: "198.18.2.10:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.11", IdleSeconds: 1.5}}
	for _, tc := range []struct {
		args  []string
		want  any
		calls []string
	}{
		{[]string{"status", "-o", "json"}, st, []string{"Status"}},
		{[]string{"stats", "-o", "json"}, st, []string{"Status"}},
		{[]string{"service", "list", "-o", "json"}, st.Services, []string{"Services"}},
		{[]string{"backend", "list", "198.18.1.1:80/tcp", "-o", "json"}, st.Services[0].Backends, []string{"Services"}},
		{[]string{"backend", "list", "[2001:2::1]:53/udp", "--output", "json"}, []api.BackendStatus{}, []string{"Services"}},
		{[]string{"flows", "-o", "json", "--limit", "10"}, flows, []string{"Flows 10"}},
	} {
		fc := &fakeClient{status: st, flows: flows}
		r := mustRun(t, fc, tc.args...)
		sameLines(t, tc.args[0], r.stdout, indentJSON(t, tc.want))
		if !reflect.DeepEqual(r.calls, tc.calls) {
			t.Errorf("%q: calls %q, want %q", tc.args, r.calls, tc.calls)
		}
		back := reflect.New(reflect.TypeOf(tc.want))
		if err := json.Unmarshal([]byte(r.stdout), back.Interface()); err != nil || !reflect.DeepEqual(back.Elem().Interface(), tc.want) {
			t.Errorf("%q: output does not decode back: %v", tc.args, err)
		}
	}
	// Empty lists are [], not null.
	r := mustRun(t, &fakeClient{}, "service", "list", "-o", "json")
	sameLines(t, "no services", r.stdout, "[]\n")
	r = mustRun(t, &fakeClient{}, "flows", "-o", "json")
	sameLines(t, "no flows", r.stdout, "[]\n")
}

func TestStats(t *testing.T) {
	r := mustRun(t, &fakeClient{status: sampleStatus()}, "stats")
	sameLines(t, "stats", r.stdout, `SERVICE/BACKEND     PACKETS  BYTES               NEW-FLOWS  DROPS
198.18.1.1:80/tcp   1500     1258291 (1.2 MiB)   30         2
  198.18.0.11       1000     838860 (819.2 KiB)  20         -
  198.18.0.12       500      419431 (409.6 KiB)  10         -
  198.18.0.13       0        0                   0          -
[2001:2::1]:53/udp  7        700                 0          7
`)
}

func TestFlows(t *testing.T) {
	fc := &fakeClient{flows: []api.Flow{
		{Protocol: "udp", Client: "[2001:2::100]:5353", VIP: "[2001:2::1]:53", Backend: "2001:2::11", IdleSeconds: 75},
		{Protocol: "tcp", Client: "198.18.2.10:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.11", IdleSeconds: 0.4},
		{Protocol: "tcp", Client: "198.18.2.9:40001", VIP: "198.18.1.1:80", Backend: "", IdleSeconds: 4000},
	}}
	r := mustRun(t, fc, "flows")
	// Sorted by VIP, then client, numerically.
	sameLines(t, "flows", r.stdout, `PROTO  CLIENT              VIP             BACKEND      IDLE
tcp    198.18.2.9:40001    198.18.1.1:80   -            1h6m
tcp    198.18.2.10:40000   198.18.1.1:80   198.18.0.11  0s
udp    [2001:2::100]:5353  [2001:2::1]:53  2001:2::11   1m15s
`)
	if want := []string{"Flows 0"}; !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls %q, want %q (0: xlbd's default limit)", r.calls, want)
	}

	// A full page says so on stderr, and still succeeds.
	fc = &fakeClient{flows: fc.flows[:2]}
	r = xlbctl(t, fc, "flows", "--limit", "2")
	if r.code != 0 || r.stderr != "xlbctl: flows: showing the first 2 flows (--limit N for more)\n" {
		t.Errorf("full page: exit %d, stderr %q", r.code, r.stderr)
	}
	if want := []string{"Flows 2"}; !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls %q, want %q", r.calls, want)
	}
}

func TestServiceList(t *testing.T) {
	r := mustRun(t, &fakeClient{status: sampleStatus()}, "service", "list")
	sameLines(t, "service list", r.stdout, `SERVICE             SCHEDULER    PERSISTENCE  FORWARD  CHECK  BACKENDS  UP
198.18.1.1:80/tcp   maglev       off          dsr-l2   http   3         1
[2001:2::1]:53/udp  source-hash  off          dsr-l2   -      0         0
`)
}

func TestBackendList(t *testing.T) {
	fc := &fakeClient{status: sampleStatus()}
	// The key is matched in any spelling.
	r := mustRun(t, fc, "backend", "list", "198.18.1.1:80/TCP")
	sameLines(t, "backend list", r.stdout, `ADDRESS      WEIGHT  STATE   LAST-CHECK     MAC                ACTIVE  PACKETS  NEW-FLOWS  REASON                                SINCE
198.18.0.11  1       up      ok http 200    02:00:00:00:00:11  12      1000     20         -                                     3m12s
198.18.0.12  0       drain   fail http 503  02:00:00:00:00:12  3       500      10         drained; http check failed: http 503  2h5m
198.18.0.13  2       no-mac  -              -                  0       0        0          MAC not resolved yet (ARP/NDP)        -
`)
	r = mustRun(t, fc, "backend", "list", "[2001:2:0::1]:53/udp")
	sameLines(t, "no backends", r.stdout, "ADDRESS  WEIGHT  STATE  LAST-CHECK  MAC  ACTIVE  PACKETS  NEW-FLOWS  REASON  SINCE\n")

	r = xlbctl(t, &fakeClient{status: sampleStatus()}, "backend", "list", "198.18.1.9:80/tcp")
	if r.code != 1 || r.stderr != "xlbctl: backend list: service 198.18.1.9:80/tcp: no such service (see xlbctl service list)\n" {
		t.Errorf("missing service: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 499 * time.Millisecond: "0s", 45 * time.Second: "45s",
		192 * time.Second: "3m12s", 2*time.Hour + 5*time.Minute + 59*time.Second: "2h5m",
		76 * time.Hour: "3d4h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{
		0: "0", 1023: "1023", 1024: "1024 (1.0 KiB)", 1258291: "1258291 (1.2 MiB)",
		5 << 30: "5368709120 (5.0 GiB)", 1<<64 - 1: "18446744073709551615 (16.0 EiB)",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for _, tc := range []struct {
		h    *config.Health
		want string
	}{
		{nil, "none (backends count as up)"},
		{&config.Health{Type: "none"}, "none (backends count as up)"},
		{&config.Health{Type: "tcp", Port: 8080, Interval: config.Duration(5 * time.Second), Timeout: config.Duration(time.Second), Rise: 1, Fall: 2, AllDown: "keep-last"},
			"tcp port 8080, every 5s, timeout 1s, rise 1, fall 2, all down: keep-last"},
		{&config.Health{Type: "http", HTTP: &config.HTTPCheck{Method: "HEAD", Path: "/ready", HTTPS: true, ExpectStatus: "200", ExpectBody: "ok"}},
			`https HEAD /ready, expect 200, body "ok"`},
		{&config.Health{Type: "icmp", Interval: config.Duration(time.Second)}, "icmp, every 1s"},
	} {
		if got := describeCheck(tc.h); got != tc.want {
			t.Errorf("describeCheck(%+v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// The backend role's status shows the role, the decapsulator's settings
// and its non-zero counters.
func TestWriteStatusBackendRole(t *testing.T) {
	var b strings.Builder
	st := api.Status{Role: "backend", Interface: "eth0", XDPMode: "native", Version: "t", Decap: &api.DecapStatus{
		VIPs: []string{"198.18.1.1"}, Addresses: []string{"198.18.0.5"}, GUEPort: 6080, RxPackets: 12,
		Decapsulated: map[string]uint64{"ipip 4in4": 7, "gue 6in6": 0}, Passed: map[string]uint64{"not_vip": 5, "malformed": 0}}}
	if err := writeStatus(&b, st, time.Now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Role:", "backend", "udp port 6080", "vips: 198.18.1.1", "outer addresses: 198.18.0.5", "received: 12", "ipip 4in4", "not_vip"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "gue 6in6") || strings.Contains(out, "malformed") {
		t.Errorf("zero counters shown:\n%s", out)
	}
}

// With BGP on, status says per service whether its VIP is announced and
// to which peers.
func TestStatusBGP(t *testing.T) {
	svc := func(key string, announced bool, to ...string) api.ServiceStatus {
		return api.ServiceStatus{Service: key, Scheduler: "maglev", Forward: "dsr-l2", Announced: announced, AnnouncedTo: to}
	}
	st := api.Status{Interface: "eth0", XDPMode: "native", Version: "dev", BGP: true, Services: []api.ServiceStatus{
		svc("198.18.1.1:80/tcp", true, "198.18.0.1", "198.18.0.2"),
		svc("198.18.1.2:80/tcp", true),
		svc("198.18.1.3:80/tcp", false),
	}}
	r := mustRun(t, &fakeClient{status: st}, "status")
	for _, want := range []string{
		"  bgp: vip announced to 198.18.0.1, 198.18.0.2\n",
		"  bgp: vip announced (no session established)\n",
		"  bgp: vip NOT announced (no usable backend under its policy)\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
}
