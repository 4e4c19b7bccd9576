package api

import (
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

// Backend states in BackendStatus.State.
const (
	StateUp    = "up"     // healthy, MAC known, weight above 0
	StateDown  = "down"   // failed its health check
	StateDrain = "drain"  // weight 0: keeps its flows, gets no new ones
	StateNoMAC = "no-mac" // its Ethernet address is not known (yet)
)

// Status is the answer to the API's status request.
type Status struct {
	// Role is "balancer" or "backend" (xlbd --role).
	Role      string `json:"role,omitempty"`
	Interface string `json:"interface"`
	XDPMode   string `json:"xdp_mode"`
	Version   string `json:"version"`
	// Time is when the counters were read: rates are the change of a
	// counter between two statuses over the change of Time.
	Time     time.Time       `json:"time,omitzero"`
	Services []ServiceStatus `json:"services"`
	// Flows is the number of entries in the connection table.
	Flows int `json:"flows"`
	// Timeouts are the connection table's idle timeouts in force.
	Timeouts config.Conntrack `json:"timeouts"`
	// BGP: the VIPs are announced over BGP (see ServiceStatus.Announced).
	BGP bool `json:"bgp"`
	// Decap is the decapsulator's state in the backend role; nil in the
	// balancer role.
	Decap *DecapStatus `json:"decap,omitempty"`
}

// DecapStatus is the backend role's decapsulator: its settings in force
// and its counters.
type DecapStatus struct {
	// VIPs are the inner destinations decapsulated.
	VIPs []string `json:"vips"`
	// Addresses are the outer destinations accepted.
	Addresses []string `json:"addresses"`
	GUEPort   uint16   `json:"gue_port"`
	// Adopted: this xlbd re-adopted a decapsulator that kept running.
	Adopted   bool   `json:"adopted"`
	RxPackets uint64 `json:"rx_packets"`
	// Decapsulated counts by kind: "ipip 4in4", "gue 6in4", ... (inner in
	// outer family).
	Decapsulated map[string]uint64 `json:"decapsulated"`
	// Passed counts frames left untouched, by reason (other, not_local,
	// wrong_port, fragment, not_ip, not_vip, malformed, error).
	Passed map[string]uint64 `json:"passed"`
	// ECNCE counts inner packets marked CE from a CE outer header.
	ECNCE uint64 `json:"ecn_ce"`
}

// ServiceStatus is one service as installed, with its counters.
type ServiceStatus struct {
	// Service is the key, VIP:PORT/PROTO.
	Service   string `json:"service"`
	Scheduler string `json:"scheduler"`
	// Persistence is the client persistence timeout; 0 is off.
	Persistence config.Duration `json:"persistence"`
	Forward     string          `json:"forward"`
	Health      *config.Health  `json:"health,omitempty"`
	Backends    []BackendStatus `json:"backends"`
	Packets     uint64          `json:"packets"`
	Bytes       uint64          `json:"bytes"`
	NewFlows    uint64          `json:"new_flows"`
	// DropNoBackend counts packets dropped for lack of a usable backend.
	DropNoBackend uint64 `json:"drop_no_backend"`
	// AllDown is set while every backend with a weight fails its health
	// check: AllDownDrop (new and existing flows are dropped) or
	// AllDownKeepLast (traffic still goes to the last healthy set).
	AllDown string `json:"all_down,omitempty"`
	// Announced: the service's VIP is announced over BGP.
	Announced bool `json:"announced"`
	// AnnouncedTo are the BGP peers the VIP's route goes to while it is
	// announced: those whose session is established (every VIP goes to
	// every peer). Empty while not announced or no session is up.
	AnnouncedTo []string `json:"announced_to,omitempty"`
	// Names are the service's backend entries named by DNS; their
	// addresses are in Backends, each with its Name.
	Names []NameStatus `json:"names,omitempty"`
}

// BackendStatus is one backend of a service as installed.
type BackendStatus struct {
	Address string `json:"address"`
	// Name is the DNS name the backend was resolved from; empty for a
	// backend given by address.
	Name   string `json:"name,omitempty"`
	Weight uint32 `json:"weight"`
	// MAC is the backend's Ethernet address, empty while unknown.
	MAC string `json:"mac"`
	// State is StateUp, StateDown, StateDrain or StateNoMAC.
	State string `json:"state"`
	// Usable: healthy and MAC known, may carry traffic.
	Usable bool `json:"usable"`
	// InTable: usable with a weight above 0, so it receives new flows.
	InTable bool `json:"in_table"`
	// Reason explains State (e.g. the health check failure that took
	// the backend down).
	Reason string `json:"reason,omitempty"`
	// Since is when the backend's health last changed (or its check
	// began); omitted without a health check.
	Since time.Time `json:"since,omitzero"`
	// Check is the latest health check result; nil without a health
	// check or before the first probe has finished.
	Check    *CheckResult `json:"check,omitempty"`
	Packets  uint64       `json:"packets"`
	Bytes    uint64       `json:"bytes"`
	NewFlows uint64       `json:"new_flows"`
	// ActiveFlows are the backend's flows in the connection table that
	// neither closed (client FIN/RST) nor expired. The data plane keeps
	// the count as flows start and close, and xlbd corrects it from the
	// table every few seconds. In dsr-l2 the balancer sees the client's
	// packets only: a close the client does not take part in (the
	// server's RST) ends the flow's count only at its idle timeout.
	ActiveFlows uint64 `json:"active_flows"`
}

// CheckResult is the outcome of one health check probe.
type CheckResult struct {
	OK bool `json:"ok"`
	// Reason is what happened: "http 200", "connect refused", "timeout",
	// "http 503", ...
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Seconds is how long the probe took.
	Seconds float64 `json:"seconds"`
}

// Flow is one connection-table entry.
type Flow struct {
	// Protocol is tcp or udp.
	Protocol string `json:"protocol"`
	// Client and VIP are ADDR:PORT ("[2001:2::1]:80" for IPv6).
	Client  string `json:"client"`
	VIP     string `json:"vip"`
	Backend string `json:"backend"`
	// IdleSeconds is the time since the flow's latest packet (to within
	// a second).
	IdleSeconds float64 `json:"idle_seconds"`
}

// Error is the body of every API error response.
type Error struct {
	Error string `json:"error"`
}

// BGPStatus is the answer to GET /v1/bgp.
type BGPStatus struct {
	// Enabled: the config has a bgp section.
	Enabled  bool   `json:"enabled"`
	ASN      uint32 `json:"asn,omitempty"`
	RouterID string `json:"router_id,omitempty"`
	// Announced are the host routes in BGP ("198.18.1.1/32").
	Announced []string  `json:"announced"`
	Peers     []BGPPeer `json:"peers"`
	// Config is the bgp section in force (passwords left out).
	Config *config.BGP `json:"config,omitempty"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or
	// established.
	State string `json:"state"`
	// Since is when the session reached State.
	Since time.Time `json:"since,omitzero"`
	// HoldTime is the negotiated hold time while established.
	HoldTime        config.Duration `json:"hold_time"`
	UpdatesSent     uint64          `json:"updates_sent"`
	UpdatesReceived uint64          `json:"updates_received"`
	// Advertised is the number of routes sent to the peer.
	Advertised uint64 `json:"advertised"`
}

// Table is a service's scheduler table, slot by slot as backend
// addresses: the same config on every node gives the same table.
type Table struct {
	Service   string `json:"service"`
	Scheduler string `json:"scheduler"`
	Size      int    `json:"size"`
	// SHA256 is the hash of the slots, one address per line ("-" for an
	// empty slot): equal hashes, equal tables.
	SHA256 string `json:"sha256"`
	// Slots per backend address.
	Counts map[string]int `json:"counts"`
	// Slots, in order, when asked for (?slots=1).
	Slots []string `json:"slots,omitempty"`
}
