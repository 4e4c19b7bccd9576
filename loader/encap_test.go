package loader_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// The routed lab of the encapsulation tests: the balancer's interface
// (xlb0, peer nh0) in a network namespace of the test's own, on
// 198.18.100.0/24 and 2001:2:100::/64, with routes to the backends'
// subnets (198.18.200.0/24, 2001:2:200::/64) via the next hop .2 / ::2,
// whose MAC is a permanent neighbour entry.
var (
	encapNextHopMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
	encapLocal4     = netip.MustParsePrefix("198.18.100.1/24")
	encapLocal6     = netip.MustParsePrefix("2001:2:100::1/64")
	encapGW4        = netip.MustParseAddr("198.18.100.2")
	encapGW6        = netip.MustParseAddr("2001:2:100::2")
	encapNoNeigh4   = netip.MustParseAddr("198.18.100.3")
	encapBackends4  = netip.MustParsePrefix("198.18.200.0/24")
	encapBackends6  = netip.MustParsePrefix("2001:2:200::/64")
	encapNoNeighNet = netip.MustParsePrefix("198.18.201.0/24")
)

// encapNet is that namespace, entered by the calling goroutine's thread
// (locked) until close.
type encapNet struct {
	orig, ns netns.NsHandle
	ifindex  int
	mac      net.HardwareAddr
}

func newEncapNet(t *testing.T) *encapNet {
	t.Helper()
	priv.Require(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // the thread is in it now
	if err != nil {
		_ = orig.Close() // a handle of our own thread's namespace
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	n := &encapNet{orig: orig, ns: ns}
	t.Cleanup(n.close)
	if err := n.setup(); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *encapNet) close() {
	// Back to the thread's own namespace before unlocking; the test's
	// namespace goes with its last handle.
	err := netns.Set(n.orig)
	_ = n.ns.Close()   // closing the last handle frees the namespace
	_ = n.orig.Close() // the thread's own namespace stays
	if err == nil {
		// Else the thread stays locked: Go ends it with the goroutine
		// rather than reuse it in the wrong namespace.
		runtime.UnlockOSThread()
	}
}

func (n *encapNet) setup() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0", MTU: 1500}, PeerName: "nh0"}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	for _, name := range []string{"xlb0", "nh0"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	l, err := h.LinkByName("xlb0")
	if err != nil {
		return err
	}
	n.ifindex, n.mac = l.Attrs().Index, l.Attrs().HardwareAddr
	// bpf_fib_lookup answers only for an interface that forwards (as a
	// router's does): the balancer's must, for encapsulated services.
	for _, key := range []string{"/proc/sys/net/ipv4/conf/xlb0/forwarding", "/proc/sys/net/ipv6/conf/xlb0/forwarding"} {
		if err := os.WriteFile(key, []byte("1"), 0o644); err != nil {
			return err
		}
	}
	for _, p := range []netip.Prefix{encapLocal4, encapLocal6} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %s: %w", p, err)
		}
	}
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{encapBackends4, encapGW4}, {encapBackends6, encapGW6}, {encapNoNeighNet, encapNoNeigh4}} {
		route := &netlink.Route{LinkIndex: n.ifindex, Dst: &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())}, Gw: r.gw.AsSlice()}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.dst, r.gw, err)
		}
	}
	for _, gw := range []netip.Addr{encapGW4, encapGW6} {
		fam := netlink.FAMILY_V4
		if gw.Is6() {
			fam = netlink.FAMILY_V6
		}
		ne := &netlink.Neigh{LinkIndex: n.ifindex, Family: fam, State: netlink.NUD_PERMANENT, IP: gw.AsSlice(), HardwareAddr: encapNextHopMAC}
		if err := h.NeighAdd(ne); err != nil {
			return fmt.Errorf("neighbour %s: %w", gw, err)
		}
	}
	return nil
}

