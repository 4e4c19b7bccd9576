package loader_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// echoRow is one row of the echo table: a frame, the verdict it must get
// and the global counters it must move (besides RxPackets). A TX row's
// output must be exactly the frame built from reply.
type echoRow struct {
	name     string
	in       []byte
	verdict  uint32
	reply    *frame.Spec
	counters map[string]uint64
}

// echoSpec is an echo request from client to dst with an id, a sequence
// number and 32 bytes of data.
func echoSpec(client, dst netip.Addr) frame.Spec {
	return frame.Spec{Src: netip.AddrPortFrom(client, 0), Dst: netip.AddrPortFrom(dst, 0), ICMP: true,
		ICMPID: 0x1234, ICMPSeq: 7, Payload: []byte("0123456789abcdef0123456789abcdef")}
}

// replyOf is the reply the balancer must send to request s: MACs and
// addresses swapped, TTL 64, type 0 (129), the rest as sent, checksums
// computed afresh by gopacket.
func replyOf(s frame.Spec) *frame.Spec {
	r := s
	r.SrcMAC, r.DstMAC = lbMAC, clientMAC
	if s.DstMAC != nil {
		r.SrcMAC = s.DstMAC
	}
	if s.SrcMAC != nil {
		r.DstMAC = s.SrcMAC
	}
	r.Src, r.Dst = s.Dst, s.Src
	r.TTL = 64
	t := uint8(layers.ICMPv4TypeEchoReply)
	if s.Dst.Addr().Is6() {
		t = layers.ICMPv6TypeEchoReply
	}
	r.ICMPType = &t
	return &r
}

