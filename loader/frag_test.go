package loader_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// IPv6 extension header types.
const (
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extAH       = 51
	extDstOpts  = 60
)

// ext is one IPv6 extension header to insert: its type and bytes (the
// first, its next header, is filled in by withExt).
type ext struct {
	typ  uint8
	body []byte
}

// opts is a hop-by-hop or destination options header of 8 bytes (one
// PadN option).
func opts(typ uint8) ext { return ext{typ, []byte{0, 0, 1, 4, 0, 0, 0, 0}} }

// routing is an 8-byte routing header (experimental type 253, no
// segments left).
func routing() ext { return ext{extRouting, []byte{0, 0, 253, 0, 0, 0, 0, 0}} }

// fragHdr is a fragment header: offset in 8-byte units, more fragments,
// identification.
func fragHdr(off uint16, more bool, id uint32) ext {
	b := make([]byte, 8)
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return ext{extFragment, b}
}

// withExt inserts extension headers after the fixed IPv6 header of an
// untagged IPv6 frame (cut at the end of its IP packet), chaining next
// headers and growing the payload length.
func withExt(tb testing.TB, s frame.Spec, hdrs ...ext) []byte {
	tb.Helper()
	full := build(tb, s)
	full = full[:ipEnd(tb, s, full)]
	const l4 = 14 + 40
	out := append([]byte(nil), full[:l4]...)
	next := full[20]
	n := 0
	for i, h := range hdrs {
		if i == 0 {
			out[20] = h.typ
		}
		b := append([]byte(nil), h.body...)
		b[0] = next
		if i+1 < len(hdrs) {
			b[0] = hdrs[i+1].typ
		}
		out = append(out, b...)
		n += len(b)
	}
	out = append(out, full[l4:]...)
	binary.BigEndian.PutUint16(out[18:], binary.BigEndian.Uint16(full[18:])+uint16(n))
	return out
}

// fragStep is one frame of a fragment scenario: the verdict, the counters
// it moves (besides RxPackets) and, for XDP_TX, the backend of the
// scenario's first fragment (the scenario's flow).
type fragStep struct {
	name     string
	in       []byte
	verdict  uint32
	counters map[string]uint64
	// age makes every fragment-table entry older than its lifetime before
	// the step runs.
	age bool
}

type fragScenario struct {
	name  string
	svc   lb.ServiceKey
	flow  frame.Spec // the flow whose backend XDP_TX steps must reach
	steps []fragStep
}

