package loader_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// hostile is one row of the hostile-frame table: a frame built from spec
// (whose flow is a fresh client's), cut to cut bytes when cut is above 0,
// and the verdict it must get. A passed frame must leave the program
// unchanged with pass_malformed counted and nothing else: no
// connection-table or persistence entry, no new or active flow, no
// service or backend counter. A forwarded one is a new flow of svc.
type hostile struct {
	name    string
	spec    frame.Spec
	cut     int
	svc     lb.ServiceKey
	verdict uint32
}

// hostileBase is a valid frame the table cuts and lies about.
type hostileBase struct {
	name string
	spec frame.Spec
	svc  lb.ServiceKey
}

// ipEnd is where the IP packet of a frame built from s ends.
func ipEnd(tb testing.TB, s frame.Spec, full []byte) int {
	tb.Helper()
	off := 14 + 4*len(s.VLANs)
	if s.Dst.Addr().Is4() {
		return off + int(full[off+2])<<8 + int(full[off+3])
	}
	return off + 40 + int(full[off+4])<<8 + int(full[off+5])
}

func u8(v uint8) *uint8    { return &v }
func u16(v uint16) *uint16 { return &v }

// hostileRows is the table: every truncation of every base, then lying
// length fields, then valid frames the checks must not refuse (padding
// after a short IP packet, SYN options, a UDP length short of the IP
// payload).
func hostileRows(tb testing.TB) []hostile {
	tb.Helper()
	vip4, vip6 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:2:0:1::1")
	tcp4 := frame.Spec{Dst: netip.AddrPortFrom(vip4, 80), SYN: true}
	udp4 := frame.Spec{Dst: netip.AddrPortFrom(vip4, 53), UDP: true, Payload: []byte("query")}
	tcp6 := frame.Spec{Dst: netip.AddrPortFrom(vip6, 80), SYN: true}
	udp6 := frame.Spec{Dst: netip.AddrPortFrom(vip6, 53), UDP: true, Payload: []byte("query")}
	dot1q := []layers.EthernetType{layers.EthernetTypeDot1Q}
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	w := func(s frame.Spec, mod func(*frame.Spec)) frame.Spec { mod(&s); return s }
	lie := func(s frame.Spec, l frame.Lie) frame.Spec { s.Lie = &l; return s }

	bases := []hostileBase{
		{"tcp4 syn", tcp4, web4},
		{"tcp4 syn options", w(tcp4, func(s *frame.Spec) { s.TCPOptions = true }), web4},
		{"tcp4 ip options", w(tcp4, func(s *frame.Spec) { s.Options = 3; s.Payload = []byte("hello") }), web4},
		{"tcp4 802.1Q", w(tcp4, func(s *frame.Spec) { s.VLANs = dot1q }), web4},
		{"udp4", udp4, dns4},
		{"udp4 QinQ", w(udp4, func(s *frame.Spec) { s.VLANs = qinq }), dns4},
		{"tcp6 syn", tcp6, web6},
		{"tcp6 syn options", w(tcp6, func(s *frame.Spec) { s.TCPOptions = true }), web6},
		{"tcp6 QinQ", w(tcp6, func(s *frame.Spec) { s.VLANs = qinq; s.SYN = false; s.Payload = []byte("hello") }), web6},
		{"udp6", udp6, dns6},
		{"udp6 802.1Q", w(udp6, func(s *frame.Spec) { s.VLANs = dot1q }), dns6},
	}
	var rows []hostile
	// Every cut from the 14 bytes BPF_PROG_TEST_RUN needs to one short
	// of the whole frame: malformed while the cut is inside the IP
	// packet, forwarded once only Ethernet padding is cut.
	for _, b := range bases {
		full := build(tb, w(b.spec, func(s *frame.Spec) { s.Src = netip.AddrPortFrom(b.spec.Dst.Addr(), 1) }))
		end := ipEnd(tb, b.spec, full)
		for n := 14; n < len(full); n++ {
			v := uint32(xdpPass)
			if n >= end {
				v = xdpTX
			}
			rows = append(rows, hostile{fmt.Sprintf("%s cut %d of %d", b.name, n, len(full)), b.spec, n, b.svc, v})
		}
		rows = append(rows, hostile{b.name + " whole", b.spec, 0, b.svc, xdpTX})
	}

	pass := func(name string, s frame.Spec, svc lb.ServiceKey) {
		rows = append(rows, hostile{name, s, 0, svc, xdpPass})
	}
	tx := func(name string, s frame.Spec, svc lb.ServiceKey) {
		rows = append(rows, hostile{name, s, 0, svc, xdpTX})
	}

	// IPv4 total length. tcp4 is 60 bytes: 40 of IP, 6 of padding.
	for _, n := range []uint16{0, 1, 19} {
		pass(fmt.Sprintf("ipv4 tot_len %d below the header", n), lie(tcp4, frame.Lie{IPLen: u16(n), FixIPChecksum: true}), web4)
	}
	for n := uint16(20); n < 40; n++ {
		pass(fmt.Sprintf("ipv4 tot_len %d ends inside the tcp header", n), lie(tcp4, frame.Lie{IPLen: u16(n), FixIPChecksum: true}), web4)
	}
	tx("ipv4 tot_len 46 counts the padding (the whole frame)", lie(tcp4, frame.Lie{IPLen: u16(46), FixIPChecksum: true}), web4)
	pass("ipv4 tot_len 47 one past the frame", lie(tcp4, frame.Lie{IPLen: u16(47), FixIPChecksum: true}), web4)
	pass("ipv4 tot_len 65535", lie(tcp4, frame.Lie{IPLen: u16(65535), FixIPChecksum: true}), web4)
	pass("ipv4 tot_len lies, checksum as built", lie(tcp4, frame.Lie{IPLen: u16(30)}), web4)
	opts := w(tcp4, func(s *frame.Spec) { s.Options = 3 })
	pass("ipv4 options tot_len 31 below the 32-byte header", lie(opts, frame.Lie{IPLen: u16(31), FixIPChecksum: true}), web4)
	pass("ipv4 options tot_len 51 ends inside the tcp header", lie(opts, frame.Lie{IPLen: u16(51), FixIPChecksum: true}), web4)
	for n := uint16(20); n < 28; n++ {
		pass(fmt.Sprintf("ipv4 tot_len %d ends inside the udp header", n), lie(udp4, frame.Lie{IPLen: u16(n), FixIPChecksum: true}), dns4)
	}
	pass("ipv4 tot_len 28 shorter than the udp length 13", lie(udp4, frame.Lie{IPLen: u16(28), FixIPChecksum: true}), dns4)
	pass("ipv4 802.1Q tot_len 39", lie(w(tcp4, func(s *frame.Spec) { s.VLANs = dot1q }), frame.Lie{IPLen: u16(39), FixIPChecksum: true}), web4)

	// IHL: below 5, beyond the total length, beyond the frame.
	for ihl := uint8(0); ihl <= 15; ihl++ {
		if ihl == 5 {
			continue
		}
		pass(fmt.Sprintf("ipv4 ihl %d", ihl), lie(tcp4, frame.Lie{IHL: u8(ihl), FixIPChecksum: true}), web4)
	}
	pass("ipv4 ihl 4 with a valid tcp header 4 bytes on", lie(w(tcp4, func(s *frame.Spec) { s.Options = 1 }), frame.Lie{IHL: u8(4), FixIPChecksum: true}), web4)

	// IPv6 payload length. tcp6 is 74 bytes: 40 + 20 of IP, no padding.
	for n := uint16(0); n < 20; n++ {
		pass(fmt.Sprintf("ipv6 payload_len %d ends inside the tcp header", n), lie(tcp6, frame.Lie{IPLen: u16(n)}), web6)
	}
	pass("ipv6 payload_len 21 one past the frame", lie(tcp6, frame.Lie{IPLen: u16(21)}), web6)
	pass("ipv6 payload_len 65535", lie(tcp6, frame.Lie{IPLen: u16(65535)}), web6)
	trailer6 := w(tcp6, func(s *frame.Spec) { s.Trailer = 6 })
	tx("ipv6 payload_len 26 counts a 6-byte trailer", lie(trailer6, frame.Lie{IPLen: u16(26)}), web6)
	pass("ipv6 payload_len 27 one past a 6-byte trailer", lie(trailer6, frame.Lie{IPLen: u16(27)}), web6)
	for n := uint16(0); n < 8; n++ {
		pass(fmt.Sprintf("ipv6 payload_len %d ends inside the udp header", n), lie(udp6, frame.Lie{IPLen: u16(n)}), dns6)
	}
	pass("ipv6 payload_len 8 shorter than the udp length 13", lie(udp6, frame.Lie{IPLen: u16(8)}), dns6)
	pass("ipv6 QinQ payload_len 19", lie(w(tcp6, func(s *frame.Spec) { s.VLANs = qinq }), frame.Lie{IPLen: u16(19)}), web6)

	// TCP data offset: below 5, beyond the IP packet (but inside the
	// frame's padding), beyond the frame.
	hello := w(tcp4, func(s *frame.Spec) { s.SYN = false; s.Payload = []byte("hello!!!") })
	for _, c := range []struct {
		s   frame.Spec
		svc lb.ServiceKey
	}{{tcp4, web4}, {tcp6, web6}} {
		fam := "tcp4"
		if c.svc == web6 {
			fam = "tcp6"
		}
		for d := uint8(0); d < 5; d++ {
			pass(fmt.Sprintf("%s doff %d", fam, d), lie(c.s, frame.Lie{DataOffset: u8(d)}), c.svc)
		}
		pass(fam+" doff 6 beyond the ip packet", lie(c.s, frame.Lie{DataOffset: u8(6)}), c.svc)
		pass(fam+" doff 15 beyond the frame", lie(c.s, frame.Lie{DataOffset: u8(15)}), c.svc)
	}
	tx("tcp4 doff 7 takes the whole 8-byte payload as options", lie(hello, frame.Lie{DataOffset: u8(7)}), web4)
	pass("tcp4 doff 8 one word past the ip packet", lie(hello, frame.Lie{DataOffset: u8(8)}), web4)
	pass("tcp4 syn options doff 11", lie(w(tcp4, func(s *frame.Spec) { s.TCPOptions = true }), frame.Lie{DataOffset: u8(11)}), web4)
	pass("tcp6 syn options doff 11", lie(w(tcp6, func(s *frame.Spec) { s.TCPOptions = true }), frame.Lie{DataOffset: u8(11)}), web6)

	// UDP length: below 8, beyond the IP payload (13 bytes).
	for _, c := range []struct {
		s   frame.Spec
		svc lb.ServiceKey
	}{{udp4, dns4}, {udp6, dns6}} {
		fam := "udp4"
		if c.svc == dns6 {
			fam = "udp6"
		}
		for n := uint16(0); n < 8; n++ {
			pass(fmt.Sprintf("%s len %d", fam, n), lie(c.s, frame.Lie{UDPLen: u16(n)}), c.svc)
		}
		pass(fam+" len 14 one past the ip payload", lie(c.s, frame.Lie{UDPLen: u16(14)}), c.svc)
		pass(fam+" len 65535", lie(c.s, frame.Lie{UDPLen: u16(65535)}), c.svc)
		tx(fam+" len 8 short of the ip payload", lie(c.s, frame.Lie{UDPLen: u16(8)}), c.svc)
	}

	// Valid frames with bytes past the IP packet: the IP lengths rule,
	// not the frame's.
	tx("tcp4 syn padded to 60 bytes", tcp4, web4)
	tx("udp4 1-byte payload padded to 60 bytes", w(udp4, func(s *frame.Spec) { s.Payload = []byte("q") }), dns4)
	tx("udp4 empty padded to 60 bytes", w(udp4, func(s *frame.Spec) { s.Payload = nil }), dns4)
	tx("tcp4 100-byte trailer", w(hello, func(s *frame.Spec) { s.Trailer = 100 }), web4)
	tx("tcp6 6-byte trailer", trailer6, web6)
	tx("udp6 QinQ 40-byte trailer", w(udp6, func(s *frame.Spec) { s.VLANs = qinq; s.Trailer = 40 }), dns6)
	tx("tcp4 syn options", w(tcp4, func(s *frame.Spec) { s.TCPOptions = true }), web4)
	tx("tcp6 syn options", w(tcp6, func(s *frame.Spec) { s.TCPOptions = true }), web6)
	return rows
}