func echoRows(t *testing.T) []echoRow {
	t.Helper()
	client4, client6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:2::200")
	vip4, vip6 := web4.VIP, web6.VIP
	w := func(s frame.Spec, mod func(*frame.Spec)) frame.Spec { mod(&s); return s }
	typ := func(s frame.Spec, t uint8) frame.Spec { s.ICMPType = &t; return s }
	replied := map[string]uint64{"IcmpEchoReplies": 1}
	notVIP := map[string]uint64{"PassNotVip": 1}
	malformed := map[string]uint64{"PassMalformed": 1}

	var rows []echoRow
	tx := func(name string, s frame.Spec) {
		rows = append(rows, echoRow{name, build(t, s), xdpTX, replyOf(s), replied})
	}
	pass := func(name string, s frame.Spec, c map[string]uint64) {
		rows = append(rows, echoRow{name, build(t, s), xdpPass, nil, c})
	}

	e4, e6 := echoSpec(client4, vip4), echoSpec(client6, vip6)
	tx("echo4 to a VIP", e4)
	tx("echo6 to a VIP", e6)
	tx("echo4 no data", w(e4, func(s *frame.Spec) { s.Payload = nil }))
	tx("echo6 no data", w(e6, func(s *frame.Spec) { s.Payload = nil }))
	tx("echo4 1400 bytes of data", w(e4, func(s *frame.Spec) { s.Payload = bytes.Repeat([]byte{0x5a}, 1400) }))
	tx("echo6 ttl 1 (the VIP is the destination)", w(e6, func(s *frame.Spec) { s.TTL = 1 }))
	tx("echo4 ttl 1", w(e4, func(s *frame.Spec) { s.TTL = 1 }))
	tx("echo4 ttl 255", w(e4, func(s *frame.Spec) { s.TTL = 255 }))
	tx("echo4 ip options", w(e4, func(s *frame.Spec) { s.Options = 3 }))
	tx("echo4 802.1Q", w(e4, func(s *frame.Spec) { s.VLANs = []layers.EthernetType{layers.EthernetTypeDot1Q} }))
	tx("echo6 QinQ", w(e6, func(s *frame.Spec) {
		s.VLANs = []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	}))
	tx("echo4 id and seq 0xffff", w(e4, func(s *frame.Spec) { s.ICMPID, s.ICMPSeq = 0xffff, 0xffff }))
	tx("echo4 to a VIP with no backends", echoSpec(client4, empty4.VIP))
	tx("echo4 to a source-hash VIP", echoSpec(client4, sh4.VIP))
	tx("echo4 trailer past the ip packet", w(e4, func(s *frame.Spec) { s.Trailer = 10 }))

	pass("echo4 to a non-VIP", echoSpec(client4, netip.MustParseAddr("198.18.9.9")), notVIP)
	pass("echo6 to a non-VIP", echoSpec(client6, netip.MustParseAddr("2001:2::9")), notVIP)
	pass("echo4 to a backend", echoSpec(client4, netip.MustParseAddr("198.18.0.11")), notVIP)
	pass("echo reply4 to a VIP", typ(e4, 0), notVIP)
	pass("echo reply6 to a VIP", typ(e6, 129), notVIP)
	pass("icmp4 dest unreachable to a VIP", w(typ(e4, 3), func(s *frame.Spec) { s.ICMPCode = 4 }), notVIP)
	pass("icmp4 timestamp to a VIP", typ(e4, 13), notVIP)
	pass("icmp6 dest unreachable to a VIP", typ(e6, 1), notVIP)
	pass("icmp6 packet too big to a VIP", typ(e6, 2), notVIP)
	pass("icmp6 neighbour solicitation to a VIP", typ(e6, 135), notVIP)
	pass("echo4 code 1", w(e4, func(s *frame.Spec) { s.ICMPCode = 1 }), notVIP)
	pass("echo6 code 1", w(e6, func(s *frame.Spec) { s.ICMPCode = 1 }), notVIP)
	pass("echo4 other host's MAC", w(e4, func(s *frame.Spec) { s.DstMAC = otherMAC }), map[string]uint64{"PassOtherHost": 1})
	pass("echo6 broadcast MAC", w(e6, func(s *frame.Spec) { s.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }), map[string]uint64{"PassOtherHost": 1})
	// frame.Spec takes TTL 0 for 64: write it over the built frame.
	ttl0 := build(t, e4)
	ttl0[14+8] = 0
	fixIPv4Checksum(ttl0[14:34])
	rows = append(rows, echoRow{"echo4 ttl 0", ttl0, xdpPass, nil, map[string]uint64{"PassTtl": 1}})
	pass("echo4 fragment", w(e4, func(s *frame.Spec) { s.MoreFragments = true }), map[string]uint64{"PassFragment": 1})
	pass("echo6 after hop-by-hop", w(e6, func(s *frame.Spec) { s.HopByHop = true }), map[string]uint64{"PassIpv6Ext": 1})

	// Truncated echo requests: the IP length must cover the 8-byte
	// header. A message with no byte to show its type is any ICMP.
	lie := func(s frame.Spec, l frame.Lie) frame.Spec { s.Lie = &l; return s }
	bare := w(e4, func(s *frame.Spec) { s.Payload = nil })
	for n := uint16(21); n < 28; n++ {
		pass(fmt.Sprintf("echo4 tot_len %d ends inside the icmp header", n), lie(bare, frame.Lie{IPLen: u16(n), FixIPChecksum: true}), malformed)
	}
	pass("echo4 tot_len 20: no icmp byte", lie(bare, frame.Lie{IPLen: u16(20), FixIPChecksum: true}), notVIP)
	bare6 := w(e6, func(s *frame.Spec) { s.Payload = nil })
	for n := uint16(1); n < 8; n++ {
		pass(fmt.Sprintf("echo6 payload_len %d ends inside the icmp header", n), lie(bare6, frame.Lie{IPLen: u16(n)}), malformed)
	}
	pass("echo6 payload_len 0: no icmp byte", lie(bare6, frame.Lie{IPLen: u16(0)}), notVIP)
	pass("echo6 4-byte message (no id, seq)", w(bare6, func(s *frame.Spec) { s.ICMPID, s.ICMPSeq = 0, 0 }), malformed)
	// Every cut inside the IP packet: the IP length lies about the frame.
	for _, c := range []struct {
		name string
		s    frame.Spec
	}{{"echo4", bare}, {"echo6", bare6}} {
		full := build(t, c.s)
		end := ipEnd(t, c.s, full)
		for n := 14; n < end; n++ {
			rows = append(rows, echoRow{fmt.Sprintf("%s cut %d of %d", c.name, n, len(full)), full[:n], xdpPass, nil, malformed})
		}
		// Cutting Ethernet padding only keeps the request whole.
		if end < len(full) {
			rows = append(rows, echoRow{fmt.Sprintf("%s padding cut, %d of %d", c.name, end, len(full)), full[:end], xdpTX, replyOf(c.s), replied})
		}
	}
	return rows
}

// fixIPv4Checksum recomputes the checksum of IPv4 header h.
func fixIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^onesSum(0, h))
}

// onesSum adds b to the one's complement sum s, folded to 16 bits.
func onesSum(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// checkReplyChecksums decodes a reply and verifies its checksums by
// recomputing them from scratch, independently of gopacket's serialiser.
func checkReplyChecksums(t *testing.T, out []byte) {
	t.Helper()
	pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		hdr := ip4.Contents
		if onesSum(0, hdr) != 0xffff {
			t.Errorf("ipv4 header checksum %#04x does not verify", ip4.Checksum)
		}
		if ip4.TTL != 64 {
			t.Errorf("ttl %d, want 64", ip4.TTL)
		}
		icmp := ip4.Payload[:int(ip4.Length)-len(hdr)]
		if onesSum(0, icmp) != 0xffff {
			t.Errorf("icmp checksum does not verify")
		}
		if icmp[0] != 0 {
			t.Errorf("icmp type %d, want 0", icmp[0])
		}
		return
	}
	ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if !ok {
		t.Fatalf("reply is neither IPv4 nor IPv6: %v", pkt)
	}
	if ip6.HopLimit != 64 {
		t.Errorf("hop limit %d, want 64", ip6.HopLimit)
	}
	icmp := ip6.Payload[:ip6.Length]
	pseudo := append(append([]byte(nil), ip6.SrcIP...), ip6.DstIP...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(icmp)))
	pseudo = append(pseudo, 0, 0, 0, 58)
	s := uint32(onesSum(0, pseudo))
	if onesSum(s, icmp) != 0xffff {
		t.Errorf("icmpv6 checksum does not verify")
	}
	if icmp[0] != 129 {
		t.Errorf("icmpv6 type %d, want 129", icmp[0])
	}
}

