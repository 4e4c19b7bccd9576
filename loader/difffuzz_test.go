package loader_test

// FuzzDataPlane runs the real program (BPF_PROG_TEST_RUN) and the model
// (model_test.go) on the same frames and the same map state, and fails on
// any difference: verdict, output bytes, global, service and backend
// counters, the entries of the frame's keys (connection table,
// persistence, fragments), active-flow counts and the round-robin cursor.
//
// An input is control bytes then payload (see decodeInput): they choose a
// kind of frame (TCP, UDP, ICMP echo, ICMP error, first or later
// fragment, or the raw bytes as a frame), its service, client, VLAN tags,
// IPv4 options or IPv6 extension headers, TTL, destination MAC, one
// mutation (a lying length field, a cut, a flipped byte, a trailer), and
// the state of the frame's keys before the run. The seed corpus is under
// testdata/fuzz/FuzzDataPlane; XLB_WRITE_SEEDS=1 go test -run
// TestWriteDataPlaneSeeds ./loader/ rewrites it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// Sizes of the fuzzed data plane.
const (
	fzMaxServices = 32
	fzMaxBackends = 256
	fzTableSize   = 251
	// fzBogusID is a backend id outside the backends array.
	fzBogusID = 5000
	// ctlLen control bytes lead every input.
	ctlLen = 18
)

// Idle timeouts while fuzzing; the state's ages keep seconds away from
// them.
var fzTimeouts = bpf.Config{TcpTimeoutNs: 60 * secondNs, TcpFinTimeoutNs: 10 * secondNs, UdpTimeoutNs: 30 * secondNs}

// Ages (ns before the run) an entry can be given: fresh, past the refresh
// granularity, past the closing timeout, past UDP's, past all, and in the
// future (stamped by another CPU after our clock read).
var (
	flowAges    = []int64{0, 3e9, 20e9, 45e9, 1000e9, -5e9}
	persistAges = []int64{0, 3e9, 100e9, -5e9}
	fragAges    = []int64{0, 1e9, 10e9, -2e9}
	halfAges    = []int64{0, 3e9, 20e9, -5e9}
)

func fzMAC(svc, i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, 0, byte(svc), byte(0x10 + i)}
}

// fzServices is the fixed service set: every scheduler, both families,
// both protocols, persistence, drained, failing and down backends, an
// empty service, several services on one VIP, and VIPs whose only service
// of a protocol is source-hash.
func fzServices() []lb.Service {
	mk := func(n int, key string, sched lb.Scheduler, persist time.Duration, bes ...lb.Backend) lb.Service {
		k := svcKey(key)
		for i := range bes {
			a := netip.MustParseAddr(fmt.Sprintf("198.18.%d.%d", 10+n, 10+i))
			if k.VIP.Is6() {
				a = netip.MustParseAddr(fmt.Sprintf("2001:2:%x::%x", 0x10+n, 0x10+i))
			}
			bes[i].Addr, bes[i].MAC = a, fzMAC(n, i)
		}
		return lb.Service{Key: k, Scheduler: sched, Persistence: persist, Backends: bes}
	}
	w := func(weight uint32) lb.Backend { return lb.Backend{Weight: weight} }
	down := lb.Backend{Weight: 1, Down: true}
	failing := lb.Backend{Weight: 0, Failing: true} // drained and failing: keeps its flows
	return []lb.Service{
		mk(1, "198.18.1.1:80/tcp", lb.Maglev, 0, w(1), w(2), w(0), down),
		mk(2, "198.18.1.1:53/udp", lb.RoundRobin, 0, w(1), w(2), w(1), failing),
		mk(3, "198.18.1.1:443/tcp", lb.SourceHash, 30*time.Second, w(1), w(1), failing, w(2)),
		mk(4, "198.18.1.1:8080/tcp", lb.LeastConn, 0, w(1), w(2), w(3), down),
		mk(5, "198.18.1.2:80/tcp", lb.Maglev, 0),
		mk(6, "198.18.1.2:53/udp", lb.SourceHash, 0, w(1), w(1), w(1)),
		mk(7, "198.18.1.3:80/tcp", lb.RoundRobin, 30*time.Second, w(1), w(3), w(0)),
		mk(8, "198.18.1.3:5000/udp", lb.LeastConn, 30*time.Second, w(1), w(1), failing),
		mk(9, "[2001:2:0:1::1]:80/tcp", lb.Maglev, 0, w(1), w(1), w(1), down),
		mk(10, "[2001:2:0:1::1]:53/udp", lb.Maglev, 30*time.Second, w(1), w(2), failing),
		mk(11, "[2001:2:0:1::1]:443/tcp", lb.SourceHash, 0, w(1), w(2), w(0)),
		mk(12, "[2001:2:0:1::1]:81/tcp", lb.RoundRobin, 0, w(2), w(1), down),
		mk(13, "[2001:2:0:1::1]:8080/udp", lb.LeastConn, 0, w(1), w(2), w(0)),
		mk(14, "[2001:2:0:1::2]:80/tcp", lb.SourceHash, 30*time.Second, w(1), w(1), w(1)),
		mk(15, "[2001:2:0:1::2]:53/udp", lb.Maglev, 0),
	}
}

// fzExtraTargets are frames' destinations that are no service: a non-VIP
// of each family and an unknown port on a VIP.
var fzExtraTargets = []lb.ServiceKey{svcKey("198.18.9.9:80/tcp"), svcKey("[2001:2:9::9]:53/udp"), svcKey("198.18.1.1:9999/udp"), svcKey("[2001:2:0:1::1]:9999/tcp")}

