package loader_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// icmpErrRow is one row of the ICMP error table. track, if set, is a flow
// of svc given a connection-table entry before the row runs (by a SYN and
// its ACK through the program; moved to another backend of svc when move is set,
// so the table and the scheduler disagree). A TX row goes to the flow's
// backend (the scheduler's when the flow is untracked), the frame
// unchanged but for the MACs; a passed row leaves it whole. Either way only the global counters
// move, by counters (besides RxPackets): no entry is created or
// refreshed, no service or backend counter moves.
type icmpErrRow struct {
	name     string
	in       []byte
	svc      lb.ServiceKey
	track    *lb.FlowKey
	move     bool
	verdict  uint32
	counters map[string]uint64
	// wantMAC, if set, is the backend a TX row must reach (else the
	// tracked flow's, or the flow's slot).
	wantMAC net.HardwareAddr
}

// Routers and clients of the table.
var (
	router4, router6 = netip.MustParseAddr("198.18.0.254"), netip.MustParseAddr("2001:2::fe")
	errClient4       = netip.MustParseAddr("198.18.0.77")
	errClient6       = netip.MustParseAddr("2001:2::77")
)

// replyQuote is the IP packet a backend of svc sent to client as the reply
// of flow (VIP:port -> client:port), cut to n bytes (0: whole). mod edits
// the reply's spec.
func replyQuote(tb testing.TB, flow lb.FlowKey, n int, mod func(*frame.Spec)) []byte {
	tb.Helper()
	s := frame.Spec{Src: flow.Dst, Dst: flow.Src, UDP: flow.Proto == lb.UDP, Payload: bytes.Repeat([]byte{0x42}, 1200)}
	if mod != nil {
		mod(&s)
	}
	q := build(tb, s)[14:]
	if n > 0 {
		q = q[:n]
	}
	return q
}

// icmpError is the frame a router sends to dst: ICMP type/code (ICMPv6
// when dst is IPv6) with the 4 bytes after the type, code and checksum
// (the MTU of frag-needed and packet-too-big) and the quote.
func icmpError(tb testing.TB, dst netip.Addr, typ, code uint8, mtu uint32, quote []byte, mod func(*frame.Spec)) []byte {
	tb.Helper()
	src := router4
	if dst.Is6() {
		src = router6
	}
	rest := binary.BigEndian.AppendUint32(nil, mtu)
	s := frame.Spec{Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0), ICMP: true, ICMPType: &typ, ICMPCode: code}
	if dst.Is4() {
		s.ICMPID, s.ICMPSeq = binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:])
		s.Payload = quote
	} else {
		// frame writes ICMPv6's second word only for echo ids: put it
		// in the payload.
		s.Payload = append(rest, quote...)
	}
	if mod != nil {
		mod(&s)
	}
	return build(tb, s)
}

func fragNeeded(tb testing.TB, dst netip.Addr, quote []byte) []byte {
	return icmpError(tb, dst, 3, 4, 1400, quote, nil)
}

func packetTooBig(tb testing.TB, dst netip.Addr, quote []byte) []byte {
	return icmpError(tb, dst, 2, 0, 1280, quote, nil)
}

