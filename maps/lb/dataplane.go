package lb

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// This file is the data plane's contract with the daemon: what the daemon
// asks it to install, and what it reads back.

// Service is the desired state of one service and its backends.
type Service struct {
	Key       ServiceKey
	Scheduler Scheduler
	Forward   ForwardMode
	// Persistence sends a client address's new flows to the backend of
	// its previous one, if that was within this long and the backend is
	// still usable (drained ones included). Whole seconds; 0 is off.
	Persistence time.Duration
	Backends    []Backend
}

// Backend is the desired state of one backend of a service.
type Backend struct {
	// Addr is the backend's own address (not the VIP).
	Addr netip.Addr
	// MAC is the backend's Ethernet address for dsr-l2; nil while unknown
	// (the backend gets no traffic until it is known).
	MAC net.HardwareAddr
	// Weight is the relative share of new flows; 0 drains the backend:
	// its existing flows continue, it gets no new ones.
	Weight uint32
	// Down marks a backend that failed its health check: it gets no new
	// flows and its existing flows move to a usable backend.
	Down bool
	// Failing marks a backend failing its health check that is not Down
	// (a drained one keeps its established flows whatever its health): it
	// takes no persistent client, whose next flow is scheduled afresh.
	Failing bool
}

// Usable reports whether the data plane may send the backend traffic in
// dsr-l2: healthy and its MAC known.
func (b Backend) Usable() bool { return b.UsableFor(DSRL2) }

// UsableFor reports whether the data plane may send the backend traffic
// in mode m: healthy, and for dsr-l2 its MAC known (encapsulated modes
// reach it by its address, through the FIB).
func (b Backend) UsableFor(m ForwardMode) bool {
	return !b.Down && (m.Encapsulated() || len(b.MAC) == 6)
}

// Validate checks one service's desired state whole.
func (s Service) Validate() error {
	if err := s.Key.Validate(); err != nil {
		return fmt.Errorf("service %s: %w", s.Key, err)
	}
	if _, ok := Schedulers.Lookup(s.Scheduler.String()); !ok {
		return fmt.Errorf("service %s: scheduler %s is not supported", s.Key, s.Scheduler)
	}
	if err := Persistence.Check(s.Persistence); err != nil || s.Persistence%time.Second != 0 {
		return fmt.Errorf("service %s: persistence %s: want whole seconds from 0 (off) to %s", s.Key, s.Persistence, FormatDuration(Persistence.Max))
	}
	if _, ok := ForwardModes.Lookup(s.Forward.String()); !ok {
		return fmt.Errorf("service %s: forwarding mode %s is not supported", s.Key, s.Forward)
	}
	seen := make(map[netip.Addr]bool, len(s.Backends))
	for _, be := range s.Backends {
		if err := s.Key.CheckBackend(be.Addr); err != nil {
			return fmt.Errorf("service %s: backend %s: %w", s.Key, be.Addr, err)
		}
		switch {
		case seen[be.Addr.Unmap()]:
			return fmt.Errorf("service %s: duplicate backend %s", s.Key, be.Addr)
		case be.Weight > MaxWeight:
			return fmt.Errorf("service %s: backend %s: weight %d out of range %s", s.Key, be.Addr, be.Weight, Weight.Range())
		case len(be.MAC) != 0 && len(be.MAC) != 6:
			return fmt.Errorf("service %s: backend %s: mac %s is not a 6-byte Ethernet address", s.Key, be.Addr, be.MAC)
		}
		seen[be.Addr.Unmap()] = true
	}
	return nil
}