// harness is one loaded data plane with the fixed services, and the static
// part of its state (services, VIPs, backends, tables) read once.
type harness struct {
	b       *loader.Balancer
	targets []lb.ServiceKey
	svcs    map[bpf.SvcKey]bpf.Service
	byKey   map[lb.ServiceKey]uint32 // service id
	beIDs   map[uint32][]uint32      // service id -> its backend ids, in order
	vips    map[bpf.VipKey]bool
	bes     []bpf.Backend
	tables  map[uint32][]uint32
	maps    map[string]*ebpf.Map
	ncpu    int
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	priv.Require(tb)
	b, err := loader.Open(loader.Options{MAC: lbMAC, MaxServices: fzMaxServices, MaxBackends: fzMaxBackends,
		ConntrackSize: 1 << 14, PersistSize: 1 << 12, HalfOpenSize: 1 << 12, TableSize: fzTableSize})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("close balancer: %v", err)
		}
	})
	h := &harness{b: b, svcs: map[bpf.SvcKey]bpf.Service{}, byKey: map[lb.ServiceKey]uint32{},
		beIDs: map[uint32][]uint32{}, vips: map[bpf.VipKey]bool{}, tables: map[uint32][]uint32{}, maps: map[string]*ebpf.Map{}}
	for _, s := range fzServices() {
		if err := b.SetService(s); err != nil {
			tb.Fatalf("set service %s: %v", s.Key, err)
		}
		h.targets = append(h.targets, s.Key)
	}
	h.targets = append(h.targets, fzExtraTargets...)
	for _, n := range []string{bpf.MapServices, bpf.MapVips, bpf.MapBackends, bpf.MapConntrack, bpf.MapPersist,
		bpf.MapFrags, bpf.MapActive, bpf.MapRRCursor, bpf.MapConfig, bpf.MapHalfOpen} {
		h.maps[n] = loader.MapOf(b, n)
	}
	var sk bpf.SvcKey
	var sv bpf.Service
	for it := h.maps[bpf.MapServices].Iterate(); it.Next(&sk, &sv); {
		h.svcs[sk] = sv
	}
	var vk bpf.VipKey
	var n bpf.Vip
	for it := h.maps[bpf.MapVips].Iterate(); it.Next(&vk, &n); {
		h.vips[vk] = true
	}
	h.bes = make([]bpf.Backend, fzMaxBackends)
	for id := range h.bes {
		if err := h.maps[bpf.MapBackends].Lookup(uint32(id), &h.bes[id]); err != nil {
			tb.Fatal(err)
		}
	}
	for _, st := range b.Services() {
		h.byKey[st.Key] = st.ID
		t, err := b.Tables().Get(st.ID)
		if err != nil {
			tb.Fatal(err)
		}
		h.tables[st.ID] = t
		// Backend ids in the order the service lists them (fzMAC's index).
		ids := make([]uint32, len(st.Backends))
		for _, be := range st.Backends {
			ids[int(be.MAC[5])-0x10] = be.ID
		}
		h.beIDs[st.ID] = ids
	}
	if len(h.svcs) != len(fzServices()) || len(h.byKey) != len(h.svcs) {
		tb.Fatalf("%d services in the map, %d installed", len(h.svcs), len(h.byKey))
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	h.ncpu = cpus
	return h
}

// coarseNow is the program's clock (bpf_ktime_get_coarse_ns).
func coarseNow(tb testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}

// liveState is modelState over the harness's maps.
type liveState struct {
	h  *harness
	tb testing.TB
}

func (s liveState) service(k bpf.SvcKey) (bpf.Service, bool) { v, ok := s.h.svcs[k]; return v, ok }
func (s liveState) services() map[bpf.SvcKey]bpf.Service     { return s.h.svcs }
func (s liveState) isVIP(a [4]uint32, fam uint8) bool {
	return s.h.vips[bpf.VipKey{Addr: a, Family: fam}]
}
func (s liveState) backend(id uint32) (bpf.Backend, bool) {
	if id >= uint32(len(s.h.bes)) {
		return bpf.Backend{}, false
	}
	return s.h.bes[id], true
}
func (s liveState) table(id uint32) []uint32 { return s.h.tables[id] }
func (s liveState) tableSize() uint32        { return fzTableSize }
func (s liveState) ifaceMAC() [6]byte        { return [6]byte(lbMAC) }

