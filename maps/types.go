package maps

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps/lb"
)

// addrWords returns a in the maps' layout: the address bytes in network
// order laid into four words (IPv4 in the first) and the address family.
func addrWords(a netip.Addr) (w [4]uint32, family uint8) {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		w[0] = binary.NativeEndian.Uint32(b[:])
		return w, bpf.FamilyIPv4
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w, bpf.FamilyIPv6
}

// wordsAddr is the inverse of addrWords.
func wordsAddr(w [4]uint32, family uint8) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	switch family {
	case bpf.FamilyIPv4:
		return netip.AddrFrom4([4]byte(b[:4]))
	case bpf.FamilyIPv6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// bePort converts a port to its network-order representation in a map.
func bePort(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// hostPort is the inverse of bePort.
func hostPort(p uint16) uint16 { return bePort(p) }

func marshalServiceKey(k lb.ServiceKey) bpf.SvcKey {
	w, fam := addrWords(k.VIP)
	return bpf.SvcKey{Addr: w, Port: bePort(k.Port), Proto: uint8(k.Proto), Family: fam}
}

func unmarshalServiceKey(k bpf.SvcKey) lb.ServiceKey {
	return lb.ServiceKey{VIP: wordsAddr(k.Addr, k.Family), Port: hostPort(k.Port), Proto: lb.Proto(k.Proto)}
}

// Service is a service's entry in the data plane.
type Service struct {
	// ID indexes the service's Maglev table and counters.
	ID        uint32
	Scheduler lb.Scheduler
	Forward   lb.ForwardMode
	// Persistence is how long a client address stays with its backend
	// (whole seconds, at most MaxPersistence); 0 is off.
	Persistence time.Duration
}

func (s Service) marshal() bpf.Service {
	return bpf.Service{
		Id: s.ID, Sched: bpf.Sched(s.Scheduler), Fwd: bpf.FwdMode(s.Forward),
		PersistSecs: uint32(min(s.Persistence, lb.Persistence.Max) / time.Second),
	}
}

func unmarshalService(v bpf.Service) Service {
	return Service{ID: v.Id, Scheduler: lb.Scheduler(v.Sched), Forward: lb.ForwardMode(v.Fwd),
		Persistence: time.Duration(v.PersistSecs) * time.Second}
}

// Backend is one (service, backend) pair in the data plane.
type Backend struct {
	Addr      netip.Addr
	ServiceID uint32
	Weight    uint32
	MAC       net.HardwareAddr
	// Usable: healthy and MAC known, may carry traffic.
	Usable bool
	// Failing: failing its health check; if still Usable (drained), for
	// its established flows only: it takes no persistent client.
	Failing bool
	// Forward is its service's forwarding mode: ipip and gue reach it by
	// its address (F_BACKEND_IPIP, F_BACKEND_GUE), dsr-l2 by its MAC.
	Forward lb.ForwardMode
}

func (b Backend) marshal() (bpf.Backend, error) {
	w, fam := addrWords(b.Addr)
	v := bpf.Backend{Addr: w, SvcId: b.ServiceID, Weight: b.Weight, Family: fam}
	if len(b.MAC) != 0 && len(b.MAC) != 6 {
		return v, fmt.Errorf("backend %s: mac %s is not a 6-byte Ethernet address", b.Addr, b.MAC)
	}
	copy(v.Mac[:], b.MAC)
	if b.Usable {
		v.Flags |= bpf.BackendUsable
	}
	if b.Failing {
		v.Flags |= bpf.BackendFailing
	}
	switch b.Forward {
	case lb.IPIP:
		v.Flags |= bpf.BackendIPIP
	case lb.GUE:
		v.Flags |= bpf.BackendGUE
	}
	return v, nil
}

func unmarshalBackend(v bpf.Backend) Backend {
	b := Backend{
		Addr:      wordsAddr(v.Addr, v.Family),
		ServiceID: v.SvcId,
		Weight:    v.Weight,
		Usable:    v.Flags&bpf.BackendUsable != 0,
		Failing:   v.Flags&bpf.BackendFailing != 0,
	}
	switch {
	case v.Flags&bpf.BackendIPIP != 0:
		b.Forward = lb.IPIP
	case v.Flags&bpf.BackendGUE != 0:
		b.Forward = lb.GUE
	}
	if v.Mac != [6]uint8{} {
		b.MAC = net.HardwareAddr(append([]byte(nil), v.Mac[:]...))
	}
	return b
}

// MarshalFlowKey returns the flow's key as the data plane stores it. The
// family is the VIP's (k.Dst): an IPv6 packet from an IPv4-mapped client
// address (::ffff:a.b.c.d) is an IPv6 flow there, its source kept whole.
func MarshalFlowKey(k lb.FlowKey) bpf.FlowKey {
	dst, fam := addrWords(k.Dst.Addr())
	src, _ := addrWords(k.Src.Addr())
	if fam == bpf.FamilyIPv6 && k.Src.Addr().Is4In6() {
		b := k.Src.Addr().As16()
		for i := range src {
			src[i] = binary.NativeEndian.Uint32(b[4*i:])
		}
	}
	return bpf.FlowKey{
		Src: src, Dst: dst,
		Sport: bePort(k.Src.Port()), Dport: bePort(k.Dst.Port()),
		Proto: uint8(k.Proto), Family: fam,
	}
}

func unmarshalFlowKey(k bpf.FlowKey) lb.FlowKey {
	return lb.FlowKey{
		Src:   netip.AddrPortFrom(wordsAddr(k.Src, k.Family), hostPort(k.Sport)),
		Dst:   netip.AddrPortFrom(wordsAddr(k.Dst, k.Family), hostPort(k.Dport)),
		Proto: lb.Proto(k.Proto),
	}
}

// Flow is a connection-table entry.
type Flow struct {
	// LastSeen is CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns) of the flow's latest
	// packet, refreshed at most once a second.
	LastSeen  uint64
	BackendID uint32
	// Closing: the client sent FIN or RST; the flow is no longer active.
	Closing bool
}

func (f Flow) marshal() bpf.Flow {
	v := bpf.Flow{LastSeen: f.LastSeen, BackendId: f.BackendID}
	if f.Closing {
		v.Flags |= bpf.FlowClosing
	}
	return v
}

func unmarshalFlow(v bpf.Flow) Flow {
	return Flow{LastSeen: v.LastSeen, BackendID: v.BackendId, Closing: v.Flags&bpf.FlowClosing != 0}
}

// Expired reports whether flow f of protocol p is idle beyond its timeout
// t at monotonic time now (ns), as the data plane judges it.
func Expired(t lb.Timeouts, p lb.Proto, f Flow, now uint64) bool {
	return t.Expired(p, f.Closing, f.LastSeen, now)
}
