package loader_test

// The model: an independent Go statement of what the XDP program decides
// for one frame (verdict, output bytes, counters, the map entries it
// writes), for the differential fuzz target FuzzDataPlane. It reads the
// frame with encoding/binary at explicit offsets and the maps' state
// through modelState, read before the frame runs; it is a pure function of
// the two. It follows the rules of docs/ARCHITECTURE.md ("How a packet
// flows"), not the C's structure.

import (
	"encoding/binary"

	"github.com/xlb-lb/xlb/bpf"
)

// Values as the wire and the maps hold them.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	ether8021Q = 0x8100
	ether8021A = 0x88a8

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	secondNs       = uint64(1e9)
	refreshEveryNs = secondNs     // LAST_SEEN_GRANULARITY_NS
	fragLifeNs     = 3 * secondNs // FRAG_TIMEOUT_NS
	echoTTL        = 64
	lcMaxBackends  = 256 // MAX_LC_BACKENDS
)

// stampNow in a predicted timestamp field means "the program's clock at
// the run": the harness accepts any value read between before and after.
const stampNow = ^uint64(0)

// What part of a datagram a frame is.
const (
	fragNone = iota
	fragFirst
	fragLater
)

// modelState is the data plane's state as the model sees it: the maps,
// read before the frame runs.
type modelState interface {
	service(k bpf.SvcKey) (bpf.Service, bool)
	// services: every service, for the early-fragment rule (a VIP's only
	// service of a protocol).
	services() map[bpf.SvcKey]bpf.Service
	isVIP(addr [4]uint32, family uint8) bool
	// backend: false for an id outside the array.
	backend(id uint32) (bpf.Backend, bool)
	// table: the service's scheduler table, nil if it has none.
	table(svcID uint32) []uint32
	flow(k bpf.FlowKey) (bpf.Flow, bool)
	halfOpen(k bpf.FlowKey) (bpf.Flow, bool)
	persist(k bpf.PersistKey) (bpf.PersistEntry, bool)
	frag(k bpf.FragKey) (bpf.FragEntry, bool)
	// rrCursor: the cursor of the CPU the frame runs on.
	rrCursor(svcID uint32) uint32
	// active: false for an id outside the array.
	active(id uint32) (int64, bool)
	config() bpf.Config
	ifaceMAC() [6]byte
	tableSize() uint32
}

// outcome is what the model predicts for one frame.
type outcome struct {
	verdict uint32
	out     []byte
	// counters: the global counters that move, by Go field name.
	counters map[string]uint64
	// svc and svcDelta: the service counters that move (svc nil: none).
	svc      *uint32
	svcDelta bpf.SvcCounters
	be       *uint32
	beDelta  bpf.BackendCounters
	// The entries of the frame's keys after the run (nil: absent),
	// timestamps stampNow where the program writes its clock.
	flowKey     *bpf.FlowKey
	flowAfter   *bpf.Flow
	halfAfter   *bpf.Flow // the half-open entry of flowKey
	halfChecked bool      // halfAfter is a prediction (TCP service frames)
	persistKey  *bpf.PersistKey
	persistAft  *bpf.PersistEntry
	fragKey     *bpf.FragKey
	fragAfter   *bpf.FragEntry
	active      map[uint32]int64
	rrSvc       *uint32
	rrNext      *uint32 // the running CPU's cursor after the run; nil: unchanged
}

func (o *outcome) count(name string) { o.counters[name]++ }

