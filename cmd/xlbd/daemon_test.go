package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/test/lab"
)

// fakeMACs knows a MAC for every address except those listed as unknown.
type fakeMACs struct{ unknown map[netip.Addr]bool }

func (f fakeMACs) Lookup(a netip.Addr) net.HardwareAddr {
	if f.unknown[a] {
		return nil
	}
	b := a.As16()
	return net.HardwareAddr{0x02, 0, b[12], b[13], b[14], b[15]}
}
func (fakeMACs) Want([]netip.Addr) {}

// newTestDaemon runs the handlers over a real (unattached) data plane.
func newTestDaemon(t *testing.T, unknown ...string) (*daemon, *httptest.Server) {
	t.Helper()
	return newProbedDaemon(t, nil, unknown...)
}

// newProbedDaemon is newTestDaemon whose health probes are probe's (nil:
// the real ones). Its reconcile loop runs until the test ends.
func newProbedDaemon(t *testing.T, probe func(health.Config) health.Prober, unknown ...string) (*daemon, *httptest.Server) {
	t.Helper()
	lab.RequirePrivileged(t)
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64, ConntrackSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bal.Close() })
	macs := fakeMACs{unknown: map[netip.Addr]bool{}}
	for _, u := range unknown {
		macs.unknown[netip.MustParseAddr(u)] = true
	}
	d := &daemon{log: slog.New(slog.DiscardHandler), statePath: filepath.Join(t.TempDir(), "state.json"),
		iface: "test0", bal: bal, neigh: macs, kick: make(chan struct{}, 1)}
	d.health = newHealthState(d.log, d.kickReconcile, probe)
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			case <-d.kick:
				d.reconcile()
			}
		}
	}()
	t.Cleanup(func() {
		d.health.checker.Close()
		close(stop)
		<-loopDone
	})
	d.mu.Lock()
	if err := d.commit(nil, "h0"); err != nil {
		t.Fatal(err)
	}
	d.mu.Unlock()
	srv := httptest.NewServer(d.routes())
	t.Cleanup(srv.Close)
	return d, srv
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func svcURL(k string) string { return "/v1/services/" + url.PathEscape(k) }

func TestHandlers(t *testing.T) {
	d, srv := newTestDaemon(t, "198.18.0.13")
	const key = "198.18.1.1:80/tcp"
	steps := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":2}]}`, 200, `"service": "198.18.1.1:80/tcp"`},
		{"POST", "/v1/services", `{"vip":"198.18.1.1","port":80}`, 409, "already exists"},
		{"POST", svcURL(key) + "/backends", `{"address":"198.18.0.13"}`, 200, `"state": "no-mac"`},
		{"POST", svcURL(key) + "/backends/198.18.0.11/drain", "", 200, `"state": "drain"`},
		{"PUT", svcURL(key) + "/backends/198.18.0.12", `{"weight":5}`, 200, `"weight": 5`},
		{"PUT", svcURL(key) + "/backends/198.18.0.12", `{"address":"198.18.0.99","weight":5}`, 400, "198.18.0.99"},
		{"PUT", svcURL(key), `{"vip":"198.18.1.1","port":81}`, 400, "81"},
		{"POST", "/v1/services", `{"vip":"198.18.1.1","port":0}`, 400, "port 0"},
		{"POST", "/v1/services", `{"vip":"fe80::1%eth0","port":80}`, 400, "fe80::1%eth0"},
		{"DELETE", svcURL("198.18.1.9:80/tcp"), "", 404, "198.18.1.9:80/tcp"},
		{"DELETE", svcURL(key) + "/backends/nonsense", "", 400, "nonsense"},
		{"GET", "/v1/nope", "", 404, "no such endpoint"},
		{"GET", "/v1/flows?limit=0", "", 400, "limit"},
		{"GET", "/v1/flows?limit=10", "", 200, "[]"},
	}
	for _, s := range steps {
		before, _ := os.ReadFile(d.statePath)
		code, body := call(t, srv, s.method, s.path, s.body)
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d containing %q", s.method, s.path, s.body, code, body, s.code, s.want)
		}
		after, _ := os.ReadFile(d.statePath)
		if code != 200 && !bytes.Equal(before, after) {
			t.Errorf("%s %s: rejected, but the state file changed", s.method, s.path)
		}
	}
	// The state file holds exactly the acknowledged services.
	var p persisted
	data, _ := os.ReadFile(d.statePath)
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	desired := d.desired
	d.mu.Unlock()
	if !reflect.DeepEqual(p.Services, desired) {
		t.Errorf("state file %+v differs from the desired state %+v", p.Services, desired)
	}
	// The data plane agrees: the MAC-less backend is not usable, the
	// drained one is out of the table.
	inst := d.bal.Services()
	if len(inst) != 1 || len(inst[0].Backends) != 3 {
		t.Fatalf("installed: %+v", inst)
	}
	for _, b := range inst[0].Backends {
		switch b.Addr.String() {
		case "198.18.0.11":
			if !b.Usable || b.InTable {
				t.Errorf("drained backend: %+v", b)
			}
		case "198.18.0.13":
			if b.Usable {
				t.Errorf("backend without a MAC is usable: %+v", b)
			}
		}
	}
}

