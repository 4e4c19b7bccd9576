package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

// newDataPlane makes the data plane the tests drive: the model by default,
// the real loader (unattached) in TestOnTheLoader.
var newDataPlane = func(t *testing.T) DataPlane { return daemontest.NewDataPlane(16) }

// newTestDaemon runs the handlers over a data plane (newDataPlane's).
func newTestDaemon(t *testing.T, unknown ...string) (*Daemon, *httptest.Server) {
	t.Helper()
	return newProbedDaemon(t, nil, unknown...)
}

// newProbedDaemon is newTestDaemon whose health probes are probe's (nil:
// the real ones). Its reconcile loop runs until the test ends.
func newProbedDaemon(t *testing.T, probe func(health.Config) health.Prober, unknown ...string) (*Daemon, *httptest.Server) {
	t.Helper()
	return newDaemonWith(t, Options{Probe: probe}, unknown...)
}

// newDaemonWith is newTestDaemon with options (its state file, interface
// and data plane are the test's).
func newDaemonWith(t *testing.T, o Options, unknown ...string) (*Daemon, *httptest.Server) {
	t.Helper()
	var none []netip.Addr
	for _, u := range unknown {
		none = append(none, netip.MustParseAddr(u))
	}
	o.StatePath, o.Interface, o.DataPlane = filepath.Join(t.TempDir(), "state.json"), "test0", newDataPlane(t)
	d := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	t.Cleanup(func() {
		d.Close()
		cancel()
		<-loopDone
	})
	if err := d.Start(daemontest.NewMACs(none...), &config.Config{}, []byte("h0")); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(loopDone)
		d.Run(ctx, time.Hour)
	}()
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return d, srv
}

// installed returns the service with key k as the data plane holds it.
func installed(t *testing.T, d *Daemon, k string) (lb.ServiceState, bool) {
	t.Helper()
	snap, err := d.dp.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := snap.Services[mustKey(t, k)]
	return s, ok
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The body is read to the end; closing it cannot lose anything.
	defer func() { _ = resp.Body.Close() }()
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
	inst, ok := installed(t, d, key)
	if !ok || len(inst.Backends) != 3 {
		t.Fatalf("installed: %+v", inst)
	}
	for _, b := range inst.Backends {
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
	if err := os.WriteFile(filepath.Join(dir, "missing"), []byte("a file, not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"}]}`)
	if code != 500 || !strings.Contains(body, "persist state") {
		t.Fatalf("got %d %s, want 500 naming the state write", code, body)
	}
	snap, err := d.dp.Snapshot()
	if n := len(snap.Services); err != nil || n != 0 {
		t.Errorf("data plane has %d services after a failed state write (%v)", n, err)
	}
}

func TestInitialState(t *testing.T) {
	file := desiredState{Services: []config.Service{{VIP: "198.18.1.1", Port: 80}}}
	saved := []config.Service{{VIP: "198.18.1.1", Port: 80}, {VIP: "198.18.1.2", Port: 53}}
	savedBGP := &config.BGP{ASN: 65010}
	if got, _ := initialState(file, "h1", nil); !reflect.DeepEqual(got, file) {
		t.Errorf("no state: got %v", got)
	}
	if got, _ := initialState(file, "h1", &persisted{ConfigHash: "h1", Services: saved, BGP: savedBGP}); !reflect.DeepEqual(got, desiredState{saved, savedBGP}) {
		t.Errorf("unchanged file: got %v, want the saved state", got)
	}
	if got, _ := initialState(file, "h2", &persisted{ConfigHash: "h1", Services: saved, BGP: savedBGP}); !reflect.DeepEqual(got, file) {
		t.Errorf("changed file: got %v, want the file's services", got)
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	w := uint32(3)
	in := &persisted{ConfigHash: "abc", Services: []config.Service{{VIP: "198.18.1.1", Port: 80, Backends: []config.Backend{{Address: "198.18.0.11", Weight: &w}}}}}
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
	if err := os.WriteFile(path, []byte(`{"services":[{"vip":"x"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("corrupt state: %v", err)
	}
}