func icmpErrRows(t *testing.T) []icmpErrRow {
	t.Helper()
	port := uint16(20000)
	flow := func(svc lb.ServiceKey) lb.FlowKey {
		port++
		c := errClient4
		if svc.VIP.Is6() {
			c = errClient6
		}
		return lb.FlowKey{Src: netip.AddrPortFrom(c, port), Dst: netip.AddrPortFrom(svc.VIP, svc.Port), Proto: svc.Proto}
	}
	ptr := func(k lb.FlowKey) *lb.FlowKey { return &k }
	fwd := map[string]uint64{"IcmpErrorsForwarded": 1}
	unmatched := map[string]uint64{"IcmpErrorsUnmatched": 1}
	notVIP := map[string]uint64{"PassNotVip": 1}
	malformed := map[string]uint64{"PassMalformed": 1}
	var rows []icmpErrRow
	add := func(r icmpErrRow) { rows = append(rows, r) }
	pass := func(name string, in []byte, svc lb.ServiceKey, c map[string]uint64) {
		add(icmpErrRow{name: name, in: in, svc: svc, verdict: xdpPass, counters: c})
	}

	// Tracked flows go to the backend in their entry, even where the
	// scheduler would pick another.
	for _, c := range []struct {
		name string
		svc  lb.ServiceKey
		mk   func(lb.FlowKey) []byte
	}{
		{"frag-needed quoting a tracked tcp4 flow", web4, func(k lb.FlowKey) []byte { return fragNeeded(t, k.Dst.Addr(), replyQuote(t, k, 28, nil)) }},
		{"frag-needed (576-byte quote) quoting a tracked tcp4 flow", web4, func(k lb.FlowKey) []byte { return fragNeeded(t, k.Dst.Addr(), replyQuote(t, k, 548, nil)) }},
		{"frag-needed quoting a tracked tcp4 flow with ip options", web4, func(k lb.FlowKey) []byte {
			return fragNeeded(t, k.Dst.Addr(), replyQuote(t, k, 0, func(s *frame.Spec) { s.Options = 2; s.Payload = nil }))
		}},
		{"host unreachable quoting a tracked udp4 flow", dns4, func(k lb.FlowKey) []byte { return icmpError(t, k.Dst.Addr(), 3, 1, 0, replyQuote(t, k, 28, nil), nil) }},
		{"packet-too-big quoting a tracked tcp6 flow", web6, func(k lb.FlowKey) []byte { return packetTooBig(t, k.Dst.Addr(), replyQuote(t, k, 1232, nil)) }},
		{"packet-too-big (48-byte quote) quoting a tracked tcp6 flow", web6, func(k lb.FlowKey) []byte { return packetTooBig(t, k.Dst.Addr(), replyQuote(t, k, 48, nil)) }},
		{"icmp6 port unreachable quoting a tracked udp6 flow", dns6, func(k lb.FlowKey) []byte { return icmpError(t, k.Dst.Addr(), 1, 4, 0, replyQuote(t, k, 100, nil), nil) }},
	} {
		k := flow(c.svc)
		add(icmpErrRow{name: c.name, in: c.mk(k), svc: c.svc, track: ptr(k), move: true, verdict: xdpTX, counters: fwd})
	}
	k := flow(rr4)
	add(icmpErrRow{name: "frag-needed quoting a tracked round-robin flow", in: fragNeeded(t, rr4.VIP, replyQuote(t, k, 28, nil)), svc: rr4, track: ptr(k), verdict: xdpTX, counters: fwd})
	k = flow(lc4)
	add(icmpErrRow{name: "frag-needed quoting a tracked least-conn flow", in: fragNeeded(t, lc4.VIP, replyQuote(t, k, 28, nil)), svc: lc4, track: ptr(k), verdict: xdpTX, counters: fwd})

	// Untracked flows: the scheduler's backend for maglev and
	// source-hash (predicted from the table, then checked against a SYN
	// of the flow), passed and counted for the others.
	for _, svc := range []lb.ServiceKey{web4, dns4, sh4} {
		k := flow(svc)
		add(icmpErrRow{name: fmt.Sprintf("frag-needed quoting an untracked flow of %s", svc), in: fragNeeded(t, svc.VIP, replyQuote(t, k, 28, nil)), svc: svc, verdict: xdpTX, counters: fwd})
	}
	k = flow(web6)
	add(icmpErrRow{name: "packet-too-big quoting an untracked flow of " + web6.String(), in: packetTooBig(t, web6.VIP, replyQuote(t, k, 48, nil)), svc: web6, verdict: xdpTX, counters: fwd})
	pass("frag-needed quoting an untracked round-robin flow", fragNeeded(t, rr4.VIP, replyQuote(t, flow(rr4), 28, nil)), rr4, unmatched)
	pass("frag-needed quoting an untracked least-conn flow", fragNeeded(t, lc4.VIP, replyQuote(t, flow(lc4), 28, nil)), lc4, unmatched)
	pass("frag-needed quoting an untracked flow of a service with no backends", fragNeeded(t, empty4.VIP, replyQuote(t, flow(empty4), 28, nil)), empty4, unmatched)

	// Quotes that are not of a service's packet.
	k = flow(web4)
	other := k
	other.Dst = netip.AddrPortFrom(netip.MustParseAddr("198.18.9.9"), 80)
	pass("quote from a non-VIP source", fragNeeded(t, web4.VIP, replyQuote(t, other, 28, nil)), web4, notVIP)
	other.Dst = netip.AddrPortFrom(rr4.VIP, 80)
	pass("quote from another VIP than the error's destination", fragNeeded(t, web4.VIP, replyQuote(t, other, 28, nil)), web4, notVIP)
	other.Dst = netip.AddrPortFrom(web4.VIP, 81)
	pass("quote of an unknown service (VIP, other port)", fragNeeded(t, web4.VIP, replyQuote(t, other, 28, nil)), web4, notVIP)
	other = k
	other.Proto = lb.UDP
	pass("quote of an unknown service (VIP:80, udp)", fragNeeded(t, web4.VIP, replyQuote(t, other, 28, nil)), web4, notVIP)
	icmpQuote := replyQuote(t, k, 28, func(s *frame.Spec) {
		s.ICMP, s.ICMPType, s.Src, s.Dst = true, u8(0), netip.AddrPortFrom(s.Src.Addr(), 0), netip.AddrPortFrom(s.Dst.Addr(), 0)
	})
	pass("quote of an icmp packet", fragNeeded(t, web4.VIP, icmpQuote), web4, notVIP)
	pass("icmp4 error quoting ipv6", fragNeeded(t, web4.VIP, replyQuote(t, flow(web6), 48, nil)), web4, notVIP)
	pass("icmp6 error quoting ipv4", packetTooBig(t, web6.VIP, replyQuote(t, flow(web4), 28, nil)), web6, notVIP)
	pass("frag-needed not for a VIP", fragNeeded(t, netip.MustParseAddr("198.18.9.9"), replyQuote(t, k, 28, nil)), web4, notVIP)
	pass("packet-too-big not for a VIP", packetTooBig(t, netip.MustParseAddr("2001:2::9"), replyQuote(t, flow(web6), 48, nil)), web6, notVIP)
	pass("time exceeded to a VIP (not handled)", icmpError(t, web4.VIP, 11, 0, 0, replyQuote(t, k, 28, nil), nil), web4, notVIP)
	pass("quote of a later ipv4 fragment", fragNeeded(t, web4.VIP, replyQuote(t, k, 28, func(s *frame.Spec) { s.FragOffset = 100 })), web4,
		map[string]uint64{"PassFragment": 1})
	pass("quoted ipv6 with a hop-by-hop header", packetTooBig(t, web6.VIP, replyQuote(t, flow(web6), 56, func(s *frame.Spec) { s.HopByHop = true })), web6,
		map[string]uint64{"PassIpv6Ext": 1})
	pass("frag-needed to a VIP, other host's MAC", icmpError(t, web4.VIP, 3, 4, 1400, replyQuote(t, k, 28, nil), func(s *frame.Spec) { s.DstMAC = otherMAC }), web4,
		map[string]uint64{"PassOtherHost": 1})
	pass("frag-needed to a VIP, ttl 1", icmpError(t, web4.VIP, 3, 4, 1400, replyQuote(t, k, 28, nil), func(s *frame.Spec) { s.TTL = 1 }), web4,
		map[string]uint64{"PassTtl": 1})

	// Truncated quotes, every cut inside the headers read: the outer IP
	// length agrees with the frame, so only the quote is short.
	tracked := flow(web4)
	for n := 0; n < 28; n++ {
		pass(fmt.Sprintf("frag-needed quote cut to %d bytes", n), fragNeeded(t, web4.VIP, replyQuote(t, tracked, 28, nil)[:n]), web4, malformed)
	}
	opts := replyQuote(t, tracked, 0, func(s *frame.Spec) { s.Options = 2 })
	for n := 20; n < 36; n++ {
		pass(fmt.Sprintf("frag-needed quote with ip options cut to %d bytes", n), fragNeeded(t, web4.VIP, opts[:n]), web4, malformed)
	}
	tracked6 := flow(web6)
	for n := 0; n < 48; n++ {
		pass(fmt.Sprintf("packet-too-big quote cut to %d bytes", n), packetTooBig(t, web6.VIP, replyQuote(t, tracked6, 48, nil)[:n]), web6, malformed)
	}
	// The outer headers: an ICMP header cut by the IP length, and frames
	// cut inside the IP packet.
	full4 := fragNeeded(t, web4.VIP, replyQuote(t, tracked, 28, nil))
	for n := uint16(21); n < 28; n++ {
		in := append([]byte(nil), full4...)
		binary.BigEndian.PutUint16(in[16:], n)
		fixIPv4Checksum(in[14:34])
		pass(fmt.Sprintf("frag-needed tot_len %d ends inside the icmp header", n), in, web4, malformed)
	}
	in := append([]byte(nil), full4...)
	binary.BigEndian.PutUint16(in[16:], 20+8+27)
	fixIPv4Checksum(in[14:34])
	pass("frag-needed tot_len one short of the quote", in, web4, malformed)
	full6 := packetTooBig(t, web6.VIP, replyQuote(t, tracked6, 48, nil))
	in = append([]byte(nil), full6...)
	binary.BigEndian.PutUint16(in[18:], 8+47)
	pass("packet-too-big payload_len one short of the quote", in, web6, malformed)
	for _, full := range [][]byte{full4, full6} {
		for n := 14; n < len(full); n++ {
			pass(fmt.Sprintf("%d-byte icmp error cut to %d", len(full), n), full[:n], web4, malformed)
		}
	}
	// The same quotes, whole, for the tracked flows: forwarded.
	add(icmpErrRow{name: "frag-needed quote whole (28 bytes)", in: full4, svc: web4, track: ptr(tracked), verdict: xdpTX, counters: fwd})
	add(icmpErrRow{name: "frag-needed quote with ip options whole (36 bytes)", in: fragNeeded(t, web4.VIP, opts[:36]), svc: web4, track: ptr(tracked), verdict: xdpTX, counters: fwd})
	add(icmpErrRow{name: "packet-too-big quote whole (48 bytes)", in: full6, svc: web6, track: ptr(tracked6), verdict: xdpTX, counters: fwd})
	return rows
}

