//go:build integration

package test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

// schedConfig is one service per scheduler under test, on its own port.
func schedConfig(topo *lab.Topology) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nlimits:\n  conntrack_size: 65536\n  max_services: 64\n  max_backends: 1024\nservices:\n")
	svc := func(port int, extra string, weights ...int) {
		fmt.Fprintf(&b, "  - vip: %s\n    port: %d\n%s    backends:\n", topo.VIP4, port, extra)
		for i, h := range topo.Backends {
			fmt.Fprintf(&b, "      - address: %s\n        weight: %d\n", h.Addr4, weights[i])
		}
	}
	svc(8081, "    scheduler: round-robin\n", 1, 1, 1)
	svc(8082, "    scheduler: least-conn\n", 1, 0, 0)
	svc(8083, "    scheduler: maglev\n    persistence: 300s\n    health: {type: tcp, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}\n", 1, 1, 1)
	svc(8084, "    scheduler: maglev\n", 1, 2, 3)
	svc(8085, "    scheduler: rr\n", 1, 2, 3)
	return b.String()
}

// within reports whether every backend's share of counts is within tol
// (relative) of its weight's share.
func within(t *testing.T, what string, topo *lab.Topology, counts map[string]int, weights []int, tol float64) {
	t.Helper()
	total, wsum := 0, 0
	for _, c := range counts {
		total += c
	}
	for _, w := range weights {
		wsum += w
	}
	for i, h := range topo.Backends {
		want := float64(total) * float64(weights[i]) / float64(wsum)
		if got := float64(counts[h.Name]); got < want*(1-tol) || got > want*(1+tol) {
			t.Errorf("%s: backend %s got %d of %d connections, want %.0f ±%.0f%%; all: %v", what, h.Name, counts[h.Name], total, want, tol*100, counts)
		}
	}
	t.Logf("%s: %v", what, counts)
}

// hold opens a connection from src and keeps it open; it returns the
// connection and the backend that answered.
func hold(t *testing.T, topo *lab.Topology, src, dst netip.AddrPort) (net.Conn, string) {
	t.Helper()
	c, err := topo.Client.Dial(src, dst, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, src, err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		_ = c.Close() // failing anyway
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		_ = c.Close() // failing anyway
		t.Fatalf("greeting on %s from %s: %v", dst, src, err)
	}
	r, err := lab.ParseReply(line)
	if err != nil {
		_ = c.Close() // failing anyway
		t.Fatal(err)
	}
	return c, r.Server
}

// activeFlows reads a backend's active-flow count from xlbd's status.
func (e *daemonEnv) activeFlows(key string, addr netip.Addr) uint64 {
	e.t.Helper()
	st, err := e.status()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if s.Service == key && b.Address == addr.String() {
				return b.ActiveFlows
			}
		}
	}
	e.t.Fatalf("no backend %s in %s", addr, key)
	return 0
}

