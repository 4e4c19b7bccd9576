//go:build integration

package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// Path MTU discovery through direct server return (issue 13).
const (
	pmtuPort     = 8088
	pmtuSize     = 1 << 20 // the download
	pmtuLinkMTU  = 1280    // the router's client-facing link
	pmtuFullMTU  = 1500    // every other link
	pmtuComplete = 20 * time.Second
	// pmtuStall is how long the download gets with the feature off: a
	// black-holed transfer makes no progress at all, while the whole
	// download takes well under a second with the feature on.
	pmtuStall = 5 * time.Second
)

// pmtuData is the download's content: 1 MiB that does not repeat.
var pmtuData = func() []byte {
	b := make([]byte, pmtuSize)
	r := rand.NewChaCha8([32]byte{'x', 'l', 'b', 1, 3})
	_, _ = r.Read(b) // ChaCha8.Read never fails
	return b
}()

// TestPMTUThroughDSR: a client behind a router whose client-facing link
// has MTU 1280 (the client's own interface keeps 1500, so its MSS says
// 1460) downloads 1 MiB through the VIP over TCP, IPv4 and IPv6. The
// backend's full-size replies go straight to the router, which cannot
// forward them and sends ICMP fragmentation needed / packet too big to
// their source, the VIP, routed to the balancer. With icmp_forward on (the
// default) the balancer hands the error to the backend of the quoted flow,
// the backend lowers its path MTU to 1280 and the download completes. With
// icmp_forward: false the error dies at the balancer, the backend never
// learns, and the download stalls: the classic DSR black hole.
//
// Each mode gets a fresh lab, so no path MTU is cached from the other; in
// one lab IPv4 and IPv6 are separate destinations.
func TestPMTUThroughDSR(t *testing.T) {
	for _, forward := range []bool{true, false} {
		t.Run(fmt.Sprintf("icmp_forward=%v", forward), func(t *testing.T) {
			p := newPMTULab(t, forward)
			for _, vip := range []netip.Addr{p.topo.VIP4, p.topo.VIP6} {
				t.Run(family(vip), func(t *testing.T) { p.download(t, vip, forward) })
			}
		})
	}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// pmtuLab is an HA topology with one balancer node running xlbd, the VIPs
// routed to it statically, one backend serving pmtuData, and a router
// whose client side has MTU pmtuLinkMTU.
type pmtuLab struct {
	topo *lab.HATopology
	node *xlbdproc.T
	srv  *bulkServer
}

func newPMTULab(t *testing.T, forward bool) *pmtuLab {
	t.Helper()
	// Three backends: the error must reach the one holding the flow (the
	// others' kernels would drop it, and the download would stall).
	topo := lab.NewHAT(t, lab.HAConfig{Balancers: 1, Backends: 3, ClientAddrs: -1, NoHashTrap: true, ClientLinkMTU: pmtuLinkMTU})
	lb := topo.Balancers[0]
	for _, r := range []struct{ vip, via netip.Addr }{{topo.VIP4, lb.Addr4}, {topo.VIP6, lb.Addr6}} {
		if err := topo.Router.NS.AddRoute(netip.PrefixFrom(r.vip, r.vip.BitLen()), r.via); err != nil {
			t.Fatal(err)
		}
	}
	// The lab's premise: only the router's client side is small.
	if got := linkMTU(t, topo.Router.NS, topo.Router.ClientLink); got != pmtuLinkMTU {
		t.Fatalf("router %s mtu %d, want %d", topo.Router.ClientLink, got, pmtuLinkMTU)
	}
	if got := linkMTU(t, topo.Client.NS, topo.Client.Link); got != pmtuFullMTU {
		t.Fatalf("client %s mtu %d, want %d", topo.Client.Link, got, pmtuFullMTU)
	}
	// TCP's own black-hole detection would hide the balancer's part.
	var be4, be6 strings.Builder
	for _, be := range topo.Backends {
		if v := nsSysctl(t, be.NS, "net/ipv4/tcp_mtu_probing"); v != "0" {
			t.Fatalf("%s: net.ipv4.tcp_mtu_probing = %s, want 0", be.Name, v)
		}
		fmt.Fprintf(&be4, "      - address: %s\n", be.Addr4)
		fmt.Fprintf(&be6, "      - address: %s\n", be.Addr6)
	}
	srv := serveBulk(t, topo.Backends, pmtuData, netip.AddrPortFrom(topo.VIP4, pmtuPort), netip.AddrPortFrom(topo.VIP6, pmtuPort))

	opt := ""
	if !forward {
		opt = "icmp_forward: false\n"
	}
	config := fmt.Sprintf(`interface: eth0
%slimits: {conntrack_size: 65536, max_services: 16, max_backends: 256}
services:
  - vip: %s
    port: %d
    protocol: tcp
    backends:
%s  - vip: %s
    port: %d
    protocol: tcp
    backends:
%s`, opt, topo.VIP4, pmtuPort, be4.String(), topo.VIP6, pmtuPort, be6.String())
	node := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: lb, Config: config, Metrics: xlbdproc.DefaultMetrics})
	node.Start()
	return &pmtuLab{topo: topo, node: node, srv: srv}
}