// TestICMPErrors runs the ICMP error table.
func TestICMPErrors(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: backends(rr4.VIP, 3)})
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: backends(lc4.VIP, 3)})
	for _, row := range icmpErrRows(t) {
		t.Run(row.name, func(t *testing.T) { f.checkICMPError(t, row) })
	}
}

// checkICMPError runs one row of the ICMP error table.
func (f *fixture) checkICMPError(t *testing.T, row icmpErrRow) {
	t.Helper()
	st, ok := f.b.Service(row.svc)
	if !ok {
		t.Fatalf("service %s not installed", row.svc)
	}
	wantMAC := row.wantMAC
	if row.track != nil {
		// Create the flow's entry as a client would: a SYN (half-open),
		// then the handshake's ACK; a UDP datagram.
		first := frame.Spec{Src: row.track.Src, Dst: row.track.Dst, UDP: row.track.Proto == lb.UDP, SYN: row.track.Proto == lb.TCP}
		if v, _ := f.run(build(t, first)); v != xdpTX {
			t.Fatalf("flow's first packet: verdict %d", v)
		}
		if first.SYN {
			first.SYN = false
			if v, _ := f.run(build(t, first)); v != xdpTX {
				t.Fatalf("flow's ACK: verdict %d", v)
			}
		}
		fl, found, err := f.b.Conntrack().Lookup(*row.track)
		if err != nil || !found {
			t.Fatalf("flow not tracked (%v)", err)
		}
		if row.move {
			// Another backend than the scheduler's.
			for _, be := range st.Backends {
				if be.ID != fl.BackendID {
					fl.BackendID = be.ID
					break
				}
			}
			if err := f.b.Conntrack().Put(*row.track, fl); err != nil {
				t.Fatal(err)
			}
		}
		be, err := f.b.BackendMap().Get(fl.BackendID)
		if err != nil {
			t.Fatal(err)
		}
		wantMAC = be.MAC
	}
	quoted := quotedFlow(t, row)
	if row.verdict == xdpTX && row.track == nil && wantMAC == nil {
		_, be := f.expectedBackend(row.svc, quoted)
		wantMAC = be.MAC
	}
	lookup := func() (maps.Flow, bool) {
		if quoted == (lb.FlowKey{}) {
			return maps.Flow{}, false
		}
		e, found, err := f.b.Conntrack().Lookup(quoted)
		if err != nil {
			t.Fatal(err)
		}
		return e, found
	}
	entry, tracked := lookup()
	persisted := func() (maps.Persistence, bool) {
		if quoted == (lb.FlowKey{}) {
			return maps.Persistence{}, false
		}
		e, found, err := f.b.Persistence().Lookup(maps.PersistKey{ServiceID: st.ID, Client: quoted.Src.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		return e, found
	}
	pe, hasPE := persisted()

	orig := append([]byte(nil), row.in...)
	before := f.state(st)
	verdict, out := f.run(append([]byte(nil), row.in...))
	after := f.state(st)
	if verdict != row.verdict {
		t.Fatalf("verdict %d, want %d", verdict, row.verdict)
	}
	want := orig
	if row.verdict == xdpTX {
		want = append(append(append([]byte(nil), wantMAC...), lbMAC...), orig[12:]...)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output:\n got %x\nwant %x", out, want)
	}
	checkStateChange(t, before, after, row.counters)
	entry2, tracked2 := lookup()
	if pe2, hasPE2 := persisted(); pe2 != pe || hasPE2 != hasPE {
		t.Errorf("persistence entry of %s: %+v (%v), was %+v (%v)", quoted.Src.Addr(), pe2, hasPE2, pe, hasPE)
	}
	if tracked2 != tracked || entry2 != entry {
		t.Errorf("connection-table entry of %s: %+v (%v), was %+v (%v)", quoted, entry2, tracked2, entry, tracked)
	}
	if row.verdict == xdpTX && row.track == nil {
		// A new flow with that tuple goes where the error went.
		syn := build(t, frame.Spec{Src: quoted.Src, Dst: quoted.Dst, UDP: quoted.Proto == lb.UDP, SYN: quoted.Proto == lb.TCP})
		v, out := f.run(syn)
		if v != xdpTX || !bytes.Equal(out[:6], wantMAC) {
			t.Errorf("new flow %s: verdict %d to %x, the error went to %s", quoted, v, out[:6], wantMAC)
		}
	}
}

// quotedFlow is the flow (client -> VIP) of the quote in row's frame, for
// a row whose quote holds the ports; the zero key otherwise.
func quotedFlow(t *testing.T, row icmpErrRow) lb.FlowKey {
	t.Helper()
	if row.track != nil {
		return *row.track
	}
	in := row.in
	if len(in) < 14 {
		return lb.FlowKey{}
	}
	var q []byte
	switch binary.BigEndian.Uint16(in[12:]) {
	case uint16(layers.EthernetTypeIPv4):
		if len(in) < 14+20+8 {
			return lb.FlowKey{}
		}
		q = in[14+int(in[14]&0xf)*4+8:]
	case uint16(layers.EthernetTypeIPv6):
		if len(in) < 14+40+8 {
			return lb.FlowKey{}
		}
		q = in[14+40+8:]
	}
	if len(q) < 1 {
		return lb.FlowKey{}
	}
	var src, dst netip.Addr
	var l4 []byte
	switch q[0] >> 4 {
	case 4:
		hl := int(q[0]&0xf) * 4
		if hl < 20 || len(q) < hl+8 {
			return lb.FlowKey{}
		}
		src, _ = netip.AddrFromSlice(q[12:16])
		dst, _ = netip.AddrFromSlice(q[16:20])
		l4 = q[hl:]
	case 6:
		if len(q) < 48 {
			return lb.FlowKey{}
		}
		src, _ = netip.AddrFromSlice(q[8:24])
		dst, _ = netip.AddrFromSlice(q[24:40])
		l4 = q[40:]
	default:
		return lb.FlowKey{}
	}
	proto, p := lb.TCP, q[9]
	if q[0]>>4 == 6 {
		p = q[6]
	}
	if p == 17 {
		proto = lb.UDP
	}
	return lb.FlowKey{
		Src:   netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])),
		Dst:   netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:])),
		Proto: proto,
	}
}

