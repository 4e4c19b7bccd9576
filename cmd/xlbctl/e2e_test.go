package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/maps/lb"
)

// frozenClock stops time for the health checks: they never probe, so
// every check shows as not run yet, and every state is as old as the clock
// is behind testNow.
type frozenClock struct{ now time.Time }

func (c frozenClock) Now() time.Time                     { return c.now }
func (frozenClock) After(time.Duration) <-chan time.Time { return nil }

// recorder keeps the request lines the handlers were sent.
type recorder struct {
	mu       sync.Mutex
	requests []string
	next     http.Handler
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.RequestURI())
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

// startXlbd serves xlbd's real API handlers (package daemon) on a unix
// socket, over the in-memory model of the data plane, with a neighbour
// table that knows every backend. It needs no root.
func startXlbd(t *testing.T) (sock string, dp *daemontest.DataPlane, rec *recorder) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	dp = daemontest.NewDataPlane(16)
	d := daemon.New(daemon.Options{StatePath: filepath.Join(t.TempDir(), "state.json"), Interface: "eth0", XDPMode: "native",
		Version: "test", DataPlane: dp, HealthClock: frozenClock{testNow.Add(-time.Minute)}})
	t.Cleanup(d.Close)
	if err := d.Start(daemontest.NewMACs(), &config.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	rec = &recorder{next: d.Handler()}
	srv := httptest.NewUnstartedServer(rec)
	// The server's own TCP listener, unused: the unix socket replaces it.
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return sock, dp, rec
}

// TestEndToEnd drives the real client over a unix socket, through a
// session of an operator, against xlbd's real handlers.
func TestEndToEnd(t *testing.T) {
	sock, dp, rec := startXlbd(t)
	dp.SetFlows([]lb.FlowEntry{{Key: lb.FlowKey{Src: netip.MustParseAddrPort("198.18.2.10:40000"),
		Dst: netip.MustParseAddrPort("198.18.1.1:80"), Proto: lb.TCP}, Backend: netip.MustParseAddr("198.18.0.12"), Idle: 3200 * time.Millisecond}})

	const svc = "198.18.1.1:80/tcp"
	steps := []struct {
		args   []string
		code   int
		stdout string // or, with code != 0, stderr
	}{
		{[]string{"service", "add", svc, "--backend", "198.18.0.11", "--backend", "198.18.0.12=2", "--check", "http", "--http-path", "/healthz", "--start-up"},
			0, "added service 198.18.1.1:80/tcp with 2 backends\n"},
		{[]string{"service", "add", svc},
			1, "xlbctl: service add: service 198.18.1.1:80/tcp already exists (use set to change it)\n"},
		{[]string{"backend", "add", svc, "198.18.0.13", "--weight", "3"},
			0, "added backend 198.18.0.13 to 198.18.1.1:80/tcp with weight 3\n"},
		{[]string{"backend", "add", svc, "198.18.0.13"},
			1, "xlbctl: backend add: service 198.18.1.1:80/tcp: backend 198.18.0.13 already exists (use set to change it)\n"},
		{[]string{"backend", "drain", svc, "198.18.0.11"},
			0, "draining backend 198.18.0.11 of 198.18.1.1:80/tcp: weight 0, its flows continue, new flows go to the others\n"},
		{[]string{"backend", "set", svc, "198.18.0.12", "--weight", "5"},
			0, "set backend 198.18.0.12 of 198.18.1.1:80/tcp to weight 5\n"},
		{[]string{"backend", "set", svc, "198.18.0.99", "--weight", "5"},
			1, "xlbctl: backend set: service 198.18.1.1:80/tcp: no backend 198.18.0.99\n"},
		{[]string{"service", "set", svc, "--scheduler", "wlc", "--persistence", "300s", "--rise", "4"},
			0, "changed service 198.18.1.1:80/tcp\n"},
		{[]string{"service", "set", svc, "--persistence", "1500ms"},
			2, "xlbctl: service set: persistence 1.5s: must be whole seconds (e.g. 300s)\n"},
		{[]string{"backend", "list", svc}, 0, `ADDRESS      WEIGHT  STATE  LAST-CHECK  MAC                ACTIVE  PACKETS  NEW-FLOWS  REASON  SINCE
198.18.0.11  0       drain  -           02:00:c6:12:00:0b  0       0        0          -       1m0s
198.18.0.12  5       up     -           02:00:c6:12:00:0c  0       0        0          -       1m0s
198.18.0.13  3       up     -           02:00:c6:12:00:0d  0       0        0          -       1m0s
`},
		{[]string{"service", "list"}, 0, `SERVICE            SCHEDULER   PERSISTENCE  FORWARD  CHECK  BACKENDS  UP
198.18.1.1:80/tcp  least-conn  5m           dsr-l2   http   3         2
`},
		// A backend of the other address family is refused (issue 11, bug 1).
		{[]string{"backend", "add", svc, "2001:2::14"},
			1, "xlbctl: backend add: service 198.18.1.1:80/tcp: backends[3].address \"2001:2::14\": IPv6, but vip 198.18.1.1 is IPv4: a backend must be of the vip's address family\n"},
		{[]string{"backend", "del", svc, "198.18.0.13"}, 0, "deleted backend 198.18.0.13 from 198.18.1.1:80/tcp\n"},
		{[]string{"flows", "--limit", "5"}, 0, `PROTO  CLIENT             VIP            BACKEND      IDLE
tcp    198.18.2.10:40000  198.18.1.1:80  198.18.0.12  3s
`},
		{[]string{"service", "add", "[2001:2::1]:53/udp", "--backend", "[2001:2::11]"}, 0, "added service [2001:2::1]:53/udp with 1 backend\n"},
		{[]string{"backend", "drain", "[2001:2::1]:53/udp", "2001:2::11"}, 0,
			"draining backend 2001:2::11 of [2001:2::1]:53/udp: weight 0, its flows continue, new flows go to the others\n"},
		{[]string{"service", "del", "[2001:2::1]:53/udp"}, 0, "deleted service [2001:2::1]:53/udp\n"},
		{[]string{"service", "del", "[2001:2::1]:53/udp"}, 1, "xlbctl: service del: service [2001:2::1]:53/udp: no such service\n"},
	}
	for _, s := range steps {
		var out, errOut bytes.Buffer
		args := append([]string{"--api", sock}, s.args...)
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Now: func() time.Time { return testNow }}, args)
		got := out.String()
		if s.code != 0 {
			got = errOut.String()
		}
		if code != s.code || got != s.stdout {
			t.Errorf("xlbctl %s:\n  exit %d, stdout %q, stderr %q\n  want exit %d, %q", strings.Join(s.args, " "), code, out.String(), errOut.String(), s.code, s.stdout)
		}
	}

	// The state xlbd ends up with, as status -o json shows it.
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out}, []string{"status", "-o", "json", "--api", sock}); code != 0 {
		t.Fatalf("status: %d %s", code, out.String())
	}
	var st api.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 {
		t.Fatalf("services: %+v", st.Services)
	}
	s := st.Services[0]
	if s.Scheduler != "least-conn" || s.Persistence != config.Duration(300*time.Second) || s.Health == nil || s.Health.Rise != 4 || s.Health.Type != "http" || s.Health.HTTP.Path != "/healthz" || len(s.Backends) != 2 {
		t.Errorf("service after the session: %+v, health %+v", s, s.Health)
	}

	// The requests, escaped as the API wants.
	rec.mu.Lock()
	reqs := rec.requests
	rec.mu.Unlock()
	for _, want := range []string{
		"PUT /v1/services/198.18.1.1:80%2Ftcp",
		"POST /v1/services/198.18.1.1:80%2Ftcp/backends/198.18.0.11/drain",
		"GET /v1/flows?limit=5",
		"DELETE /v1/services/%5B2001:2::1%5D:53%2Fudp",
	} {
		if !slices.Contains(reqs, want) {
			t.Errorf("no request %q in %q", want, reqs)
		}
	}

	// No xlbd at the socket.
	var errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "none.sock")
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut}, []string{"--api", missing, "status"})
	want := "xlbctl: status: cannot reach xlbd at " + missing + ": connect: no such file or directory (is xlbd running? is --api right? are you root?)\n"
	if code != 1 || errOut.String() != want {
		t.Errorf("no xlbd: exit %d, stderr %q, want %q", code, errOut.String(), want)
	}
}