func TestFragments(t *testing.T) {
	f := newFixture(t)
	vip4, vip6 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:2:0:1::1")
	udp4 := func(src string) frame.Spec {
		return frame.Spec{Src: ap(src), Dst: netip.AddrPortFrom(vip4, 53), UDP: true, Payload: bytes.Repeat([]byte("q"), 24)}
	}
	udp6 := func(src string) frame.Spec {
		return frame.Spec{Src: ap(src), Dst: netip.AddrPortFrom(vip6, 53), UDP: true, Payload: bytes.Repeat([]byte("q"), 24)}
	}
	tcp6 := func(src string) frame.Spec {
		return frame.Spec{Src: ap(src), Dst: netip.AddrPortFrom(vip6, 80)}
	}
	// Source-hash services alone on their VIP for UDP (shUDP4, shUDP6;
	// shTCP4 is the only TCP service of sh4's VIP): fragments that come
	// before their first go to the client's source-hash backend. Two
	// source-hash UDP services on one VIP (shTwo, shTwoB): they cannot be
	// told apart without ports.
	shUDP4, shUDP6 := svcKey("198.18.1.20:53/udp"), svcKey("[2001:2:0:1::20]:53/udp")
	shTwo, shTwoB := svcKey("198.18.1.21:53/udp"), svcKey("198.18.1.21:54/udp")
	for _, k := range []lb.ServiceKey{shUDP4, shUDP6, shTwo, shTwoB} {
		f.set(lb.Service{Key: k, Scheduler: lb.SourceHash, Backends: backends(k.VIP, 3)})
	}
	f.set(lb.Service{Key: svcKey("198.18.1.20:80/tcp"), Backends: backends(shUDP4.VIP, 3)}) // maglev TCP beside: no matter
	to := func(k lb.ServiceKey, src string) frame.Spec {
		return frame.Spec{Src: ap(src), Dst: netip.AddrPortFrom(k.VIP, k.Port), UDP: k.Proto == lb.UDP, Payload: bytes.Repeat([]byte("q"), 24)}
	}
	frag := func(s frame.Spec, off uint16, more bool) frame.Spec {
		s.FragOffset, s.MoreFragments = off, more
		return s
	}
	first := map[string]uint64{"TxPackets": 1, "NewFlows": 1, "FragFirst": 1}
	fwd := map[string]uint64{"TxPackets": 1, "FragForwarded": 1}
	unmatched := map[string]uint64{"FragUnmatched": 1}
	newFlow := map[string]uint64{"TxPackets": 1, "NewFlows": 1}
	newTCP := map[string]uint64{"TxPackets": 1, "NewFlows": 1, "HalfopenNew": 1}
	malformed := map[string]uint64{"PassMalformed": 1}
	ext6 := map[string]uint64{"PassIpv6Ext": 1}

	a, b, c, d := udp4("198.18.0.210:5001"), udp4("198.18.0.211:5002"), udp4("198.18.0.212:5003"), udp4("198.18.0.213:5004")
	e, g := udp6("[2001:2::210]:5001"), udp6("[2001:2::211]:5002")
	short4 := frag(udp4("198.18.0.214:5005"), 0, true)
	short4.Lie = &frame.Lie{IPLen: u16(20 + 7), FixIPChecksum: true}
	shortTCP4 := frame.Spec{Src: ap("198.18.0.215:5006"), Dst: netip.AddrPortFrom(vip4, 80), SYN: true, MoreFragments: true,
		Lie: &frame.Lie{IPLen: u16(20 + 12), FixIPChecksum: true}}
	shortTCP6 := withExt(t, tcp6("[2001:2::212]:5003"), fragHdr(0, true, 7))
	binary.BigEndian.PutUint16(shortTCP6[18:], 8+12) // fragment header and 12 bytes of TCP
	cutExt := withExt(t, tcp6("[2001:2::213]:5004"), opts(extHopByHop))[:14+40+1]
	lyingExt := withExt(t, tcp6("[2001:2::214]:5005"), opts(extHopByHop))
	lyingExt[14+40+1] = 200 // hop-by-hop header of 1608 bytes

	early := map[string]uint64{"TxPackets": 1, "FragForwarded": 1, "FragEarly": 1}
	sa, sb := to(shUDP4, "198.18.0.230:5001"), to(shUDP6, "[2001:2::230]:5001")
	sc, sd := to(sh4, "198.18.0.231:5002"), to(shTwo, "198.18.0.232:5003")
	scenarios := []fragScenario{
		{"ipv4 source-hash, last fragment first", shUDP4, sa, []fragStep{
			{name: "last", in: build(t, frag(sa, 10, false)), verdict: xdpTX, counters: early},
			{name: "second", in: build(t, frag(sa, 5, true)), verdict: xdpTX, counters: early},
			{name: "first", in: build(t, frag(sa, 0, true)), verdict: xdpTX, counters: first},
			{name: "second again", in: build(t, frag(sa, 5, true)), verdict: xdpTX, counters: fwd},
		}},
		{"ipv6 source-hash, last fragment first", shUDP6, sb, []fragStep{
			{name: "last", in: withExt(t, sb, fragHdr(8, false, 77)), verdict: xdpTX, counters: early},
			{name: "first", in: withExt(t, sb, fragHdr(0, true, 77)), verdict: xdpTX, counters: first},
			{name: "second", in: withExt(t, sb, fragHdr(4, true, 77)), verdict: xdpTX, counters: fwd},
		}},
		{"ipv4 tcp source-hash, later fragment first", sh4, sc, []fragStep{
			{name: "later", in: build(t, frag(frame.Spec{Src: sc.Src, Dst: netip.AddrPortFrom(sh4.VIP, 80)}, 5, false)), verdict: xdpTX, counters: early},
		}},
		{"ipv4 two source-hash services on the VIP", shTwo, sd, []fragStep{
			{name: "early", in: build(t, frag(sd, 5, false)), verdict: xdpPass, counters: unmatched},
		}},
		{"ipv4 in order", dns4, a, []fragStep{
			{name: "first", in: build(t, frag(a, 0, true)), verdict: xdpTX, counters: first},
			{name: "second", in: build(t, frag(a, 5, true)), verdict: xdpTX, counters: fwd},
			{name: "last", in: build(t, frag(a, 10, false)), verdict: xdpTX, counters: fwd},
		}},
		{"ipv4 later before first", dns4, b, []fragStep{
			{name: "early", in: build(t, frag(b, 5, true)), verdict: xdpPass, counters: unmatched},
			{name: "first", in: build(t, frag(b, 0, true)), verdict: xdpTX, counters: first},
			{name: "later", in: build(t, frag(b, 10, false)), verdict: xdpTX, counters: fwd},
		}},
		{"ipv4 after lifetime", dns4, c, []fragStep{
			{name: "first", in: build(t, frag(c, 0, true)), verdict: xdpTX, counters: first},
			{name: "later, aged", in: build(t, frag(c, 5, false)), verdict: xdpPass, counters: unmatched, age: true},
		}},
		{"ipv4 later fragment not to a VIP", lb.ServiceKey{}, d, []fragStep{
			{name: "later", in: build(t, frag(frame.Spec{Src: ap("198.18.0.213:1"), Dst: ap("198.18.9.9:53"), UDP: true}, 5, false)),
				verdict: xdpPass, counters: map[string]uint64{"PassFragment": 1}},
		}},
		{"ipv4 first fragment too short", lb.ServiceKey{}, d, []fragStep{
			{name: "udp 7 bytes", in: build(t, short4), verdict: xdpPass, counters: malformed},
			{name: "tcp 12 bytes", in: build(t, shortTCP4), verdict: xdpPass, counters: malformed},
		}},
		{"ipv6 fragment header", dns6, e, []fragStep{
			{name: "early", in: withExt(t, e, fragHdr(4, true, 0x12345678)), verdict: xdpPass, counters: unmatched},
			{name: "first", in: withExt(t, e, fragHdr(0, true, 0x12345678)), verdict: xdpTX, counters: first},
			{name: "second", in: withExt(t, e, fragHdr(4, true, 0x12345678)), verdict: xdpTX, counters: fwd},
			{name: "last", in: withExt(t, e, fragHdr(8, false, 0x12345678)), verdict: xdpTX, counters: fwd},
			{name: "other id", in: withExt(t, e, fragHdr(4, false, 0x12345679)), verdict: xdpPass, counters: unmatched},
		}},
		{"ipv6 fragment after options", dns6, g, []fragStep{
			{name: "first", in: withExt(t, g, opts(extHopByHop), fragHdr(0, true, 9)), verdict: xdpTX, counters: first},
			{name: "last", in: withExt(t, g, opts(extHopByHop), fragHdr(4, false, 9)), verdict: xdpTX, counters: fwd},
			{name: "last, aged", in: withExt(t, g, opts(extHopByHop), fragHdr(4, false, 9)), verdict: xdpPass, counters: unmatched, age: true},
		}},
		{"ipv6 first fragment too short", lb.ServiceKey{}, d, []fragStep{
			{name: "tcp 12 bytes", in: shortTCP6, verdict: xdpPass, counters: malformed},
		}},
		{"ipv6 hop-by-hop, routing, destination options", web6, tcp6("[2001:2::220]:6001"), []fragStep{
			{name: "tcp", in: withExt(t, tcp6("[2001:2::220]:6001"), opts(extHopByHop), routing(), opts(extDstOpts)), verdict: xdpTX, counters: newTCP},
		}},
		{"ipv6 four extension headers", web6, tcp6("[2001:2::221]:6002"), []fragStep{
			{name: "tcp", in: withExt(t, tcp6("[2001:2::221]:6002"), opts(extHopByHop), opts(extDstOpts), routing(), opts(extDstOpts)), verdict: xdpTX, counters: newTCP},
		}},
		{"ipv6 destination options before udp", dns6, udp6("[2001:2::222]:6003"), []fragStep{
			{name: "udp", in: withExt(t, udp6("[2001:2::222]:6003"), opts(extDstOpts)), verdict: xdpTX, counters: newFlow},
		}},
		{"ipv6 headers left to the kernel", lb.ServiceKey{}, d, []fragStep{
			{name: "five extension headers", in: withExt(t, tcp6("[2001:2::223]:6004"), opts(extHopByHop), opts(extDstOpts), routing(), opts(extDstOpts), opts(extDstOpts)), verdict: xdpPass, counters: ext6},
			{name: "AH", in: withExt(t, tcp6("[2001:2::224]:6005"), ext{extAH, make([]byte, 16)}), verdict: xdpPass, counters: ext6},
			{name: "hop-by-hop before icmpv6", in: withExt(t, frame.Spec{Src: ap("[2001:2::225]:0"), Dst: netip.AddrPortFrom(vip6, 0), ICMP: true, ICMPID: 1}, opts(extHopByHop)), verdict: xdpPass, counters: ext6},
		}},
		{"ipv6 truncated extension headers", lb.ServiceKey{}, d, []fragStep{
			{name: "cut inside hop-by-hop", in: cutExt, verdict: xdpPass, counters: malformed},
			{name: "hop-by-hop longer than the payload", in: lyingExt, verdict: xdpPass, counters: malformed},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, st := range sc.steps {
				if st.age {
					ageFrags(t, f)
				}
				in := append([]byte(nil), st.in...)
				var id uint32
				var be maps.Backend
				var svcBefore maps.ServiceCounters
				var beBefore maps.BackendCounters
				if st.verdict == xdpTX {
					id, be = f.expectedBackend(sc.svc, flowOf(sc.flow))
					svc, _ := f.b.Service(sc.svc)
					svcBefore, _ = f.b.Stats().Service(svc.ID)
					beBefore, _ = f.b.Stats().Backend(id)
				}
				before := f.counters()
				verdict, out := f.run(in)
				if verdict != st.verdict {
					t.Fatalf("%s: verdict %d, want %d", st.name, verdict, st.verdict)
				}
				want := map[string]uint64{"RxPackets": 1}
				for k, v := range st.counters {
					want[k] = v
				}
				if got := delta(before, f.counters()); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: counters changed %v, want %v", st.name, got, want)
				}
				out = out[:len(st.in)]
				if st.verdict == xdpPass {
					if !bytes.Equal(out, st.in) {
						t.Errorf("%s: passed frame was modified", st.name)
					}
					continue
				}
				wantOut := append(append(append([]byte(nil), be.MAC...), lbMAC...), st.in[12:]...)
				if !bytes.Equal(out, wantOut) {
					t.Errorf("%s: output\n got %x\nwant %x (backend %d)", st.name, out, wantOut, id)
				}
				// Every fragment counts as its service's and backend's
				// traffic; only the first is a new flow.
				svc, _ := f.b.Service(sc.svc)
				sa, _ := f.b.Stats().Service(svc.ID)
				ba, _ := f.b.Stats().Backend(id)
				n := uint64(len(st.in))
				flows := st.counters["NewFlows"]
				if sa.Packets-svcBefore.Packets != 1 || sa.Bytes-svcBefore.Bytes != n || sa.NewFlows-svcBefore.NewFlows != flows {
					t.Errorf("%s: service counters moved %+v -> %+v", st.name, svcBefore, sa)
				}
				if ba.Packets-beBefore.Packets != 1 || ba.Bytes-beBefore.Bytes != n || ba.NewFlows-beBefore.NewFlows != flows {
					t.Errorf("%s: backend %d counters moved %+v -> %+v", st.name, id, beBefore, ba)
				}
			}
		})
	}
}

// ageFrags sets every fragment-table entry's creation time to 1 ns after
// boot: older than the lifetime.
func ageFrags(tb testing.TB, f *fixture) {
	tb.Helper()
	m := loader.FragsMap(f.b)
	var k bpf.FragKey
	var v bpf.FragEntry
	var keys []bpf.FragKey
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	for _, k := range keys {
		if err := m.Lookup(&k, &v); err != nil {
			tb.Fatal(err)
		}
		v.Created = 1
		if err := m.Put(&k, &v); err != nil {
			tb.Fatal(err)
		}
	}
}