func lookup[K, V any](tb testing.TB, m *ebpf.Map, k K) (V, bool) {
	tb.Helper()
	var v V
	err := m.Lookup(&k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	return v, true
}

func (s liveState) flow(k bpf.FlowKey) (bpf.Flow, bool) {
	return lookup[bpf.FlowKey, bpf.Flow](s.tb, s.h.maps[bpf.MapConntrack], k)
}
func (s liveState) halfOpen(k bpf.FlowKey) (bpf.Flow, bool) {
	return lookup[bpf.FlowKey, bpf.Flow](s.tb, s.h.maps[bpf.MapHalfOpen], k)
}
func (s liveState) persist(k bpf.PersistKey) (bpf.PersistEntry, bool) {
	return lookup[bpf.PersistKey, bpf.PersistEntry](s.tb, s.h.maps[bpf.MapPersist], k)
}
func (s liveState) frag(k bpf.FragKey) (bpf.FragEntry, bool) {
	return lookup[bpf.FragKey, bpf.FragEntry](s.tb, s.h.maps[bpf.MapFrags], k)
}
func (s liveState) active(id uint32) (int64, bool) {
	if id >= fzMaxBackends {
		return 0, false
	}
	v, _ := lookup[uint32, int64](s.tb, s.h.maps[bpf.MapActive], id)
	return v, true
}
func (s liveState) config() bpf.Config {
	v, _ := lookup[uint32, bpf.Config](s.tb, s.h.maps[bpf.MapConfig], 0)
	return v
}

// rrCursor: the harness gives every CPU the same cursor before a run.
func (s liveState) rrCursor(id uint32) uint32 { return s.h.cursors(s.tb, id)[0] }

func (h *harness) cursors(tb testing.TB, id uint32) []uint32 {
	tb.Helper()
	v := make([]uint32, h.ncpu)
	if err := h.maps[bpf.MapRRCursor].Lookup(id, &v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// input is a decoded fuzz input.
type input struct {
	kind    int // kind*
	target  int
	flags   uint8 // TCP flags; ICMP type/code choice
	client  int
	vlans   int
	vlanAlt bool
	dstMAC  int
	ttl     uint8
	ipOpts  int // IPv4 option words; IPv6: extension header pattern
	sport   uint16
	mut     uint8
	mutA    uint8
	mutB    uint8
	// State of the frame's keys before the run.
	flowSt, flowBe, persistSt, fragSt, fragBe, cursor, activeSt uint8
	// halfSt: the flow's half-open entry; cfg: the config flags.
	halfSt, cfg uint8
	payload     []byte
}

// Kinds of frame.
const (
	kindRaw = iota
	kindTCP
	kindUDP
	kindEcho
	kindError
	kindLater
	kindFirst
	kindTCP2
	numKinds
)

func decodeInput(data []byte) input {
	var c [ctlLen]byte
	copy(c[:], data)
	in := input{
		kind: int(c[0] % numKinds), target: int(c[1]), flags: c[2],
		client: int(c[3] & 3), vlans: int(c[3]>>2) & 3, vlanAlt: c[3]&0x10 != 0, dstMAC: int(c[3] >> 5),
		ttl: []uint8{64, 1, 0, 2}[c[4]&3], ipOpts: int(c[4] >> 2),
		sport: binary.BigEndian.Uint16(c[5:]), mut: c[7], mutA: c[8], mutB: c[9],
		flowSt: c[10], flowBe: c[11], persistSt: c[12], fragSt: c[13], fragBe: c[14], activeSt: c[15], halfSt: c[16], cfg: c[17],
	}
	in.cursor = c[0] >> 3 // and kind
	if len(data) > ctlLen {
		in.payload = data[ctlLen:]
	}
	return in
}

var (
	fzClients4 = []string{"198.18.0.100", "198.18.0.101", "10.1.2.3", "198.18.0.102"}
	fzClients6 = []string{"2001:2::100", "2001:2::101", "fe80::1", "::ffff:198.18.0.102"}
)

// build makes the frame of in, and the service it is aimed at (for the
// backend choices of the state).
func (h *harness) build(tb testing.TB, in input) ([]byte, lb.ServiceKey) {
	tb.Helper()
	target := h.targets[in.target%len(h.targets)]
	if in.kind == kindRaw {
		return slices.Clone(in.payload), target
	}
	v6 := target.VIP.Is6()
	client := netip.MustParseAddr(fzClients4[in.client])
	if v6 {
		client = netip.MustParseAddr(fzClients6[in.client])
	}
	client = client.Unmap() // an IPv4 frame's client; an IPv6 frame keeps ::ffff:a.b.c.d
	if v6 {
		client = netip.MustParseAddr(fzClients6[in.client])
	}
	s := frame.Spec{
		Src: netip.AddrPortFrom(client, in.sport), Dst: netip.AddrPortFrom(target.VIP, target.Port),
		UDP: target.Proto == lb.UDP, TTL: in.ttl, Payload: in.payload,
	}
	if in.ttl == 0 {
		s.TTL = 0 // frame turns 0 into 64: written below
	}
	for i := range in.vlans {
		t := layers.EthernetTypeDot1Q
		if in.vlanAlt && i == 0 {
			t = layers.EthernetTypeQinQ
		}
		s.VLANs = append(s.VLANs, t)
	}
	s.SrcMAC, s.DstMAC = clientMAC, []net.HardwareAddr{lbMAC, lbMAC, lbMAC, lbMAC, lbMAC, otherMAC,
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0x03, 0, 0, 0, 0, 0x03}}[in.dstMAC]
	if !v6 {
		s.Options = in.ipOpts % (frame.MaxOptions + 1)
	}
	var b []byte
	switch in.kind {
	case kindTCP, kindTCP2, kindUDP:
		if in.kind == kindUDP {
			s.UDP = true
		} else {
			s.UDP = false
			s.TCPOptions = in.flags&0x40 != 0 && in.flags&0x80 != 0
		}
	case kindEcho:
		s.UDP, s.ICMP = false, true
		types4, types6 := []uint8{8, 8, 8, 0, 3, 13, 8, 8}, []uint8{128, 128, 128, 129, 1, 2, 135, 128}
		typ := types4[in.flags&7]
		if v6 {
			typ = types6[in.flags&7]
		}
		s.ICMPType, s.ICMPID, s.ICMPSeq = &typ, in.sport, 7
		if in.flags&0x18 == 0x18 {
			s.ICMPCode = in.flags >> 5
		}
	case kindError:
		flow := lb.FlowKey{Src: s.Src, Dst: s.Dst, Proto: target.Proto}
		cut := []int{0, 0, 0, 0, 20, 27, 28, 40, 47, 48, 8, 1}[int(in.flags>>4)%12]
		q := replyQuote(tb, flow, cut, func(r *frame.Spec) {
			r.Payload = r.Payload[:int(in.mutB)%64]
			if !v6 {
				r.Options = int(in.flags>>2) & 3
				if in.flags&0x80 != 0 && in.flags&0x40 != 0 {
					r.FragOffset = 5
				}
			} else if in.flags&0xc0 == 0xc0 {
				r.HopByHop = true
			}
		})
		typ := []uint8{3, 3, 3, 11}[in.flags&3]
		if v6 {
			typ = []uint8{2, 1, 2, 3}[in.flags&3]
		}
		b = icmpError(tb, target.VIP, typ, in.flags>>6, 1400, q, func(r *frame.Spec) {
			r.VLANs, r.TTL, r.SrcMAC, r.DstMAC, r.Options = s.VLANs, s.TTL, s.SrcMAC, s.DstMAC, s.Options
		})
	case kindLater, kindFirst:
		if !v6 {
			s.MoreFragments = in.kind == kindFirst || in.flags&1 != 0
			if in.kind == kindLater {
				s.FragOffset = 1 + uint16(in.flags>>1)
			}
		}
	}
	if b == nil {
		b = build(tb, s)
	}
	ip := 14 + 4*len(s.VLANs)
	if in.ttl == 0 {
		if v6 {
			b[ip+7] = 0
		} else {
			b[ip+8] = 0
		}
	}
	if in.kind == kindTCP || in.kind == kindTCP2 {
		l4 := ip + 20 + 4*s.Options
		if v6 {
			l4 = ip + 40
		}
		b[l4+13] = in.flags & 0x3f // any flag combination
	}
	if v6 {
		b = insertExt(b, ip, extsOf(in))
	}
	return mutate(b, in), target
}

// extsOf is the IPv6 extension headers of in: a pattern of up to five of
// hop-by-hop, destination options, routing, fragment and AH; a fragment
// frame gets its fragment header.
func extsOf(in input) []ext {
	var hs []ext
	switch in.kind {
	case kindFirst:
		hs = append(hs, fragHdr(0, true, 0x01020304))
	case kindLater:
		hs = append(hs, fragHdr(1+uint16(in.flags>>1), in.flags&1 != 0, 0x01020304))
	}
	pat := in.ipOpts
	if pat < 8 {
		return hs // most frames have none but their fragment header
	}
	pool := []ext{opts(extHopByHop), opts(extDstOpts), routing(), fragHdr(0, false, 9), {extAH, []byte{0, 0, 0, 0, 0, 0, 0, 0}}, opts(extDstOpts)}
	n := 1 + pat%5
	for i := range n {
		hs = append([]ext{pool[(pat/(i+1)+i)%len(pool)]}, hs...)
	}
	return hs
}

// insertExt inserts extension headers after the fixed IPv6 header at ip,
// chaining next headers and growing the payload length.
func insertExt(b []byte, ip int, hs []ext) []byte {
	if len(hs) == 0 {
		return b
	}
	l4 := ip + 40
	out := append([]byte(nil), b[:l4]...)
	next := b[ip+6]
	out[ip+6] = hs[0].typ
	n := 0
	for i, h := range hs {
		body := append([]byte(nil), h.body...)
		body[0] = next
		if i+1 < len(hs) {
			body[0] = hs[i+1].typ
		}
		out = append(out, body...)
		n += len(body)
	}
	out = append(out, b[l4:]...)
	binary.BigEndian.PutUint16(out[ip+4:], be16(b[ip+4:])+uint16(n))
	return out
}

// mutate applies in's mutation: a length field that lies, a cut, a
// flipped byte, a trailer.
func mutate(b []byte, in input) []byte {
	ip := 14
	for ip+4 <= len(b) && (be16(b[ip-2:]) == ether8021Q || be16(b[ip-2:]) == ether8021A) {
		ip += 4
	}
	v := uint16(in.mutA)<<8 | uint16(in.mutB)
	switch in.mut & 7 {
	case 1: // IHL, or the IPv6 payload length
		if ip < len(b) && b[ip]>>4 == 4 {
			b[ip] = 0x40 | in.mutA&0xf
		} else if ip+6 <= len(b) {
			binary.BigEndian.PutUint16(b[ip+4:], v)
		}
	case 2: // IPv4 total length, IPv6 payload length
		if ip+6 <= len(b) {
			off := ip + 2
			if b[ip]>>4 == 6 {
				off = ip + 4
			}
			binary.BigEndian.PutUint16(b[off:], v)
		}
	case 3: // the 12th-13th L4 bytes (TCP data offset) or the UDP length
		if p := parseFrame(b); p.pass == "" && !p.icmp && !p.later {
			l4 := l4Offset(b, ip)
			if p.key.Proto == protoTCP && l4+13 <= len(b) {
				b[l4+12] = in.mutA
			} else if l4+6 <= len(b) {
				binary.BigEndian.PutUint16(b[l4+4:], v)
			}
		}
	case 4: // cut
		if len(b) > 14 {
			b = b[:14+int(v)%(len(b)-14)]
		}
	case 5: // flip a byte
		if len(b) > 0 {
			b[int(in.mutA)%len(b)] ^= in.mutB | 1
		}
	case 6: // trailer
		b = append(b, bytes.Repeat([]byte{0xa5}, int(in.mutA)%80)...)
	}
	if in.mut&0x80 != 0 && len(b) > 0 { // and a second flip
		b[int(in.mutB)%len(b)] ^= in.mutA | 0x10
	}
	return b
}

// l4Offset finds the TCP/UDP header of a well-formed frame (after IPv4
// options or IPv6 extension headers).
func l4Offset(b []byte, ip int) int {
	if b[ip]>>4 == 4 {
		return ip + int(b[ip]&0xf)*4
	}
	nh, pos := b[ip+6], ip+40
	for nh != protoTCP && nh != protoUDP && pos+2 <= len(b) {
		n := (int(b[pos+1]) + 1) * 8
		if nh == 44 {
			n = 8
		}
		nh, pos = b[pos], pos+n
	}
	return pos
}

// setup writes the state in chooses for the frame's keys: its flow's
// connection-table entry, its client's persistence entry, its datagram's
// fragment entry, the service's round-robin cursor and its backends'
// active counts; and the config.
func (h *harness) setup(tb testing.TB, in input, fr []byte, target lb.ServiceKey, now uint64) {
	tb.Helper()
	cfg := fzTimeouts
	if in.cfg&1 != 0 {
		cfg.Flags |= bpf.ConfigNoICMPEcho
	}
	if in.cfg&2 != 0 {
		cfg.Flags |= bpf.ConfigNoICMPForward
	}
	if in.cfg&0xc == 0xc {
		cfg.TcpTimeoutNs, cfg.UdpTimeoutNs, cfg.TcpFinTimeoutNs = 0, 0, 0 // never expire
	}
	put(tb, h.maps[bpf.MapConfig], uint32(0), cfg)

	p := parseFrame(fr)
	key, svcKey := p.key, target
	if p.icmp {
		if q := errorQuote(liveState{h, tb}, fr, p); q.pass == "" && !q.notError {
			key = q.key
			svcKey = lb.ServiceKey{} // found below
			for k, id := range h.byKey {
				if id == q.svc.Id {
					svcKey = k
				}
			}
		}
	} else if sv, ok := h.svcs[bpf.SvcKey{Addr: key.Dst, Port: key.Dport, Proto: key.Proto, Family: key.Family}]; ok && p.pass == "" && !p.later {
		for k, id := range h.byKey {
			if id == sv.Id {
				svcKey = k
			}
		}
	}
	sid, known := h.byKey[svcKey]
	pool := slices.Clone(h.beIDs[sid])
	other := h.beIDs[h.byKey[h.targets[(in.target+1)%len(fzServices())]]]
	if len(other) > 0 {
		pool = append(pool, other[0])
	}
	pool = append(pool, 0, fzBogusID)
	age := func(ages []int64, i uint8) uint64 { return now - uint64(ages[int(i)%len(ages)]) }

	if p.pass == "" && !p.later {
		if in.flowSt&3 == 0 {
			del(tb, h.maps[bpf.MapConntrack], key)
		} else {
			f := bpf.Flow{LastSeen: age(flowAges, in.flowSt>>2&7), BackendId: pool[int(in.flowBe&0xf)%len(pool)]}
			if in.flowSt&0x20 != 0 {
				f.Flags |= bpf.FlowClosing
			}
			if in.flowSt&0x40 != 0 {
				f.Flags |= 0x100
			}
			put(tb, h.maps[bpf.MapConntrack], key, f)
		}
		if in.halfSt&3 == 0 {
			del(tb, h.maps[bpf.MapHalfOpen], key)
		} else {
			put(tb, h.maps[bpf.MapHalfOpen], key, bpf.Flow{LastSeen: age(halfAges, in.halfSt>>2), BackendId: pool[int(in.halfSt>>4)%len(pool)]})
		}
	}
	if p.pass == "" && known { // early fragments read it too
		pk := persistKeyOf(sid, key)
		if in.persistSt&3 == 0 {
			del(tb, h.maps[bpf.MapPersist], pk)
		} else {
			put(tb, h.maps[bpf.MapPersist], pk, bpf.PersistEntry{LastSeen: age(persistAges, in.persistSt>>2), BackendId: pool[int(in.flowBe>>4)%len(pool)]})
		}
	}
	if p.frag != fragNone {
		fk := fragKeyOf(p)
		if in.fragSt&3 == 0 {
			del(tb, h.maps[bpf.MapFrags], fk)
		} else {
			id := pool[int(in.fragBe&0xf)%len(pool)]
			fe := bpf.FragEntry{Created: age(fragAges, in.fragSt>>2), BackendId: id, SvcId: sid}
			if id < fzMaxBackends && in.fragBe&0x10 == 0 {
				fe.SvcId = h.bes[id].SvcId
			}
			put(tb, h.maps[bpf.MapFrags], fk, fe)
		}
	}
	if known {
		cur := make([]uint32, h.ncpu)
		for i := range cur {
			cur[i] = uint32(in.cursor) * 11 % 260 // some past the table's end
		}
		if err := h.maps[bpf.MapRRCursor].Put(sid, cur); err != nil {
			tb.Fatal(err)
		}
		for i, id := range h.beIDs[sid] {
			a := []int64{0, 1, 5, -1}[(in.activeSt>>(2*i))&3]
			put(tb, h.maps[bpf.MapActive], id, a)
		}
	}
}

func put[K, V any](tb testing.TB, m *ebpf.Map, k K, v V) {
	tb.Helper()
	if err := m.Put(&k, &v); err != nil {
		tb.Fatalf("put %s: %v", m, err)
	}
}

func del[K any](tb testing.TB, m *ebpf.Map, k K) {
	tb.Helper()
	if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		tb.Fatalf("delete %s: %v", m, err)
	}
}

// check runs one input through the program and the model.
func (h *harness) check(t *testing.T, data []byte) {
	if len(data) > ctlLen+1500 {
		return // no longer frame; long inputs only slow minimising down
	}
	in := decodeInput(data)
	fr, target := h.build(t, in)
	if len(fr) < 14 || len(fr) > 1500 {
		return // BPF_PROG_TEST_RUN refuses less than an Ethernet header; keep frames to an MTU
	}
	h.setup(t, in, fr, target, coarseNow(t))
	h.compare(t, data, fr)
	if in.mut&0x40 != 0 {
		// A second frame of the flow over the state the first one left
		// (nothing reset): SYN then ACK, a first fragment then a later
		// one, anything else again.
		h.compare(t, data, followUp(fr, in))
	}
}

// followUp is the frame after fr in its flow: a TCP frame's next flags
// (ACK, or FIN-ACK), an IPv4 first fragment's later fragment, else fr
// again.
func followUp(fr []byte, in input) []byte {
	next := slices.Clone(fr)
	p := parseFrame(next)
	if p.pass != "" || p.icmp || p.later {
		return next
	}
	if p.key.Family == bpf.FamilyIPv4 && p.frag == fragFirst {
		binary.BigEndian.PutUint16(next[p.ip+6:], 1+uint16(in.mutB)%64) // offset, no more fragments
		return next
	}
	if p.key.Proto == protoTCP {
		next[l4Offset(next, p.ip)+13] = []byte{tcpACK, tcpACK, tcpFIN | tcpACK, tcpRST}[in.mutB&3]
	}
	return next
}

// compare runs fr through the model and the program over the maps as
// they are and fails on any difference.
func (h *harness) compare(t *testing.T, data, fr []byte) {
	t0 := coarseNow(t)
	st := liveState{h, t}
	// The model reads the state before the run.
	want := runModel(st, t0, fr)
	var preHalfV bpf.Flow
	preHalf := false
	if want.flowKey != nil {
		preHalfV, preHalf = st.halfOpen(*want.flowKey)
	}
	var preActive map[uint32]int64
	ids := h.interestingIDs(want)
	preActive = map[uint32]int64{}
	for _, id := range ids {
		preActive[id], _ = st.active(id)
	}
	var preCursor []uint32
	if want.rrSvc != nil {
		preCursor = h.cursors(t, *want.rrSvc)
	}
	beforeG, err := h.b.Stats().Global()
	if err != nil {
		t.Fatal(err)
	}
	var beforeS maps.ServiceCounters
	if want.svc != nil {
		beforeS = h.svcCounters(t, *want.svc)
	}
	beforeB := map[uint32]maps.BackendCounters{}
	for _, id := range ids {
		beforeB[id] = h.beCounters(t, id)
	}

	opts := &ebpf.RunOptions{Data: fr, DataOut: make([]byte, len(fr)+256)}
	verdict, err := h.b.Program().Run(opts)
	if err != nil {
		t.Fatalf("test run of %d bytes: %v", len(fr), err)
	}
	t1 := coarseNow(t)

	var fails []string
	fail := func(format string, a ...any) { fails = append(fails, fmt.Sprintf(format, a...)) }
	if verdict != want.verdict {
		fail("verdict %d, model %d", verdict, want.verdict)
	}
	if !bytes.Equal(opts.DataOut, want.out) {
		fail("output differs:\n got  %x\n want %x", opts.DataOut, want.out)
	}
	afterG, err := h.b.Stats().Global()
	if err != nil {
		t.Fatal(err)
	}
	if got := delta(beforeG, afterG); !mapsEqual(got, want.counters) {
		fail("counters %v, model %v", got, want.counters)
	}
	if want.svc != nil {
		got := subSvc(h.svcCounters(t, *want.svc), beforeS)
		if got != want.svcDelta {
			fail("service %d counters %+v, model %+v", *want.svc, got, want.svcDelta)
		}
	}
	for _, id := range ids {
		got := subBe(h.beCounters(t, id), beforeB[id])
		var w maps.BackendCounters
		if want.be != nil && *want.be == id {
			w = want.beDelta
		}
		if got != w {
			fail("backend %d counters %+v, model %+v", id, got, w)
		}
		a, _ := st.active(id)
		if d := a - preActive[id]; d != want.active[id] {
			fail("backend %d active %+d, model %+d", id, d, want.active[id])
		}
	}
	stamp := func(got, w uint64) bool { return got == w || (w == stampNow && got >= t0 && got <= t1) }
	if want.flowKey != nil {
		got, ok := st.flow(*want.flowKey)
		w := want.flowAfter
		if ok != (w != nil) || (ok && (got.BackendId != w.BackendId || got.Flags != w.Flags || !stamp(got.LastSeen, w.LastSeen))) {
			fail("conntrack entry %+v (%t), model %+v", got, ok, w)
		}
	}
	if want.halfChecked {
		got, ok := st.halfOpen(*want.flowKey)
		w := want.halfAfter
		if ok != (w != nil) || (ok && (got.BackendId != w.BackendId || got.Flags != w.Flags || !stamp(got.LastSeen, w.LastSeen))) {
			fail("half-open entry %+v (%t), model %+v", got, ok, w)
		}
	} else if want.flowKey != nil {
		// Nothing recorded as half-open (UDP, placed by the connection table).
		if got, ok := st.halfOpen(*want.flowKey); ok != preHalf || got != preHalfV {
			fail("half-open entry %+v (%t), was %+v (%t), model unchanged", got, ok, preHalfV, preHalf)
		}
	}
	if want.persistKey != nil {
		got, ok := st.persist(*want.persistKey)
		w := want.persistAft
		if ok != (w != nil) || (ok && (got.BackendId != w.BackendId || !stamp(got.LastSeen, w.LastSeen))) {
			fail("persistence entry %+v (%t), model %+v", got, ok, w)
		}
	}
	if want.fragKey != nil {
		got, ok := st.frag(*want.fragKey)
		w := want.fragAfter
		if ok != (w != nil) || (ok && (got.BackendId != w.BackendId || got.SvcId != w.SvcId || !stamp(got.Created, w.Created))) {
			fail("fragment entry %+v (%t), model %+v", got, ok, w)
		}
	}
	if want.rrSvc != nil {
		moved := 0
		for i, c := range h.cursors(t, *want.rrSvc) {
			if c == preCursor[i] {
				continue // another CPU's
			}
			if c != *want.rrNext {
				fail("cpu %d round-robin cursor %d, was %d, model %d", i, c, preCursor[i], *want.rrNext)
			}
			moved++
		}
		if moved != 1 { // the model's next cursor always differs from the one it read
			fail("%d round-robin cursors moved to %d, model one", moved, *want.rrNext)
		}
	}
	h.checkHashTwin(t, parseFrame(fr))
	if len(fails) > 0 {
		t.Fatalf("program and model differ on %d-byte frame %x (input %x):\n%s", len(fr), fr, data, joinLines(fails))
	}
}

// interestingIDs are the backend ids whose counters and active counts are
// checked: the frame's service's, and any the model touches.
func (h *harness) interestingIDs(o *outcome) []uint32 {
	ids := []uint32{0}
	if o.svc != nil {
		ids = append(ids, h.beIDs[*o.svc]...)
	}
	if o.be != nil {
		ids = append(ids, *o.be)
	}
	for id := range o.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// checkHashTwin checks maps.FlowHash and maps.ClientHash, the control
// plane's twin of the flow hash, against the model's, where the key maps
// to an lb.FlowKey whole.
func (h *harness) checkHashTwin(t *testing.T, p parsed) {
	if p.pass != "" || p.icmp || p.later {
		return
	}
	k := p.key
	var src, dst netip.Addr
	if k.Family == bpf.FamilyIPv4 {
		src, dst = netip.AddrFrom4([4]byte(wordBytes(k.Src)[:4])), netip.AddrFrom4([4]byte(wordBytes(k.Dst)[:4]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(wordBytes(k.Src))), netip.AddrFrom16([16]byte(wordBytes(k.Dst)))
		if dst.Is4In6() {
			return // not a VIP: service keys unmap it
		}
	}
	bo := binary.BigEndian
	var sp, dp [2]byte
	binary.NativeEndian.PutUint16(sp[:], k.Sport)
	binary.NativeEndian.PutUint16(dp[:], k.Dport)
	fk := lb.FlowKey{Src: netip.AddrPortFrom(src, bo.Uint16(sp[:])), Dst: netip.AddrPortFrom(dst, bo.Uint16(dp[:])), Proto: lb.Proto(k.Proto)}
	if got, want := maps.FlowHash(fk), flowHash(k); got != want {
		t.Errorf("maps.FlowHash(%v) = %#x, the data plane's %#x", fk, got, want)
	}
	if got, want := maps.ClientHash(fk), clientHash(k); got != want {
		t.Errorf("maps.ClientHash(%v) = %#x, the data plane's %#x", fk, got, want)
	}
}

func wordBytes(w [4]uint32) []byte {
	b := make([]byte, 16)
	for i, x := range w {
		binary.NativeEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func (h *harness) svcCounters(tb testing.TB, id uint32) maps.ServiceCounters {
	tb.Helper()
	c, err := h.b.Stats().Service(id)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (h *harness) beCounters(tb testing.TB, id uint32) maps.BackendCounters {
	tb.Helper()
	c, err := h.b.Stats().Backend(id)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func subSvc(a, b maps.ServiceCounters) maps.ServiceCounters {
	return maps.ServiceCounters{Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes,
		NewFlows: a.NewFlows - b.NewFlows, DropNoBackend: a.DropNoBackend - b.DropNoBackend}
}

func subBe(a, b maps.BackendCounters) maps.BackendCounters {
	return maps.BackendCounters{Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes, NewFlows: a.NewFlows - b.NewFlows}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func FuzzDataPlane(f *testing.F) {
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) { h.check(t, data) })
}

// seed is one control block; corpusSeeds lists the committed ones.
type seed [ctlLen]byte

func (s seed) with(i int, v byte) seed { s[i] = v; return s }

// corpusSeeds are inputs that reach each path of the program: every kind
// of frame to every target, then the states of the frame's keys, the
// schedulers' inputs, the mutations, the headers, the raw frames.
func corpusSeeds() [][]byte {
	var out [][]byte
	add := func(s seed, payload string) { out = append(out, append(s[:], payload...)) }
	nt := len(fzServices()) + len(fzExtraTargets)
	for kind := kindTCP; kind <= kindFirst; kind++ {
		for target := range nt {
			if (kind == kindEcho || kind == kindLater || kind == kindFirst) && target%3 != 0 {
				continue
			}
			add(seed{byte(kind), byte(target), tcpSYN, 0, 0, 0x9c, 0x40 + byte(target)}, "hello")
		}
	}
	ack := seed{kindTCP, 0, tcpACK, 0, 0, 0x9c, 0x01}
	for _, st := range []seed{
		ack.with(10, 1),                        // tracked, fresh
		ack.with(10, 1|1<<2),                   // tracked, refreshed
		ack.with(10, 1|4<<2),                   // expired
		ack.with(10, 1|5<<2),                   // stamped in the future
		ack.with(10, 1|0x20).with(2, tcpSYN),   // SYN on a closing tuple
		ack.with(10, 1|0x20|2<<2),              // closing, expired
		ack.with(10, 1).with(2, tcpFIN|tcpACK), // client FIN
		ack.with(10, 1|0x40).with(2, tcpRST),   // RST, another flag bit kept
		ack.with(10, 1).with(11, 3),            // backend down: rescheduled
		ack.with(10, 1).with(11, 6),            // backend id 0
		ack.with(10, 1).with(11, 7),            // backend id outside the array
		ack.with(10, 1).with(11, 4),            // another service's backend
		ack.with(10, 1|0x20).with(2, tcpFIN).with(11, 3),
		ack.with(1, 4), // empty service: dropped
		ack.with(1, 4).with(10, 1),
		ack.with(1, 2).with(12, 1).with(11, 0x10),                  // persistence hit
		ack.with(1, 2).with(12, 1|2<<2).with(11, 0x10),             // persistence expired
		ack.with(1, 2).with(12, 1).with(11, 0x20),                  // persistent backend failing
		ack.with(1, 2).with(10, 1|1<<2).with(12, 1).with(11, 0x11), // refresh both
		ack.with(1, 6).with(12, 1).with(11, 0x21),
		ack.with(1, 1).with(0, kindUDP|3<<3),  // round robin
		ack.with(1, 1).with(0, kindUDP|22<<3), // cursor past the table
		ack.with(1, 11).with(0, kindTCP|9<<3),
		ack.with(1, 3).with(15, 0b00011000), // least conn, loads
		ack.with(1, 3).with(15, 0b11110100),
		ack.with(1, 7).with(0, kindUDP).with(15, 0b01101100),
		ack.with(1, 12).with(0, kindUDP).with(15, 0b00100000),
		ack.with(1, 8).with(10, 1).with(17, 0xc),         // timeouts off
		ack.with(1, 9).with(0, kindUDP).with(10, 1|3<<2), // UDP expired
		ack.with(3, 3),                                   // 4in6 / mapped client
		ack.with(1, 8).with(3, 3),
		ack.with(16, 1),                                           // half-open: promoted
		ack.with(16, 1|1<<2),                                      // promoted, entry 3 s old
		ack.with(16, 1|2<<2),                                      // half-open entry expired
		ack.with(16, 1|3<<2),                                      // stamped in the future
		ack.with(16, 1|3<<4),                                      // half-open on a down backend
		ack.with(16, 1|6<<4),                                      // half-open on backend id 0
		ack.with(16, 1).with(2, tcpFIN|tcpACK),                    // promoted by a FIN
		ack.with(16, 1).with(10, 1|4<<2),                          // promoted over an expired entry
		ack.with(16, 1).with(10, 1).with(11, 3),                   // over a down backend's entry
		ack.with(16, 1).with(10, 1|0x20|2<<2),                     // over an expired closing entry
		ack.with(16, 1).with(17, 0xc),                             // timeouts off
		ack.with(2, tcpSYN).with(16, 1),                           // retransmitted SYN
		ack.with(2, tcpSYN).with(16, 1|2<<2),                      // SYN, half-open entry expired
		ack.with(2, tcpSYN).with(10, 1),                           // SYN on a live flow
		ack.with(2, tcpSYN).with(10, 1|4<<2),                      // SYN on an expired flow
		ack.with(2, tcpSYN).with(10, 1).with(11, 3),               // SYN on a down backend's flow
		ack.with(2, tcpSYN|tcpFIN),                                // SYN and FIN
		ack.with(2, tcpSYN|tcpACK),                                // SYN-ACK is no bare SYN
		ack.with(2, tcpSYN).with(1, 2).with(12, 1).with(11, 0x10), // SYN, persistence
		ack.with(2, tcpSYN).with(1, 2).with(16, 1).with(12, 1),
		ack.with(2, tcpSYN).with(1, 4).with(10, 1|4<<2),       // SYN, no backend, stale flow
		ack.with(2, tcpSYN).with(1, 3).with(15, 0b01100001),   // least conn SYN
		ack.with(2, tcpSYN).with(1, 11).with(0, kindTCP|7<<3), // round robin SYN
	} {
		add(st, "state")
	}
	for _, st := range []seed{
		{kindEcho, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},   // echo answering off
		{kindError, 0, 0, 0, 0, 0, 1, 0, 0, 40, 1, 0, 0, 0, 0, 0, 0, 2}, // error forwarding off
		{kindError, 0, 0, 0, 0, 0, 1, 0, 0, 40, 1, 0, 0, 0, 0, 0, 0, 3},
		{kindEcho, 8, 0x18 | 0x20, 0, 0, 0, 1},              // code 1
		{kindEcho, 0, 3, 0, 0, 0, 1},                        // an error with no quote
		{kindEcho, 8, 6, 0, 0, 0, 1},                        // neighbour solicitation
		{kindEcho, 0, 0, 0, 2, 0, 1},                        // TTL 0
		{kindEcho, 8, 0, 0x40, 0, 0, 1},                     // other host
		{kindError, 0, 0, 0, 0, 0, 1, 0, 0, 40, 1},          // quoted flow tracked
		{kindError, 2, 0, 0, 0, 0, 1, 0, 0, 40, 0, 0x10, 1}, // persistence
		{kindError, 1, 0, 0, 0, 0, 1, 0, 0, 40},             // round robin: unmatched
		{kindError, 1, 0, 0, 0, 0, 1, 0, 0, 40, 1},          // round robin, tracked
		{kindError, 0, 0x40, 0, 0, 0, 1, 0, 0, 40},          // quote cut
		{kindError, 0, 0x50, 0, 0, 0, 1, 0, 0, 40},
		{kindError, 0, 0xc0, 0, 0, 0, 1, 0, 0, 40}, // quoted fragment
		{kindError, 8, 0xc0, 0, 0, 0, 1, 0, 0, 40}, // quoted extension header
		{kindError, 9, 1, 0, 0, 0, 1, 0, 0, 40, 1},
		{kindError, 0, 0x04, 0, 0, 0, 1, 0, 0, 40},                   // quote with options
		{kindError, 0, 0, 0, 1, 0, 1, 0, 0, 40},                      // TTL 1
		{kindLater, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0},        // matched
		{kindLater, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1 | 2<<2, 0}, // expired
		{kindLater, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 3},        // backend down
		{kindLater, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x10},     // service mismatch
		{kindLater, 8, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1},
		{kindLater, 13, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2},
		{kindLater, 5, 2, 0, 0, 0, 1}, // source-hash only VIP: early
		{kindLater, 13, 2, 0, 0, 0, 1},
		{kindLater, 13, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x20, 1}, // early, persistent client
		{kindLater, 13, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x10, 1},
		{kindLater, 5, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1 | 2<<2}, // entry expired: early
		{kindLater, 14, 2, 0, 0, 0, 1},                            // only UDP service: empty maglev
		{kindLater, 4, 2, 0, 0, 0, 1},
		{kindLater, 15, 2, 0, 0, 0, 1}, // not a VIP
		{kindFirst, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0},
		{kindFirst, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2},
		{kindFirst, 1, 0, 0, 0, 0, 1},
	} {
		add(st, "icmp and fragments")
	}
	base4, base6 := seed{kindTCP, 0, tcpSYN, 0, 0, 0, 9}, seed{kindUDP, 9, 0, 0, 0, 0, 9}
	for _, b := range []seed{base4, base6} {
		for mut := byte(1); mut <= 6; mut++ {
			add(b.with(7, mut).with(8, 0x05).with(9, 0x20), "mutated")
			add(b.with(7, mut|0x80).with(8, 0xff).with(9, 0x03), "mutated")
		}
		add(b.with(3, 1<<2), "one tag")
		add(b.with(3, 2<<2|0x10), "qinq")
		add(b.with(3, 3<<2), "three tags")
		add(b.with(3, 5<<5), "other host")
		add(b.with(3, 6<<5), "broadcast")
		add(b.with(4, 1), "ttl 1")
		add(b.with(4, 3|10<<2), "ttl 2, options or extension headers")
		add(b.with(4, 5<<2), "options")
		add(b.with(4, 13<<2), "extension headers")
		add(b.with(4, 30<<2), "extension headers")
		add(b.with(4, 63<<2), "extension headers")
	}
	// Two frames of one flow: SYN then ACK (or FIN-ACK, RST), UDP twice,
	// a first fragment then a later one.
	for target := range len(fzServices()) {
		kind := byte(kindTCP)
		if target%2 == 1 {
			kind = kindUDP
		}
		add(seed{kind, byte(target), tcpSYN, 0, 0, 0x9d, byte(target), 0x40, 0, byte(target)}, "sequence")
		add(seed{kindFirst, byte(target), 0, 0, 0, 0x9e, byte(target), 0x40, 0, byte(target)}, "sequence")
	}
	add(seed{kindTCP, 0, tcpSYN, 0, 0, 0x9f, 1, 0x40, 0, 2, 1 | 0x20}, "SYN on a closing flow, then FIN-ACK")
	add(seed{kindTCP, 3, tcpSYN, 0, 0, 0x9f, 2, 0x40, 0, 0, 1 | 4<<2}, "SYN on an expired flow, then ACK")
	add(seed{kindTCP, 0, tcpACK, 0, 0, 0x9f, 3, 0x40, 0, 3}, "ACK then RST")
	raw := seed{kindRaw}
	// Whole frames as raw input, for byte-level mutation of real headers
	// (the state bytes still apply to their keys).
	spec := func(src, dst string, mod func(*frame.Spec)) frame.Spec {
		sp := frame.Spec{SrcMAC: clientMAC, DstMAC: lbMAC, Src: ap(src), Dst: ap(dst), SYN: true, Payload: []byte("raw")}
		if mod != nil {
			mod(&sp)
		}
		return sp
	}
	echo := func(p *frame.Spec) { p.ICMP, p.SYN, p.ICMPID, p.ICMPSeq = true, false, 1, 2 }
	udp := func(p *frame.Spec) { p.UDP, p.SYN = true, false }
	for i, sp := range []frame.Spec{
		spec("198.18.0.100:40000", "198.18.1.1:80", nil),
		spec("198.18.0.100:40001", "198.18.1.1:443", func(p *frame.Spec) { p.SYN, p.Options = false, 2 }),
		spec("198.18.0.100:40002", "198.18.1.2:53", udp),
		spec("198.18.0.100:40003", "198.18.1.3:5000", func(p *frame.Spec) { udp(p); p.MoreFragments = true }),
		spec("198.18.0.100:40004", "198.18.1.2:53", func(p *frame.Spec) { udp(p); p.FragOffset = 20 }),
		spec("198.18.0.100:0", "198.18.1.1:0", echo),
		spec("[2001:2::100]:40005", "[2001:2:0:1::1]:80", func(p *frame.Spec) { p.TCPOptions = true }),
		spec("[2001:2::100]:40006", "[2001:2:0:1::1]:53", func(p *frame.Spec) { udp(p); p.HopByHop = true }),
		spec("[2001:2::100]:0", "[2001:2:0:1::1]:0", echo),
		spec("[2001:2::100]:40007", "[2001:2:0:1::2]:80", func(p *frame.Spec) { p.SYN, p.FIN = false, true }),
	} {
		add(raw.with(1, byte(i)).with(10, byte(i%2)).with(16, byte(i%3)), string(frame.MustBuild(sp)))
	}
	reply := frame.MustBuild(spec("198.18.1.1:80", "198.18.0.100:40000", func(p *frame.Spec) { p.SYN = false }))[14:]
	three := uint8(3)
	add(raw.with(10, 1), string(frame.MustBuild(spec("198.18.0.254:0", "198.18.1.1:0", func(p *frame.Spec) {
		echo(p)
		p.ICMPType, p.ICMPCode, p.ICMPID, p.ICMPSeq, p.Payload = &three, 4, 0, 1400, reply
	}))))
	arp := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1}
	add(raw, string(arp))
	add(raw, "\x02\x00\x00\x00\x00\x03\x02\x00\x00\x00\x00\x02\x08\x00\x45")
	return out
}

// TestWriteDataPlaneSeeds writes corpusSeeds as the
// committed seed corpus (XLB_WRITE_SEEDS=1).
func TestWriteDataPlaneSeeds(t *testing.T) {
	if os.Getenv("XLB_WRITE_SEEDS") != "1" {
		t.Skip("set XLB_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzDataPlane")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDataPlane")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range corpusSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