// TestHostileFrames runs the hostile-frame table against the real
// object, with persistence on so that a frame that wrongly reached the
// scheduler would leave a persistence entry behind. Every row is a fresh
// client, so a forwarded frame is a new flow and a passed one can be
// checked for state by its own keys.
func TestHostileFrames(t *testing.T) {
	f := newFixture(t)
	for _, k := range []lb.ServiceKey{web4, dns4, web6, dns6} {
		f.set(lb.Service{Key: k, Persistence: 300 * time.Second, Backends: backends(k.VIP, 3)})
	}
	for i, row := range hostileRows(t) {
		t.Run(row.name, func(t *testing.T) {
			// A fresh client address and port per row.
			src := netip.AddrFrom4([4]byte{198, 18, 64 + byte(i/250), byte(1 + i%250)})
			if row.spec.Dst.Addr().Is6() {
				src = netip.MustParseAddr(fmt.Sprintf("2001:2::1:%x", i+1))
			}
			row.spec.Src = netip.AddrPortFrom(src, uint16(10000+i))
			in := build(t, row.spec)
			if row.cut > 0 {
				in = in[:row.cut]
			}
			orig := append([]byte(nil), in...)
			flow := flowOf(row.spec)
			st, _ := f.b.Service(row.svc)

			before := f.state(st)
			verdict, out := f.run(in)
			after := f.state(st)

			if verdict != row.verdict {
				t.Fatalf("verdict %d, want %d", verdict, row.verdict)
			}
			// A new TCP flow's first packet is recorded in the
			// half-open table, a UDP one in the connection table.
			bareSYN := flow.Proto == lb.TCP
			fl, tracked, err := f.b.Conntrack().Lookup(flow)
			if err != nil {
				t.Fatal(err)
			}
			hfl, halfOpen, err := f.b.HalfOpen().Lookup(flow)
			if err != nil {
				t.Fatal(err)
			}
			pk := maps.PersistKey{ServiceID: st.ID, Client: src}
			_, persisted, err := f.b.Persistence().Lookup(pk)
			if err != nil {
				t.Fatal(err)
			}
			want := hostileState{global: map[string]uint64{"RxPackets": 1, "PassMalformed": 1}}
			wantOut := orig
			if row.verdict == xdpTX {
				id, be := f.expectedBackend(row.svc, flow)
				wantOut = append(append(append([]byte(nil), be.MAC...), lbMAC...), orig[12:]...)
				want = hostileState{
					global:   map[string]uint64{"RxPackets": 1, "TxPackets": 1, "NewFlows": 1},
					svc:      maps.ServiceCounters{Packets: 1, Bytes: uint64(len(orig)), NewFlows: 1},
					backends: maps.BackendCounters{Packets: 1, Bytes: uint64(len(orig)), NewFlows: 1},
					active:   1,
					flows:    1,
				}
				if bareSYN {
					want.global["HalfopenNew"] = 1
					want.active, want.flows = 0, 0
					fl, tracked = hfl, halfOpen
				}
				if !tracked || fl.BackendID != id {
					t.Errorf("connection-table (half-open: %v) entry %+v (found %v), want backend %d", bareSYN, fl, tracked, id)
				}
				if !persisted {
					t.Errorf("no persistence entry for %s", src)
				}
			} else {
				if tracked || halfOpen {
					t.Errorf("connection-table entry %+v (half-open %+v) for a passed frame", fl, hfl)
				}
				if persisted {
					t.Errorf("persistence entry for %s after a passed frame", src)
				}
			}
			if !bytes.Equal(out, wantOut) {
				t.Errorf("output:\n got %x\nwant %x", out, wantOut)
			}
			if got := after.minus(before); !reflect.DeepEqual(got, want) {
				t.Errorf("state changed by %+v, want %+v", got, want)
			}
		})
	}
}

