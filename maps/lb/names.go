package lb

import (
	"fmt"
	"strconv"
	"strings"
)

// name is one enum value's canonical name and the other names it is
// known by (ipvsadm's and ldirectord's among them). Every enum of this
// package parses and prints through one table of names, so a name is
// written once.
type name[T comparable] struct {
	v       T
	name    string
	aliases []string
}

// Enum is an enum's table of names, in the order errors list them.
type Enum[T comparable] struct {
	what  string // "scheduler", for messages
	table []name[T]
	// aliasesOf says whose names the aliases are ("ldirectord's").
	aliasesOf string
}

// Lookup matches s case-insensitively against every name and alias.
func (n Enum[T]) Lookup(s string) (T, bool) {
	l := strings.ToLower(s)
	for _, e := range n.table {
		if l == e.name {
			return e.v, true
		}
		for _, a := range e.aliases {
			if l == a {
				return e.v, true
			}
		}
	}
	var zero T
	return zero, false
}

// Name returns v's canonical name, or fallback if v has none.
func (n Enum[T]) Name(v T, fallback string) string {
	for _, e := range n.table {
		if e.v == v {
			return e.name
		}
	}
	return fallback
}

// Names lists the canonical names.
func (n Enum[T]) Names() []string {
	out := make([]string, len(n.table))
	for i, e := range n.table {
		out[i] = e.name
	}
	return out
}

// Want is the tail of an error for a bad name, "want one of a, b (or
// x, y)": the aliases are named too.
func (n Enum[T]) Want() string {
	var al []string
	for _, e := range n.table {
		al = append(al, e.aliases...)
	}
	w := strings.Join(n.Names(), ", ")
	if len(n.table) == 1 {
		w = "want " + w
	} else {
		w = "want one of " + w
	}
	if len(al) > 0 {
		w += " (or " + n.aliasesOf + strings.Join(al, ", ") + ")"
	}
	return w
}

// Parse returns the value s names, or a *NameError that says what is
// wanted.
func (n Enum[T]) Parse(s string) (T, error) {
	v, ok := n.Lookup(s)
	if !ok {
		return v, &NameError{What: n.what, Value: s, Want: n.Want()}
	}
	return v, nil
}

func (n Enum[T]) unmarshal(v *T, b []byte) error {
	p, err := n.Parse(string(b))
	if err == nil {
		*v = p
	}
	return err
}

// NameError is a name that is none of an enum's names or aliases.
type NameError struct {
	What  string // "scheduler"
	Value string // what was given
	Want  string // "want one of maglev, ..."
}

func (e *NameError) Error() string { return fmt.Sprintf("%s %q: %s", e.What, e.Value, e.Want) }

// Proto is a layer-4 protocol a service can match; the values are the IP
// protocol numbers.
type Proto uint8

// Protocols a service can match.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// Protocols is the table of protocol names.
var Protocols = Enum[Proto]{"protocol", []name[Proto]{{TCP, "tcp", nil}, {UDP, "udp", nil}}, ""}

// String returns "tcp" or "udp".
func (p Proto) String() string { return Protocols.Name(p, "proto("+strconv.Itoa(int(p))+")") }

// UnmarshalText parses "tcp" or "udp" (any case).
func (p *Proto) UnmarshalText(b []byte) error { return Protocols.unmarshal(p, b) }

// MarshalText returns String.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Scheduler is how a service picks the backend of a new flow. The values
// are the data plane's (a test in package maps holds them equal).
type Scheduler uint8

// Schedulers the data plane implements.
const (
	// Maglev hashes the 5-tuple into the service's Maglev table.
	Maglev Scheduler = 0
	// SourceHash hashes the client address only: one client, one backend,
	// on every balancer node.
	SourceHash Scheduler = 1
	// RoundRobin spreads new flows over the backends in turn, in
	// proportion to their weights.
	RoundRobin Scheduler = 2
	// LeastConn sends a new flow to the backend with the fewest active
	// flows relative to its weight.
	LeastConn Scheduler = 3
)

// Schedulers is the table of scheduler names, ipvsadm's among the aliases.
// Adding a scheduler is a line here, its table builder in maps/table and
// its case in the data plane.
var Schedulers = Enum[Scheduler]{"scheduler", []name[Scheduler]{
	{Maglev, "maglev", []string{"mh"}},
	{SourceHash, "source-hash", []string{"sh"}},
	{RoundRobin, "round-robin", []string{"rr", "wrr"}},
	{LeastConn, "least-conn", []string{"lc", "wlc"}},
}, "ipvsadm's "}

// DefaultScheduler is a service's scheduler when none is given.
const DefaultScheduler = Maglev

// String returns the scheduler's configuration name.
func (s Scheduler) String() string {
	return Schedulers.Name(s, "scheduler("+strconv.Itoa(int(s))+")")
}

