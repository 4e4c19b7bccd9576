//go:build integration

package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// TestEncapEndToEnd: a real xlbd balancer with ipip (TCP) and gue (UDP)
// services of both families, and real xlbd --role backend decapsulators on
// the two backends: clients' TCP connections and UDP queries through the
// VIPs reach both backends, which see the clients' own addresses and
// answer them directly; the balancer counts the frames it encapsulated
// and each backend those it unwrapped. (The backends share the balancer's
// segment here; the FIB gives their next hop all the same.)
func TestEncapEndToEnd(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	serveAll(t, topo, 9090)
	enableForwarding(t, topo.Balancer)
	backends := startDecap(t, topo.Backends, topo.VIP4, topo.VIP6)
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Lab: topo, Config: encapConfig(topo.VIP4, topo.VIP6, topo.Backends), Metrics: xlbdproc.DefaultMetrics})
	lbd.Start()

	queryEncap(t, topo.Client, topo.VIP4, topo.VIP6, len(topo.Backends))

	ctx := context.Background()
	m := lbd.Metrics()
	if !strings.Contains(m, "xlb_encap_packets_total ") || strings.Contains(m, "xlb_encap_packets_total 0\n") {
		t.Errorf("balancer metrics: no encapsulated packets counted")
	}
	for i, d := range backends {
		st, err := d.Client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		if st.Decap != nil {
			for _, v := range st.Decap.Decapsulated {
				n += v
			}
		}
		if n == 0 {
			t.Errorf("backend %s: status %+v, want decapsulated packets", topo.Backends[i].Name, st.Decap)
		}
	}
}