// ICMP holds the data plane's ICMP switches. The zero value is the
// default: both on.
type ICMP struct {
	// NoEcho leaves ICMP/ICMPv6 echo requests to a VIP to the kernel
	// instead of answering them (config icmp_echo: false).
	NoEcho bool
	// NoForward leaves ICMP errors to a VIP (fragmentation needed, packet
	// too big, destination unreachable) to the kernel instead of sending
	// them to the backend of the flow they quote (config icmp_forward:
	// false): path MTU discovery through DSR then stalls.
	NoForward bool
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

// DefaultTimeouts are the connection table's idle timeouts unless
// configured (those of IPVS).
var DefaultTimeouts = Timeouts{TCP: TCPTimeout.Default, TCPFin: TCPFinTimeout.Default, UDP: UDPTimeout.Default}

// OrDefault fills zero fields from DefaultTimeouts.
func (t Timeouts) OrDefault() Timeouts {
	return Timeouts{TCP: TCPTimeout.Or(t.TCP), TCPFin: TCPFinTimeout.Or(t.TCPFin), UDP: UDPTimeout.Or(t.UDP)}
}

// Validate checks each timeout against its limit.
func (t Timeouts) Validate() error {
	for _, f := range []struct {
		l Limit[time.Duration]
		v time.Duration
	}{{TCPTimeout, t.TCP}, {TCPFinTimeout, t.TCPFin}, {UDPTimeout, t.UDP}} {
		if err := f.l.Check(f.v); err != nil {
			return fmt.Errorf("%s %s: %w", f.l.Name, FormatDuration(f.v), err)
		}
	}
	return nil
}

// Of returns the timeout of a flow of protocol p; closing: the client sent
// FIN or RST.
func (t Timeouts) Of(p Proto, closing bool) time.Duration {
	switch {
	case p == UDP:
		return t.UDP
	case closing:
		return t.TCPFin
	}
	return t.TCP
}

// Expired reports whether a flow of protocol p seen last at lastSeen
// (CLOCK_MONOTONIC ns) is idle beyond its timeout at now, as the data
// plane judges it.
func (t Timeouts) Expired(p Proto, closing bool, lastSeen, now uint64) bool {
	to := t.Of(p, closing)
	return to > 0 && int64(now-lastSeen) > int64(to)
}

// Snapshot is the data plane as installed, with its counters, read at
// one moment: what status pages and metrics show.
type Snapshot struct {
	Global   GlobalCounters
	Services map[ServiceKey]ServiceState
	// Flows is the number of entries in the connection table; HalfOpen
	// in the half-open TCP table.
	Flows    int
	HalfOpen int
	Timeouts Timeouts
}

// ServiceState is one service as installed.
type ServiceState struct {
	Service
	Counters ServiceCounters
	Backends map[netip.Addr]BackendState
}

// BackendState is one backend as installed.
type BackendState struct {
	Backend
	// Usable: healthy and MAC known.
	Usable bool
	// InTable: usable with a weight above 0, so it receives new flows.
	InTable  bool
	Counters BackendCounters
	// Active is the number of its flows neither closed nor expired.
	Active uint64
}

// GlobalCounters count what the data plane did with every frame.
type GlobalCounters struct {
	RxPackets, TxPackets uint64
	// Frames passed to the kernel untouched, by reason.
	PassNotIP, PassNotVIP, PassMalformed, PassFragment, PassIPv6Ext, PassTTL, PassOtherHost uint64
	// Frames dropped, by reason.
	DropNoBackend, DropInternal                                 uint64
	ConntrackHits, NewFlows, Reschedules, ConntrackInsertErrors uint64
	ExpiredFlows, ClosedFlows, PersistHits                      uint64
	// ICMPEchoReplies are echo requests to a VIP answered by the data
	// plane itself.
	ICMPEchoReplies uint64
	// ICMPErrorsForwarded are ICMP destination unreachable and ICMPv6
	// packet too big / destination unreachable messages for a VIP sent to
	// the backend of the flow they quote; ICMPErrorsUnmatched quoted a
	// service's flow that neither the connection table nor the scheduler
	// could place, and went to the kernel.
	ICMPErrorsForwarded, ICMPErrorsUnmatched uint64
	// FragFirst are first fragments scheduled and remembered;
	// FragForwarded later fragments sent to their first fragment's
	// backend; FragUnmatched later fragments to a VIP with no live entry
	// (before their first, or too late), passed to the kernel.
	FragFirst, FragForwarded, FragUnmatched uint64
	// FragEarly are later fragments that came before their first, sent to
	// the client's source-hash backend (also in FragForwarded).
	FragEarly uint64
	// HalfOpenNew are TCP flows whose first packet was scheduled into the
	// half-open table (also in NewFlows); HalfOpenPromoted those moved
	// into the connection table by their next packet.
	HalfOpenNew, HalfOpenPromoted uint64
	// EncapPackets are frames encapsulated (ipip, gue) and sent;
	// EncapFIBMiss passed to the kernel for want of a route or neighbour
	// to the backend; EncapTooBig dropped over the egress MTU;
	// EncapErrors dropped because the frame could not be built.
	EncapPackets, EncapFIBMiss, EncapTooBig, EncapErrors uint64
	// EncapICMPTooBig are the EncapTooBig frames answered with ICMP
	// fragmentation needed or ICMPv6 packet too big.
	EncapICMPTooBig uint64
	// EncapFIBLookups are the FIB lookups made for encapsulated frames:
	// a backend's next hop is cached per CPU and looked up again after a
	// second (the rest of EncapPackets used the cached one).
	EncapFIBLookups uint64
}

// ServiceCounters count one service's packets.
type ServiceCounters struct {
	Packets, Bytes, NewFlows, DropNoBackend uint64
}

// BackendCounters count one backend's packets.
type BackendCounters struct {
	Packets, Bytes, NewFlows uint64
}

// FlowEntry is one connection-table entry as the API lists it.
type FlowEntry struct {
	Key     FlowKey
	Backend netip.Addr
	Idle    time.Duration
	// Closing: the client sent FIN or RST.
	Closing bool
}

// SweepResult is what one sweep of the connection table did.
type SweepResult struct {
	// Flows is the number of entries seen.
	Flows int
	// Expired flows, PersistExpired persistence entries and
	// HalfOpenExpired half-open entries were deleted.
	Expired, PersistExpired, HalfOpenExpired int
	// Corrected is the number of backends whose active-flow count was
	// fixed.
	Corrected int
}

// DefaultGUEPort is gue's UDP destination port unless configured (the one
// Katran uses).
const DefaultGUEPort = 6080

// Encap holds the data plane's settings of the encapsulated modes.
type Encap struct {
	// Source4 and Source6 are the outer sources: a single address (a
	// prefix of full length) used as is, or a prefix whose host part
	// takes the flow's hash, so the backends' NICs spread the flows. The
	// zero Prefix: none of that family configured (encapsulation of that
	// family fails, counted).
	Source4, Source6 netip.Prefix
	// GUEPort is gue's UDP destination port.
	GUEPort uint16
}

// Host bits of an outer source the flow's hash may fill: the data plane
// replaces at most the last 16 bits of an IPv4 address, 32 of an IPv6 one.
const (
	MaxEncapHashBits4 = 16
	MaxEncapHashBits6 = 32
)

// ParseEncapSource parses an outer source, an address or a prefix of
// family v4 (else IPv6) with at most MaxEncapHashBits host bits. The empty
// string is the zero Prefix.
func ParseEncapSource(s string, v4 bool) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not an address or a prefix")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	switch {
	case v4 && !a.Is4():
		return netip.Prefix{}, fmt.Errorf("not an IPv4 address or prefix")
	case !v4 && (!a.Is6() || a.Is4In6()):
		return netip.Prefix{}, fmt.Errorf("not an IPv6 address or prefix")
	case !a.IsGlobalUnicast() && !a.IsPrivate():
		return netip.Prefix{}, fmt.Errorf("not a unicast address")
	}
	max := MaxEncapHashBits6
	if v4 {
		max = MaxEncapHashBits4
	}
	if host := a.BitLen() - p.Bits(); host > max {
		return netip.Prefix{}, fmt.Errorf("prefix of %d host bits, at most %d take the flow hash", host, max)
	}
	return p.Masked(), nil
}