// open loads a balancer with opts, closed when the test ends.
func (n *encapNet) open(t *testing.T, opts loader.Options) *loader.Balancer {
	t.Helper()
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// run passes in through the program as if it arrived on xlb0.
func (n *encapNet) run(t *testing.T, b *loader.Balancer, in []byte) (uint32, []byte) {
	t.Helper()
	ctx := struct{ Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32 }{DataEnd: uint32(len(in)), IngressIfindex: uint32(n.ifindex)}
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out, Context: ctx}
	ret, err := b.Program().Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

func encapBackend(vip netip.Addr, i int) lb.Backend {
	a := encapBackends4.Addr().As4()
	a[3] = byte(11 + i)
	addr := netip.AddrFrom4(a)
	if vip.Is6() {
		b := encapBackends6.Addr().As16()
		b[15] = byte(0x11 + i)
		addr = netip.AddrFrom16(b)
	}
	return lb.Backend{Addr: addr, Weight: 1}
}

// ipLen is the length of the IP packet of a frame without VLAN tags.
func ipLen(f []byte) int {
	if f[14]>>4 == 4 {
		return int(binary.BigEndian.Uint16(f[16:]))
	}
	return 40 + int(binary.BigEndian.Uint16(f[18:]))
}

// TestEncap runs frames of ipip and gue services of both families through
// the program in the routed namespace and compares the output byte for
// byte with the frame built independently (test/frame's Encap, gopacket's
// checksums): next hop's and our MACs from the FIB, outer addresses, the
// flow hash in the outer source, IPv6 flow label and GUE source port, the
// inner DSCP and ECN (and DF), TTL 64, checksums; the inner packet
// whole, without its VLAN tags or Ethernet padding.
func TestEncap(t *testing.T) {
	n := newEncapNet(t)
	b := n.open(t, loader.Options{MaxServices: 64, MaxBackends: 1024, ConntrackSize: 1 << 12,
		Encap: lb.Encap{Source4: netip.MustParsePrefix("198.18.100.0/28"), Source6: netip.MustParsePrefix("2001:2:100::1/128"), GUEPort: 6080}})
	svcs := map[string]lb.Service{}
	for _, c := range []struct {
		key string
		fwd lb.ForwardMode
	}{
		{"198.18.1.40:80/tcp", lb.IPIP}, {"198.18.1.41:53/udp", lb.GUE},
		{"[2001:2:0:1::40]:80/tcp", lb.IPIP}, {"[2001:2:0:1::41]:53/udp", lb.GUE},
	} {
		k := svcKey(c.key)
		s := lb.Service{Key: k, Forward: c.fwd, Backends: []lb.Backend{encapBackend(k.VIP, 0), encapBackend(k.VIP, 1)}}
		if err := b.SetService(s); err != nil {
			t.Fatal(err)
		}
		svcs[c.key] = s
	}
	client4, client6 := netip.MustParseAddr("198.18.0.77"), netip.MustParseAddr("2001:2::77")
	type row struct {
		name string
		svc  string
		spec frame.Spec
		tos  uint8
	}
	rows := []row{
		{"ipip4 tcp syn", "198.18.1.40:80/tcp", frame.Spec{Src: netip.AddrPortFrom(client4, 1000), SYN: true}, 0},
		{"ipip4 tcp dscp ecn", "198.18.1.40:80/tcp", frame.Spec{Src: netip.AddrPortFrom(client4, 1001), Payload: []byte("data")}, 0xb9},
		{"ipip4 vlan-tagged", "198.18.1.40:80/tcp", frame.Spec{Src: netip.AddrPortFrom(client4, 1002), VLANs: []layers.EthernetType{layers.EthernetTypeDot1Q}}, 0},
		{"gue4 udp", "198.18.1.41:53/udp", frame.Spec{Src: netip.AddrPortFrom(client4, 1003), UDP: true, Payload: bytes.Repeat([]byte("q"), 100)}, 0},
		{"ipip6 tcp", "[2001:2:0:1::40]:80/tcp", frame.Spec{Src: netip.AddrPortFrom(client6, 1004), SYN: true}, 0x2e},
		{"gue6 udp", "[2001:2:0:1::41]:53/udp", frame.Spec{Src: netip.AddrPortFrom(client6, 1005), UDP: true, Payload: bytes.Repeat([]byte("q"), 301)}, 0x01},
		{"gue6 udp long", "[2001:2:0:1::41]:53/udp", frame.Spec{Src: netip.AddrPortFrom(client6, 1006), UDP: true, Payload: bytes.Repeat([]byte("z"), 1300)}, 0},
	}
	// Backends whose next hop is cached already (a second may have passed,
	// so a later frame may look it up again).
	seen := map[uint32]bool{}
	// Not subtests: they run on other goroutines, whose threads are not
	// in the namespace.
	for _, r := range rows {
		func() {
			s := svcs[r.svc]
			spec := r.spec
			spec.Dst = netip.AddrPortFrom(s.Key.VIP, s.Key.Port)
			spec.SrcMAC, spec.DstMAC = clientMAC, n.mac
			in := build(t, spec)
			setTOS(in, r.tos)
			// The inner packet as the backend must get it: no VLAN tag,
			// no padding.
			plain := spec
			plain.VLANs = nil
			inner := build(t, plain)
			setTOS(inner, r.tos)
			inner = inner[:14+ipLen(inner)]

			k := flowOf(spec)
			h := maps.FlowHash(k)
			id, be := f0(t, b, s.Key, k)
			tun := frame.Tunnel{SrcMAC: n.mac, DstMAC: encapNextHopMAC, Dst: be.Addr, TOS: r.tos}
			if s.Key.VIP.Is4() {
				src := netip.MustParsePrefix("198.18.100.0/28").Addr().As4()
				src[3] |= byte(h & 0xf)
				tun.Src = netip.AddrFrom4(src)
				tun.DF = inner[14+6]&0x40 != 0
				var ipid uint16
				if !tun.DF {
					ipid = uint16(h >> 16)
					ipid = binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, ipid))
				}
				tun.ID = &ipid
			} else {
				tun.Src = netip.MustParseAddr("2001:2:100::1")
				tun.FlowLabel = h & 0xfffff
			}
			if s.Forward == lb.GUE {
				tun.GUEPort, tun.GUESrcPort = 6080, uint16(0xc000|(h&0x3fff))
				tun.ZeroUDPChecksum = s.Key.VIP.Is4()
			}
			want := frame.MustEncap(inner, tun)

			before := f0counters(t, b)
			verdict, out := n.run(t, b, in)
			d := delta(before, f0counters(t, b))
			if verdict != xdpTX {
				t.Errorf("%s: verdict %d, want XDP_TX (counters %v)", r.name, verdict, d)
				return
			}
			if !bytes.Equal(out[:len(want)], want) {
				t.Errorf("%s: output:\n got %x\nwant %x", r.name, out[:len(want)], want)
			}
			wantC := map[string]uint64{"RxPackets": 1, "TxPackets": 1, "EncapPackets": 1, "NewFlows": 1}
			if s.Key.Proto == lb.TCP {
				wantC["HalfopenNew"] = 1
			}
			if l := popLookups(d); l > 1 || !seen[id] && l != 1 {
				t.Errorf("%s: %d FIB lookups; want 1 for a backend not seen yet (seen: %v), at most 1", r.name, l, seen[id])
			}
			seen[id] = true
			if !reflect.DeepEqual(d, wantC) {
				t.Errorf("%s: counters %v, want %v", r.name, d, wantC)
			}
		}()
	}
}

