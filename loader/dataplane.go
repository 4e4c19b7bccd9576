package loader

import (
	"fmt"
	"net/netip"
	"sync"
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
	if snap.Flows, snap.HalfOpen, err = b.counts.get(b.conntrack, b.halfopen); err != nil {
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

// countReuse bounds what counting the tables costs: a count is reused
// while it is younger than countReuse times what it took.
const countReuse = 10

// flowCounts are the entry counts of the connection and half-open tables,
// which every status request, status page poll, top frame and scrape
// reads. Counting reads every entry (0.45 s for a million flows in
// batches, BenchmarkConntrackCount), so a count is reused while it is
// younger than countReuse times what it took: at most about a tenth of a
// CPU however many flows and readers, a million flows counted every 4.5 s,
// and a small table (a few ms) counted afresh on nearly every read.
type flowCounts struct {
	mu              sync.Mutex
	at              time.Time
	took            time.Duration
	flows, halfOpen int
}

func (c *flowCounts) get(conntrack, halfopen *maps.Conntrack) (flows, halfOpen int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < countReuse*c.took {
		return c.flows, c.halfOpen, nil
	}
	start := time.Now()
	if flows, err = conntrack.Count(); err != nil {
		return 0, 0, err
	}
	if halfOpen, err = halfopen.Count(); err != nil {
		return 0, 0, err
	}
	c.at, c.took = time.Now(), time.Since(start)
	c.flows, c.halfOpen = flows, halfOpen
	return flows, halfOpen, nil
}
