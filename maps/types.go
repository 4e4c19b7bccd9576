package maps

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/bpf"
)

// Proto is a layer-4 protocol a service can match.
type Proto uint8

// Protocols a service can match.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// String returns "tcp" or "udp".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// UnmarshalText parses "tcp" or "udp" (any case).
func (p *Proto) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "tcp":
		*p = TCP
	case "udp":
		*p = UDP
	default:
		return fmt.Errorf("protocol %q: want tcp or udp", b)
	}
	return nil
}

// MarshalText returns String.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Scheduler is how a service picks the backend of a new flow.
type Scheduler uint8

// Schedulers the data plane implements.
const (
	// Maglev hashes the 5-tuple into the service's Maglev table.
	Maglev = Scheduler(bpf.SchedMaglev)
	// SourceHash hashes the client address only: one client, one backend,
	// on every balancer node.
	SourceHash = Scheduler(bpf.SchedSourceHash)
	// RoundRobin spreads new flows over the backends in turn, in
	// proportion to their weights.
	RoundRobin = Scheduler(bpf.SchedRoundRobin)
	// LeastConn sends a new flow to the backend with the fewest active
	// flows relative to its weight.
	LeastConn = Scheduler(bpf.SchedLeastConn)
)

// String returns the scheduler's configuration name.
func (s Scheduler) String() string {
	switch s {
	case Maglev:
		return "maglev"
	case SourceHash:
		return "source-hash"
	case RoundRobin:
		return "round-robin"
	case LeastConn:
		return "least-conn"
	}
	return "scheduler(" + strconv.Itoa(int(s)) + ")"
}

// UnmarshalText parses "maglev" ("mh"), "source-hash" ("sh"),
// "round-robin" ("rr", "wrr") or "least-conn" ("lc", "wlc").
func (s *Scheduler) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "maglev", "mh", "":
		*s = Maglev
	case "source-hash", "sh":
		*s = SourceHash
	case "round-robin", "rr", "wrr":
		*s = RoundRobin
	case "least-conn", "lc", "wlc":
		*s = LeastConn
	default:
		return fmt.Errorf("scheduler %q: want maglev, source-hash, round-robin or least-conn", b)
	}
	return nil
}

// MarshalText returns String.
func (s Scheduler) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ForwardMode is how a packet reaches its backend.
type ForwardMode uint8

// Forwarding modes.
const (
	// DSRL2 rewrites MAC addresses only (the backend is on the same L2
	// segment and holds the VIP on loopback).
	DSRL2 = ForwardMode(bpf.FwdDSRL2)
)

// String returns the mode's configuration name.
func (m ForwardMode) String() string {
	if m == DSRL2 {
		return "dsr-l2"
	}
	return "forward(" + strconv.Itoa(int(m)) + ")"
}

// UnmarshalText parses "dsr-l2".
func (m *ForwardMode) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "dsr-l2", "":
		*m = DSRL2
	default:
		return fmt.Errorf("forwarding mode %q: want dsr-l2", b)
	}
	return nil
}

// MarshalText returns String.
func (m ForwardMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// ServiceKey identifies a service: VIP, port and protocol.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto Proto
}

// String formats the key as VIP:PORT/PROTO ("[2001:2::1]:80/tcp" for IPv6).
func (k ServiceKey) String() string {
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + k.Proto.String()
}

// ParseServiceKey parses VIP:PORT/PROTO, e.g. "198.18.1.1:80/tcp" or
// "[2001:2::1]:443/udp".
func ParseServiceKey(s string) (ServiceKey, error) {
	addr, proto, ok := strings.Cut(s, "/")
	if !ok {
		return ServiceKey{}, fmt.Errorf("service %q: want VIP:PORT/PROTO", s)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("service %q: %w", s, err)
	}
	k := ServiceKey{VIP: ap.Addr().Unmap(), Port: ap.Port()}
	if err := k.Proto.UnmarshalText([]byte(proto)); err != nil {
		return ServiceKey{}, fmt.Errorf("service %q: %w", s, err)
	}
	return k, k.Validate()
}