// parsed is what the frame's headers say.
type parsed struct {
	pass   string // the counter of a frame for the kernel; "" otherwise
	icmp   bool
	later  bool // a later fragment
	key    bpf.FlowKey
	ttl    uint8
	flags  uint8
	frag   int
	fragID uint32
	ip     int    // offset of the IP header
	l4     int    // offset of the ICMP message
	l4Len  uint32 // the ICMP message's length by the IP header
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// word is 4 wire bytes as a map's __be32 field holds them.
func word(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// port is 2 wire bytes as a map's __be16 field holds them.
func port(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }

func words16(b []byte) (w [4]uint32) {
	for i := range w {
		w[i] = word(b[4*i:])
	}
	return w
}

// parseFrame reads Ethernet, up to two VLAN tags, IPv4 or IPv6 (with the
// walked extension headers) and the L4 header.
func parseFrame(b []byte) parsed {
	var p parsed
	bad := func(reason string) parsed { return parsed{pass: reason} }
	if len(b) < 14 {
		return bad("PassMalformed")
	}
	et, off := be16(b[12:]), 14
	for tags := 0; tags < 2 && (et == ether8021Q || et == ether8021A); tags++ {
		if len(b) < off+4 {
			return bad("PassMalformed")
		}
		et, off = be16(b[off+2:]), off+4
	}
	p.ip = off
	var proto uint8
	var pos int
	var l4Len uint32
	switch et {
	case etherIPv4:
		if len(b) < off+20 || b[off]>>4 != 4 {
			return bad("PassMalformed")
		}
		hl := int(b[off]&0xf) * 4
		if hl < 20 || off+hl > len(b) {
			return bad("PassMalformed")
		}
		total := int(be16(b[off+2:]))
		if total < hl || total > len(b)-off {
			return bad("PassMalformed")
		}
		l4Len = uint32(total - hl)
		p.key.Family = bpf.FamilyIPv4
		p.key.Src[0], p.key.Dst[0] = word(b[off+12:]), word(b[off+16:])
		proto = b[off+9]
		p.key.Proto, p.ttl = proto, b[off+8]
		pos = off + hl
		ff := be16(b[off+6:])
		id := word([]byte{b[off+4], b[off+5], 0, 0})
		if ff&0x1fff != 0 {
			p.frag, p.fragID, p.later = fragLater, id, true
			return p
		}
		if ff&0x2000 != 0 {
			p.frag, p.fragID = fragFirst, id
		}
	case etherIPv6:
		if len(b) < off+40 || b[off]>>4 != 6 {
			return bad("PassMalformed")
		}
		plen := uint32(be16(b[off+4:]))
		if int(plen) > len(b)-off-40 {
			return bad("PassMalformed")
		}
		p.key.Family = bpf.FamilyIPv6
		p.key.Src, p.key.Dst = words16(b[off+8:]), words16(b[off+24:])
		p.ttl = b[off+7]
		nh, pos2 := b[off+6], off+40
		for hdrs := 0; ; hdrs++ {
			if nh == protoTCP || nh == protoUDP || nh == protoICMPv6 {
				break
			}
			walked := nh == 0 || nh == 43 || nh == 44 || nh == 60
			if !walked {
				switch nh {
				case 50, 51, 135, 139, 140:
					return bad("PassIpv6Ext")
				}
				return bad("PassNotVip")
			}
			if hdrs == 4 {
				return bad("PassIpv6Ext")
			}
			if len(b) < pos2+2 || plen < 2 {
				return bad("PassMalformed")
			}
			n := (uint32(b[pos2+1]) + 1) * 8
			if nh == 44 {
				n = 8
			}
			if n > plen || pos2+int(n) > len(b) {
				return bad("PassMalformed")
			}
			if nh == 44 {
				if fo := be16(b[pos2+2:]); fo&0xfff9 != 0 {
					p.frag, p.fragID = fragFirst, word(b[pos2+4:])
					if fo&0xfff8 != 0 {
						p.frag, p.later = fragLater, true
						p.key.Proto = b[pos2]
						return p
					}
				}
			}
			nh, pos2, plen = b[pos2], pos2+int(n), plen-n
		}
		if nh == protoICMPv6 && pos2 != off+40 {
			return bad("PassIpv6Ext") // ICMPv6 behind an extension header
		}
		proto, pos, l4Len = nh, pos2, plen
		p.key.Proto = proto
	default:
		return bad("PassNotIp")
	}
	switch {
	case proto == protoTCP:
		if len(b) < pos+20 {
			return bad("PassMalformed")
		}
		if doff := uint32(b[pos+12]>>4) * 4; doff < 20 || doff > l4Len {
			return bad("PassMalformed")
		}
		p.flags = b[pos+13]
	case proto == protoUDP:
		if len(b) < pos+8 {
			return bad("PassMalformed")
		}
		ulen := uint32(be16(b[pos+4:]))
		if ulen < 8 || l4Len < 8 || (ulen > l4Len && p.frag == fragNone) {
			return bad("PassMalformed")
		}
	case proto == protoICMP && p.key.Family == bpf.FamilyIPv4, proto == protoICMPv6 && p.key.Family == bpf.FamilyIPv6:
		if p.frag != fragNone {
			return bad("PassFragment")
		}
		p.icmp, p.l4, p.l4Len = true, pos, l4Len
		return p
	default:
		return bad("PassNotVip")
	}
	p.key.Sport, p.key.Dport = port(b[pos:]), port(b[pos+2:])
	return p
}

// quoteResult is what an ICMP error's quote leads to.
type quoteResult struct {
	notError bool   // not an error the data plane handles: the echo responder's
	pass     string // the counter of an error passed before any flow is looked at
	key      bpf.FlowKey
	svc      bpf.Service
}

// errorQuote reads an ICMP error addressed to a VIP and returns the flow
// (client -> VIP) its quote belongs to.
func errorQuote(st modelState, b []byte, p parsed) quoteResult {
	m, n := p.l4, p.l4Len
	if n < 1 || len(b) < m+1 {
		return quoteResult{notError: true}
	}
	v4 := p.key.Family == bpf.FamilyIPv4
	if t := b[m]; (v4 && t != 3) || (!v4 && t != 1 && t != 2) {
		return quoteResult{notError: true}
	}
	notVIP, malformed := quoteResult{pass: "PassNotVip"}, quoteResult{pass: "PassMalformed"}
	if !st.isVIP(p.key.Dst, p.key.Family) || st.config().Flags&bpf.ConfigNoICMPForward != 0 {
		return notVIP
	}
	q := m + 8
	if n < 9 || len(b) < q+1 {
		return malformed
	}
	n -= 8
	var k bpf.FlowKey
	var hl int
	if v4 {
		if b[q]>>4 != 4 {
			return notVIP
		}
		if n < 20 || len(b) < q+20 {
			return malformed
		}
		if hl = int(b[q]&0xf) * 4; hl < 20 {
			return malformed
		}
		if be16(b[q+6:])&0x1fff != 0 {
			return quoteResult{pass: "PassFragment"}
		}
		k.Src[0], k.Dst[0], k.Proto = word(b[q+16:]), word(b[q+12:]), b[q+9]
	} else {
		if b[q]>>4 != 6 {
			return notVIP
		}
		if n < 40 || len(b) < q+40 {
			return malformed
		}
		hl = 40
		switch nh := b[q+6]; nh {
		case protoTCP, protoUDP:
			k.Proto = nh
		case 0, 43, 44, 50, 51, 60, 135, 139, 140:
			return quoteResult{pass: "PassIpv6Ext"}
		default:
			return notVIP
		}
		k.Src, k.Dst = words16(b[q+24:]), words16(b[q+8:])
	}
	ports := q + hl
	if n < uint32(hl)+8 || len(b) < ports+8 {
		return malformed
	}
	if k.Proto != protoTCP && k.Proto != protoUDP {
		return notVIP
	}
	k.Sport, k.Dport, k.Family = port(b[ports+2:]), port(b[ports:]), p.key.Family
	if k.Dst != p.key.Dst {
		return notVIP
	}
	svc, ok := st.service(bpf.SvcKey{Addr: k.Dst, Port: k.Dport, Proto: k.Proto, Family: k.Family})
	if !ok {
		return notVIP
	}
	return quoteResult{key: k, svc: svc}
}

// model decides one frame over st at time now (ns, the program's clock).
type model struct {
	st  modelState
	now uint64
	o   *outcome
}

func runModel(st modelState, now uint64, frame []byte) *outcome {
	o := &outcome{verdict: xdpPass, out: append([]byte(nil), frame...),
		counters: map[string]uint64{"RxPackets": 1}, active: map[uint32]int64{}}
	m := &model{st: st, now: now, o: o}
	m.process(o.out)
	return o
}

func (m *model) pass(reason string) {
	m.o.verdict = xdpPass
	m.o.count(reason)
}

func (m *model) toUs(b []byte) bool {
	mac := m.st.ifaceMAC()
	if mac == [6]byte{} {
		return b[0]&1 == 0
	}
	return [6]byte(b[:6]) == mac
}

// forwardTo rewrites the frame to backend be at layer 2 and sends it.
func (m *model) forwardTo(b []byte, be bpf.Backend) {
	mac := m.st.ifaceMAC()
	if mac == [6]byte{} {
		copy(b[6:12], b[:6])
	} else {
		copy(b[6:12], mac[:])
	}
	copy(b[:6], be.Mac[:])
	m.o.verdict = xdpTX
}

func (m *model) usable(id, svcID uint32) (bpf.Backend, bool) {
	be, ok := m.st.backend(id)
	if !ok || be.Flags&bpf.BackendUsable == 0 || be.SvcId != svcID {
		return bpf.Backend{}, false
	}
	return be, true
}

func (m *model) addActive(id uint32, d int64) {
	if _, ok := m.st.active(id); ok {
		m.o.active[id] += d
	}
}

func (m *model) expired(last uint64, flags uint32, proto uint8) bool {
	c := m.st.config()
	to := c.TcpTimeoutNs
	switch {
	case proto == protoUDP:
		to = c.UdpTimeoutNs
	case flags&bpf.FlowClosing != 0:
		to = c.TcpFinTimeoutNs
	}
	return to != 0 && int64(m.now-last) > int64(to)
}

func persistKeyOf(svcID uint32, k bpf.FlowKey) bpf.PersistKey {
	return bpf.PersistKey{Addr: k.Src, SvcId: svcID, Family: k.Family}
}

// persisted is the client's backend under persistence, 0 if none holds.
func (m *model) persisted(svc bpf.Service, k bpf.FlowKey) uint32 {
	pe, ok := m.st.persist(persistKeyOf(svc.Id, k))
	if !ok || int64(m.now-pe.LastSeen) > int64(svc.PersistSecs)*int64(secondNs) {
		return 0
	}
	be, ok := m.usable(pe.BackendId, svc.Id)
	if !ok || be.Flags&bpf.BackendFailing != 0 {
		return 0
	}
	return pe.BackendId
}

func (m *model) process(b []byte) {
	p := parseFrame(b)
	switch {
	case p.pass != "":
		m.pass(p.pass)
	case p.icmp:
		if !m.icmpError(b, p) {
			m.icmpEcho(b, p)
		}
	case p.later:
		m.fragFollow(b, p)
	default:
		m.service(b, p)
	}
}

func (m *model) icmpError(b []byte, p parsed) bool {
	q := errorQuote(m.st, b, p)
	switch {
	case q.notError:
		return false
	case q.pass != "":
		m.pass(q.pass)
		return true
	case !m.toUs(b):
		m.pass("PassOtherHost")
		return true
	case p.ttl <= 1:
		m.pass("PassTtl")
		return true
	}
	svc := q.svc
	var be bpf.Backend
	ok := false
	if f, found := m.st.flow(q.key); found && !m.expired(f.LastSeen, f.Flags, q.key.Proto) {
		be, ok = m.usable(f.BackendId, svc.Id)
	}
	if !ok && (svc.Sched == bpf.SchedMaglev || svc.Sched == bpf.SchedSourceHash) {
		be, ok = m.usable(m.placement(svc, q.key), svc.Id)
	}
	if !ok {
		m.pass("IcmpErrorsUnmatched")
		return true
	}
	m.o.count("IcmpErrorsForwarded")
	m.forwardTo(b, be)
	return true
}

func (m *model) icmpEcho(b []byte, p parsed) {
	v4 := p.key.Family == bpf.FamilyIPv4
	req := uint8(128)
	if v4 {
		req = 8
	}
	switch {
	case m.st.config().Flags&bpf.ConfigNoICMPEcho != 0,
		p.l4Len < 1 || len(b) < p.l4+1 || b[p.l4] != req,
		!m.st.isVIP(p.key.Dst, p.key.Family):
		m.pass("PassNotVip")
		return
	case p.l4Len < 8 || len(b) < p.l4+8:
		m.pass("PassMalformed")
		return
	case b[p.l4+1] != 0:
		m.pass("PassNotVip")
		return
	case !m.toUs(b):
		m.pass("PassOtherHost")
		return
	case p.ttl == 0:
		m.pass("PassTtl")
		return
	}
	var mac [6]byte
	copy(mac[:], b[:6])
	copy(b[:6], b[6:12])
	copy(b[6:12], mac[:])
	ip, l4 := b[p.ip:], b[p.l4:]
	if v4 {
		var a [4]byte
		copy(a[:], ip[12:16])
		copy(ip[12:16], ip[16:20])
		copy(ip[16:20], a[:])
		old := be16(ip[8:])
		ip[8] = echoTTL
		patchSum(ip[10:], old, be16(ip[8:]))
		old = be16(l4)
		l4[0] = 0
		patchSum(l4[2:], old, be16(l4))
	} else {
		var a [16]byte
		copy(a[:], ip[8:24])
		copy(ip[8:24], ip[24:40])
		copy(ip[24:40], a[:])
		ip[7] = echoTTL
		old := be16(l4)
		l4[0] = 129
		patchSum(l4[2:], old, be16(l4))
	}
	m.o.count("IcmpEchoReplies")
	m.o.verdict = xdpTX
}

// patchSum updates the Internet checksum at sum for a 16-bit word of the
// covered data changing from old to new (RFC 1624, eqn. 3), big endian.
func patchSum(sum []byte, old, new uint16) {
	s := uint32(^be16(sum)) + uint32(^old) + uint32(new)
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(sum, ^uint16(s))
}

func (m *model) fragFollow(b []byte, p parsed) {
	switch {
	case !m.st.isVIP(p.key.Dst, p.key.Family), p.key.Proto != protoTCP && p.key.Proto != protoUDP:
		m.pass("PassFragment")
		return
	case !m.toUs(b):
		m.pass("PassOtherHost")
		return
	case p.ttl <= 1:
		m.pass("PassTtl")
		return
	}
	fk := fragKeyOf(p)
	var id, svcID uint32
	fe, found := m.st.frag(fk)
	early := !found || int64(m.now-fe.Created) > int64(fragLifeNs)
	if early {
		id, svcID = m.earlyFragment(p)
	} else {
		id, svcID = fe.BackendId, fe.SvcId
	}
	be, ok := m.usable(id, svcID)
	if !ok {
		m.pass("FragUnmatched")
		return
	}
	m.o.svc, m.o.be = &svcID, &id
	m.o.svcDelta = bpf.SvcCounters{Packets: 1, Bytes: uint64(len(b))}
	m.o.beDelta = bpf.BackendCounters{Packets: 1, Bytes: uint64(len(b))}
	m.o.count("TxPackets")
	m.o.count("FragForwarded")
	if early {
		m.o.count("FragEarly")
	}
	m.forwardTo(b, be)
}

// earlyFragment places a later fragment that came before its first when
// its VIP has one service of its protocol and that service is
// source-hash: where the first fragment will go (read only).
func (m *model) earlyFragment(p parsed) (id, svcID uint32) {
	if p.key.Proto != protoTCP && p.key.Proto != protoUDP {
		return 0, 0
	}
	var only []bpf.Service
	for k, svc := range m.st.services() {
		if k.Addr == p.key.Dst && k.Family == p.key.Family && k.Proto == p.key.Proto {
			only = append(only, svc)
		}
	}
	if len(only) != 1 || only[0].Sched != bpf.SchedSourceHash {
		return 0, 0
	}
	return m.placement(only[0], p.key), only[0].Id
}

// placement is where a new flow of a maglev or source-hash service goes,
// without writing anything: the client's persistent backend, else the
// slot.
func (m *model) placement(svc bpf.Service, k bpf.FlowKey) uint32 {
	if svc.PersistSecs != 0 {
		if id := m.persisted(svc, k); id != 0 {
			return id
		}
	}
	return m.hashed(svc, k)
}

func fragKeyOf(p parsed) bpf.FragKey {
	return bpf.FragKey{Src: p.key.Src, Dst: p.key.Dst, Id: p.fragID, Proto: p.key.Proto, Family: p.key.Family}
}

// service is the path of a TCP or UDP frame (a first fragment included).
func (m *model) service(b []byte, p parsed) {
	k := p.key
	svc, ok := m.st.service(bpf.SvcKey{Addr: k.Dst, Port: k.Dport, Proto: k.Proto, Family: k.Family})
	switch {
	case !ok:
		m.pass("PassNotVip")
		return
	case !m.toUs(b):
		m.pass("PassOtherHost")
		return
	case p.ttl <= 1:
		m.pass("PassTtl")
		return
	}
	sid, n := svc.Id, uint64(len(b))
	m.o.svc = &sid
	m.o.svcDelta.Packets++
	m.o.svcDelta.Bytes += n

	// The connection table first.
	m.o.flowKey = &k
	f, tracked := m.st.flow(k)
	if tracked {
		m.o.flowAfter = &bpf.Flow{LastSeen: f.LastSeen, BackendId: f.BackendId, Flags: f.Flags}
	}
	pk := persistKeyOf(sid, k)
	if svc.PersistSecs != 0 {
		m.o.persistKey = &pk
		if pe, ok := m.st.persist(pk); ok {
			m.o.persistAft = &bpf.PersistEntry{LastSeen: pe.LastSeen, BackendId: pe.BackendId}
		}
	}
	if p.frag == fragFirst {
		fk := fragKeyOf(p)
		m.o.fragKey = &fk
		if fe, ok := m.st.frag(fk); ok {
			m.o.fragAfter = &bpf.FragEntry{Created: fe.Created, BackendId: fe.BackendId, SvcId: fe.SvcId}
		}
	}
	fin := p.flags&(tcpFIN|tcpRST) != 0
	isNew := true
	var id uint32
	var be bpf.Backend
	placed := false
	if tracked {
		closing := f.Flags&bpf.FlowClosing != 0
		switch {
		case m.expired(f.LastSeen, f.Flags, k.Proto):
			m.o.count("ExpiredFlows")
		case closing && p.flags&(tcpSYN|tcpACK) == tcpSYN:
			// A new connection on a closed flow's tuple.
		default:
			isNew = false
			if be, placed = m.usable(f.BackendId, sid); placed {
				id = f.BackendId
				m.o.count("ConntrackHits")
				if m.now-f.LastSeen > refreshEveryNs {
					m.o.flowAfter.LastSeen = stampNow
					if m.o.persistAft != nil && m.o.persistAft.BackendId == id {
						m.o.persistAft.LastSeen = stampNow
					}
				}
				if fin && !closing {
					m.o.flowAfter.Flags |= bpf.FlowClosing
					m.addActive(id, -1)
					m.o.count("ClosedFlows")
				}
			} else {
				m.o.count("Reschedules")
			}
		}
	}
	if !placed && k.Proto == protoTCP {
		// TCP the connection table could not place: the half-open table.
		var ok bool
		placed, ok, isNew, id, be = m.halfOpen(p, svc, f, tracked, isNew)
		if !ok {
			return
		}
	}
	if !placed {
		// A new (or moved) flow: persistence, else the scheduler.
		if id, be, placed = m.pick(svc, k); !placed {
			return
		}
		m.rememberClient(svc, id)
		m.track(f, tracked, id, fin)
		if isNew {
			m.o.count("NewFlows")
			m.o.svcDelta.NewFlows++
		}
	}
	if p.frag == fragFirst {
		m.o.fragAfter = &bpf.FragEntry{Created: stampNow, BackendId: id, SvcId: sid}
		m.o.count("FragFirst")
	}
	m.o.be = &id
	m.o.beDelta.Packets++
	m.o.beDelta.Bytes += n
	if isNew {
		m.o.beDelta.NewFlows++
	}
	m.o.count("TxPackets")
	m.forwardTo(b, be)
}

// pick is a new flow's backend: the client's persistent one, else the
// scheduler's; ok false when it is not usable (the frame is dropped).
func (m *model) pick(svc bpf.Service, k bpf.FlowKey) (id uint32, be bpf.Backend, ok bool) {
	if svc.PersistSecs != 0 {
		if id = m.persisted(svc, k); id != 0 {
			m.o.count("PersistHits")
		}
	}
	if id == 0 {
		id = m.schedule(svc, k)
	}
	if be, ok = m.usable(id, svc.Id); !ok {
		m.o.count("DropNoBackend")
		m.o.svcDelta.DropNoBackend++
		m.o.verdict = xdpDrop
	}
	return id, be, ok
}

func (m *model) rememberClient(svc bpf.Service, id uint32) {
	if svc.PersistSecs != 0 {
		m.o.persistAft = &bpf.PersistEntry{LastSeen: stampNow, BackendId: id}
	}
}

// track gives the flow, placed on id, its connection-table entry (its
// stale entry f, if tracked, moves) and keeps the active counts: a flow
// that starts on a FIN or RST is closing and not active.
func (m *model) track(f bpf.Flow, tracked bool, id uint32, fin bool) {
	if tracked && f.Flags&bpf.FlowClosing == 0 {
		m.addActive(f.BackendId, -1)
	}
	var flags uint32
	if fin {
		flags = bpf.FlowClosing
	}
	m.o.flowAfter = &bpf.Flow{LastSeen: stampNow, BackendId: id, Flags: flags}
	if !fin {
		m.addActive(id, 1)
	}
}

// halfOpen is the half-open table's part for a TCP frame the connection
// table could not place: a flow earns its connection-table entry with its
// second packet. A frame other than a bare SYN (SYN, no ACK) promotes a
// live half-open entry on a usable backend to the connection table (not a
// new flow); without one, a stale connection-table entry of the flow is
// moved by the new-flow path. A bare SYN removes the flow's stale entry
// and keeps a live half-open entry's backend (a retransmission). Anything
// else (a bare SYN, or a flow first seen mid-stream with no entry at all)
// is scheduled and recorded as half-open: not in the connection table,
// not active, persistence written, a new flow. A half-open entry lives
// tcp_fin_timeout. ok false: dropped; placed false: for the new-flow path.
func (m *model) halfOpen(p parsed, svc bpf.Service, f bpf.Flow, tracked, isNew bool) (placed, ok, isNew2 bool, id uint32, be bpf.Backend) {
	k := p.key
	m.o.halfChecked = true
	h, found := m.st.halfOpen(k)
	if found {
		m.o.halfAfter = &bpf.Flow{LastSeen: h.LastSeen, BackendId: h.BackendId, Flags: h.Flags}
	}
	live := false
	if found && !m.expired(h.LastSeen, bpf.FlowClosing, protoTCP) {
		be, live = m.usable(h.BackendId, svc.Id)
	}
	bareSYN := p.flags&(tcpSYN|tcpACK) == tcpSYN
	switch {
	case !bareSYN && live:
		m.track(f, tracked, h.BackendId, p.flags&(tcpFIN|tcpRST) != 0)
		m.o.halfAfter = nil
		m.o.count("HalfopenPromoted")
		return true, true, false, h.BackendId, be
	case !bareSYN && tracked:
		// A stale entry moves (new_flow): no insert, no eviction.
		return false, true, isNew, 0, bpf.Backend{}
	case bareSYN && tracked:
		if f.Flags&bpf.FlowClosing == 0 {
			m.addActive(f.BackendId, -1)
		}
		m.o.flowAfter = nil
	}
	if live {
		return true, true, false, h.BackendId, be // a retransmitted SYN
	}
	if id, be, ok = m.pick(svc, k); !ok {
		return false, false, false, 0, be
	}
	m.rememberClient(svc, id)
	m.o.halfAfter = &bpf.Flow{LastSeen: stampNow, BackendId: id}
	m.o.count("NewFlows")
	m.o.svcDelta.NewFlows++
	m.o.count("HalfopenNew")
	return true, true, true, id, be
}

// hashed is the backend in a maglev or source-hash service's slot for k.
func (m *model) hashed(svc bpf.Service, k bpf.FlowKey) uint32 {
	t := m.st.table(svc.Id)
	if t == nil {
		return 0
	}
	h := flowHash(k)
	if svc.Sched == bpf.SchedSourceHash {
		h = clientHash(k)
	}
	if s := h % m.st.tableSize(); int(s) < len(t) {
		return t[s]
	}
	return 0
}

// schedule is the scheduler's pick for a new flow, 0 if none.
func (m *model) schedule(svc bpf.Service, k bpf.FlowKey) uint32 {
	t := m.st.table(svc.Id)
	if t == nil {
		return 0
	}
	switch svc.Sched {
	case bpf.SchedLeastConn:
		return m.leastConn(svc.Id, t, flowHash(k))
	case bpf.SchedRoundRobin:
		slot := m.st.rrCursor(svc.Id)
		if slot >= m.st.tableSize() {
			slot = 0
		}
		next, sid := slot+1, svc.Id
		m.o.rrSvc, m.o.rrNext = &sid, &next
		if int(slot) < len(t) {
			return t[slot]
		}
		return 0
	}
	return m.hashed(svc, k)
}

// leastConn: the candidate (slots 1..n) with the lowest (active+1)/weight,
// scanned from the slot the flow hash picks, the first of equals winning.
func (m *model) leastConn(svcID uint32, t []uint32, h uint32) uint32 {
	if len(t) == 0 || t[0] == 0 {
		return 0
	}
	n := min(t[0], lcMaxBackends)
	var best uint32
	var bestLoad, bestW uint64
	for i := range n {
		slot := (h%n+i)%n + 1
		if int(slot) >= len(t) {
			continue
		}
		id := t[slot]
		be, ok := m.usable(id, svcID)
		if !ok || be.Weight == 0 {
			continue
		}
		// The count as the program reads it: a bare SYN's stale entry
		// has already given its backend's flow back.
		a, _ := m.st.active(id)
		a += m.o.active[id]
		load := uint64(1)
		if a > 0 {
			load = uint64(a) + 1
		}
		w := uint64(be.Weight)
		if best == 0 || load*bestW < bestLoad*w {
			best, bestLoad, bestW = id, load, w
		}
	}
	return best
}

// The flow hashes, on the key's words as the maps hold them (MurmurHash3's
// mix with the data plane's seed; maps.FlowHash is the control plane's
// twin, checked against these in the harness).
func murmurMix(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = k<<15 | k>>17
	k *= 0x1b873593
	h ^= k
	h = h<<13 | h>>19
	return h*5 + 0xe6546b64
}

func murmurFinal(h, n uint32) uint32 {
	h ^= n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	return h ^ h>>16
}

func flowHash(k bpf.FlowKey) uint32 {
	h := uint32(0x786c6221)
	for _, w := range k.Src {
		h = murmurMix(h, w)
	}
	for _, w := range k.Dst {
		h = murmurMix(h, w)
	}
	h = murmurMix(h, uint32(k.Sport)<<16|uint32(k.Dport))
	h = murmurMix(h, uint32(k.Family)<<8|uint32(k.Proto))
	return murmurFinal(h, 40)
}

func clientHash(k bpf.FlowKey) uint32 {
	h := uint32(0x786c6221)
	for _, w := range k.Src {
		h = murmurMix(h, w)
	}
	return murmurFinal(murmurMix(h, uint32(k.Family)), 20)
}