// TestICMPErrorPersistence: an ICMP error quoting an untracked flow of a
// maglev service with persistence goes to the client's persistent backend,
// as a new flow of that client does, not to the flow's Maglev slot; the
// persistence entry is read, not refreshed (checkICMPError).
func TestICMPErrorPersistence(t *testing.T) {
	f := newFixture(t)
	p4 := svcKey("198.18.1.6:80/tcp")
	f.set(lb.Service{Key: p4, Persistence: 300 * time.Second, Backends: backends(p4.VIP, 3)})
	st, _ := f.b.Service(p4)
	first := lb.FlowKey{Src: netip.AddrPortFrom(errClient4, 1000), Dst: netip.AddrPortFrom(p4.VIP, 80), Proto: lb.TCP}
	if v, _ := f.run(build(t, frame.Spec{Src: first.Src, Dst: first.Dst, SYN: true})); v != xdpTX {
		t.Fatalf("first flow: verdict %d", v)
	}
	quoted := first
	quoted.Src = netip.AddrPortFrom(errClient4, 2000)
	slot, _ := f.expectedBackend(p4, quoted)
	// Pin the client to a backend its new flow's slot does not name.
	pk := maps.PersistKey{ServiceID: st.ID, Client: errClient4}
	pe, found, err := f.b.Persistence().Lookup(pk)
	if err != nil || !found {
		t.Fatalf("no persistence entry (%v)", err)
	}
	for _, be := range st.Backends {
		if be.ID != slot {
			pe.BackendID = be.ID
			break
		}
	}
	if err := f.b.Persistence().Put(pk, pe); err != nil {
		t.Fatal(err)
	}
	be, err := f.b.BackendMap().Get(pe.BackendID)
	if err != nil {
		t.Fatal(err)
	}
	f.checkICMPError(t, icmpErrRow{name: "persistent", in: fragNeeded(t, p4.VIP, replyQuote(t, quoted, 28, nil)), svc: p4,
		verdict: xdpTX, counters: map[string]uint64{"IcmpErrorsForwarded": 1}, wantMAC: be.MAC})
}