// TestEncapPMTU: a client sending full-size DF packets to an ipip service
// (1500 bytes, which encapsulated would be 1520 on a 1500-byte path) gets
// ICMP fragmentation needed / packet too big from the balancer, lowers its
// path MTU, and its 256 KiB upload completes, IPv4 and IPv6.
func TestEncapPMTU(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 1})
	be := topo.Backends[0]
	enableForwarding(t, topo.Balancer)
	dec := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: be, Metrics: xlbdproc.DefaultMetrics, Args: []string{"--role", "backend"},
		Config: fmt.Sprintf("interface: eth0\ndecap:\n  vips: [%s, '%s']\n", topo.VIP4, topo.VIP6)})
	dec.Start()
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Lab: topo, Metrics: xlbdproc.DefaultMetrics, Config: fmt.Sprintf(
		"interface: eth0\nservices:\n  - {vip: '%s', port: 7070, forward: ipip, backends: [{address: '%s'}]}\n  - {vip: '%s', port: 7070, forward: ipip, backends: [{address: '%s'}]}\n",
		topo.VIP4, be.Addr4, topo.VIP6, be.Addr6)})
	lbd.Start()

	// A sink on the backend: reads to EOF, answers with the byte count.
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		var ln net.Listener
		if err := be.NS.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(vip, 7070).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = c.Close() }()
					n, _ := io.Copy(io.Discard, c)
					fmt.Fprintf(c, "%d", n)
				}()
			}
		}()
	}
	const size = 256 << 10
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		var c net.Conn
		if err := topo.Client.NS.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, 7070).String(), 3*time.Second)
			return err
		}); err != nil {
			t.Fatalf("dial %s: %v", vip, err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatalf("upload to %s: %v", vip, err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		reply, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil || string(reply) != fmt.Sprint(size) {
			t.Fatalf("upload to %s: reply %q, %v; want %d bytes received", vip, reply, err, size)
		}
	}
	m := lbd.Metrics()
	if !strings.Contains(m, "xlb_encap_icmp_too_big_total ") || strings.Contains(m, "xlb_encap_icmp_too_big_total 0\n") {
		t.Errorf("no ICMP too big sent by the balancer:\n%s", grepLines(m, "xlb_encap"))
	}
}

// enableForwarding turns on IPv4 and IPv6 forwarding on h's eth0, as an
// encapsulating balancer's interface needs (bpf_fib_lookup answers only
// for an interface that forwards).
func enableForwarding(t *testing.T, h *lab.Host) {
	t.Helper()
	if err := h.NS.Do(func() error {
		for _, k := range []string{"/proc/sys/net/ipv4/conf/eth0/forwarding", "/proc/sys/net/ipv6/conf/eth0/forwarding"} {
			if err := os.WriteFile(k, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestEncapRouted: backends in two other subnets, reachable only through
// a router, each running xlbd --role backend; a client behind the same
// router reaches the VIPs (routed to the balancer) over TCP and UDP, IPv4
// and IPv6, through ipip and gue services: both backends answer, see the
// client's own address, and answer it directly through the router.
func TestEncapRouted(t *testing.T) {
	topo := lab.NewHAT(t, lab.HAConfig{Balancers: 1, Backends: -1, RemoteBackends: 2, ClientAddrs: 8})
	lb1 := routedBalancer(t, topo)
	for _, be := range topo.RemoteBackends {
		for _, port := range []uint16{8080, 9090} {
			srv, err := be.Serve(be.Name, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
		}
	}
	startDecap(t, topo.RemoteBackends, topo.VIP4, topo.VIP6)
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: lb1, Config: encapConfig(topo.VIP4, topo.VIP6, topo.RemoteBackends), Metrics: xlbdproc.DefaultMetrics})
	lbd.Start()

	queryEncap(t, topo.Client, topo.VIP4, topo.VIP6, len(topo.RemoteBackends))
	if m := lbd.Metrics(); strings.Contains(m, "xlb_encap_packets_total 0\n") || !strings.Contains(m, "xlb_encap_packets_total ") {
		t.Errorf("balancer: no encapsulated packets:\n%s", grepLines(m, "xlb_encap"))
	}
}

// TestEncapDisruption: as for dsr-l2, the connection table keeps
// encapsulated flows where they are. Keep-alive HTTP connections through
// an ipip service keep their backend when a third remote backend is added
// (which then gets new connections), and when a backend is removed only
// its own connections break.
func TestEncapDisruption(t *testing.T) {
	topo := lab.NewHAT(t, lab.HAConfig{Balancers: 1, Backends: -1, RemoteBackends: 3, ClientAddrs: 8})
	lb1, r := topo.Balancers[0], topo.Router
	enableForwarding(t, lb1)
	if err := r.NS.AddRoute(netip.PrefixFrom(topo.VIP4, 32), lb1.Addr4); err != nil {
		t.Fatal(err)
	}
	for _, be := range topo.RemoteBackends {
		srv, err := be.ServeHTTP(be.Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: be, Metrics: xlbdproc.DefaultMetrics, Args: []string{"--role", "backend"},
			Config: fmt.Sprintf("interface: eth0\ndecap:\n  vips: [%s]\n", topo.VIP4)}).Start()
	}
	rb := topo.RemoteBackends
	key := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: lb1, Metrics: xlbdproc.DefaultMetrics, Config: fmt.Sprintf(
		"interface: eth0\nservices:\n  - {vip: '%s', port: 8080, forward: ipip, backends: [{address: '%s'}, {address: '%s'}]}\n", topo.VIP4, rb[0].Addr4, rb[1].Addr4)})
	lbd.Start()

	c := topo.Client
	vip := netip.AddrPortFrom(topo.VIP4, 8080)
	const n = 60
	conns := make([]*lab.HTTPConn, n)
	first := make([]string, n)
	for i := range conns {
		src := netip.AddrPortFrom(c.Extra4[i%len(c.Extra4)], uint16(40000+i))
		hc, err := c.DialHTTP(src, vip, 3*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { _ = hc.Close() })
		rep, err := hc.Get("/", 3*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns[i], first[i] = hc, rep.Server
	}

	lbd.MustCtl("backend", "add", key, rb[2].Addr4.String())
	for i, hc := range conns {
		rep, err := hc.Get("/", 3*time.Second)
		if err != nil || rep.Server != first[i] {
			t.Fatalf("after adding a backend, connection %d: %v %v, was on %s", i, rep, err, first[i])
		}
	}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		rep, err := c.GetHTTP(netip.AddrPortFrom(c.Extra4[i%len(c.Extra4)], uint16(41000+i)), vip, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[rep.Server]++
	}
	if seen[rb[2].Name] == 0 {
		t.Errorf("the added backend got none of 60 new connections: %v", seen)
	}

	lbd.MustCtl("backend", "del", key, rb[0].Addr4.String())
	broken := 0
	for i, hc := range conns {
		rep, err := hc.Get("/", 2*time.Second)
		switch {
		case first[i] == rb[0].Name:
			broken++ // its backend went
		case err != nil || rep.Server != first[i]:
			t.Errorf("after removing %s, connection %d on %s: %v %v", rb[0].Name, i, first[i], rep, err)
		}
	}
	t.Logf("%d keep-alive connections: a backend added kept all on theirs; removing %s ended its %d, the others kept theirs", n, rb[0].Name, broken)
}

// startDecap runs xlbd --role backend on each host, decapsulating for the
// VIPs.
func startDecap(t *testing.T, hosts []*lab.Host, vip4, vip6 netip.Addr) []*xlbdproc.T {
	t.Helper()
	var ds []*xlbdproc.T
	for _, h := range hosts {
		d := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: h, Metrics: xlbdproc.DefaultMetrics, Args: []string{"--role", "backend"},
			Config: fmt.Sprintf("interface: eth0\ndecap:\n  vips: [%s, '%s']\n", vip4, vip6)})
		d.Start()
		ds = append(ds, d)
	}
	return ds
}

// encapConfig is a balancer config with an ipip TCP service on port 8080
// and a gue UDP service on port 9090 for each VIP, over the backends.
func encapConfig(vip4, vip6 netip.Addr, backends []*lab.Host) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nlimits: {conntrack_size: 65536, max_services: 64, max_backends: 1024}\nservices:\n")
	for _, s := range []struct {
		vip   netip.Addr
		port  int
		proto string
		fwd   string
	}{{vip4, 8080, "tcp", "ipip"}, {vip6, 8080, "tcp", "ipip"}, {vip4, 9090, "udp", "gue"}, {vip6, 9090, "udp", "gue"}} {
		fmt.Fprintf(&b, "  - {vip: '%s', port: %d, protocol: %s, forward: %s, backends: [", s.vip, s.port, s.proto, s.fwd)
		for i, h := range backends {
			addr := h.Addr4
			if s.vip.Is6() {
				addr = h.Addr6
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{address: '%s'}", addr)
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

// queryEncap sends 40 TCP queries to each VIP's port 8080 and 40 UDP ones
// to port 9090 from the client's extra addresses: every one is answered,
// by a backend that saw the client's own address, and all n backends
// answer some.
func queryEncap(t *testing.T, c *lab.Host, vip4, vip6 netip.Addr, n int) {
	t.Helper()
	for _, q := range []struct {
		network string
		vip     netip.Addr
		port    uint16
		srcs    []netip.Addr
	}{{"tcp", vip4, 8080, c.Extra4}, {"tcp", vip6, 8080, c.Extra6}, {"udp", vip4, 9090, c.Extra4}, {"udp", vip6, 9090, c.Extra6}} {
		seen := map[string]int{}
		for i := 0; i < 40; i++ {
			src := netip.AddrPortFrom(q.srcs[i%len(q.srcs)], uint16(30000+i))
			r, err := c.Query(q.network, src, netip.AddrPortFrom(q.vip, q.port), 3*time.Second)
			if err != nil {
				t.Fatalf("%s to %s from %s: %v", q.network, q.vip, src, err)
			}
			if r.Client != src {
				t.Fatalf("%s to %s: backend %s saw %s, want %s", q.network, q.vip, r.Server, r.Client, src)
			}
			seen[r.Server]++
		}
		if len(seen) != n {
			t.Errorf("%s to %s: answers from %v, want all %d backends", q.network, q.vip, seen, n)
		}
	}
}

// TestEncapHealthTunnel: checks that go through the tunnel follow the
// path clients' packets take. Two remote backends run the decapsulator;
// each serves HTTP on the VIPs only (the service) and, apart, on its own
// addresses (the host). Services: an ipip one with an http check and a
// gue one (IPv6) with a tcp check, both via tunnel, and an ipip one whose
// tcp check probes the backend's own address. When backend 0's service
// dies while its host still answers, the tunnelled checks take it out of
// both tunnelled services (their new connections go to backend 1) and the
// direct check keeps it in; when the service returns, so does the backend.
func TestEncapHealthTunnel(t *testing.T) {
	topo := lab.NewHAT(t, lab.HAConfig{Balancers: 1, Backends: -1, RemoteBackends: 2, ClientAddrs: 8})
	lb1 := routedBalancer(t, topo)
	serveVIP := func(be *lab.Host) *lab.HTTPServer {
		t.Helper()
		srv, err := be.ServeHTTPAt(be.Name, netip.AddrPortFrom(topo.VIP4, 8080), netip.AddrPortFrom(topo.VIP6, 8080))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	services := make([]*lab.HTTPServer, len(topo.RemoteBackends))
	for i, be := range topo.RemoteBackends {
		services[i] = serveVIP(be)
		host, err := be.ServeHTTPAt(be.Name+"-host", netip.AddrPortFrom(be.Addr4, 8080), netip.AddrPortFrom(be.Addr6, 8080))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(host.Stop)
	}
	startDecap(t, topo.RemoteBackends, topo.VIP4, topo.VIP6)

	b0, b1 := topo.RemoteBackends[0], topo.RemoteBackends[1]
	check := "{interval: 300ms, timeout: 200ms, rise: 2, fall: 2"
	cfg := fmt.Sprintf(`interface: eth0
limits: {conntrack_size: 65536, max_services: 64, max_backends: 1024}
services:
  - {vip: '%[1]s', port: 8080, forward: ipip, backends: [{address: '%[3]s'}, {address: '%[4]s'}],
     health: %[7]s, type: http, via: tunnel, http: {path: %[8]s, expect_body: ok}}}
  - {vip: '%[2]s', port: 8080, forward: gue, backends: [{address: '%[5]s'}, {address: '%[6]s'}],
     health: %[7]s, type: tcp, via: tunnel}}
  - {vip: '%[1]s', port: 8081, forward: ipip, backends: [{address: '%[3]s'}, {address: '%[4]s'}],
     health: %[7]s, type: tcp, port: 8080}}
`, topo.VIP4, topo.VIP6, b0.Addr4, b1.Addr4, b0.Addr6, b1.Addr6, check, lab.HealthPath)
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: lb1, Config: cfg, Metrics: xlbdproc.DefaultMetrics})
	lbd.Start()
	e := &daemonEnv{T: lbd, t: t}

	tunnel4 := netip.AddrPortFrom(topo.VIP4, 8080).String() + "/tcp"
	tunnel6 := netip.AddrPortFrom(topo.VIP6, 8080).String() + "/tcp"
	direct := netip.AddrPortFrom(topo.VIP4, 8081).String() + "/tcp"
	type svcBackend struct {
		key  string
		addr netip.Addr
	}
	all := []svcBackend{{tunnel4, b0.Addr4}, {tunnel4, b1.Addr4}, {tunnel6, b0.Addr6}, {tunnel6, b1.Addr6}, {direct, b0.Addr4}, {direct, b1.Addr4}}
	for _, sb := range all {
		e.waitBackend(sb.key, sb.addr, "up", isUp)
	}
	// Through the VIPs, clients reach both backends' services.
	get := func(vip netip.Addr, srcs []netip.Addr, first int) map[string]int {
		seen := map[string]int{}
		for i := 0; i < 24; i++ {
			src := netip.AddrPortFrom(srcs[i%len(srcs)], uint16(first+i))
			rep, err := topo.Client.GetHTTP(src, netip.AddrPortFrom(vip, 8080), 3*time.Second)
			if err != nil {
				t.Fatalf("GET %s from %s: %v", vip, src, err)
			}
			if rep.Client != src {
				t.Fatalf("GET %s: backend %s saw %s, want %s", vip, rep.Server, rep.Client, src)
			}
			seen[rep.Server]++
		}
		return seen
	}
	for _, q := range []struct {
		vip  netip.Addr
		srcs []netip.Addr
	}{{topo.VIP4, topo.Client.Extra4}, {topo.VIP6, topo.Client.Extra6}} {
		if seen := get(q.vip, q.srcs, 31000); len(seen) != 2 {
			t.Errorf("%s: answers from %v, want both backends", q.vip, seen)
		}
	}

	// Backend 0's service dies; its host still answers on its address.
	services[0].Stop()
	if rep, err := topo.Client.GetHTTP(netip.AddrPortFrom(topo.Client.Addr4, 32000), netip.AddrPortFrom(b0.Addr4, 8080), 3*time.Second); err != nil || rep.Server != b0.Name+"-host" {
		t.Fatalf("backend 0's host: %+v, %v; want it to answer", rep, err)
	}
	down := e.waitBackend(tunnel4, b0.Addr4, "down (http through the tunnel)", isOut)
	e.waitBackend(tunnel6, b0.Addr6, "down (tcp through the tunnel)", isOut)
	t.Logf("tunnel4 backend 0: %s (%s)", down.State, down.Reason)
	st := e.waitBackend(direct, b0.Addr4, "still up (direct check)", isUp)
	if st.Check == nil || !st.Check.OK {
		t.Errorf("direct check of backend 0: %+v, want passing", st.Check)
	}
	for _, q := range []struct {
		vip  netip.Addr
		srcs []netip.Addr
	}{{topo.VIP4, topo.Client.Extra4}, {topo.VIP6, topo.Client.Extra6}} {
		if seen := get(q.vip, q.srcs, 33000); len(seen) != 1 || seen[b1.Name] != 24 {
			t.Errorf("%s with backend 0's service dead: answers from %v, want all from %s", q.vip, seen, b1.Name)
		}
	}

	// The service returns: so does the backend.
	services[0] = serveVIP(b0)
	e.waitBackend(tunnel4, b0.Addr4, "up again", isUp)
	e.waitBackend(tunnel6, b0.Addr6, "up again", isUp)
}

// routedBalancer readies the HA lab's only balancer for encapsulated
// services: its interface forwards, and the router sends both VIPs to it.
func routedBalancer(t *testing.T, topo *lab.HATopology) *lab.Host {
	t.Helper()
	lb1 := topo.Balancers[0]
	enableForwarding(t, lb1)
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		gw := lb1.Addr4
		if vip.Is6() {
			gw = lb1.Addr6
		}
		if err := topo.Router.NS.AddRoute(netip.PrefixFrom(vip, vip.BitLen()), gw); err != nil {
			t.Fatal(err)
		}
	}
	return lb1
}
