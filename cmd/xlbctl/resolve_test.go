package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
)

func (f *fakeClient) ResolveService(ctx context.Context, key string) (api.ResolveResult, error) {
	f.record("ResolveService", key)
	if f.err != nil {
		return api.ResolveResult{}, f.err
	}
	return f.resolved(key), nil
}

// resolved is the fake's answer: one name that gained and lost an address.
func (f *fakeClient) resolved(key string) api.ResolveResult {
	return api.ResolveResult{Service: key, Names: []api.NameChange{{
		Name: "web.pool.example", Family: "ipv4",
		Added: []string{"198.18.0.13"}, Removed: []string{"198.18.0.12"}, Kept: []string{"198.18.0.11"},
		Error: "",
	}}}
}

func TestServiceResolve(t *testing.T) {
	r := xlbctl(t, &fakeClient{}, "service", "resolve", "198.18.1.1:80/tcp")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := "web.pool.example (ipv4): added 198.18.0.13; removed 198.18.0.12 (drained until their flows end); 1 kept\n"
	if r.stdout != want || len(r.calls) != 1 || r.calls[0] != "ResolveService 198.18.1.1:80/tcp" {
		t.Errorf("stdout %q, calls %q; want %q", r.stdout, r.calls, want)
	}
}

// status shows each backend name: its state, addresses, refresh, and the
// error while the last good set is kept.
func TestStatusNames(t *testing.T) {
	st := api.Status{Interface: "eth0", Services: []api.ServiceStatus{{
		Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2",
		Names: []api.NameStatus{
			{Name: "web.pool.example", Family: "ipv4", Weight: 2, State: api.NameFailing, Addresses: []string{"198.18.0.11", "198.18.0.12"},
				Leaving: []string{"198.18.0.13"}, LastSuccess: testNow.Add(-90 * time.Second), NextRefresh: testNow.Add(5 * time.Second),
				LastError: "198.18.0.53:53: timeout after 2s", Skipped: []string{"198.18.0.10: also a static backend (the static one is used)"}},
			{Name: "new.pool.example", Family: "ipv4", Weight: 1, State: api.NamePending, Addresses: []string{}},
		},
	}}}
	r := mustRun(t, &fakeClient{status: st}, "status")
	for _, want := range []string{
		"  dns: web.pool.example (ipv4, weight 2): failing, 2 addresses, 1 leaving, answered 1m30s ago, next lookup in 5s\n" +
			"    lookup failing, last good set kept: 198.18.0.53:53: timeout after 2s\n" +
			"    not used: 198.18.0.10: also a static backend (the static one is used)\n",
		"  dns: new.pool.example (ipv4, weight 1): pending, 0 addresses\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks\n%s\ngot\n%s", want, r.stdout)
		}
	}
}

// service set keeps a service's backend names as names: the addresses
// they gave are not written back as static backends.
func TestServiceSetKeepsNames(t *testing.T) {
	w := uint32(1)
	st := api.Status{Services: []api.ServiceStatus{{
		Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2",
		Backends: []api.BackendStatus{
			{Address: "198.18.0.10", Weight: w},
			{Address: "198.18.0.11", Name: "web.pool.example", Weight: 2},
			{Address: "198.18.0.12", Name: "web.pool.example", Weight: 0},
		},
		Names: []api.NameStatus{{Name: "web.pool.example", Family: "ipv4", Weight: 2}},
	}}}
	r := mustRun(t, &fakeClient{status: st}, "service", "set", "198.18.1.1:80/tcp", "--scheduler", "source-hash")
	want := `"backends":[{"address":"198.18.0.10","weight":1},{"name":"web.pool.example","family":"ipv4","weight":2}]`
	if len(r.calls) != 2 || !strings.Contains(r.calls[1], want) {
		t.Errorf("calls %q\nwant the second to contain %s", r.calls, want)
	}
}

// service resolve end to end: the real client over a unix socket, xlbd's
// real handlers, DNS answers from the test.
func TestServiceResolveEndToEnd(t *testing.T) {
	answer := daemon.DNSAnswer{Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")}, TTL: time.Minute}
	var mu sync.Mutex
	lookup := func(context.Context, config.NameKey, config.Resolvers) daemon.DNSAnswer {
		mu.Lock()
		defer mu.Unlock()
		return answer
	}
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d := daemon.New(daemon.Options{StatePath: filepath.Join(t.TempDir(), "state.json"), Interface: "eth0",
		DataPlane: daemontest.NewDataPlane(16), HealthClock: frozenClock{testNow}, DNSLookup: lookup})
	t.Cleanup(d.Close)
	if err := d.Start(daemontest.NewMACs(), &config.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(d.Handler())
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Now: func() time.Time { return testNow }}, append([]string{"--api", sock}, args...))
		return code, out.String(), errOut.String()
	}
	c := api.NewClient(sock)
	w := uint32(2)
	if _, err := c.AddService(context.Background(), config.Service{VIP: "198.18.1.1", Port: 80,
		Backends: []config.Backend{{Address: "198.18.0.10"}, {Name: "web.pool.example", Weight: &w}}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := ctl("service", "resolve", "198.18.1.1:80/tcp")
	if code != 0 || out != "web.pool.example (ipv4): added 198.18.0.11 198.18.0.12; 0 kept\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	mu.Lock()
	answer = daemon.DNSAnswer{Err: errors.New("198.18.0.53:53: timeout after 2s")}
	mu.Unlock()
	code, out, errOut = ctl("service", "resolve", "198.18.1.1:80/tcp")
	if code != 1 || out != "web.pool.example (ipv4): unchanged; 2 kept\n  last good set kept: 198.18.0.53:53: timeout after 2s\n" ||
		errOut != "xlbctl: service resolve: not resolved: web.pool.example (ipv4)\n" {
		t.Fatalf("failed lookup: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ = ctl("service", "resolve", "-o", "json", "198.18.1.1:80/tcp"); code != 1 || !strings.Contains(out, `"error"`) {
		t.Fatalf("failed lookup, json: exit %d, stdout %q", code, out)
	}
	_, out, _ = ctl("status")
	if !strings.Contains(out, "  dns: web.pool.example (ipv4, weight 2): failing, 2 addresses") {
		t.Errorf("status:\n%s", out)
	}
	// A resolved address is not a backend of its own.
	code, _, errOut = ctl("backend", "drain", "198.18.1.1:80/tcp", "198.18.0.11")
	if code != 1 || !strings.Contains(errOut, "backend 198.18.0.11 comes from DNS name web.pool.example") {
		t.Errorf("drain of a resolved address: exit %d, %q", code, errOut)
	}
	// service set keeps the name.
	if code, _, errOut = ctl("service", "set", "198.18.1.1:80/tcp", "--scheduler", "round-robin"); code != 0 {
		t.Fatalf("service set: %s", errOut)
	}
	st, err := c.Services(context.Background())
	if err != nil || len(st) != 1 || len(st[0].Names) != 1 || len(st[0].Backends) != 3 {
		t.Fatalf("after service set: %+v %v", st, err)
	}
	code, out, _ = ctl("service", "resolve", "198.18.1.9:80/tcp")
	if code != 1 {
		t.Errorf("resolve of no service: exit %d %q", code, out)
	}
}