// TestICMPForwardSwitch: with forwarding off (icmp_forward: false), an
// ICMP error quoting a tracked flow goes to the kernel as not for a
// service, as it did before xlb forwarded them; on again, it reaches the
// flow's backend.
func TestICMPForwardSwitch(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		svc  lb.ServiceKey
		make func(testing.TB, netip.Addr, []byte) []byte
		n    int
	}{{web4, fragNeeded, 28}, {web6, packetTooBig, 48}} {
		flow := lb.FlowKey{Src: netip.AddrPortFrom(errClient4, 31000), Dst: netip.AddrPortFrom(c.svc.VIP, c.svc.Port), Proto: c.svc.Proto}
		if c.svc.VIP.Is6() {
			flow.Src = netip.AddrPortFrom(errClient6, 31000)
		}
		in := c.make(t, c.svc.VIP, replyQuote(t, flow, c.n, nil))
		for _, off := range []bool{true, false, true} {
			if err := f.b.SetICMP(lb.ICMP{NoForward: off}); err != nil {
				t.Fatal(err)
			}
			if got, err := f.b.ICMP(); err != nil || got != (lb.ICMP{NoForward: off}) {
				t.Fatalf("switches %+v (%v) after setting forwarding off=%v", got, err, off)
			}
			row := icmpErrRow{name: fmt.Sprintf("%s off=%v", c.svc, off), in: in, svc: c.svc, track: &flow, verdict: xdpTX, counters: map[string]uint64{"IcmpErrorsForwarded": 1}}
			if off {
				row.verdict, row.counters = xdpPass, map[string]uint64{"PassNotVip": 1}
			}
			t.Run(row.name, func(t *testing.T) { f.checkICMPError(t, row) })
		}
	}
}