// A change whose state cannot be written is not applied.
func TestStateWriteFailureAppliesNothing(t *testing.T) {
	d, srv := newTestDaemon(t)
	dir := filepath.Dir(d.statePath)
	d.statePath = filepath.Join(dir, "missing", "sub", "state.json")
	os.WriteFile(filepath.Join(dir, "missing"), []byte("a file, not a directory"), 0o600)
	code, body := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"}]}`)
	if code != 500 || !strings.Contains(body, "persist state") {
		t.Fatalf("got %d %s, want 500 naming the state write", code, body)
	}
	if n := len(d.bal.Services()); n != 0 {
		t.Errorf("data plane has %d services after a failed state write", n)
	}
}

func TestInitialServices(t *testing.T) {
	file := []api.Service{{VIP: "198.18.1.1", Port: 80}}
	saved := []api.Service{{VIP: "198.18.1.1", Port: 80}, {VIP: "198.18.1.2", Port: 53}}
	if got, _ := initialServices(file, "h1", nil); !reflect.DeepEqual(got, file) {
		t.Errorf("no state: got %v", got)
	}
	if got, _ := initialServices(file, "h1", &persisted{ConfigHash: "h1", Services: saved}); !reflect.DeepEqual(got, saved) {
		t.Errorf("unchanged file: got %v, want the saved state", got)
	}
	if got, _ := initialServices(file, "h2", &persisted{ConfigHash: "h1", Services: saved}); !reflect.DeepEqual(got, file) {
		t.Errorf("changed file: got %v, want the file's services", got)
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	w := uint32(3)
	in := &persisted{ConfigHash: "abc", Services: []api.Service{{VIP: "198.18.1.1", Port: 80, Backends: []api.Backend{{Address: "198.18.0.11", Weight: &w}}}}}
	for i := range in.Services {
		if err := in.Services[i].Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	if err := saveState(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := loadState(path)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	if st, err := loadState(filepath.Join(t.TempDir(), "none")); st != nil || err != nil {
		t.Errorf("missing state: %v %v", st, err)
	}
	os.WriteFile(path, []byte(`{"services":[{"vip":"x"}]}`), 0o600)
	if _, err := loadState(path); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("corrupt state: %v", err)
	}
}

func TestFlags(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil || f.config != "/etc/xlb/xlb.yaml" || f.bpffs != "/sys/fs/bpf/xlb" || f.apiSock != "/run/xlb/xlb.sock" ||
		f.metrics != "127.0.0.1:9641" || f.state != "/var/lib/xlb/state.json" {
		t.Errorf("defaults: %+v %v", f, err)
	}
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Error("stray argument accepted")
	}
}
