package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestHTTPServer: greetings over one-shot and kept-alive connections, the
// health path, and Stop closing open connections as a dying server would.
func TestHTTPServer(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: 1, ClientAddrs: 2})
	be, c := topo.Backends[0], topo.Client
	if _, err := be.ServeHTTP("bad name", 80); err == nil {
		t.Error("ServeHTTP accepted a name with a space")
	}
	srv, err := be.ServeHTTP("be1", 80)
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Addr{be.Addr4, be.Addr6} {
		src := netip.AddrPortFrom(c.Extra4[1], 0)
		if dst.Is6() {
			src = netip.AddrPortFrom(c.Extra6[1], 0)
		}
		r, err := c.GetHTTP(src, netip.AddrPortFrom(dst, 80), 2*time.Second)
		if err != nil {
			t.Fatalf("GET %s: %v", dst, err)
		}
		if r.Server != "be1" || r.Client.Addr() != src.Addr() || r.Client.Port() == 0 {
			t.Errorf("GET %s from %s: %v", dst, src.Addr(), r)
		}
	}

	hc, err := c.DialHTTP(netip.AddrPortFrom(c.Extra4[0], 0), netip.AddrPortFrom(be.Addr4, 80), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hc.Close() }() // a reset at the end of the test
	for i := range 5 {
		r, err := hc.Get("/", 2*time.Second)
		if err != nil {
			t.Fatalf("kept-alive request %d: %v", i, err)
		}
		if r.Client != hc.Local {
			t.Errorf("kept-alive request %d seen from %s, want the same connection %s", i, r.Client, hc.Local)
		}
	}
	if _, err := hc.Get(HealthPath, 2*time.Second); err == nil || !strings.Contains(err.Error(), "ok") {
		// The health path answers "ok", which is not a greeting.
		t.Errorf("GET %s: %v, want the body ok (not a greeting)", HealthPath, err)
	}
	if n := srv.Requests(); n != 7 {
		t.Errorf("Requests() = %d, want 7", n)
	}
	srv.Stop()
	if _, err := hc.Get("/", time.Second); err == nil {
		t.Error("kept-alive connection still answered after Stop")
	}
	if _, err := c.GetHTTP(netip.AddrPort{}, netip.AddrPortFrom(be.Addr4, 80), time.Second); err == nil {
		t.Error("new request answered after Stop")
	}
	// The port can be served again at once (a restarted server).
	if _, err := be.ServeHTTP("be1", 80); err != nil {
		t.Fatalf("serve again: %v", err)
	}
	if _, err := c.GetHTTP(netip.AddrPort{}, netip.AddrPortFrom(be.Addr4, 80), 2*time.Second); err != nil {
		t.Errorf("after restart: %v", err)
	}
}