// Validate checks that the key can be a service.
func (k ServiceKey) Validate() error {
	switch {
	case !k.VIP.IsValid():
		return fmt.Errorf("service vip: missing")
	case k.VIP.Zone() != "":
		return fmt.Errorf("service vip %s: zones are not allowed", k.VIP)
	case k.VIP.IsUnspecified() || k.VIP.IsMulticast() || k.VIP.IsLoopback():
		return fmt.Errorf("service vip %s: not a unicast address", k.VIP)
	case k.Port == 0:
		return fmt.Errorf("service %s: port 0 is not allowed", k)
	case k.Proto != TCP && k.Proto != UDP:
		return fmt.Errorf("service %s: protocol must be tcp or udp", k)
	}
	return nil
}

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

func (k ServiceKey) marshal() bpf.SvcKey {
	w, fam := addrWords(k.VIP)
	return bpf.SvcKey{Addr: w, Port: bePort(k.Port), Proto: uint8(k.Proto), Family: fam}
}

func unmarshalServiceKey(k bpf.SvcKey) ServiceKey {
	return ServiceKey{VIP: wordsAddr(k.Addr, k.Family), Port: hostPort(k.Port), Proto: Proto(k.Proto)}
}

// Service is a service's entry in the data plane.
type Service struct {
	// ID indexes the service's Maglev table and counters.
	ID        uint32
	Scheduler Scheduler
	Forward   ForwardMode
	// Persistence is how long a client address stays with its backend
	// (whole seconds, at most MaxPersistence); 0 is off.
	Persistence time.Duration
}

// MaxPersistence is the longest persistence timeout accepted (30 days).
const MaxPersistence = 30 * 24 * time.Hour

func (s Service) marshal() bpf.Service {
	return bpf.Service{
		Id: s.ID, Sched: bpf.Sched(s.Scheduler), Fwd: bpf.FwdMode(s.Forward),
		PersistSecs: uint32(min(s.Persistence, MaxPersistence) / time.Second),
	}
}

func unmarshalService(v bpf.Service) Service {
	return Service{ID: v.Id, Scheduler: Scheduler(v.Sched), Forward: ForwardMode(v.Fwd),
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
	if v.Mac != [6]uint8{} {
		b.MAC = net.HardwareAddr(append([]byte(nil), v.Mac[:]...))
	}
	return b
}

// FlowKey is the client-to-VIP direction of a flow.
type FlowKey struct {
	Src, Dst netip.AddrPort
	Proto    Proto
}

// String formats the flow as "proto src -> dst".
func (k FlowKey) String() string {
	return k.Proto.String() + " " + k.Src.String() + " -> " + k.Dst.String()
}

// Marshal returns the flow's key as the data plane stores it.
func (k FlowKey) Marshal() bpf.FlowKey {
	src, fam := addrWords(k.Src.Addr())
	dst, _ := addrWords(k.Dst.Addr())
	return bpf.FlowKey{
		Src: src, Dst: dst,
		Sport: bePort(k.Src.Port()), Dport: bePort(k.Dst.Port()),
		Proto: uint8(k.Proto), Family: fam,
	}
}

func unmarshalFlowKey(k bpf.FlowKey) FlowKey {
	return FlowKey{
		Src:   netip.AddrPortFrom(wordsAddr(k.Src, k.Family), hostPort(k.Sport)),
		Dst:   netip.AddrPortFrom(wordsAddr(k.Dst, k.Family), hostPort(k.Dport)),
		Proto: Proto(k.Proto),
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

// Timeouts are the connection table's idle timeouts; 0 never expires.
type Timeouts struct {
	// TCP is the idle timeout of an established TCP flow.
	TCP time.Duration
	// TCPFin is the idle timeout of a TCP flow after the client's FIN or
	// RST.
	TCPFin time.Duration
	// UDP is the idle timeout of a UDP flow.
	UDP time.Duration
}

// Of returns the timeout of a flow of protocol p.
func (t Timeouts) Of(p Proto, f Flow) time.Duration {
	switch {
	case p == UDP:
		return t.UDP
	case f.Closing:
		return t.TCPFin
	}
	return t.TCP
}

// Expired reports whether flow f of protocol p, seen last at f.LastSeen,
// is idle beyond its timeout at monotonic time now (ns), as the data plane
// judges it.
func (t Timeouts) Expired(p Proto, f Flow, now uint64) bool {
	to := t.Of(p, f)
	return to > 0 && int64(now-f.LastSeen) > int64(to)
}
