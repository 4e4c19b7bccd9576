package loader

import (
	"fmt"
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
	if snap.HalfOpen, err = b.halfopen.Count(); err != nil {
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

// Table returns the scheduler table of the service with key k, slot by
// slot as backend addresses (the zero Addr for an empty slot). Least-conn
// services have no slot table.
func (b *Balancer) Table(k lb.ServiceKey) ([]netip.Addr, error) {
	k.VIP = k.VIP.Unmap()
	b.mu.Lock()
	st := b.services[k]
	var addrs map[uint32]netip.Addr
	var id uint32
	var sched lb.Scheduler
	if st != nil {
		id, sched = st.id, st.cfg.Scheduler
		addrs = make(map[uint32]netip.Addr, len(st.ids))
		for a, i := range st.ids {
			addrs[i] = a
		}
	}
	b.mu.Unlock()
	if st == nil {
		return nil, fmt.Errorf("service %s: not installed", k)
	}
	if sched == lb.LeastConn {
		return nil, fmt.Errorf("service %s: least-conn has no slot table (it picks by live flow counts)", k)
	}
	ids, err := b.tables.Get(id)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, len(ids))
	for i, v := range ids {
		out[i] = addrs[v]
	}
	return out, nil
}
