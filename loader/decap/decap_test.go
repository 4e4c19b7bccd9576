package decap_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb-lb/xlb/loader/decap"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

var (
	lbMAC      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
	backendMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x04}

	host4 = netip.MustParseAddr("198.18.1.10")
	host6 = netip.MustParseAddr("2001:2:0:1::10")
	lb4   = netip.MustParseAddr("198.18.0.1")
	lb6   = netip.MustParseAddr("2001:2::1")
	vip4  = netip.MustParseAddrPort("198.18.100.1:80")
	vip6  = netip.MustParseAddrPort("[2001:2:0:100::1]:80")
	cli4  = netip.MustParseAddrPort("198.18.200.5:40000")
	cli6  = netip.MustParseAddrPort("[2001:2:0:200::5]:40000")
	// Not a VIP of this host.
	other4 = netip.MustParseAddrPort("198.18.100.2:80")
	other6 = netip.MustParseAddrPort("[2001:2:0:100::2]:80")
)

const guePort = 6080

// open loads the decapsulator unattached, unpinned, with this file's
// settings.
func open(t *testing.T) *decap.Decap {
	t.Helper()
	priv.Require(t)
	d, err := decap.Open(decap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Set(lb.DecapConfig{
		VIPs:      []netip.Addr{vip4.Addr(), vip6.Addr()},
		Addresses: []netip.Addr{host4, host6},
		GUEPort:   guePort,
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// inner is the client's packet to dst as the balancer received it (its
// Ethernet header is dropped by Encap), with vlans for the expected
// output's tags.
func inner(dst netip.AddrPort, udp bool, tos uint8, vlans ...layers.EthernetType) []byte {
	src := cli4
	if dst.Addr().Is6() {
		src = cli6
	}
	return frame.MustBuild(frame.Spec{SrcMAC: lbMAC, DstMAC: backendMAC, VLANs: vlans, Src: src, Dst: dst,
		UDP: udp, TOS: tos, Payload: []byte("hello, backend")})
}

// tunnel is the balancer's outer header to this host (outer family v).
func tunnel(v int, gue bool, vlans ...layers.EthernetType) frame.Tunnel {
	t := frame.Tunnel{SrcMAC: lbMAC, DstMAC: backendMAC, VLANs: vlans, Src: lb4, Dst: host4}
	if v == 6 {
		t.Src, t.Dst = lb6, host6
	}
	if gue {
		t.GUEPort, t.GUESrcPort = guePort, 51234
	}
	return t
}

// flat names every counter: "rx", "decap/MODE/OUTER/INNER", "pass/REASON",
// "ecn_ce".
func flat(c lb.DecapCounters) map[string]uint64 {
	m := map[string]uint64{"rx": c.RxPackets, "ecn_ce": c.ECNCE}
	for k, n := range c.Decap {
		m["decap/"+k.Mode+"/"+k.Outer+"/"+k.Inner] = n
	}
	for r, n := range c.Pass {
		m["pass/"+r] = n
	}
	return m
}

// run runs the program once on in and checks the verdict (always
// XDP_PASS), the output (want; nil: in unchanged) and that exactly rx and
// the counters named in counted went up by one.
func run(t *testing.T, d *decap.Decap, in, want []byte, counted ...string) {
	t.Helper()
	before, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := d.Program().Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ret != 2 {
		t.Errorf("verdict %d, want XDP_PASS (2)", ret)
	}
	if want == nil {
		want = in
	}
	if !bytes.Equal(opts.DataOut, want) {
		t.Errorf("output differs\n got %x\nwant %x", opts.DataOut, want)
	}
	after, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	exp := flat(before)
	exp["rx"]++
	for _, c := range counted {
		if _, ok := exp[c]; !ok {
			t.Fatalf("no counter %q", c)
		}
		exp[c]++
	}
	for k, v := range flat(after) {
		if v != exp[k] {
			t.Errorf("counter %s: %d, want %d", k, v, exp[k])
		}
	}
}

// Encapsulated packets for a VIP come out as the client's packet, behind
// the outer frame's Ethernet header and VLAN tags, byte for byte.
func TestDecapVerdicts(t *testing.T) {
	d := open(t)
	q, ad := layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ
	for _, c := range []struct {
		name    string
		outer   int
		gue     bool
		dst     netip.AddrPort
		udp     bool
		vlans   []layers.EthernetType
		mod     func(*frame.Tunnel)
		counter string
	}{
		{"ipip 4in4 tcp", 4, false, vip4, false, nil, nil, "decap/ipip/ipv4/ipv4"},
		{"ipip 4in4 udp", 4, false, vip4, true, nil, nil, "decap/ipip/ipv4/ipv4"},
		{"ipip 6in6 tcp", 6, false, vip6, false, nil, nil, "decap/ipip/ipv6/ipv6"},
		{"ipip 6in6 udp", 6, false, vip6, true, nil, nil, "decap/ipip/ipv6/ipv6"},
		{"ipip 6in4", 4, false, vip6, false, nil, nil, "decap/ipip/ipv4/ipv6"},
		{"ipip 4in6", 6, false, vip4, false, nil, nil, "decap/ipip/ipv6/ipv4"},
		{"gue 4in4", 4, true, vip4, false, nil, nil, "decap/gue/ipv4/ipv4"},
		{"gue 4in4 zero udp checksum", 4, true, vip4, true, nil, func(t *frame.Tunnel) { t.ZeroUDPChecksum = true }, "decap/gue/ipv4/ipv4"},
		{"gue 6in6", 6, true, vip6, false, nil, nil, "decap/gue/ipv6/ipv6"},
		{"gue 6in4", 4, true, vip6, true, nil, nil, "decap/gue/ipv4/ipv6"},
		{"gue 4in6", 6, true, vip4, false, nil, nil, "decap/gue/ipv6/ipv4"},
		{"ipip 4in4 outer options", 4, false, vip4, false, nil, func(t *frame.Tunnel) { t.Options = 10 }, "decap/ipip/ipv4/ipv4"},
		{"gue 4in4 outer options", 4, true, vip4, false, nil, func(t *frame.Tunnel) { t.Options = 3 }, "decap/gue/ipv4/ipv4"},
		{"ipip 4in4 vlan", 4, false, vip4, false, []layers.EthernetType{q}, nil, "decap/ipip/ipv4/ipv4"},
		{"gue 6in6 qinq", 6, true, vip6, false, []layers.EthernetType{ad, q}, nil, "decap/gue/ipv6/ipv6"},
		{"ipip 6in4 qinq", 4, false, vip6, true, []layers.EthernetType{ad, q}, nil, "decap/ipip/ipv4/ipv6"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tun := tunnel(c.outer, c.gue, c.vlans...)
			if c.mod != nil {
				c.mod(&tun)
			}
			in := frame.MustEncap(inner(c.dst, c.udp, 0), tun)
			run(t, d, in, inner(c.dst, c.udp, 0, c.vlans...), c.counter)
		})
	}
}

// ECN: a CE outer header marks an ecn-capable inner packet CE (the IPv4
// header checksum follows); a not-ecn-capable inner packet stays as it is.
func TestDecapECN(t *testing.T) {
	d := open(t)
	for _, c := range []struct {
		name              string
		outer             int
		gue               bool
		dst               netip.AddrPort
		outerTOS, in, out uint8
		marked            bool
	}{
		{"4in4 CE over ect0", 4, false, vip4, 0x03, 0xb8 | 2, 0xb8 | 3, true},
		{"4in4 CE over ect1", 4, true, vip4, 0x03, 0x01, 0x03, true},
		{"6in6 CE over ect0", 6, false, vip6, 0x03, 0x2a, 0x2b, true},
		{"4in6 CE over not-ecn-capable", 6, true, vip4, 0x03, 0xb8, 0xb8, false},
		{"6in4 ect0 over ect0", 4, false, vip6, 0x02, 0x02, 0x02, false},
		{"4in4 CE over CE", 4, false, vip4, 0x03, 0x03, 0x03, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tun := tunnel(c.outer, c.gue)
			tun.TOS = c.outerTOS
			in := frame.MustEncap(inner(c.dst, true, c.in), tun)
			kind := fmt.Sprintf("decap/%s/ipv%d/ipv%d", map[bool]string{false: "ipip", true: "gue"}[c.gue], c.outer, map[bool]int{true: 4, false: 6}[c.dst.Addr().Is4()])
			counted := []string{kind}
			if c.marked {
				counted = append(counted, "ecn_ce")
			}
			// The expected frame is built with the inner TOS it should
			// leave with, so its IPv4 checksum is computed afresh.
			run(t, d, in, inner(c.dst, true, c.out), counted...)
		})
	}
}

// Everything that is not an encapsulated packet for a VIP of this host
// passes byte for byte, counted by reason.
func TestDecapPassUntouched(t *testing.T) {
	d := open(t)
	plain4 := inner(netip.AddrPortFrom(host4, 22), false, 0)
	ipip4 := func(mod func(*frame.Tunnel), dst netip.AddrPort) []byte {
		tun := tunnel(4, false)
		if mod != nil {
			mod(&tun)
		}
		return frame.MustEncap(inner(dst, false, 0), tun)
	}
	gue := func(v int, mod func(*frame.Tunnel), payload []byte) []byte {
		tun := tunnel(v, true)
		if mod != nil {
			mod(&tun)
		}
		f := append(inner(vip4, false, 0)[:14:14], payload...)
		return frame.MustEncap(f, tun)
	}
	arp := append(append(append([]byte{}, backendMAC...), lbMAC...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	hbh := frame.MustBuild(frame.Spec{SrcMAC: lbMAC, DstMAC: backendMAC, Src: netip.AddrPortFrom(lb6, 1), Dst: netip.AddrPortFrom(host6, 22), HopByHop: true})
	for _, c := range []struct {
		name, counter string
		in            []byte
	}{
		{"arp", "pass/other", arp},
		{"plain tcp to the host", "pass/other", plain4},
		{"ipv6 hop-by-hop first", "pass/other", hbh},
		{"plain udp to another port", "pass/wrong_port", frame.MustBuild(frame.Spec{SrcMAC: lbMAC, DstMAC: backendMAC, Src: cli4, Dst: netip.AddrPortFrom(host4, 53), UDP: true})},
		{"gue to the wrong port", "pass/wrong_port", gue(4, func(t *frame.Tunnel) { t.GUEPort = guePort + 1 }, inner(vip4, false, 0)[14:])},
		{"gue to the wrong port ipv6", "pass/wrong_port", gue(6, func(t *frame.Tunnel) { t.GUEPort = 4789 }, inner(vip4, false, 0)[14:])},
		{"ipip to another host", "pass/not_local", ipip4(func(t *frame.Tunnel) { t.Dst = netip.MustParseAddr("198.18.1.11") }, vip4)},
		{"gue to another host ipv6", "pass/not_local", gue(6, func(t *frame.Tunnel) { t.Dst = netip.MustParseAddr("2001:2:0:1::11") }, inner(vip4, false, 0)[14:])},
		{"ipip inner not a vip", "pass/not_vip", ipip4(nil, other4)},
		{"ipip 6in6 inner not a vip", "pass/not_vip", frame.MustEncap(inner(other6, true, 0), tunnel(6, false))},
		{"gue inner not a vip", "pass/not_vip", gue(4, nil, inner(other4, true, 0)[14:])},
		{"inner to the host, not a vip", "pass/not_vip", ipip4(nil, netip.AddrPortFrom(host4, 22))},
		{"outer fragment, more fragments", "pass/fragment", ipip4(func(t *frame.Tunnel) { t.MoreFragments = true }, vip4)},
		{"outer fragment, offset", "pass/fragment", ipip4(func(t *frame.Tunnel) { t.FragOffset = 185 }, vip4)},
		{"gue outer fragment", "pass/fragment", gue(4, func(t *frame.Tunnel) { t.MoreFragments = true }, inner(vip4, false, 0)[14:])},
		{"gue payload not ip (0x00)", "pass/not_ip", gue(4, nil, []byte{0, 1, 2, 3, 4, 5, 6, 7})},
		{"gue payload not ip (GUE header, version 0)", "pass/not_ip", gue(6, nil, append([]byte{0x00, 0x04, 0, 0}, inner(vip4, false, 0)[14:]...))},
		{"gue payload not ip (0x5)", "pass/not_ip", gue(4, nil, []byte{0x55, 1, 2, 3})},
		{"gue empty payload", "pass/malformed", gue(4, nil, nil)},
		{"ipip protocol 4 carrying ipv6", "pass/malformed", frame.MustEncap(inner(vip6, false, 0), func() frame.Tunnel { t := tunnel(4, false); t.Protocol = 4; return t }())},
		{"ipip protocol 41 carrying ipv4", "pass/malformed", frame.MustEncap(inner(vip4, false, 0), func() frame.Tunnel { t := tunnel(6, false); t.Protocol = 41; return t }())},
	} {
		t.Run(c.name, func(t *testing.T) { run(t, d, c.in, nil, c.counter) })
	}
}

// Every truncation of an encapsulated frame (outer or inner header cut,
// the outer lengths then exceeding the frame), and every truncation of the
// inner packet under outer headers whose lengths agree with it, passes
// untouched as malformed.
func TestDecapTruncated(t *testing.T) {
	d := open(t)
	q := layers.EthernetTypeDot1Q
	for _, c := range []struct {
		name  string
		outer int
		gue   bool
		dst   netip.AddrPort
		vlans []layers.EthernetType
	}{
		{"ipip 4in4", 4, false, vip4, nil},
		{"ipip 6in6", 6, false, vip6, nil},
		{"ipip 6in4 vlan", 4, false, vip6, []layers.EthernetType{q}},
		{"gue 4in4", 4, true, vip4, nil},
		{"gue 6in6", 6, true, vip6, nil},
		{"gue 4in6 qinq", 6, true, vip4, []layers.EthernetType{layers.EthernetTypeQinQ, q}},
	} {
		full := frame.MustEncap(inner(c.dst, false, 0), tunnel(c.outer, c.gue, c.vlans...))
		// The kernel runs XDP on at least an Ethernet header.
		for n := 14; n < len(full); n++ {
			t.Run(fmt.Sprintf("%s/frame-%d-of-%d", c.name, n, len(full)), func(t *testing.T) {
				run(t, d, full[:n], nil, "pass/malformed")
			})
		}
		pkt := inner(c.dst, false, 0)
		for n := 14; n < len(pkt); n++ {
			in := frame.MustEncap(pkt[:n], tunnel(c.outer, c.gue, c.vlans...))
			t.Run(fmt.Sprintf("%s/inner-%d-of-%d", c.name, n-14, len(pkt)-14), func(t *testing.T) {
				run(t, d, in, nil, "pass/malformed")
			})
		}
	}
}

// Length fields that lie (IHL, total and payload lengths, UDP length, the
// inner lengths) pass untouched as malformed.
func TestDecapLyingLengths(t *testing.T) {
	d := open(t)
	put16 := func(b []byte, off int, delta int) []byte {
		c := append([]byte(nil), b...)
		binary.BigEndian.PutUint16(c[off:], uint16(int(binary.BigEndian.Uint16(c[off:]))+delta))
		return c
	}
	ipip4 := frame.MustEncap(inner(vip4, false, 0), tunnel(4, false))
	ipip6 := frame.MustEncap(inner(vip6, false, 0), tunnel(6, false))
	gue4 := frame.MustEncap(inner(vip4, false, 0), tunnel(4, true))
	gue6 := frame.MustEncap(inner(vip6, true, 0), tunnel(6, true))
	// Offsets: outer IPv4 at 14 (total length 16, IHL 14), outer IPv6 at
	// 14 (payload length 18); UDP after it (length +4); the inner packet
	// after that (IPv4 total length +2, IPv6 payload length +4).
	ihl := func(b []byte, v byte) []byte {
		c := append([]byte(nil), b...)
		c[14] = 0x40 | v
		return c
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"outer ipv4 total length beyond the frame", put16(ipip4, 16, 1)},
		{"outer ipv4 total length short of the inner", put16(ipip4, 16, -1)},
		{"outer ipv4 total length below ihl", put16(ipip4, 16, -int(binary.BigEndian.Uint16(ipip4[16:]))+19)},
		{"outer ipv4 ihl 4", ihl(ipip4, 4)},
		{"outer ipv4 ihl 0", ihl(ipip4, 0)},
		{"outer ipv4 ihl 15", ihl(ipip4, 15)},
		{"outer ipv4 version 6", func() []byte { c := append([]byte(nil), ipip4...); c[14] = 0x65; return c }()},
		{"outer ipv6 payload length beyond the frame", put16(ipip6, 18, 1)},
		{"outer ipv6 payload length short", put16(ipip6, 18, -1)},
		{"outer ipv6 payload length 0", put16(ipip6, 18, -int(binary.BigEndian.Uint16(ipip6[18:])))},
		{"gue udp length long", put16(gue4, 34+4, 1)},
		{"gue udp length short of the inner", put16(gue4, 34+4, -1)},
		{"gue udp length 0", put16(gue4, 34+4, -int(binary.BigEndian.Uint16(gue4[38:])))},
		{"gue udp length 7", put16(gue4, 34+4, -int(binary.BigEndian.Uint16(gue4[38:]))+7)},
		{"gue udp length 8", put16(gue4, 34+4, -int(binary.BigEndian.Uint16(gue4[38:]))+8)},
		{"gue ipv6 udp length short of the inner", put16(gue6, 54+4, -1)},
		{"inner ipv4 total length long", put16(ipip4, 34+2, 1)},
		{"inner ipv4 ihl 4", func() []byte { c := append([]byte(nil), ipip4...); c[34] = 0x44; return c }()},
		{"inner ipv4 ihl 15", func() []byte { c := append([]byte(nil), gue4...); c[42] = 0x4f; return c }()},
		{"inner ipv6 payload length long", put16(ipip6, 54+4, 1)},
		{"inner ipv6 payload length long by one", put16(gue6, 62+4, 1)},
		{"inner ipv4 total length below ihl", put16(ipip4, 34+2, -int(binary.BigEndian.Uint16(ipip4[36:]))+19)},
	} {
		t.Run(c.name, func(t *testing.T) { run(t, d, c.in, nil, "pass/malformed") })
	}
	// Ethernet padding past the outer total length stays behind the
	// inner packet; so do bytes the outer header carries past the inner
	// packet's own length (the client frame's padding, encapsulated with
	// it): the stack trims both, as it trims any padding.
	t.Run("outer ipv4 ethernet padding", func(t *testing.T) {
		in := append(append([]byte(nil), ipip4...), 0, 0, 0, 0)
		run(t, d, in, append(inner(vip4, false, 0), 0, 0, 0, 0), "decap/ipip/ipv4/ipv4")
	})
	for _, c := range []struct {
		name  string
		outer int
		gue   bool
		dst   netip.AddrPort
	}{{"ipip 4in4", 4, false, vip4}, {"gue 6in6", 6, true, vip6}, {"gue 4in6", 6, true, vip4}} {
		t.Run(c.name+" inner shorter than carried", func(t *testing.T) {
			src := cli4
			if c.dst.Addr().Is6() {
				src = cli6
			}
			short := uint16(20 + 20 + 10)
			if c.dst.Addr().Is6() {
				short = 20 + 10
			}
			f := frame.MustBuild(frame.Spec{SrcMAC: lbMAC, DstMAC: backendMAC, Src: src, Dst: c.dst,
				Payload: []byte("hello, backend"), Lie: &frame.Lie{IPLen: &short, FixIPChecksum: true}})
			kind := map[bool]string{false: "ipip", true: "gue"}[c.gue]
			inner := map[bool]string{true: "ipv4", false: "ipv6"}[c.dst.Addr().Is4()]
			run(t, d, frame.MustEncap(f, tunnel(c.outer, c.gue)), f, "decap/"+kind+"/ipv"+fmt.Sprint(c.outer)+"/"+inner)
		})
	}
}

// Set replaces the settings whole; Config reads them back normalised; a
// VIP or address removed is no longer decapsulated, a new gue port is
// used at once.
func TestDecapSet(t *testing.T) {
	d := open(t)
	got, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.VIPs) != 2 || len(got.Addresses) != 2 || got.GUEPort != guePort {
		t.Fatalf("config read back %+v", got)
	}
	next := lb.DecapConfig{
		VIPs:      []netip.Addr{vip6.Addr(), netip.MustParseAddr("::ffff:198.18.100.2"), vip6.Addr()},
		Addresses: []netip.Addr{host4},
		GUEPort:   7000,
	}
	if err := d.Set(next); err != nil {
		t.Fatal(err)
	}
	got, err = d.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]netip.Addr{other4.Addr(), vip6.Addr()}, []netip.Addr{host4}, 7000)
	if s := fmt.Sprint(got.VIPs, got.Addresses, got.GUEPort); s != want {
		t.Errorf("config %s, want %s", s, want)
	}
	run(t, d, frame.MustEncap(inner(vip4, false, 0), tunnel(4, false)), nil, "pass/not_vip")
	run(t, d, frame.MustEncap(inner(other4, false, 0), tunnel(4, false)), inner(other4, false, 0), "decap/ipip/ipv4/ipv4")
	run(t, d, frame.MustEncap(inner(vip6, false, 0), tunnel(6, false)), nil, "pass/not_local")
	run(t, d, frame.MustEncap(inner(vip6, false, 0), tunnel(4, true)), nil, "pass/wrong_port")
	tun := tunnel(4, true)
	tun.GUEPort = 7000
	run(t, d, frame.MustEncap(inner(vip6, false, 0), tun), inner(vip6, false, 0), "decap/gue/ipv4/ipv6")

	if err := d.Set(lb.DecapConfig{VIPs: next.VIPs}); err == nil {
		t.Error("gue port 0 accepted")
	}
	many := make([]netip.Addr, lb.DecapMaxAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	if err := d.Set(lb.DecapConfig{Addresses: many, GUEPort: 1}); err == nil {
		t.Error("too many addresses accepted")
	}
	if again, _ := d.Config(); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Errorf("a refused Set changed the settings: %+v", again)
	}
}
