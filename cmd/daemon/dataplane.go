package daemon

import (
	"net"
	"net/netip"

	"github.com/xlb-lb/xlb/maps/lb"
)

// DataPlane is what the daemon drives: the loader's Balancer in xlbd, a
// model of it (package daemontest) in tests that need no root. Every
// method is safe for concurrent use.
type DataPlane interface {
	// Sync makes the installed services exactly svcs, all or nothing:
	// on error nothing changed.
	Sync(svcs []lb.Service) error
	// SetTimeouts changes the connection table's idle timeouts.
	SetTimeouts(lb.Timeouts) error
	// SetICMP sets the ICMP switches: echo answering, error forwarding.
	SetICMP(lb.ICMP) error
	// SetEncap sets the encapsulated modes' outer sources and GUE port.
	SetEncap(lb.Encap) error
	// Snapshot reads what is installed, with its counters.
	Snapshot() (lb.Snapshot, error)
	// Flows lists up to limit connection-table entries; now is
	// CLOCK_MONOTONIC in ns, for their idle times.
	Flows(limit int, now uint64) ([]lb.FlowEntry, error)
	// Sweep deletes expired flows and persistence entries and corrects
	// the active-flow counts; now is CLOCK_MONOTONIC in ns.
	Sweep(now uint64) (lb.SweepResult, error)
	// Table returns a service's scheduler table, slot by slot as backend
	// addresses (the zero Addr for an empty slot).
	Table(k lb.ServiceKey) ([]netip.Addr, error)
	// FlowFacts reads what the data plane holds for the flow from client
	// to the service with key k, key by key (no table is dumped); now is
	// CLOCK_MONOTONIC in ns. lb.ExplainFlow judges them.
	FlowFacts(k lb.ServiceKey, client netip.AddrPort, now uint64) (lb.FlowFacts, error)
}

// Neighbors resolves backend MACs: the loader's netlink watcher in xlbd, a
// table in tests.
type Neighbors interface {
	// Lookup returns addr's MAC, nil while unknown.
	Lookup(addr netip.Addr) net.HardwareAddr
	// Want lists the addresses to follow (and to solicit while unknown).
	Want(addrs []netip.Addr)
}