// download fetches pmtuData through vip and asserts what forward implies.
func (p *pmtuLab) download(t *testing.T, vip netip.Addr, forward bool) {
	dst := netip.AddrPortFrom(vip, pmtuPort)
	// A reply that fits through the small link passes in either mode:
	// the path works, only its MTU is in question.
	var pm0 int
	waitUntil(t, "a small reply through "+dst.String(), func() bool {
		got, _, pm, err := p.fetch(dst, 1000, 2*time.Second)
		pm0 = pm
		return err == nil && bytes.Equal(got, pmtuData[:1000])
	})
	if pm0 != pmtuFullMTU {
		t.Fatalf("backend path MTU %d before the download, want %d", pm0, pmtuFullMTU)
	}

	const notService = `xlb_passed_packets_total{reason="not_service"}`
	m0 := p.node.Metrics()
	fwd0, pass0 := metricValue(t, m0, "xlb_icmp_errors_forwarded_total"), metricValue(t, m0, notService)
	ptb0 := routerPTBs(t, p.topo.Router.NS, vip)
	wait := pmtuComplete
	if !forward {
		wait = pmtuStall
	}
	start := time.Now()
	got, be, pmtu, err := p.fetch(dst, pmtuSize, wait)
	took := time.Since(start)
	m := p.node.Metrics()
	fwd, pass := metricValue(t, m, "xlb_icmp_errors_forwarded_total")-fwd0, metricValue(t, m, notService)-pass0
	ptb := routerPTBs(t, p.topo.Router.NS, vip) - ptb0
	t.Logf("%d of %d bytes in %v (%v); %s's path MTU %d; router sent %v errors; balancer forwarded %v",
		len(got), pmtuSize, took.Round(time.Millisecond), err, be, pmtu, ptb, fwd)

	if ptb == 0 {
		t.Errorf("the router sent no fragmentation needed / packet too big: the lab does not cut the path")
	}
	if forward {
		if err != nil || len(got) != pmtuSize || !bytes.Equal(got, pmtuData) {
			t.Errorf("download: %d of %d bytes (content equal: %v), err %v; want all of it", len(got), pmtuSize, bytes.Equal(got, pmtuData[:len(got)]), err)
		}
		if pmtu != pmtuLinkMTU {
			t.Errorf("backend path MTU %d after the download, want %d", pmtu, pmtuLinkMTU)
		}
		if fwd < 1 {
			t.Errorf("xlb_icmp_errors_forwarded_total moved by %v, want at least 1", fwd)
		}
		return
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) >= pmtuSize {
		t.Errorf("download with icmp_forward off: %d of %d bytes, err %v; want a stall (read deadline exceeded)", len(got), pmtuSize, err)
	}
	if pmtu != pmtuFullMTU {
		t.Errorf("backend path MTU %d with icmp_forward off, want %d (never lowered)", pmtu, pmtuFullMTU)
	}
	if fwd != 0 {
		t.Errorf("xlb_icmp_errors_forwarded_total moved by %v with icmp_forward off, want 0", fwd)
	}
	// The errors did reach the balancer: it left them to its kernel.
	if pass < ptb {
		t.Errorf("%s moved by %v with icmp_forward off, want at least the router's %v errors", notService, pass, ptb)
	}
}

// fetch asks the bulk server for n bytes through dst, reading until done or
// until wait has passed. It returns what arrived, the backend that served
// it and its path MTU on that connection while it was still open, and the
// read error.
func (p *pmtuLab) fetch(dst netip.AddrPort, n int, wait time.Duration) ([]byte, string, int, error) {
	c, err := p.topo.Client.Dial(netip.AddrPort{}, dst, 2*time.Second)
	if err != nil {
		return nil, "", 0, err
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return nil, "", 0, err
	}
	if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
		return nil, "", 0, err
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(c, buf)
	be, pmtu, perr := p.srv.pmtu(c.LocalAddr())
	if err == nil && perr != nil {
		err = perr
	}
	return buf[:got], be, pmtu, err
}

// bulkServer serves a prefix of its data over TCP: the client sends a
// decimal length and a newline, the server writes that many bytes and
// keeps the connection until the client closes it, so its TCP_INFO can be
// read.
type bulkServer struct {
	data  []byte
	lns   []net.Listener
	mu    sync.Mutex
	conns map[netip.AddrPort]bulkConn // by client address
	wg    sync.WaitGroup
}

