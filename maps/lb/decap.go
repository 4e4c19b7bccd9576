package lb

import "net/netip"

// Role is what an xlbd runs on its interface: the balancer's data plane,
// or the backend-side decapsulator.
type Role string

// Roles of xlbd (--role).
const (
	// RoleBalancer runs the load balancer (the default).
	RoleBalancer Role = "balancer"
	// RoleBackend runs the decapsulator on a backend host: the outer
	// header of ipip and gue packets for its VIPs is stripped and the
	// client's packet goes to the local stack.
	RoleBackend Role = "backend"
)

// Roles is the table of role names.
var Roles = Enum[Role]{"role", []name[Role]{{RoleBalancer, "balancer", nil}, {RoleBackend, "backend", nil}}, ""}

// UnmarshalText parses "balancer" or "backend".
func (r *Role) UnmarshalText(b []byte) error { return Roles.unmarshal(r, b) }

// Limits of the decapsulator (config file: decap).
var (
	// GUEPort is the UDP destination port of gue packets. 6080 is what
	// Katran's GUE uses by default.
	GUEPort = Limit[uint32]{Name: "gue_port", Default: 6080, Min: 1, Max: 65535}
	// DecapMaxVIPs bounds the VIPs a backend decapsulates for (the size
	// of decap_vips).
	DecapMaxVIPs = 4096
	// DecapMaxAddrs bounds the outer destinations it accepts (the size of
	// decap_addrs).
	DecapMaxAddrs = 256
)

// DecapConfig is what the decapsulator is told: the VIPs served on this
// host, the host's addresses the balancer sends to, and the gue port.
type DecapConfig struct {
	// VIPs are the inner destinations decapsulated (unmapped, unique).
	VIPs []netip.Addr
	// Addresses are the outer destinations accepted (unmapped, unique).
	Addresses []netip.Addr
	// GUEPort is the UDP destination port of gue packets.
	GUEPort uint16
}

// DecapCounters are the decapsulator's counters, summed over CPUs. Every
// frame is counted in RxPackets and in exactly one decapsulated or passed
// outcome.
type DecapCounters struct {
	RxPackets uint64
	// Decapsulated by mode ("ipip", "gue"), outer and inner family.
	Decap map[DecapKind]uint64
	// Passed untouched, by reason (see DecapPassReasons).
	Pass map[string]uint64
	// ECNCE counts inner packets marked CE because the outer one was.
	ECNCE uint64
}

// DecapKind names one kind of decapsulated packet.
type DecapKind struct {
	// Mode is "ipip" or "gue".
	Mode string
	// Outer and Inner are "ipv4" or "ipv6".
	Outer, Inner string
}

// DecapPassReasons are the reasons a frame passes the decapsulator
// untouched, as DecapCounters.Pass and the metrics name them.
var DecapPassReasons = []string{"other", "not_local", "wrong_port", "fragment", "not_ip", "not_vip", "malformed", "error"}