// The ldirectord check names work on the command line as in the config
// file, and XLB_API names the socket (issue 11, bug 4).
func TestCheckAliasAndSocketFromEnvironment(t *testing.T) {
	sock, dp, _ := startXlbd(t)
	var out, errOut bytes.Buffer
	e := env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if k == "XLB_API" {
			return sock
		}
		return ""
	}}
	if code := run(context.Background(), e, []string{"service", "add", "198.18.1.1:80/tcp", "--backend", "198.18.0.11", "--check", "connect"}); code != 0 {
		t.Fatalf("service add --check connect: exit %d, %s", code, errOut.String())
	}
	s, ok := dp.Installed(lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP})
	if !ok || len(s.Backends) != 1 {
		t.Fatalf("not installed through $XLB_API: %+v", s)
	}
	out.Reset()
	if code := run(context.Background(), e, []string{"status", "-o", "json"}); code != 0 {
		t.Fatalf("status: exit %d, %s", code, errOut.String())
	}
	var st api.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if h := st.Services[0].Health; h == nil || h.Type != "tcp" {
		t.Errorf("--check connect: health %+v, want type tcp", h)
	}

	// --api wins over the environment.
	missing := filepath.Join(t.TempDir(), "none.sock")
	errOut.Reset()
	if code := run(context.Background(), e, []string{"--api", missing, "status"}); code != 1 || !strings.Contains(errOut.String(), missing) {
		t.Errorf("--api with XLB_API set: exit %d, %s", code, errOut.String())
	}
}
