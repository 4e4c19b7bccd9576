package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// namespacesWithPrefix lists the named namespaces starting with prefix+"-".
func namespacesWithPrefix(tb testing.TB, prefix string) []string {
	tb.Helper()
	ents, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// nsInode returns the inode identifying the namespace bound at path.
func nsInode(tb testing.TB, path string) uint64 {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Ino
}

// threadsIn returns the threads of this process whose network namespace is
// one of inodes.
func threadsIn(tb testing.TB, inodes map[uint64]string) []string {
	tb.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		tb.Fatal(err)
	}
	var found []string
	for _, task := range tasks {
		l, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err != nil {
			continue // thread exited meanwhile
		}
		for ino, name := range inodes {
			if l == fmt.Sprintf("net:[%d]", ino) {
				found = append(found, task.Name()+"@"+name)
			}
		}
	}
	return found
}

func TestTopologyBuildAndClose(t *testing.T) {
	RequirePrivileged(t)
	topo, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			if err := topo.Close(); err != nil {
				t.Errorf("close topology: %v", err)
			}
		}
	})

	want := []string{topo.Prefix + "-be1", topo.Prefix + "-be2", topo.Prefix + "-be3",
		topo.Prefix + "-client", topo.Prefix + "-lb", topo.Prefix + "-seg"}
	if got := namespacesWithPrefix(t, topo.Prefix); !slices.Equal(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	if len(topo.Backends) != DefaultBackends || len(topo.Client.Extra4) != DefaultClientAddrs || len(topo.Client.Extra6) != DefaultClientAddrs {
		t.Fatalf("got %d backends, %d/%d extra client addresses", len(topo.Backends), len(topo.Client.Extra4), len(topo.Client.Extra6))
	}

	seg := topo.Segment
	br, err := seg.nl.LinkByName(topo.Bridge)
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	inodes := map[uint64]string{nsInode(t, seg.Path): seg.Name}
	for _, h := range topo.Hosts() {
		inodes[nsInode(t, h.NS.Path)] = h.NS.Name
		if !strings.HasPrefix(h.NS.Name, topo.Prefix+"-") || h.NS.Path != filepath.Join(NetnsDir, h.NS.Name) {
			t.Errorf("%s: namespace %q at %q", h.Name, h.NS.Name, h.NS.Path)
		}
		if len(h.PeerName) > 15 {
			t.Errorf("%s: peer name %q longer than 15", h.Name, h.PeerName)
		}

		// Bridge port in the segment.
		peer, err := seg.nl.LinkByName(h.PeerName)
		if err != nil {
			t.Fatalf("%s: peer %s: %v", h.Name, h.PeerName, err)
		}
		if peer.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s: %s not a port of %s", h.Name, h.PeerName, topo.Bridge)
		}
		if peer.Attrs().OperState != netlink.OperUp {
			t.Errorf("%s: %s operstate %s", h.Name, h.PeerName, peer.Attrs().OperState)
		}
		xdp := peer.Attrs().Xdp
		hasXDP := xdp != nil && xdp.Attached && xdp.ProgId != 0
		if wantXDP := h == topo.Balancer; hasXDP != wantXDP {
			t.Errorf("%s: XDP on %s attached=%v, want %v", h.Name, h.PeerName, hasXDP, wantXDP)
		}
		if hasXDP && xdp.AttachMode != nl.XDP_ATTACHED_DRV {
			t.Errorf("%s: XDP attach mode %d, want driver", h.Name, xdp.AttachMode)
		}

		// Host side: lo and eth0 up, addresses, offloads.
		lo, err := h.NS.nl.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: lo not up (%v)", h.Name, err)
		}
		eth, err := h.NS.nl.LinkByName(h.Link)
		if err != nil {
			t.Fatalf("%s: %s: %v", h.Name, h.Link, err)
		}
		if eth.Attrs().Index != h.Ifindex || eth.Attrs().HardwareAddr.String() != h.MAC.String() || eth.Attrs().OperState != netlink.OperUp {
			t.Errorf("%s: %s index %d mac %s oper %s; host says %d %s", h.Name, h.Link,
				eth.Attrs().Index, eth.Attrs().HardwareAddr, eth.Attrs().OperState, h.Ifindex, h.MAC)
		}
		addrs, err := h.NS.nl.AddrList(eth, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		have := map[netip.Addr]bool{}
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			have[ip.Unmap()] = true
			if ip.Is6() && !ip.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_NODAD == 0 {
				t.Errorf("%s: %s without nodad", h.Name, ip)
			}
		}
		for _, a := range append(append([]netip.Addr{h.Addr4, h.Addr6}, h.Extra4...), h.Extra6...) {
			if !have[a] {
				t.Errorf("%s: address %s missing on %s", h.Name, a, h.Link)
			}
		}
		err = h.NS.run(func() error {
			csum, tso, err := offloads(h.Link)
			if err != nil {
				return err
			}
			if csum || tso {
				return fmt.Errorf("tx-checksumming %v, tso %v; want both off", csum, tso)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
	}

	for _, be := range topo.Backends {
		lo, _ := be.NS.nl.LinkByName("lo")
		addrs, err := be.NS.nl.AddrList(lo, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var vips []string
		for _, a := range addrs {
			vips = append(vips, a.IPNet.String())
		}
		for _, want := range []string{"198.18.1.1/32", "2001:2:0:1::1/128"} {
			if !slices.Contains(vips, want) {
				t.Errorf("%s: VIP %s not on lo (have %v)", be.Name, want, vips)
			}
		}
		err = be.NS.run(func() error {
			for _, kv := range [][2]string{
				{"net.ipv4.conf.all.arp_ignore", "1"}, {"net.ipv4.conf.eth0.arp_ignore", "1"},
				{"net.ipv4.conf.all.arp_announce", "2"}, {"net.ipv4.conf.eth0.arp_announce", "2"},
				{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.eth0.rp_filter", "0"},
			} {
				v, err := readSysctl(kv[0])
				if err != nil {
					return err
				}
				if v != kv[1] {
					return fmt.Errorf("%s = %s, want %s", kv[0], v, kv[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", be.Name, err)
		}
	}

	// Static neighbours: the client knows the balancer, backends know
	// every client source address.
	checkNeigh := func(h *Host, ip netip.Addr, mac net.HardwareAddr) {
		t.Helper()
		neighs, err := h.NS.nl.NeighList(h.Ifindex, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range neighs {
			a, _ := netip.AddrFromSlice(n.IP)
			if a.Unmap() == ip {
				if n.State != netlink.NUD_PERMANENT || n.HardwareAddr.String() != mac.String() {
					t.Errorf("%s: neighbour %s state %#x lladdr %s, want permanent %s", h.Name, ip, n.State, n.HardwareAddr, mac)
				}
				return
			}
		}
		t.Errorf("%s: no neighbour entry for %s", h.Name, ip)
	}
	checkNeigh(topo.Client, topo.Balancer.Addr4, topo.Balancer.MAC)
	checkNeigh(topo.Client, topo.Balancer.Addr6, topo.Balancer.MAC)
	for _, be := range topo.Backends {
		checkNeigh(topo.Balancer, be.Addr4, be.MAC)
		checkNeigh(topo.Balancer, be.Addr6, be.MAC)
		checkNeigh(be, topo.Client.Extra4[len(topo.Client.Extra4)-1], topo.Client.MAC)
		checkNeigh(be, topo.Client.Addr6, topo.Client.MAC)
	}

	// A server and a long-running command must not survive Close.
	srv, err := topo.Backends[0].Serve("x", 7000)
	if err != nil {
		t.Fatal(err)
	}
	cmd := topo.Client.NS.Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	closed = true
	if err := topo.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := namespacesWithPrefix(t, topo.Prefix); len(left) != 0 {
		t.Fatalf("namespaces left after Close: %v", left)
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("command after Close: %v, want killed by SIGKILL", werr)
	}
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, netip.AddrPortFrom(topo.Backends[0].Addr4, 7000), time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("query after Close: %v, want ErrClosed", err)
	}
	srv.Stop() // idempotent after Close
	// Worker threads leave (die) with their namespaces.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := threadsIn(t, inodes)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads still in lab namespaces after Close: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDirectQuery(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{})
	be := topo.Backends[1]
	srv, err := be.Serve("be2-web", 8080)
	if err != nil {
		t.Fatal(err)
	}
	c := topo.Client
	for _, network := range []string{"tcp", "udp"} {
		for i, tc := range []struct {
			src netip.AddrPort
			dst netip.Addr
		}{
			{netip.AddrPort{}, be.Addr4},
			{netip.AddrPortFrom(c.Addr6, 0), be.Addr6},
			{netip.AddrPortFrom(c.Extra4[3], 0), be.Addr4},
			{netip.AddrPortFrom(c.Extra6[5], 0), be.Addr6},
			{netip.AddrPortFrom(c.Extra4[7], 40001), be.Addr4},
			{netip.AddrPortFrom(c.Extra6[0], 40002), be.Addr6},
		} {
			name := fmt.Sprintf("%s/%d/%s->%s", network, i, tc.src, tc.dst)
			dst := netip.AddrPortFrom(tc.dst, 8080)
			r, err := c.Query(network, tc.src, dst, 2*time.Second)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			wantSrc := tc.src.Addr()
			if !wantSrc.IsValid() {
				wantSrc = c.Addr4
			}
			if r.Server != "be2-web" || r.Client.Addr() != wantSrc || (tc.src.Port() != 0 && r.Client.Port() != tc.src.Port()) || r.Client.Port() == 0 {
				t.Errorf("%s: reply %v, want server be2-web, client %s port %d", name, r, wantSrc, tc.src.Port())
			}
		}
	}
	// A fixed source port can be reused at once (TCP queries close with RST).
	for range 3 {
		src := netip.AddrPortFrom(c.Extra4[1], 40100)
		if _, err := c.Query("tcp", src, netip.AddrPortFrom(be.Addr4, 8080), 2*time.Second); err != nil {
			t.Fatalf("repeat fixed source port: %v", err)
		}
	}

	// Streaming on a long-lived connection.
	conn, err := c.Dial(netip.AddrPortFrom(c.Extra6[2], 0), netip.AddrPortFrom(be.Addr6, 8080), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }() // the stream is over by then
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	greet, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseReply(greet)
	if err != nil || r.Server != "be2-web" || r.Client.Addr() != c.Extra6[2] {
		t.Fatalf("greeting %q: %v %v", greet, r, err)
	}
	for i := range 100 {
		fmt.Fprintf(conn, "line %d\n", i)
		got, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("echo line %d\n", i); got != want {
			t.Fatalf("echo %q, want %q", got, want)
		}
	}
	if n := srv.Accepted(); n != 10 {
		t.Errorf("Accepted() = %d, want 10", n)
	}
}

// TestManySequentialQueries runs 3000 queries in a row (TCP and UDP, both
// families) without one failing; the time is logged, never asserted (timing
// belongs in benchmarks).
func TestManySequentialQueries(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: 1, ClientAddrs: 2})
	be := topo.Backends[0]
	if _, err := be.Serve("s", 9000); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	start := time.Now()
	for i := range n {
		network := []string{"tcp", "udp"}[i%2]
		dst := netip.AddrPortFrom([]netip.Addr{be.Addr4, be.Addr6}[(i/2)%2], 9000)
		if _, err := topo.Client.Query(network, netip.AddrPort{}, dst, 2*time.Second); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	el := time.Since(start)
	t.Logf("%d sequential queries in %v (%v each)", n, el, el/n)
}

func TestNoStaticNeigh(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: 1, ClientAddrs: 1, NoStaticNeigh: true, PassOnAllPorts: true})
	for _, h := range topo.Hosts() {
		peer, err := topo.Segment.nl.LinkByName(h.PeerName)
		if err != nil {
			t.Fatal(err)
		}
		if x := peer.Attrs().Xdp; x == nil || !x.Attached {
			t.Errorf("PassOnAllPorts: no XDP on %s", h.PeerName)
		}
	}
	be := topo.Backends[0]
	if _, err := be.Serve("s", 53); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, src := range []netip.Addr{topo.Client.Extra4[0], topo.Client.Extra6[0]} {
			dst := netip.AddrPortFrom(be.Addr4, 53)
			if src.Is6() {
				dst = netip.AddrPortFrom(be.Addr6, 53)
			}
			r, err := topo.Client.Query(network, netip.AddrPortFrom(src, 0), dst, 3*time.Second)
			if err != nil || r.Client.Addr() != src {
				t.Errorf("%s from %s: %v %v", network, src, r, err)
			}
		}
	}
}

func TestClientRoutesVIPViaBalancer(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: 1})
	c, lb := topo.Client, topo.Balancer
	for _, tc := range []struct{ vip, gw netip.Addr }{{topo.VIP4, lb.Addr4}, {topo.VIP6, lb.Addr6}} {
		routes, err := c.NS.nl.RouteGet(net.IP(tc.vip.AsSlice()))
		if err != nil {
			t.Fatal(err)
		}
		if len(routes) != 1 {
			t.Fatalf("route to %s: %v", tc.vip, routes)
		}
		gw, _ := netip.AddrFromSlice(routes[0].Gw)
		if gw.Unmap() != tc.gw || routes[0].LinkIndex != c.Ifindex {
			t.Errorf("route to %s via %s dev %d, want via %s dev %d", tc.vip, gw, routes[0].LinkIndex, tc.gw, c.Ifindex)
		}
	}

	// Datagrams to the VIP reach the balancer's eth0 (which drops them:
	// nothing is attached there yet).
	rx := func() uint64 {
		l, err := lb.NS.nl.LinkByName(lb.Link)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Statistics.RxPackets
	}
	// query sends one datagram to the VIP and reports whether an answer
	// came within 1 ms. Not c.Query: its timeout runs from before the
	// socket is made, and once it has passed the datagram is never
	// written (1 query in 2000 here, 7 in 50 on a loaded machine), so
	// fewer than sent reach eth0. Here every datagram is sent; the
	// deadline bounds the wait for an answer only.
	query := func() (answered bool, err error) {
		conn, err := c.NS.dial(unix.SOCK_DGRAM, netip.AddrPort{}, netip.AddrPortFrom(topo.VIP4, 5000), time.Time{})
		if err != nil {
			return false, err
		}
		defer func() { _ = conn.Close() }() // UDP: nothing in flight to report
		if _, err := conn.Write([]byte("query\n")); err != nil {
			return false, fmt.Errorf("send a query: %w", err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			return false, err
		}
		_, err = conn.Read(make([]byte, 512))
		return err == nil, nil
	}
	before := rx()
	const sent = 50
	for range sent {
		answered, err := query()
		if err != nil {
			t.Fatal(err)
		}
		if answered {
			t.Fatal("a query to the VIP was answered without a balancer")
		}
	}
	// The last frames may still be in a softirq on another CPU.
	deadline := time.Now().Add(2 * time.Second)
	for got := rx() - before; got < sent; got = rx() - before {
		if time.Now().After(deadline) {
			t.Fatalf("balancer eth0 received %d packets, want >= %d", got, sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewFailureLeavesNothing(t *testing.T) {
	RequirePrivileged(t)
	injected := errors.New("injected failure")
	for _, step := range []string{"segment", "bridge", "program", "host:client", "host:lb", "host:be2", "xdp", "wait", "routes", "neigh"} {
		t.Run(strings.ReplaceAll(step, ":", "_"), func(t *testing.T) {
			var prefix string
			var inodes = map[uint64]string{}
			cfg := Config{hook: func(topo *Topology, s string) error {
				prefix = topo.Prefix
				for _, n := range topo.namespaces {
					inodes[nsInode(t, n.Path)] = n.Name
				}
				if s == step {
					return injected
				}
				return nil
			}}
			topo, err := New(cfg)
			if topo != nil || !errors.Is(err, injected) {
				t.Fatalf("New = %v, %v; want nil, injected failure", topo, err)
			}
			if prefix == "" {
				t.Fatal("hook never ran")
			}
			if left := namespacesWithPrefix(t, prefix); len(left) != 0 {
				t.Fatalf("namespaces left after failed New: %v", left)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(threadsIn(t, inodes)) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("threads left in namespaces: %v", threadsIn(t, inodes))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestNSDoAndCommand(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: -1, ClientAddrs: -1})
	lb := topo.Balancer
	want := fmt.Sprintf("net:[%d]", nsInode(t, lb.NS.Path))
	var got string
	err := lb.NS.Do(func() error {
		var err error
		got, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if err != nil || got != want {
		t.Fatalf("Do: in %q (%v), want %q", got, err, want)
	}
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	if self == want {
		t.Fatal("caller's thread was left in the namespace")
	}
	if err := lb.NS.Do(func() error { return errInjected }); !errors.Is(err, errInjected) {
		t.Errorf("Do error: %v", err)
	}

	// A command sees the namespace's interfaces and the host's bpffs.
	out, err := lb.NS.Command(context.Background(), "sh", "-c",
		"readlink /proc/self/ns/net; cat /proc/net/dev; stat -f -c %T /sys/fs/bpf").CombinedOutput()
	if err != nil {
		t.Fatalf("command: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.HasPrefix(s, want+"\n") || !strings.Contains(s, "eth0:") || !strings.Contains(s, "bpf_fs") {
		t.Errorf("command output:\n%s\nwant %s, eth0 and bpf_fs", s, want)
	}
}

var errInjected = errors.New("from fn")

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
		ok   bool
	}{
		{"server=be1 client=198.18.0.2:1234\n", Reply{"be1", netip.MustParseAddrPort("198.18.0.2:1234")}, true},
		{"server=x client=[2001:2::200]:80", Reply{"x", netip.MustParseAddrPort("[2001:2::200]:80")}, true},
		{"client=[2001:2::200]:80 server=x\r\n", Reply{"x", netip.MustParseAddrPort("[2001:2::200]:80")}, true},
		{"server=x", Reply{}, false},
		{"server=x client=2001:2::1:80", Reply{}, false},
		{"hello", Reply{}, false},
		{"", Reply{}, false},
	} {
		got, err := ParseReply(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseReply(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String()+"\n" != strings.TrimSpace(tc.in)+"\n" && !strings.HasPrefix(tc.in, "client") {
			t.Errorf("String() = %q, input %q", got.String(), tc.in)
		}
	}
}

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	live := NewT(t, Config{Backends: -1, ClientAddrs: -1})
	prefix, err := randomPrefix()
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crashed run: the bind mount stays, nothing is inside.
	n, err := newNS(prefix + "-seg")
	if err != nil {
		t.Fatal(err)
	}
	n.nl.Close()
	n.nl = nil
	if err := n.handle.Close(); err != nil {
		t.Fatal(err)
	}
	close(n.quit)
	<-n.done
	n.quit = make(chan struct{}) // let n.close run again in the cleanup
	t.Cleanup(func() {
		if err := n.close(); err != nil {
			t.Errorf("remove namespace %s: %v", n.Name, err)
		}
	})

	var removed []string
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(removed, n.Name) {
		if time.Now().After(deadline) {
			t.Fatalf("RemoveStale did not remove %s (removed %v)", n.Name, removed)
		}
		time.Sleep(10 * time.Millisecond) // the worker thread exits asynchronously
		r, err := RemoveStale()
		if err != nil {
			t.Fatal(err)
		}
		removed = append(removed, r...)
	}
	if left := namespacesWithPrefix(t, prefix); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	for _, name := range removed {
		if strings.HasPrefix(name, live.Prefix) {
			t.Errorf("RemoveStale removed %s of a live topology", name)
		}
	}
	if got := namespacesWithPrefix(t, live.Prefix); len(got) != 3 {
		t.Errorf("live topology namespaces %v", got)
	}
}

const mainThreadHelperEnv = "XLB_LAB_MAIN_THREAD_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(mainThreadHelperEnv) == "1" {
		os.Exit(mainThreadHelper())
	}
	os.Exit(m.Run())
}

// mainThreadHelper behaves like a normal program: its main goroutine
// builds and closes topologies, so the namespace workers usually run on the
// main thread, which the runtime can never terminate. The main thread must
// end up in its original namespace.
func mainThreadHelper() int {
	mainNS := fmt.Sprintf("/proc/self/task/%d/ns/net", os.Getpid())
	before, err := os.Readlink(mainNS)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	for range 3 {
		topo, err := New(Config{Backends: 1, ClientAddrs: -1})
		if err != nil {
			fmt.Println(err)
			return 1
		}
		if err := topo.Close(); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	if after, _ := os.Readlink(mainNS); after != before {
		fmt.Printf("main thread left in %s, started in %s\n", after, before)
		return 1
	}
	fmt.Println("main thread ok")
	return 0
}

func TestMainThreadNotLeftInNamespace(t *testing.T) {
	RequirePrivileged(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainThreadHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "main thread ok") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
}