// TestICMPEcho runs the echo table: requests to a VIP are answered with
// XDP_TX and the exact reply gopacket builds, everything else goes to the
// kernel untouched with today's counters, and no frame touches the
// connection table or a service's counters.
func TestICMPEcho(t *testing.T) {
	f := newFixture(t)
	for _, row := range echoRows(t) {
		t.Run(row.name, func(t *testing.T) {
			f.checkEcho(t, row)
		})
	}
}

// checkEcho runs one echo row.
func (f *fixture) checkEcho(t *testing.T, row echoRow) {
	t.Helper()
	orig := append([]byte(nil), row.in...)
	st, _ := f.b.Service(web4)
	before := f.state(st)
	verdict, out := f.run(append([]byte(nil), row.in...))
	after := f.state(st)
	if verdict != row.verdict {
		t.Fatalf("verdict %d, want %d", verdict, row.verdict)
	}
	want := orig
	if row.reply != nil {
		want = build(t, *row.reply)
		if len(orig) > len(want) { // bytes past the request's end stay
			want = append(want, orig[len(want):]...)
		}
		want = want[:len(orig)]
		checkReplyChecksums(t, out)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output:\n got %x\nwant %x", out, want)
	}
	checkStateChange(t, before, after, row.counters)
}

// TestICMPEchoSwitch: with the switch off, echo requests to a VIP go to
// the kernel as before; on again, they are answered. A VIP whose last
// service goes stops being answered.
func TestICMPEchoSwitch(t *testing.T) {
	f := newFixture(t)
	client4, client6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:2::200")
	e4, e6 := echoSpec(client4, web4.VIP), echoSpec(client6, web6.VIP)
	answered := func(name string, s frame.Spec) echoRow {
		return echoRow{name, build(t, s), xdpTX, replyOf(s), map[string]uint64{"IcmpEchoReplies": 1}}
	}
	passed := func(name string, s frame.Spec) echoRow {
		return echoRow{name, build(t, s), xdpPass, nil, map[string]uint64{"PassNotVip": 1}}
	}
	setEcho := func(on bool) {
		if err := f.b.SetICMP(lb.ICMP{NoEcho: !on}); err != nil {
			t.Fatal(err)
		}
		if got, err := f.b.ICMP(); err != nil || got.NoEcho == on {
			t.Fatalf("%+v (%v) after setting echo %v", got, err, on)
		}
	}
	if got, err := f.b.ICMP(); err != nil || got != (lb.ICMP{}) {
		t.Fatalf("ICMP switches %+v (%v) by default, want both on", got, err)
	}
	steps := []struct {
		do   func()
		rows []echoRow
	}{
		{func() { setEcho(false) }, []echoRow{passed("off echo4", e4), passed("off echo6", e6)}},
		{func() { setEcho(true) }, []echoRow{answered("on again echo4", e4), answered("on again echo6", e6)}},
		{func() {
			// 198.18.1.1 has web4 and dns4: one left keeps it a VIP.
			if err := f.b.DeleteService(web4); err != nil {
				t.Fatal(err)
			}
		}, []echoRow{answered("one service left echo4", e4)}},
		{func() {
			if err := f.b.DeleteService(dns4); err != nil {
				t.Fatal(err)
			}
		}, []echoRow{passed("no service left echo4", e4), answered("other VIP still answered echo6", e6)}},
		{func() { f.set(lb.Service{Key: svcKey("198.18.1.1:443/tcp")}) }, []echoRow{answered("a service back echo4", e4)}},
	}
	for _, s := range steps {
		s.do()
		for _, row := range s.rows {
			t.Run(row.name, func(t *testing.T) { f.checkEcho(t, row) })
		}
	}
}

// TestICMPEchoOption: Options.ICMP.NoEcho loads the data plane with the
// switch off.
func TestICMPEchoOption(t *testing.T) {
	priv.Require(t)
	b, err := loader.Open(loader.Options{MAC: lbMAC, MaxServices: 64, MaxBackends: 1024, ConntrackSize: 1 << 16, ICMP: lb.ICMP{NoEcho: true}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close balancer: %v", err)
		}
	})
	f := &fixture{t: t, b: b}
	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 1)})
	if got, err := b.ICMP(); err != nil || got != (lb.ICMP{NoEcho: true}) {
		t.Fatalf("ICMP switches %+v (%v), want echo off", got, err)
	}
	e4 := echoSpec(netip.MustParseAddr("198.18.0.200"), web4.VIP)
	f.checkEcho(t, echoRow{"off from the start", build(t, e4), xdpPass, nil, map[string]uint64{"PassNotVip": 1}})
}