// hostileState is what a frame may change: the global counters (as
// deltas by name), the service's counters, the sum of its backends'
// counters and active flows, and the connection-table size.
type hostileState struct {
	global   map[string]uint64
	raw      maps.GlobalCounters
	svc      maps.ServiceCounters
	backends maps.BackendCounters
	active   int64
	flows    int
}

// state reads what a frame may change, for service st.
func (f *fixture) state(st loader.ServiceStatus) hostileState {
	f.t.Helper()
	s := hostileState{raw: f.counters()}
	var err error
	if s.svc, err = f.b.Stats().Service(st.ID); err != nil {
		f.t.Fatal(err)
	}
	for _, be := range st.Backends {
		c, err := f.b.Stats().Backend(be.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		s.backends.Packets += c.Packets
		s.backends.Bytes += c.Bytes
		s.backends.NewFlows += c.NewFlows
		a, err := f.b.Active().Get(be.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		s.active += a
	}
	if s.flows, err = f.b.Conntrack().Count(); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (s hostileState) minus(o hostileState) hostileState {
	return hostileState{
		global: delta(o.raw, s.raw),
		svc: maps.ServiceCounters{Packets: s.svc.Packets - o.svc.Packets, Bytes: s.svc.Bytes - o.svc.Bytes,
			NewFlows: s.svc.NewFlows - o.svc.NewFlows, DropNoBackend: s.svc.DropNoBackend - o.svc.DropNoBackend},
		backends: maps.BackendCounters{Packets: s.backends.Packets - o.backends.Packets,
			Bytes: s.backends.Bytes - o.backends.Bytes, NewFlows: s.backends.NewFlows - o.backends.NewFlows},
		active: s.active - o.active,
		flows:  s.flows - o.flows,
	}
}

// checkStateChange fails unless the only change from before to after is
// one received frame plus the global counters given.
func checkStateChange(t *testing.T, before, after hostileState, counters map[string]uint64) {
	t.Helper()
	want := hostileState{global: map[string]uint64{"RxPackets": 1}}
	for k, v := range counters {
		want.global[k] = v
	}
	if got := after.minus(before); !reflect.DeepEqual(got, want) {
		t.Errorf("state changed by %+v, want %+v", got, want)
	}
}