// TestSchedulers drives the real xlbd and xlbctl: round-robin evenness,
// least-conn against held connections, persistence through drain and
// failure, weights under maglev and round-robin.
func TestSchedulers(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 16})
	for _, p := range []uint16{8081, 8082, 8084, 8085} {
		serveAll(t, topo, p)
	}
	// The persistence service's servers: one is stopped below.
	persistSrv := map[string]*lab.Server{}
	for _, h := range topo.Backends {
		srv, err := h.Serve(h.Name, 8083)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		persistSrv[h.Name] = srv
	}
	e := newDaemonEnv(t, topo, schedConfig(topo))
	e.Start()
	be := topo.Backends
	vip := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(topo.VIP4, port) }
	key := func(port int) string { return fmt.Sprintf("%s:%d/tcp", topo.VIP4, port) }

	t.Run("round-robin 3000 connections", func(t *testing.T) {
		within(t, "round-robin 1:1:1", topo, spreadOver(t, topo, vip(8081), 3000, 10000), []int{1, 1, 1}, 0.03)
	})

	t.Run("weights 1:2:3", func(t *testing.T) {
		within(t, "maglev 1:2:3", topo, spreadOver(t, topo, vip(8084), 3000, 20000), []int{1, 2, 3}, 0.10)
		within(t, "round-robin 1:2:3", topo, spreadOver(t, topo, vip(8085), 3000, 30000), []int{1, 2, 3}, 0.10)
	})

	t.Run("least-conn", func(t *testing.T) {
		k := key(8082)
		// Only backend 0 has a weight: it takes 4 long-lived
		// connections.
		var held []net.Conn
		// Only left open when the subtest failed early: closing them is
		// tidying up.
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for i := 0; i < 4; i++ {
			c, srv := hold(t, topo, netip.AddrPortFrom(topo.Client.Extra4[i], 50000), vip(8082))
			held = append(held, c)
			if srv != be[0].Name {
				t.Fatalf("long-lived connection %d went to %s; only %s has a weight", i, srv, be[0].Name)
			}
		}
		if n := e.activeFlows(k, be[0].Addr4); n != 4 {
			t.Errorf("status: backend %s has %d active flows, want 4", be[0].Name, n)
		}
		// Backend 1 joins with the same weight: it has no flow open, so
		// every new connection (each closed before the next) goes to it.
		e.MustCtl("backend", "set", k, be[1].Addr4.String(), "--weight", "1")
		if c := spreadOver(t, topo, vip(8082), 10, 50100); c[be[1].Name] != 10 {
			t.Errorf("10 short connections while %s holds 4 long ones: %v, want all on %s", be[0].Name, c, be[1].Name)
		}
		// Long-lived ones too, until it holds as many.
		for i := 0; i < 3; i++ {
			c, srv := hold(t, topo, netip.AddrPortFrom(topo.Client.Extra4[8+i], 50200), vip(8082))
			held = append(held, c)
			if srv != be[1].Name {
				t.Errorf("long-lived connection %d to %s while %s holds %d and %s 4", i, srv, be[1].Name, i, be[0].Name)
			}
		}
		out := e.MustCtl("status")
		if !strings.Contains(out, "scheduler least-conn") || !strings.Contains(out, "ACTIVE") {
			t.Errorf("xlbctl status does not show the scheduler and active flows:\n%s", out)
		}
		// Closing them ends their count (the client's FIN).
		for _, c := range held {
			if err := c.Close(); err != nil {
				t.Errorf("close a held connection: %v", err)
			}
		}
		held = nil
		deadline := time.Now().Add(10 * time.Second)
		for e.activeFlows(k, be[0].Addr4)+e.activeFlows(k, be[1].Addr4) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("active flows after closing every connection: %d and %d, want 0", e.activeFlows(k, be[0].Addr4), e.activeFlows(k, be[1].Addr4))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("persistence through drain and failure", func(t *testing.T) {
		k := key(8083)
		e.waitAllUp(k)
		client := topo.Client.Extra4[5]
		one := func(port int) string {
			r, err := topo.Client.Query("tcp", netip.AddrPortFrom(client, uint16(port)), vip(8083), 3*time.Second)
			if err != nil {
				t.Fatalf("connection from %s:%d: %v", client, port, err)
			}
			return r.Server
		}
		first := one(40000)
		for i := 1; i < 50; i++ {
			if srv := one(40000 + i); srv != first {
				t.Fatalf("connection %d of one client went to %s, its first to %s", i, srv, first)
			}
		}
		var victim *lab.Host
		for _, h := range be {
			if h.Name == first {
				victim = h
			}
		}
		// Drained: the client stays (as with IPVS and HAProxy).
		e.MustCtl("backend", "drain", k, victim.Addr4.String())
		for i := 0; i < 50; i++ {
			if srv := one(40100 + i); srv != first {
				t.Fatalf("after draining %s, connection %d went to %s", first, i, srv)
			}
		}
		// Failed: the client moves, and stays on its new backend.
		persistSrv[victim.Name].Stop()
		// Drained and failing: it keeps its established flows, not its
		// persistent clients.
		e.waitBackend(k, victim.Addr4, "failing", func(b api.BackendStatus) bool { return b.Check != nil && !b.Check.OK })
		// The status can show the failure a moment before the data plane
		// has it: the first connections may still be refused.
		var next string
		deadline := time.Now().Add(10 * time.Second)
		for port := 40300; next == ""; port++ {
			r, err := topo.Client.Query("tcp", netip.AddrPortFrom(client, uint16(port)), vip(8083), 2*time.Second)
			switch {
			case err == nil && r.Server == first:
				t.Fatalf("backend %s is failing but the client still reached it", first)
			case err == nil:
				next = r.Server
			case time.Now().After(deadline):
				t.Fatalf("the client found no backend after %s failed: %v", first, err)
			}
		}
		for i := 1; i < 50; i++ {
			if srv := one(40200 + i); srv != next {
				t.Fatalf("after the failover, connection %d went to %s, not %s", i, srv, next)
			}
		}
		if out := e.MustCtl("service", "list"); !strings.Contains(out, "5m") {
			t.Errorf("xlbctl service list does not show the persistence:\n%s", out)
		}
	})

	// Bad combinations are refused with the field named, nothing applied.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "set", key(8081), "--persistence", "1500ms"}, "whole seconds"},
		{[]string{"service", "set", key(8081), "--scheduler", "sed"}, "sed"},
		{[]string{"service", "set", key(8081), "--persistence", "900h"}, "900h"},
	} {
		if out, err := e.Ctl(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("xlbctl %v: err %v, output %q; want a refusal naming %q", c.args, err, out, c.want)
		}
	}
}
