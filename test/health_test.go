//go:build integration

package test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/lab"
)

// healthConfig is labConfig's service with a health check block (YAML,
// indented under the service).
func healthConfig(topo *lab.Topology, port int, check string) string {
	return labConfig(topo, port) + "    health:\n" + check
}

// waitStatus polls xlbd's status until ok holds and returns it.
func (e *daemonEnv) waitStatus(what string, ok func(api.Status) bool) api.Status {
	e.t.Helper()
	var last api.Status
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := e.status(); err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; last status %+v", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitService waits until service key satisfies ok.
func (e *daemonEnv) waitService(key, what string, ok func(api.ServiceStatus) bool) api.ServiceStatus {
	e.t.Helper()
	var found api.ServiceStatus
	e.waitStatus("service "+key+" "+what, func(st api.Status) bool {
		for _, s := range st.Services {
			if s.Service == key && ok(s) {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// waitBackend waits until the backend of service key satisfies ok.
func (e *daemonEnv) waitBackend(key string, addr netip.Addr, what string, ok func(api.BackendStatus) bool) api.BackendStatus {
	e.t.Helper()
	var found api.BackendStatus
	e.waitService(key, "backend "+addr.String()+" "+what, func(s api.ServiceStatus) bool {
		for _, b := range s.Backends {
			if b.Address == addr.String() && ok(b) {
				found = b
				return true
			}
		}
		return false
	})
	return found
}

func isUp(b api.BackendStatus) bool { return b.State == api.StateUp && b.InTable }

// isOut: down and out of the data plane's table (the status reads the
// installed state, so the table swap has happened).
func isOut(b api.BackendStatus) bool { return b.State == api.StateDown && !b.Usable && !b.InTable }

func (e *daemonEnv) waitAllUp(key string) {
	e.t.Helper()
	for _, h := range e.topo.Backends {
		e.waitBackend(key, h.Addr4, "up", isUp)
	}
}

// attempt is one client connection of a continuous stream.
type attempt struct {
	start  time.Time
	server string
	err    error
}

// stream opens connections to dst one after another from the client's
// extra addresses until stop is closed, and returns what each got.
func stream(topo *lab.Topology, dst netip.AddrPort, firstPort int, stop <-chan struct{}) <-chan []attempt {
	out := make(chan []attempt, 1)
	go func() {
		var got []attempt
		for i := 0; ; i++ {
			select {
			case <-stop:
				out <- got
				return
			default:
			}
			src := netip.AddrPortFrom(topo.Client.Extra4[i%len(topo.Client.Extra4)], uint16(firstPort+i%20000))
			a := attempt{start: time.Now()}
			r, err := topo.Client.Query("tcp", src, dst, 2*time.Second)
			a.server, a.err = r.Server, err
			if err == nil && r.Client != src {
				a.err = fmt.Errorf("backend %s saw client %s, want %s", r.Server, r.Client, src)
			}
			got = append(got, a)
		}
	}()
	return out
}

// connectAll opens n connections and returns the count per backend,
// failing the test on any failed connection.
func connectAll(t *testing.T, topo *lab.Topology, dst netip.AddrPort, n, firstPort int) map[string]int {
	t.Helper()
	return spreadOver(t, topo, dst, n, firstPort)
}

// TestHealthTCPFailover stops one backend's server while a client
// connects continuously: once the tcp check has taken it out, no
// connection attempt fails and none reaches it; restarted, it rejoins
// after rise checks.
func TestHealthTCPFailover(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	servers := map[string]*lab.Server{}
	for _, h := range topo.Backends {
		srv, err := h.Serve(h.Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		servers[h.Name] = srv
		t.Cleanup(func() { servers[h.Name].Stop() })
	}
	const interval, timeout, rise, fall = 200 * time.Millisecond, 100 * time.Millisecond, 2, 2
	e := newDaemonEnv(t, topo, healthConfig(topo, 8080, fmt.Sprintf(
		"      type: tcp\n      interval: %s\n      timeout: %s\n      rise: %d\n      fall: %d\n", interval, timeout, rise, fall)))
	e.Start()
	key := netip.AddrPortFrom(topo.VIP4, 8080).String() + "/tcp"
	e.waitAllUp(key)
	dst := netip.AddrPortFrom(topo.VIP4, 8080)

	victim := topo.Backends[1]
	stop := make(chan struct{})
	results := stream(topo, dst, 20000, stop)
	time.Sleep(300 * time.Millisecond) // some traffic before the failure
	died := time.Now()
	servers[victim.Name].Stop()
	e.waitBackend(key, victim.Addr4, "taken out", isOut)
	detected := time.Now()
	// Keep connecting for a while after detection.
	for time.Since(detected) < 1500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	got := <-results

	var before, beforeFailed, after int
	for _, a := range got {
		if a.start.Before(detected) {
			before++
			if a.err != nil {
				beforeFailed++
			}
			continue
		}
		after++
		if a.err != nil {
			t.Errorf("connection at +%v after detection failed: %v", a.start.Sub(detected), a.err)
		} else if a.server == victim.Name {
			t.Errorf("connection at +%v after detection reached the dead backend", a.start.Sub(detected))
		}
	}
	if after < 10 {
		t.Fatalf("only %d connections after detection: the test did not exercise the failover", after)
	}
	t.Logf("backend died; taken out after %v (bound fall*interval+timeout = %v); %d connections before (%d failed in the detection window), %d after, none failed",
		detected.Sub(died).Round(time.Millisecond), time.Duration(fall)*interval+timeout, before, beforeFailed, after)

	b := e.waitBackend(key, victim.Addr4, "down with a reason", isOut)
	if b.Check == nil || b.Check.OK || b.Reason != "tcp check failed: connect refused" {
		t.Errorf("status of the dead backend: %+v, want reason %q", b, "tcp check failed: connect refused")
	}
	logs := e.Log()
	if n := strings.Count(logs, "backend down"); n != 1 {
		t.Errorf("the transition was logged %d times, want once:\n%s", n, logs)
	}

	// Restarted, it rejoins after rise checks and gets new connections.
	srv, err := victim.Serve(victim.Name, 8080)
	if err != nil {
		t.Fatal(err)
	}
	servers[victim.Name] = srv
	e.waitBackend(key, victim.Addr4, "up again", isUp)
	if c := connectAll(t, topo, dst, 300, 45000); c[victim.Name] == 0 || len(c) != 3 {
		t.Fatalf("after the restart: %v, want all three backends", c)
	}
	if !strings.Contains(e.MustCtl("status"), "ok connect ok") {
		t.Errorf("xlbctl status does not show the last check:\n%s", e.MustCtl("status"))
	}
}

// httpBackend is an HTTP health endpoint in a backend's namespace whose
// answer the test changes.
type httpBackend struct {
	status atomic.Int32
	body   atomic.Value // string
	srv    *http.Server
}

func serveHealth(t *testing.T, h *lab.Host, port int) *httpBackend {
	t.Helper()
	hb := &httpBackend{}
	hb.status.Store(200)
	hb.body.Store("ok")
	var ln net.Listener
	if err := h.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hb.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(hb.status.Load()))
		fmt.Fprint(w, hb.body.Load().(string))
	})}
	served := make(chan error, 1)
	go func() { served <- hb.srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := hb.srv.Close(); err != nil {
			t.Errorf("close health server: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("health server: %v", err)
		}
	})
	return hb
}

// TestHealthHTTP: an http check on its own port takes out a backend
// that answers 503, then one whose body lacks the expected text, and
// takes them back when they recover.
func TestHealthHTTP(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	hbs := map[string]*httpBackend{}
	for _, h := range topo.Backends {
		hbs[h.Name] = serveHealth(t, h, 8081)
	}
	e := newDaemonEnv(t, topo, healthConfig(topo, 8080,
		"      type: negotiate\n      interval: 200ms\n      timeout: 150ms\n      rise: 2\n      fall: 2\n      port: 8081\n"+
			"      http:\n        path: /healthz\n        expect_body: ok\n"))
	e.Start()
	key := netip.AddrPortFrom(topo.VIP4, 8080).String() + "/tcp"
	e.waitAllUp(key)
	dst := netip.AddrPortFrom(topo.VIP4, 8080)

	sick := topo.Backends[2]
	hbs[sick.Name].status.Store(503)
	b := e.waitBackend(key, sick.Addr4, "taken out", isOut)
	if b.Reason != "http check failed: http 503" || b.Check == nil || b.Check.Reason != "http 503" {
		t.Errorf("503 backend: %+v", b)
	}
	if c := connectAll(t, topo, dst, 200, 20000); c[sick.Name] != 0 || len(c) != 2 {
		t.Errorf("with one backend answering 503: %v, want only the other two", c)
	}

	hbs[sick.Name].status.Store(200)
	e.waitBackend(key, sick.Addr4, "up again", isUp)

	hbs[sick.Name].body.Store("degraded")
	b = e.waitBackend(key, sick.Addr4, "taken out for its body", isOut)
	if want := `http check failed: http 200: body lacks "ok"`; b.Reason != want {
		t.Errorf("wrong body: reason %q, want %q", b.Reason, want)
	}
	hbs[sick.Name].body.Store("all ok")
	e.waitBackend(key, sick.Addr4, "up again", isUp)
	if c := connectAll(t, topo, dst, 300, 30000); len(c) != 3 {
		t.Errorf("after recovery: %v, want all three", c)
	}

	m := e.Metrics()
	for _, want := range []string{
		fmt.Sprintf(`xlb_health_checks_total{backend="%s",result="failure",service="%s"}`, sick.Addr4, key),
		fmt.Sprintf(`xlb_health_check_duration_seconds_count{service="%s"}`, key),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHealthICMP: ping checks over IPv4 and IPv6 take out a backend whose
// link goes down and take it back when the link comes up.
func TestHealthICMP(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	cfg := healthConfig(topo, 8080, "      type: ping\n      interval: 200ms\n      timeout: 150ms\n      rise: 2\n      fall: 2\n")
	cfg += fmt.Sprintf("  - vip: %s\n    port: 8080\n    health: {type: icmp, interval: 200ms, timeout: 150ms, rise: 2, fall: 2}\n    backends:\n", topo.VIP6)
	for _, h := range topo.Backends {
		cfg += fmt.Sprintf("      - address: %s\n", h.Addr6)
	}
	e := newDaemonEnv(t, topo, cfg)
	e.Start()
	key4 := netip.AddrPortFrom(topo.VIP4, 8080).String() + "/tcp"
	key6 := netip.AddrPortFrom(topo.VIP6, 8080).String() + "/tcp"
	e.waitAllUp(key4)
	for _, h := range topo.Backends {
		e.waitBackend(key6, h.Addr6, "up", isUp)
	}

	victim := topo.Backends[0]
	// Linux drops IPv6 addresses on link down unless told to keep them (a
	// real host's network config would restore them).
	if err := victim.NS.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+lab.LinkName+"/keep_addr_on_down", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	setLink := func(up bool) {
		t.Helper()
		if err := victim.NS.Do(func() error {
			l, err := netlink.LinkByName(lab.LinkName)
			if err != nil {
				return err
			}
			if up {
				return netlink.LinkSetUp(l)
			}
			return netlink.LinkSetDown(l)
		}); err != nil {
			t.Fatal(err)
		}
	}
	setLink(false)
	t.Cleanup(func() { setLink(true) })
	b := e.waitBackend(key4, victim.Addr4, "taken out", isOut)
	if b.Reason != "icmp check failed: timeout" {
		t.Errorf("IPv4 backend with its link down: reason %q", b.Reason)
	}
	e.waitBackend(key6, victim.Addr6, "taken out", isOut)
	if c := connectAll(t, topo, netip.AddrPortFrom(topo.VIP4, 8080), 200, 20000); c[victim.Name] != 0 || len(c) != 2 {
		t.Errorf("with one backend's link down: %v, want only the other two", c)
	}

	setLink(true)
	e.waitBackend(key4, victim.Addr4, "up again", isUp)
	e.waitBackend(key6, victim.Addr6, "up again", isUp)
}

// TestHealthAllDown: when every backend fails its check (on a separate
// port, so the service itself still answers), keep-last keeps sending
// traffic to the last healthy backend and drop drops it; the first
// backend to recover takes it all.
func TestHealthAllDown(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	checks := map[string]*lab.Server{}
	for _, h := range topo.Backends {
		srv, err := h.Serve(h.Name, 8081)
		if err != nil {
			t.Fatal(err)
		}
		checks[h.Name] = srv
		t.Cleanup(func() { checks[h.Name].Stop() })
	}
	e := newDaemonEnv(t, topo, healthConfig(topo, 8080,
		"      type: tcp\n      port: 8081\n      interval: 200ms\n      timeout: 100ms\n      rise: 2\n      fall: 2\n      all_down: keep-last\n"))
	e.Start()
	key := netip.AddrPortFrom(topo.VIP4, 8080).String() + "/tcp"
	e.waitAllUp(key)
	dst := netip.AddrPortFrom(topo.VIP4, 8080)

	// One after another, so the last healthy set is the last one.
	for _, h := range topo.Backends {
		checks[h.Name].Stop()
		e.waitBackend(key, h.Addr4, "failing", func(b api.BackendStatus) bool { return b.State == api.StateDown })
	}
	last := topo.Backends[2]
	svc := e.waitService(key, "keep-last", func(s api.ServiceStatus) bool { return s.AllDown == string(lb.AllDownKeepLast) })
	for _, b := range svc.Backends {
		if want := b.Address == last.Addr4.String(); b.InTable != want {
			t.Errorf("keep-last: %s in table %v, want %v", b.Address, b.InTable, want)
		}
	}
	if c := connectAll(t, topo, dst, 100, 20000); c[last.Name] != 100 {
		t.Errorf("keep-last: %v, want all 100 on %s", c, last.Name)
	}
	if !strings.Contains(e.Log(), "EVERY BACKEND OF THE SERVICE IS DOWN") {
		t.Error("entering keep-last was not logged loudly")
	}
	if out := e.MustCtl("status"); !strings.Contains(out, "ALL BACKENDS DOWN: traffic still goes to the last healthy backends") {
		t.Errorf("xlbctl status does not show keep-last:\n%s", out)
	}

	// Policy drop: the same situation drops the service's traffic.
	e.MustCtl("service", "set", key, "--all-down", "drop")
	svc = e.waitService(key, "drop", func(s api.ServiceStatus) bool { return s.AllDown == string(lb.AllDownDrop) })
	dropsBefore := svc.DropNoBackend
	for i := range 3 {
		src := netip.AddrPortFrom(topo.Client.Extra4[i], uint16(30000+i))
		if r, err := topo.Client.Query("tcp", src, dst, 500*time.Millisecond); err == nil {
			t.Errorf("all down with drop: connection answered by %s", r.Server)
		}
	}
	svc = e.waitService(key, "counting drops", func(s api.ServiceStatus) bool { return s.DropNoBackend > dropsBefore })

	// The first backend back takes everything; all-down ends.
	first := topo.Backends[0]
	srv, err := first.Serve(first.Name, 8081)
	if err != nil {
		t.Fatal(err)
	}
	checks[first.Name] = srv
	e.waitBackend(key, first.Addr4, "up again", isUp)
	e.waitService(key, "no longer all down", func(s api.ServiceStatus) bool { return s.AllDown == "" })
	if c := connectAll(t, topo, dst, 100, 40000); c[first.Name] != 100 {
		t.Errorf("after one recovered: %v, want all 100 on %s", c, first.Name)
	}
}