// popLookups takes the FIB lookups out of counter delta d: how many a
// frame makes depends on the cache (TestEncapFIBCache tests it).
func popLookups(d map[string]uint64) uint64 {
	l := d["EncapFibLookups"]
	delete(d, "EncapFibLookups")
	return l
}

// f0 is the backend the scheduler gives flow k of service key.
func f0(t *testing.T, b *loader.Balancer, key lb.ServiceKey, k lb.FlowKey) (uint32, maps.Backend) {
	t.Helper()
	f := &fixture{t: t, b: b}
	return f.expectedBackend(key, k)
}

func f0counters(t *testing.T, b *loader.Balancer) maps.GlobalCounters {
	t.Helper()
	c, err := b.Stats().Global()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setTOS writes tos into the IP header of frame f (no VLAN tags: the
// first tag's frame is handled by its offset) and fixes the IPv4 checksum.
func setTOS(f []byte, tos uint8) {
	off := 14
	for binary.BigEndian.Uint16(f[off-2:]) == 0x8100 || binary.BigEndian.Uint16(f[off-2:]) == 0x88a8 {
		off += 4
	}
	if f[off]>>4 == 4 {
		f[off+1] = tos
		fixIPv4Checksum(f[off : off+20])
		return
	}
	v := binary.BigEndian.Uint32(f[off:])
	v = v&^(0xff<<20) | uint32(tos)<<20
	binary.BigEndian.PutUint32(f[off:], v)
}

// TestEncapFailures: what an encapsulated service does when the packet
// cannot go: no route to the backend, or no neighbour for the next hop
// (XDP_PASS, frame untouched, encap_fib_miss: the kernel's neighbour
// resolution then lets later packets go); an outer packet over the egress
// MTU (XDP_DROP, encap_too_big); no outer source of the family configured
// (XDP_DROP, encap_errors). The service and backend counters do not move
// for frames not sent.
func TestEncapFailures(t *testing.T) {
	n := newEncapNet(t)
	b := n.open(t, loader.Options{MaxServices: 64, MaxBackends: 1024, ConntrackSize: 1 << 12,
		Encap: lb.Encap{Source4: netip.MustParsePrefix("198.18.100.1/32")}})
	set := func(key string, fwd lb.ForwardMode, be netip.Addr) lb.ServiceKey {
		k := svcKey(key)
		if err := b.SetService(lb.Service{Key: k, Forward: fwd, Backends: []lb.Backend{{Addr: be, Weight: 1}}}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	noRoute := set("198.18.1.50:80/tcp", lb.IPIP, netip.MustParseAddr("198.19.0.1"))
	noNeigh := set("198.18.1.51:80/tcp", lb.IPIP, netip.MustParseAddr("198.18.201.7"))
	routed := set("198.18.1.52:53/udp", lb.GUE, encapBackend(netip.MustParseAddr("198.18.1.52"), 0).Addr)
	noSrc6 := set("[2001:2:0:1::52]:53/udp", lb.IPIP, encapBackend(netip.MustParseAddr("2001:2:0:1::52"), 0).Addr)
	client := netip.MustParseAddr("198.18.0.78")
	spec := func(k lb.ServiceKey, port uint16, payload int) frame.Spec {
		src := netip.AddrPortFrom(client, port)
		if k.VIP.Is6() {
			src = netip.AddrPortFrom(netip.MustParseAddr("2001:2::78"), port)
		}
		return frame.Spec{SrcMAC: clientMAC, DstMAC: n.mac, Src: src, Dst: netip.AddrPortFrom(k.VIP, k.Port), UDP: k.Proto == lb.UDP, Payload: bytes.Repeat([]byte("x"), payload)}
	}
	for _, r := range []struct {
		name    string
		svc     lb.ServiceKey
		spec    frame.Spec
		verdict uint32
		reason  string
	}{
		{"no route to the backend", noRoute, spec(noRoute, 2000, 10), xdpPass, "EncapFibMiss"},
		{"no neighbour for the next hop", noNeigh, spec(noNeigh, 2001, 10), xdpPass, "EncapFibMiss"},
		// 1500-byte MTU: 20 + 8 + 1472 = 1500 fits; gue adds 28.
		{"gue over the MTU", routed, spec(routed, 2002, 1500-20-8-28+1), xdpDrop, "EncapTooBig"},
		{"no IPv6 source", noSrc6, spec(noSrc6, 2003, 10), xdpDrop, "EncapErrors"},
	} {
		in := build(t, r.spec)
		orig := append([]byte(nil), in...)
		st, _ := b.Service(r.svc)
		svcBefore, _ := b.Stats().Service(st.ID)
		before := f0counters(t, b)
		verdict, out := n.run(t, b, in)
		d := delta(before, f0counters(t, b))
		// Each asks the FIB (a miss is not cached, and the other backend
		// is new), but for the frame with no outer source.
		wantL := uint64(1)
		if r.reason == "EncapErrors" {
			wantL = 0
		}
		if l := popLookups(d); l != wantL {
			t.Errorf("%s: %d FIB lookups, want %d", r.name, l, wantL)
		}
		want := map[string]uint64{"RxPackets": 1, "NewFlows": 1, r.reason: 1}
		if r.svc.Proto == lb.TCP {
			want["HalfopenNew"] = 1
		}
		if verdict != r.verdict || !reflect.DeepEqual(d, want) {
			t.Errorf("%s: verdict %d, counters %v; want %d, %v", r.name, verdict, d, r.verdict, want)
		}
		if r.verdict == xdpPass && !bytes.Equal(out[:len(orig)], orig) {
			t.Errorf("%s: passed frame changed", r.name)
		}
		if c, _ := b.Stats().Service(st.ID); c.Packets-svcBefore.Packets != 1 {
			t.Errorf("%s: service packets +%d, want +1 (counted on arrival)", r.name, c.Packets-svcBefore.Packets)
		}
		bes, _ := b.Service(r.svc)
		if c, _ := b.Stats().Backend(bes.Backends[0].ID); c.Packets != 0 {
			t.Errorf("%s: backend counted %d packets, none sent", r.name, c.Packets)
		}
	}
	// One byte less fits.
	in := build(t, spec(routed, 2004, 1500-20-8-28))
	if v, _ := n.run(t, b, in); v != xdpTX {
		t.Errorf("gue at the MTU: verdict %d, want XDP_TX", v)
	}
}

// TestEncapTooBig: a packet that encapsulated would exceed the egress MTU
// is answered with ICMP fragmentation needed (IPv4 with DF) or ICMPv6
// packet too big, from the VIP to the client, quoting its IP header and 8
// bytes, announcing the MTU less the encapsulation's overhead; the frame
// goes back where it came from (MACs swapped). A non-DF IPv4 packet is
// dropped (the documented policy), and one that fits is sent.
func TestEncapTooBig(t *testing.T) {
	n := newEncapNet(t)
	b := n.open(t, loader.Options{MaxServices: 64, MaxBackends: 1024, ConntrackSize: 1 << 12,
		Encap: lb.Encap{Source4: netip.MustParsePrefix("198.18.100.1/32"), Source6: netip.MustParsePrefix("2001:2:100::1/128"), GUEPort: 6080}})
	ipip4, gue6 := svcKey("198.18.1.60:80/tcp"), svcKey("[2001:2:0:1::60]:80/tcp")
	for _, s := range []lb.Service{{Key: ipip4, Forward: lb.IPIP}, {Key: gue6, Forward: lb.GUE}} {
		s.Backends = []lb.Backend{encapBackend(s.Key.VIP, 0)}
		if err := b.SetService(s); err != nil {
			t.Fatal(err)
		}
	}
	port := uint16(3000)
	for _, r := range []struct {
		name     string
		svc      lb.ServiceKey
		payload  int
		df       bool
		vlan     bool
		verdict  uint32
		counters []string
		adv      uint32 // the MTU announced
	}{
		// IPv4 TCP: 20 + 20 + payload; ipip adds 20 to the 1500 MTU.
		{"ipip4 DF one byte over", ipip4, 1500 - 20 - 40 + 1, true, false, xdpTX, []string{"EncapTooBig", "EncapIcmpTooBig"}, 1480},
		{"ipip4 DF vlan-tagged", ipip4, 1500 - 20 - 40 + 1, true, true, xdpTX, []string{"EncapTooBig", "EncapIcmpTooBig"}, 1480},
		{"ipip4 no DF over", ipip4, 1500 - 20 - 40 + 1, false, false, xdpDrop, []string{"EncapTooBig"}, 0},
		{"ipip4 DF fits", ipip4, 1500 - 20 - 40, true, false, xdpTX, []string{"EncapPackets", "TxPackets"}, 0},
		// IPv6 TCP: 40 + 20 + payload; gue over IPv6 adds 48.
		{"gue6 one byte over", gue6, 1500 - 48 - 60 + 1, false, false, xdpTX, []string{"EncapTooBig", "EncapIcmpTooBig"}, 1452},
	} {
		port++ // a new flow per row
		client := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.79"), port)
		if r.svc.VIP.Is6() {
			client = netip.AddrPortFrom(netip.MustParseAddr("2001:2::79"), port)
		}
		spec := frame.Spec{SrcMAC: clientMAC, DstMAC: n.mac, Src: client, Dst: netip.AddrPortFrom(r.svc.VIP, r.svc.Port), Payload: bytes.Repeat([]byte("p"), r.payload)}
		if r.vlan {
			spec.VLANs = []layers.EthernetType{layers.EthernetTypeDot1Q}
		}
		in := build(t, spec)
		off := 14
		if r.vlan {
			off = 18
		}
		if r.df && r.svc.VIP.Is4() {
			in[off+6] |= 0x40
			fixIPv4Checksum(in[off : off+20])
		}
		orig := append([]byte(nil), in...)
		before := f0counters(t, b)
		verdict, out := n.run(t, b, in)
		d := delta(before, f0counters(t, b))
		popLookups(d)
		want := map[string]uint64{"RxPackets": 1, "NewFlows": 1, "HalfopenNew": 1}
		for _, c := range r.counters {
			want[c] = 1
		}
		if verdict != r.verdict || !reflect.DeepEqual(d, want) {
			t.Errorf("%s: verdict %d, counters %v; want %d, %v", r.name, verdict, d, r.verdict, want)
			continue
		}
		if r.adv == 0 {
			continue
		}
		wantOut := tooBigReply(t, orig, off, r.adv)
		if !bytes.Equal(out[:len(wantOut)], wantOut) {
			t.Errorf("%s: reply\n got %x\nwant %x", r.name, out[:len(wantOut)], wantOut)
		}
	}
}

// tooBigReply builds the answer to frame in (IP header at off) with
// gopacket: MACs swapped, tags kept, from the VIP to the client, the
// quote, the checksums.
func tooBigReply(t *testing.T, in []byte, off int, mtu uint32) []byte {
	t.Helper()
	head := append([]byte(nil), in[:off]...)
	copy(head[0:6], in[6:12])
	copy(head[6:12], in[0:6])
	var ls []gopacket.SerializableLayer
	if in[off]>>4 == 4 {
		hl := int(in[off]&0xf) * 4
		quote := in[off : off+hl+8]
		ip := &layers.IPv4{Version: 4, TOS: 0xc0, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: in[off+16 : off+20], DstIP: in[off+12 : off+16]}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: uint16(mtu)}
		ls = append(ls, ip, ic, gopacket.Payload(quote))
	} else {
		quote := in[off : off+48]
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: in[off+24 : off+40], DstIP: in[off+8 : off+24]}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, ip, ic, gopacket.Payload(append(binary.BigEndian.AppendUint32(nil, mtu), quote...)))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append(head, buf.Bytes()...)
}

// TestEncapFIBCache: a backend's next hop is looked up once and cached per
// CPU (encap_fib_lookups counts the lookups); a neighbour change reaches
// the traffic once the entry is a second old; an id reused by another
// backend, behind another next hop, does not inherit the old one's hop; a
// route withdrawn turns into a FIB miss, and a miss is not cached.
func TestEncapFIBCache(t *testing.T) {
	n := newEncapNet(t)
	// Three backend ids (1, 2, 3): the allocator hands them out in turn,
	// so the fourth backend reuses id 1.
	b := n.open(t, loader.Options{MaxServices: 4, MaxBackends: 4, ConntrackSize: 1 << 12,
		Encap: lb.Encap{Source4: netip.MustParsePrefix("198.18.100.1/32")}})
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A second next hop, 198.18.100.4 (its own MAC), for 198.18.202.0/24.
	gw2, gw2MAC := netip.MustParseAddr("198.18.100.4"), net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: n.ifindex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw2.AsSlice(), HardwareAddr: gw2MAC}); err != nil {
		t.Fatal(err)
	}
	route2 := &netlink.Route{LinkIndex: n.ifindex, Dst: &net.IPNet{IP: net.IP{198, 18, 202, 0}, Mask: net.CIDRMask(24, 32)}, Gw: gw2.AsSlice()}
	if err := h.RouteAdd(route2); err != nil {
		t.Fatal(err)
	}

	key := svcKey("198.18.1.70:80/tcp")
	set := func(addr string) uint32 {
		t.Helper()
		if err := b.SetService(lb.Service{Key: key, Forward: lb.IPIP, Backends: []lb.Backend{{Addr: netip.MustParseAddr(addr), Weight: 1}}}); err != nil {
			t.Fatal(err)
		}
		st, _ := b.Service(key)
		return st.Backends[0].ID
	}
	port := uint16(4000)
	// send runs a new flow's first frame; it returns the verdict, the
	// destination MAC and outer destination of the frame sent, and the
	// FIB lookups it made.
	send := func() (uint32, net.HardwareAddr, netip.Addr, uint64) {
		t.Helper()
		port++
		in := build(t, frame.Spec{SrcMAC: clientMAC, DstMAC: n.mac, Src: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.80"), port), Dst: netip.AddrPortFrom(key.VIP, key.Port), SYN: true})
		before := f0counters(t, b)
		v, out := n.run(t, b, in)
		l := popLookups(delta(before, f0counters(t, b)))
		dst, _ := netip.AddrFromSlice(out[14+16 : 14+20])
		return v, net.HardwareAddr(out[:6]), dst, l
	}
	waitExpiry := func() { time.Sleep(1100 * time.Millisecond) } // FIB_CACHE_NS is a second

	first := set("198.18.200.11")
	var lookups uint64
	for i := range 20 {
		v, mac, dst, l := send()
		if v != xdpTX || !bytes.Equal(mac, encapNextHopMAC) || dst != netip.MustParseAddr("198.18.200.11") {
			t.Fatalf("frame %d: verdict %d, to %s at %s; want XDP_TX to 198.18.200.11 at %s", i, v, dst, mac, encapNextHopMAC)
		}
		lookups += l
	}
	// One lookup, and one more if a second passed during the 20 frames.
	if lookups == 0 || lookups > 2 {
		t.Errorf("20 frames to one backend made %d FIB lookups, want 1 (2 at most)", lookups)
	}

	// The next hop's MAC changes: once the entry has aged, frames follow.
	newMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xcc}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: n.ifindex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: encapGW4.AsSlice(), HardwareAddr: newMAC}); err != nil {
		t.Fatal(err)
	}
	waitExpiry()
	if v, mac, _, l := send(); v != xdpTX || !bytes.Equal(mac, newMAC) || l != 1 {
		t.Errorf("after the neighbour changed and a second passed: verdict %d, MAC %s, %d lookups; want XDP_TX, %s, 1", v, mac, l, newMAC)
	}

	// Ids 2 and 3 go by; the fourth backend reuses id 1, behind gw2.
	set("198.18.200.12")
	set("198.18.200.13")
	if id := set("198.18.202.11"); id != first {
		t.Fatalf("backend id %d, want the reused id %d (the test relies on reuse)", id, first)
	}
	if v, mac, dst, l := send(); v != xdpTX || !bytes.Equal(mac, gw2MAC) || dst != netip.MustParseAddr("198.18.202.11") || l != 1 {
		t.Errorf("reused id: verdict %d, to %s at %s, %d lookups; want XDP_TX to 198.18.202.11 at %s, 1 lookup", v, dst, mac, l, gw2MAC)
	}

	// The route goes: a miss once the entry has aged, asked again each
	// frame (misses are not cached).
	if err := h.RouteDel(route2); err != nil {
		t.Fatal(err)
	}
	waitExpiry()
	for i := range 2 {
		before := f0counters(t, b)
		v, _, _, l := send()
		if miss := delta(before, f0counters(t, b))["EncapFibMiss"]; v != xdpPass || l != 1 || miss != 1 {
			t.Errorf("frame %d after the route went: verdict %d, %d lookups, %d misses; want XDP_PASS, 1, 1", i, v, l, miss)
		}
	}
}