// UnmarshalText parses a scheduler's name or alias (any case).
func (s *Scheduler) UnmarshalText(b []byte) error { return Schedulers.unmarshal(s, b) }

// MarshalText returns String.
func (s Scheduler) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ForwardMode is how a packet reaches its backend.
type ForwardMode uint8

// Forwarding modes.
const (
	// DSRL2 rewrites MAC addresses only (the backend is on the same L2
	// segment and holds the VIP on loopback).
	DSRL2 ForwardMode = 0
	// IPIP sends the client's packet inside an outer IP header of its
	// family (IPv4-in-IPv4, IPv6-in-IPv6) to the backend's address, which
	// may be behind routers; the backend unwraps it.
	IPIP ForwardMode = 1
	// GUE sends the client's packet as the payload of a UDP datagram (GUE
	// variant 1) to the backend's address and the GUE port: for networks
	// and NICs that spread only UDP well.
	GUE ForwardMode = 2
)

// ForwardModes is the table of forwarding-mode names.
var ForwardModes = Enum[ForwardMode]{"forward", []name[ForwardMode]{{DSRL2, "dsr-l2", nil}, {IPIP, "ipip", nil}, {GUE, "gue", nil}}, ""}

// Encapsulated reports whether the mode reaches backends by their address
// through routers (ipip, gue) rather than by their MAC (dsr-l2).
func (m ForwardMode) Encapsulated() bool { return m == IPIP || m == GUE }

// DefaultForward is a service's forwarding mode when none is given.
const DefaultForward = DSRL2

// String returns the mode's configuration name.
func (m ForwardMode) String() string {
	return ForwardModes.Name(m, "forward("+strconv.Itoa(int(m))+")")
}

// UnmarshalText parses "dsr-l2", "ipip" or "gue".
func (m *ForwardMode) UnmarshalText(b []byte) error { return ForwardModes.unmarshal(m, b) }

// MarshalText returns String.
func (m ForwardMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// XDPMode is how the data plane attaches to its interface.
type XDPMode string

// Attach modes.
const (
	// Native runs the program in the driver (the fast path).
	Native XDPMode = "native"
	// Generic runs it after the kernel built an skb: works on any
	// interface, much slower. Only when asked for.
	Generic XDPMode = "generic"
)

// XDPModes is the table of attach-mode names.
var XDPModes = Enum[XDPMode]{"xdp_mode", []name[XDPMode]{{Native, "native", nil}, {Generic, "generic", nil}}, ""}

// UnmarshalText parses "native" or "generic".
func (m *XDPMode) UnmarshalText(b []byte) error { return XDPModes.unmarshal(m, b) }

// CheckType is the kind of a service's health check.
type CheckType string

// Health-check types.
const (
	CheckTCP  CheckType = "tcp"
	CheckHTTP CheckType = "http"
	CheckICMP CheckType = "icmp"
	CheckNone CheckType = "none"
)

// CheckTypes is the table of check names, ldirectord's among the aliases.
var CheckTypes = Enum[CheckType]{"type", []name[CheckType]{
	{CheckTCP, "tcp", []string{"connect"}},
	{CheckHTTP, "http", []string{"negotiate"}},
	{CheckICMP, "icmp", []string{"ping"}},
	{CheckNone, "none", []string{"on"}},
}, "ldirectord's "}

// UnmarshalText parses a check type's name or alias (any case).
func (t *CheckType) UnmarshalText(b []byte) error { return CheckTypes.unmarshal(t, b) }

// CheckVia is the path of a service's tcp or http checks.
type CheckVia string

// Check paths.
const (
	// CheckViaBackend probes the backend's own address (the default).
	CheckViaBackend CheckVia = "backend"
	// CheckViaTunnel probes the VIP on each backend through its tunnel
	// (ipip and gue services), the path clients' packets take.
	CheckViaTunnel CheckVia = "tunnel"
)

// CheckVias is the table of check path names.
var CheckVias = Enum[CheckVia]{"via", []name[CheckVia]{{CheckViaBackend, "backend", nil}, {CheckViaTunnel, "tunnel", nil}}, ""}

// AllDown is what a service does while every backend fails its check.
type AllDown string

// All-down policies.
const (
	// AllDownDrop drops the service's traffic (counted).
	AllDownDrop AllDown = "drop"
	// AllDownKeepLast keeps sending it to the backends that were up last.
	AllDownKeepLast AllDown = "keep-last"
)

// AllDowns is the table of all-down policy names.
var AllDowns = Enum[AllDown]{"all_down", []name[AllDown]{{AllDownDrop, "drop", nil}, {AllDownKeepLast, "keep-last", nil}}, ""}

// UnmarshalText parses "drop" or "keep-last".
func (a *AllDown) UnmarshalText(b []byte) error { return AllDowns.unmarshal(a, b) }
