package loader

import (
	"net/netip"
	"time"

	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Snapshot reads what is installed, with its counters (the daemon's view
// of the data plane). A counter that cannot be read is an error.
func (b *Balancer) Snapshot() (lb.Snapshot, error) {
	var snap lb.Snapshot
	g, err := b.stats.Global()
	if err != nil {
		return snap, err
	}
	snap.Global = maps.LBGlobal(g)
	if snap.Timeouts, err = b.cfgMap.Timeouts(); err != nil {
		return snap, err
	}
	if snap.Flows, err = b.conntrack.Count(); err != nil {
		return snap, err
	}
	svcs := b.Services()
	snap.Services = make(map[lb.ServiceKey]lb.ServiceState, len(svcs))
	for _, s := range svcs {
		c, err := b.stats.Service(s.ID)
		if err != nil {
			return snap, err
		}
		ss := lb.ServiceState{Service: s.Service, Counters: maps.LBService(c), Backends: make(map[netip.Addr]lb.BackendState, len(s.Backends))}
		for _, be := range s.Backends {
			c, err := b.stats.Backend(be.ID)
			if err != nil {
				return snap, err
			}
			n, err := b.active.Get(be.ID)
			if err != nil {
				return snap, err
			}
			ss.Backends[be.Addr] = lb.BackendState{Backend: be.Backend, Usable: be.Usable, InTable: be.InTable,
				Counters: maps.LBBackend(c), Active: uint64(max(n, 0))}
		}
		snap.Services[s.Key] = ss
	}
	return snap, nil
}

// Flows lists up to limit connection-table entries with their backends'
// addresses; now is MonotonicNow(), for their idle times.
func (b *Balancer) Flows(limit int, now uint64) ([]lb.FlowEntry, error) {
	addrs := map[uint32]netip.Addr{}
	for _, s := range b.Services() {
		for _, be := range s.Backends {
			addrs[be.ID] = be.Addr
		}
	}
	out := []lb.FlowEntry{}
	err := b.conntrack.Iterate(func(k lb.FlowKey, f maps.Flow) bool {
		out = append(out, lb.FlowEntry{Key: k, Backend: addrs[f.BackendID], Idle: time.Duration(now - f.LastSeen), Closing: f.Closing})
		return len(out) < limit
	})
	return out, err
}
