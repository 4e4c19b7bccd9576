package loader

import (
	"fmt"
	"net/netip"

	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
)

// FlowFacts reads what the data plane holds for the flow from client to
// the service with key k, one key at a time (no table is dumped, so it
// costs the same with a million flows): the flow's connection-table and
// half-open entries, the client's persistence entry, the scheduler's slot
// for the flow (the Go twins of the data plane's hashes), round-robin's
// per-CPU cursors or least-conn's candidates, and the backends map's entry
// of every id they name. now is MonotonicNow(). lb.ExplainFlow judges them.
func (b *Balancer) FlowFacts(k lb.ServiceKey, client netip.AddrPort, now uint64) (lb.FlowFacts, error) {
	k.VIP = k.VIP.Unmap()
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	b.mu.Lock()
	st := b.services[k]
	var id uint32
	var cfg lb.Service
	if st != nil {
		id, cfg = st.id, st.cfg
	}
	b.mu.Unlock()
	if st == nil {
		return lb.FlowFacts{}, fmt.Errorf("service %s: not installed", k)
	}
	if client.Addr().Is4() != k.VIP.Is4() {
		return lb.FlowFacts{}, fmt.Errorf("client %s: not of the family of vip %s", client, k.VIP)
	}
	key := lb.FlowKey{Src: client, Dst: netip.AddrPortFrom(k.VIP, k.Port), Proto: k.Proto}
	f := lb.FlowFacts{Key: key, Now: now, Scheduler: cfg.Scheduler, Persistence: cfg.Persistence,
		TableSize: b.tables.Size(), Backends: map[uint32]lb.BackendFacts{},
		FlowHash: maps.FlowHash(key), ClientHash: maps.ClientHash(key)}
	var err error
	if f.Timeouts, err = b.cfgMap.Timeouts(); err != nil {
		return f, err
	}
	var ids []uint32
	entry := func(t *maps.Conntrack) (*lb.EntryFacts, error) {
		e, ok, err := t.Lookup(key)
		if !ok || err != nil {
			return nil, err
		}
		ids = append(ids, e.BackendID)
		return &lb.EntryFacts{BackendID: e.BackendID, LastSeen: e.LastSeen, Closing: e.Closing}, nil
	}
	if f.Conntrack, err = entry(b.conntrack); err != nil {
		return f, err
	}
	if f.HalfOpen, err = entry(b.halfopen); err != nil {
		return f, err
	}
	p, ok, err := b.persist.Lookup(maps.PersistKey{ServiceID: id, Client: client.Addr()})
	if err != nil {
		return f, err
	}
	if ok {
		f.Persist = &lb.EntryFacts{BackendID: p.BackendID, LastSeen: p.LastSeen}
		ids = append(ids, p.BackendID)
	}
	switch cfg.Scheduler {
	case lb.Maglev, lb.SourceHash:
		f.Slot = maps.Slot(cfg.Scheduler, key, f.TableSize)
		if f.SlotBackend, err = b.tables.Slot(id, f.Slot); err != nil {
			return f, err
		}
		ids = append(ids, f.SlotBackend)
	case lb.RoundRobin:
		cur, err := maps.NewCursors(b.objs.RrCursor).Get(id)
		if err != nil {
			return f, err
		}
		for _, c := range cur {
			// schedule(): a cursor past the table starts over at 0.
			if c >= f.TableSize {
				c = 0
			}
			be, err := b.tables.Slot(id, c)
			if err != nil {
				return f, err
			}
			f.Cursors = append(f.Cursors, lb.CursorFacts{Slot: c, Backend: be})
			ids = append(ids, be)
		}
	case lb.LeastConn:
		n, err := b.tables.Slot(id, 0)
		if err != nil {
			return f, err
		}
		n = min(n, lb.MaxLeastConnBackends, f.TableSize-1)
		f.Active = map[uint32]int64{}
		for i := uint32(1); i <= n; i++ {
			be, err := b.tables.Slot(id, i)
			if err != nil {
				return f, err
			}
			if f.Active[be], err = b.active.Get(be); err != nil {
				return f, err
			}
			f.Candidates = append(f.Candidates, be)
			ids = append(ids, be)
		}
	}
	for _, bid := range ids {
		if _, done := f.Backends[bid]; done || bid == 0 || bid >= b.opts.MaxBackends {
			continue // id 0 and ids past the array are no backend
		}
		be, err := b.beMap.Get(bid)
		if err != nil {
			return f, err
		}
		f.Backends[bid] = lb.BackendFacts{Addr: be.Addr, OfService: be.Addr.IsValid() && be.ServiceID == id,
			Usable: be.Usable, Failing: be.Failing, Weight: be.Weight, MAC: be.MAC}
	}
	return f, nil
}
