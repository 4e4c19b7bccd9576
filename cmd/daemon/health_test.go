package daemon

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

// probes answers health checks from a table the test changes: an address
// not listed fails with "connect refused".
type probes struct {
	mu sync.Mutex
	ok map[netip.Addr]bool
}

func (p *probes) set(addr string, ok bool) {
	p.mu.Lock()
	p.ok[netip.MustParseAddr(addr)] = ok
	p.mu.Unlock()
}

func (p *probes) prober(health.Config) health.Prober {
	return func(_ context.Context, t health.Target) health.Result {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ok[t.Addr] {
			return health.Result{OK: true, Reason: "connect ok"}
		}
		return health.Result{Reason: "connect refused"}
	}
}

// waitFor polls cond until it holds; the deadline is generous (a shared
// machine), and only failure depends on it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func backendStatus(d *Daemon, addr string) api.BackendStatus {
	for _, s := range d.status().Services {
		for _, b := range s.Backends {
			if b.Address == addr {
				return b
			}
		}
	}
	return api.BackendStatus{}
}

func serviceStatus(d *Daemon, key string) api.ServiceStatus {
	for _, s := range d.status().Services {
		if s.Service == key {
			return s
		}
	}
	return api.ServiceStatus{}
}

// metricsText is what GET /metrics serves.
func metricsText(d *Daemon) string {
	rec := httptest.NewRecorder()
	d.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestHealthDrivesTheDataPlane follows backends through their checks: new
// ones start down and come up after rise passes, a failing one leaves the
// table, a drained one keeps its flows whatever its health, and the two
// all-down policies drop or keep the last healthy set.
func TestHealthDrivesTheDataPlane(t *testing.T) {
	p := &probes{ok: map[netip.Addr]bool{}}
	d, srv := newProbedDaemon(t, p.prober)
	const key = "198.18.1.1:80/tcp"
	for _, a := range []string{"198.18.0.11", "198.18.0.12", "198.18.0.13"} {
		p.set(a, true)
	}
	body := `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"},{"address":"198.18.0.13"}],
		"health":{"type":"connect","interval":"100ms","timeout":"50ms","rise":2,"fall":2}}`
	if code, out := call(t, srv, "POST", "/v1/services", body); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	if b := backendStatus(d, "198.18.0.11"); b.State != api.StateDown || b.InTable || b.Reason == "" {
		t.Fatalf("a new backend: %+v, want down until it passes rise checks", b)
	}
	waitFor(t, "all three up", func() bool {
		for _, a := range []string{"198.18.0.11", "198.18.0.12", "198.18.0.13"} {
			if b := backendStatus(d, a); b.State != api.StateUp || !b.InTable {
				return false
			}
		}
		return true
	})
	b := backendStatus(d, "198.18.0.12")
	if b.Check == nil || !b.Check.OK || b.Check.Reason != "connect ok" || b.Since.IsZero() {
		t.Fatalf("an up backend's status: %+v", b)
	}

	p.set("198.18.0.12", false)
	waitFor(t, ".12 down", func() bool { return backendStatus(d, "198.18.0.12").State == api.StateDown })
	b = backendStatus(d, "198.18.0.12")
	if b.Usable || b.InTable || b.Reason != "tcp check failed: connect refused" || b.Check == nil || b.Check.OK {
		t.Fatalf("a failed backend: %+v", b)
	}
	inst, _ := installed(t, d, key)
	for _, ib := range inst.Backends {
		if ib.Addr == netip.MustParseAddr("198.18.0.12") && (!ib.Down || ib.InTable) {
			t.Fatalf("data plane: %+v, want down and out of the table", ib)
		}
	}

	// Drained and failing: keeps its flows (usable), gets no new ones.
	if code, out := call(t, srv, "POST", svcURL(key)+"/backends/198.18.0.13/drain", ""); code != 200 {
		t.Fatalf("drain: %d %s", code, out)
	}
	p.set("198.18.0.13", false)
	waitFor(t, ".13 failing its check", func() bool {
		c := backendStatus(d, "198.18.0.13").Check
		return c != nil && !c.OK
	})
	waitFor(t, ".13 health down", func() bool {
		st, _ := d.health.checker.State(checkID(mustKey(t, key), netip.MustParseAddr("198.18.0.13")))
		return !st.Up
	})
	b = backendStatus(d, "198.18.0.13")
	if b.State != api.StateDrain || !b.Usable || b.InTable || !strings.HasPrefix(b.Reason, "drained; tcp check failed") {
		t.Fatalf("a drained failing backend: %+v, want drain and still usable for its flows", b)
	}

	// Every weighted backend down, policy drop.
	p.set("198.18.0.11", false)
	waitFor(t, "all down, drop", func() bool { return serviceStatus(d, key).AllDown == string(lb.AllDownDrop) })
	if b := backendStatus(d, "198.18.0.11"); b.Usable {
		t.Fatalf("all down with drop: %+v still usable", b)
	}
	if m := metricsText(d); !strings.Contains(m, `xlb_service_all_backends_down{service="198.18.1.1:80/tcp"} 1`) {
		t.Errorf("metrics lack the all-down gauge:\n%s", m)
	}

	// Switch to keep-last: .11 was the last healthy weighted backend.
	set := strings.Replace(body, `"fall":2}`, `"fall":2,"all_down":"keep-last"}`, 1)
	set = strings.Replace(set, `{"address":"198.18.0.13"}`, `{"address":"198.18.0.13","weight":0}`, 1)
	if code, out := call(t, srv, "PUT", svcURL(key), set); code != 200 {
		t.Fatalf("set keep-last: %d %s", code, out)
	}
	s := serviceStatus(d, key)
	b = backendStatus(d, "198.18.0.11")
	if s.AllDown != string(lb.AllDownKeepLast) || !b.Usable || !b.InTable || b.State != api.StateDown || !strings.Contains(b.Reason, "keep-last") {
		t.Fatalf("keep-last: service %q, .11 %+v; want .11 still carrying traffic", s.AllDown, b)
	}
	if b := backendStatus(d, "198.18.0.12"); b.Usable {
		t.Fatalf("keep-last revived .12, which was not in the last healthy set: %+v", b)
	}

	// .12 recovers: keep-last ends, .11 leaves the table.
	p.set("198.18.0.12", true)
	waitFor(t, ".12 up again", func() bool { return backendStatus(d, "198.18.0.12").State == api.StateUp })
	if s := serviceStatus(d, key); s.AllDown != "" {
		t.Fatalf("all_down %q after a backend recovered", s.AllDown)
	}
	if b := backendStatus(d, "198.18.0.11"); b.Usable || b.InTable {
		t.Fatalf(".11 after keep-last ended: %+v, want out", b)
	}

	m := metricsText(d)
	for _, want := range []string{
		`xlb_health_checks_total{backend="198.18.0.12",result="success",service="198.18.1.1:80/tcp"}`,
		`xlb_health_checks_total{backend="198.18.0.12",result="failure",service="198.18.1.1:80/tcp"}`,
		`# TYPE xlb_health_check_duration_seconds histogram`,
		`xlb_health_check_duration_seconds_bucket{service="198.18.1.1:80/tcp",le="+Inf"}`,
		`xlb_health_check_duration_seconds_count{service="198.18.1.1:80/tcp"}`,
		`xlb_backend_up{backend="198.18.0.12",service="198.18.1.1:80/tcp"} 1`,
		`xlb_backend_up{backend="198.18.0.11",service="198.18.1.1:80/tcp"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Deleting the service drops its checks and their series.
	if code, out := call(t, srv, "DELETE", svcURL(key), ""); code != 200 {
		t.Fatalf("delete: %d %s", code, out)
	}
	if _, ok := d.health.checker.State(checkID(mustKey(t, key), netip.MustParseAddr("198.18.0.11"))); ok {
		t.Error("check of a deleted service still runs")
	}
	if m := metricsText(d); strings.Contains(m, "xlb_health_checks_total") {
		t.Error("metrics keep series of a deleted service")
	}
}

// TestHealthStartUp: start_up backends carry traffic before their first
// check, and a service without a check has its backends up at once.
func TestHealthStartUp(t *testing.T) {
	p := &probes{ok: map[netip.Addr]bool{}}
	d, srv := newProbedDaemon(t, p.prober)
	for _, body := range []string{
		`{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"}],"health":{"type":"tcp","interval":"1h","start_up":true}}`,
		`{"vip":"198.18.1.2","port":80,"backends":[{"address":"198.18.0.12"}]}`,
		`{"vip":"198.18.1.3","port":80,"backends":[{"address":"198.18.0.13"}],"health":{"type":"on"}}`,
	} {
		if code, out := call(t, srv, "POST", "/v1/services", body); code != 200 {
			t.Fatalf("add: %d %s", code, out)
		}
	}
	for _, a := range []string{"198.18.0.11", "198.18.0.12", "198.18.0.13"} {
		if b := backendStatus(d, a); b.State != api.StateUp || !b.InTable {
			t.Errorf("%s: %+v, want up at once", a, b)
		}
	}
}

func mustKey(t *testing.T, s string) lb.ServiceKey {
	t.Helper()
	k, err := lb.ParseServiceKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// frozenClock stops the health checks: they never probe, so a check's
// state is the one it started in.
type frozenClock struct{}

func (frozenClock) Now() time.Time                       { return time.Unix(1e9, 0) }
func (frozenClock) After(time.Duration) <-chan time.Time { return nil }

// Adding a check to a live service keeps the backends that carried its
// traffic in the table until the check says otherwise; a backend new in
// the same change still waits for its rise checks (issue 11, bug 2).
func TestNewCheckKeepsLiveBackends(t *testing.T) {
	d, srv := newDaemonWith(t, Options{HealthClock: frozenClock{}})
	const key = "198.18.1.1:80/tcp"
	if code, out := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := call(t, srv, "PUT", svcURL(key), `{"vip":"198.18.1.1","port":80,"health":{"type":"tcp"},
		"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"},{"address":"198.18.0.13"}]}`); code != 200 {
		t.Fatalf("set with a check: %d %s", code, out)
	}
	for _, c := range []struct {
		addr, state string
		inTable     bool
	}{{"198.18.0.11", api.StateUp, true}, {"198.18.0.12", api.StateUp, true}, {"198.18.0.13", api.StateDown, false}} {
		b := backendStatus(d, c.addr)
		if b.State != c.state || b.InTable != c.inTable {
			t.Errorf("%s after the check was added: state %s, in table %v; want %s, %v", c.addr, b.State, b.InTable, c.state, c.inTable)
		}
	}
	inst, _ := installed(t, d, key)
	if b := inst.Backends[netip.MustParseAddr("198.18.0.11")]; !b.InTable {
		t.Errorf("data plane: %+v, want in the table", b)
	}
	// So does a change of check type: the new check starts where the old
	// one was.
	if code, out := call(t, srv, "PUT", svcURL(key), `{"vip":"198.18.1.1","port":80,"health":{"type":"http"},
		"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"},{"address":"198.18.0.13"}]}`); code != 200 {
		t.Fatalf("set another check: %d %s", code, out)
	}
	if b := backendStatus(d, "198.18.0.12"); b.State != api.StateUp {
		t.Errorf("after a change of check type: %+v", b)
	}
	if b := backendStatus(d, "198.18.0.13"); b.State != api.StateDown {
		t.Errorf("a backend that never passed: %+v", b)
	}
}

// The kept backends still go down when the new check fails them.
func TestNewCheckStillTakesDeadBackendsOut(t *testing.T) {
	p := &probes{ok: map[netip.Addr]bool{}}
	p.set("198.18.0.11", true)
	d, srv := newProbedDaemon(t, p.prober)
	const key = "198.18.1.1:80/tcp"
	if code, out := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := call(t, srv, "PUT", svcURL(key), `{"vip":"198.18.1.1","port":80,"health":{"type":"tcp","interval":"100ms","fall":2},
		"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"}]}`); code != 200 {
		t.Fatalf("set with a check: %d %s", code, out)
	}
	waitFor(t, ".12 down", func() bool { return backendStatus(d, "198.18.0.12").State == api.StateDown })
	if b := backendStatus(d, "198.18.0.11"); b.State != api.StateUp {
		t.Errorf("passing backend: %+v", b)
	}
}