// serveBulk listens on addrs in every host's namespace; t.Cleanup stops
// it.
func serveBulk(t *testing.T, hosts []*lab.Host, data []byte, addrs ...netip.AddrPort) *bulkServer {
	t.Helper()
	s := &bulkServer{data: data, conns: map[netip.AddrPort]bulkConn{}}
	t.Cleanup(s.stop)
	for _, h := range hosts {
		for _, ap := range addrs {
			s.listen(t, h, ap)
		}
	}
	return s
}

func (s *bulkServer) listen(t *testing.T, h *lab.Host, ap netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	err := h.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ap.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", ap, h.Name, err)
	}
	s.lns = append(s.lns, ln)
	s.wg.Add(1)
	go s.accept(ln, h.Name)
}

func (s *bulkServer) accept(ln net.Listener, backend string) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := c.(*net.TCPConn)
		peer := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		s.mu.Lock()
		s.conns[peer] = bulkConn{tc, backend}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(tc, peer)
	}
}

func (s *bulkServer) serve(c *net.TCPConn, peer netip.AddrPort) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, peer)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 0 || n > len(s.data) {
		return
	}
	if _, err := c.Write(s.data[:n]); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, r) // until the client closes
}

// bulkConn is a connection a backend accepted.
type bulkConn struct {
	*net.TCPConn
	backend string
}

// pmtu returns the backend serving client and its path MTU (TCP_INFO
// tcpi_pmtu) on that connection.
func (s *bulkServer) pmtu(client net.Addr) (string, int, error) {
	ap := client.(*net.TCPAddr).AddrPort()
	s.mu.Lock()
	c, ok := s.conns[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	s.mu.Unlock()
	if !ok {
		return "", 0, fmt.Errorf("no backend has a connection from %s", ap)
	}
	pm, err := tcpPMTU(c.TCPConn)
	return c.backend, pm, err
}

func tcpPMTU(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("TCP_INFO: %w", ierr)
	}
	return int(info.Pmtu), nil
}

func (s *bulkServer) stop() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// linkMTU returns the MTU of interface name in n.
func linkMTU(t *testing.T, n *lab.NS, name string) int {
	t.Helper()
	var mtu int
	err := n.Do(func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		mtu = ifc.MTU
		return nil
	})
	if err != nil {
		t.Fatalf("mtu of %s in %s: %v", name, n.Name, err)
	}
	return mtu
}

// nsSysctl reads a sysctl (path under /proc/sys) in n.
func nsSysctl(t *testing.T, n *lab.NS, path string) string {
	t.Helper()
	var v []byte
	err := n.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + path)
		return err
	})
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v", path, n.Name, err)
	}
	return strings.TrimSpace(string(v))
}

// routerPTBs returns how many ICMP destination unreachable (IPv4; the
// frag-needed ones among them) or ICMPv6 packet too big messages n has
// sent, for vip's family: from its own /proc/net/snmp(6).
func routerPTBs(t *testing.T, n *lab.NS, vip netip.Addr) float64 {
	t.Helper()
	file, key := "snmp", "OutDestUnreachs"
	if vip.Is6() {
		file, key = "snmp6", "Icmp6OutPktTooBigs"
	}
	var b []byte
	err := n.Do(func() error {
		var err error
		// thread-self: /proc/self/net is the main thread's namespace.
		b, err = os.ReadFile("/proc/thread-self/net/" + file)
		return err
	})
	if err != nil {
		t.Fatalf("read %s in %s: %v", file, n.Name, err)
	}
	v, ok := snmpValue(string(b), key)
	if !ok {
		t.Fatalf("no %s in %s of %s", key, file, n.Name)
	}
	return v
}

// snmpValue finds key in /proc/net/snmp (a header line of names and a line
// of values per protocol) or /proc/net/snmp6 (a name and a value a line).
func snmpValue(s, key string) (float64, bool) {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == key {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
		if i+1 >= len(lines) || len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		vals := strings.Fields(lines[i+1])
		if len(vals) != len(f) || vals[0] != f[0] {
			continue
		}
		for j, name := range f {
			if name == key {
				v, err := strconv.ParseFloat(vals[j], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// metricValue returns the value of series (name and labels as printed) in
// a metrics scrape; a missing series fails the test.
func metricValue(t *testing.T, metrics, series string) float64 {
	t.Helper()
	for l := range strings.Lines(metrics) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric %s: %v", series, err)
		}
		return v
	}
	t.Fatalf("metrics lack %s", series)
	return 0
}
