// Package daemontest models what the daemon drives, for tests that need
// no root: a data plane that validates and installs services as the loader
// does (the same lb rules, the same table builders) and keeps them in
// memory, and a neighbour table.
package daemontest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-lb/xlb/cmd/bgp"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/maps/table"
)

// DataPlane is an in-memory data plane. Sync is all or nothing, as the
// loader's is; counters and flows are what the test puts there.
type DataPlane struct {
	mu          sync.Mutex
	maxServices int
	tableSize   uint32
	services    map[lb.ServiceKey]lb.Service
	counters    map[lb.ServiceKey]lb.ServiceCounters
	backendCtrs map[lb.ServiceKey]map[netip.Addr]lb.BackendCounters
	active      map[lb.ServiceKey]map[netip.Addr]uint64
	global      lb.GlobalCounters
	flows       []lb.FlowEntry
	halfOpen    int
	persist     map[persistKey]persistEntry
	timeouts    lb.Timeouts
	icmp        lb.ICMP
	encap       lb.Encap
	syncs       int
	failSync    error
}

// NewDataPlane returns an empty data plane holding up to maxServices
// services (0: lb.MaxServices' default) with the default table size.
func NewDataPlane(maxServices int) *DataPlane {
	if maxServices == 0 {
		maxServices = int(lb.MaxServices.Default)
	}
	return &DataPlane{
		maxServices: maxServices, tableSize: 251,
		services:    map[lb.ServiceKey]lb.Service{},
		counters:    map[lb.ServiceKey]lb.ServiceCounters{},
		backendCtrs: map[lb.ServiceKey]map[netip.Addr]lb.BackendCounters{},
		active:      map[lb.ServiceKey]map[netip.Addr]uint64{},
		timeouts:    lb.DefaultTimeouts,
	}
}

// Sync validates every service and builds its table, then installs them
// all, or returns the first error and changes nothing.
func (p *DataPlane) Sync(svcs []lb.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failSync != nil {
		return p.failSync
	}
	if len(svcs) > p.maxServices {
		return fmt.Errorf("%d services, at most %d", len(svcs), p.maxServices)
	}
	next := make(map[lb.ServiceKey]lb.Service, len(svcs))
	for _, s := range svcs {
		if err := s.Validate(); err != nil {
			return err
		}
		if _, dup := next[s.Key]; dup {
			return fmt.Errorf("service %s: listed twice", s.Key)
		}
		in := make([]table.Backend, 0, len(s.Backends))
		for i, b := range s.Backends {
			if b.UsableFor(s.Forward) {
				in = append(in, table.Backend{ID: uint32(i + 1), Key: b.Addr.String(), Weight: b.Weight})
			}
		}
		if _, err := table.Build(s.Scheduler, in, p.tableSize); err != nil {
			return fmt.Errorf("service %s: %w", s.Key, err)
		}
		s.Backends = slices.Clone(s.Backends)
		next[s.Key] = s
	}
	p.services = next
	p.syncs++
	return nil
}

// FailSync makes every Sync fail with err (nil: succeed again).
func (p *DataPlane) FailSync(err error) {
	p.mu.Lock()
	p.failSync = err
	p.mu.Unlock()
}

// Syncs counts the successful Syncs.
func (p *DataPlane) Syncs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncs
}

// SetTimeouts validates and stores the idle timeouts.
func (p *DataPlane) SetTimeouts(t lb.Timeouts) error {
	t = t.OrDefault()
	if err := t.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.timeouts = t
	p.mu.Unlock()
	return nil
}

// SetEncap stores the encapsulation settings.
func (p *DataPlane) SetEncap(e lb.Encap) error {
	p.mu.Lock()
	p.encap = e
	p.mu.Unlock()
	return nil
}

// Encap reports the encapsulation settings last set.
func (p *DataPlane) Encap() lb.Encap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.encap
}

// SetICMP stores the ICMP switches.
func (p *DataPlane) SetICMP(i lb.ICMP) error {
	p.mu.Lock()
	p.icmp = i
	p.mu.Unlock()
	return nil
}

// ICMP reports the ICMP switches last set (the zero value until set).
func (p *DataPlane) ICMP() lb.ICMP {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.icmp
}

// Installed returns the installed service with key k.
func (p *DataPlane) Installed(k lb.ServiceKey) (lb.Service, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.services[k]
	return s, ok
}

// Snapshot returns what is installed with the counters the test set.
func (p *DataPlane) Snapshot() (lb.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	snap := lb.Snapshot{Global: p.global, Flows: len(p.flows), HalfOpen: p.halfOpen, Timeouts: p.timeouts, Services: map[lb.ServiceKey]lb.ServiceState{}}
	for k, s := range p.services {
		ss := lb.ServiceState{Service: s, Counters: p.counters[k], Backends: map[netip.Addr]lb.BackendState{}}
		for _, b := range s.Backends {
			ss.Backends[b.Addr] = lb.BackendState{Backend: b, Usable: b.UsableFor(s.Forward), InTable: b.UsableFor(s.Forward) && b.Weight > 0,
				Counters: p.backendCtrs[k][b.Addr], Active: p.active[k][b.Addr]}
		}
		snap.Services[k] = ss
	}
	return snap, nil
}

// SetCounters sets a service's counters and those of its backends.
func (p *DataPlane) SetCounters(k lb.ServiceKey, s lb.ServiceCounters, backends map[netip.Addr]lb.BackendCounters) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters[k] = s
	p.backendCtrs[k] = backends
}

// SetActive sets a backend's active-flow count.
func (p *DataPlane) SetActive(k lb.ServiceKey, addr netip.Addr, n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active[k] == nil {
		p.active[k] = map[netip.Addr]uint64{}
	}
	p.active[k][addr] = n
}

// SetGlobal sets the global counters.
func (p *DataPlane) SetGlobal(g lb.GlobalCounters) {
	p.mu.Lock()
	p.global = g
	p.mu.Unlock()
}

// SetFlows sets the connection table's entries.
func (p *DataPlane) SetFlows(f []lb.FlowEntry) {
	p.mu.Lock()
	p.flows = slices.Clone(f)
	p.mu.Unlock()
}

// SetHalfOpen sets the number of entries in the half-open TCP table.
func (p *DataPlane) SetHalfOpen(n int) {
	p.mu.Lock()
	p.halfOpen = n
	p.mu.Unlock()
}

// Flows returns up to limit of the entries the test set.
func (p *DataPlane) Flows(limit int, _ uint64) ([]lb.FlowEntry, error) {
	if limit < 1 {
		return nil, errors.New("limit must be at least 1")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.flows[:min(limit, len(p.flows))])
	if out == nil {
		out = []lb.FlowEntry{}
	}
	return out, nil
}

// Table builds the service's table as the loader does.
func (p *DataPlane) Table(k lb.ServiceKey) ([]netip.Addr, error) {
	p.mu.Lock()
	s, ok := p.services[k]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("service %s: not installed", k)
	}
	if s.Scheduler == lb.LeastConn {
		return nil, fmt.Errorf("service %s: least-conn has no slot table (it picks by live flow counts)", k)
	}
	in := make([]table.Backend, 0, len(s.Backends))
	addr := map[uint32]netip.Addr{}
	for i, b := range s.Backends {
		if b.UsableFor(s.Forward) {
			in = append(in, table.Backend{ID: uint32(i + 1), Key: b.Addr.String(), Weight: b.Weight})
			addr[uint32(i+1)] = b.Addr
		}
	}
	ids, err := table.Build(s.Scheduler, in, p.tableSize)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, len(ids))
	for i, id := range ids {
		out[i] = addr[id]
	}
	return out, nil
}

type persistKey struct {
	svc    lb.ServiceKey
	client netip.Addr
}

type persistEntry struct {
	backend netip.Addr
	age     time.Duration
}

// SetPersist gives the client of service k a persistence entry on
// backend, age old.
func (p *DataPlane) SetPersist(k lb.ServiceKey, client, backend netip.Addr, age time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.persist == nil {
		p.persist = map[persistKey]persistEntry{}
	}
	p.persist[persistKey{k, client}] = persistEntry{backend, age}
}

// FlowFacts gives the flow the entries the test set (SetFlows,
// SetPersist; no half-open ones) and the slot the data plane's hash (the
// Go twin in package maps) picks in the model's table. Backend ids are
// positions in the service's list, from 1, as in Table; least-conn's
// counts are those of SetActive.
func (p *DataPlane) FlowFacts(k lb.ServiceKey, client netip.AddrPort, now uint64) (lb.FlowFacts, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.services[k]
	if !ok {
		return lb.FlowFacts{}, fmt.Errorf("service %s: not installed", k)
	}
	key := lb.FlowKey{Src: client, Dst: netip.AddrPortFrom(k.VIP, k.Port), Proto: k.Proto}
	f := lb.FlowFacts{Key: key, Now: now, Timeouts: p.timeouts, Scheduler: s.Scheduler, Persistence: s.Persistence,
		TableSize: p.tableSize, Backends: map[uint32]lb.BackendFacts{}, FlowHash: maps.FlowHash(key), ClientHash: maps.ClientHash(key)}
	id := map[netip.Addr]uint32{}
	var in []table.Backend
	for i, b := range s.Backends {
		n := uint32(i + 1)
		id[b.Addr] = n
		f.Backends[n] = lb.BackendFacts{Addr: b.Addr, OfService: true, Usable: b.UsableFor(s.Forward), Failing: b.Failing, Weight: b.Weight, MAC: b.MAC}
		if b.UsableFor(s.Forward) {
			in = append(in, table.Backend{ID: n, Key: b.Addr.String(), Weight: b.Weight})
		}
	}
	for _, e := range p.flows {
		if e.Key == key {
			f.Conntrack = &lb.EntryFacts{BackendID: id[e.Backend], LastSeen: now - uint64(e.Idle), Closing: e.Closing}
		}
	}
	if e, ok := p.persist[persistKey{k, client.Addr()}]; ok {
		f.Persist = &lb.EntryFacts{BackendID: id[e.backend], LastSeen: now - uint64(e.age)}
	}
	ids, err := table.Build(s.Scheduler, in, p.tableSize)
	if err != nil {
		return f, err
	}
	switch s.Scheduler {
	case lb.Maglev, lb.SourceHash:
		f.Slot = maps.Slot(s.Scheduler, key, p.tableSize)
		f.SlotBackend = ids[f.Slot]
	case lb.RoundRobin:
		f.Cursors = []lb.CursorFacts{{Slot: 0, Backend: ids[0]}}
	case lb.LeastConn:
		f.Active = map[uint32]int64{}
		for _, n := range ids[1 : 1+ids[0]] {
			f.Candidates = append(f.Candidates, n)
			f.Active[n] = int64(p.active[k][f.Backends[n].Addr])
		}
	}
	return f, nil
}

// Sweep does nothing: the model's flows never expire.
func (p *DataPlane) Sweep(uint64) (lb.SweepResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return lb.SweepResult{Flows: len(p.flows)}, nil
}

// MACs is a neighbour table: every address has a MAC derived from it,
// except those marked unknown.
type MACs struct {
	mu      sync.Mutex
	unknown map[netip.Addr]bool
}

// NewMACs returns a table in which the addresses listed have no MAC.
func NewMACs(unknown ...netip.Addr) *MACs {
	m := &MACs{unknown: map[netip.Addr]bool{}}
	for _, a := range unknown {
		m.unknown[a] = true
	}
	return m
}

// SetKnown marks addr as resolved (true) or not.
func (m *MACs) SetKnown(addr netip.Addr, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if known {
		delete(m.unknown, addr)
	} else {
		m.unknown[addr] = true
	}
}

// MAC is the MAC the table gives addr: 02:00 and its last four bytes.
func MAC(addr netip.Addr) net.HardwareAddr {
	b := addr.As16()
	return net.HardwareAddr{0x02, 0, b[12], b[13], b[14], b[15]}
}

// Lookup returns addr's MAC, nil if unknown.
func (m *MACs) Lookup(addr netip.Addr) net.HardwareAddr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unknown[addr] {
		return nil
	}
	return MAC(addr)
}

// Want does nothing: the table knows what it knows.
func (m *MACs) Want([]netip.Addr) {}

// Announcer records what the daemon asks a BGP speaker to announce.
type Announcer struct {
	mu        sync.Mutex
	running   bool
	cfg       bgp.Config
	announced []netip.Addr
	applies   int
	failApply error
}

// Apply starts the recorder with cfg and vips, or fails with FailApply's
// error.
func (a *Announcer) Apply(_ context.Context, cfg bgp.Config, vips []netip.Addr) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failApply != nil {
		return a.failApply
	}
	a.running, a.cfg, a.applies = true, cfg, a.applies+1
	a.announced = sortedAddrs(vips)
	return nil
}

// FailApply makes every Apply fail with err (nil: succeed again).
func (a *Announcer) FailApply(err error) {
	a.mu.Lock()
	a.failApply = err
	a.mu.Unlock()
}

// Announce records vips.
func (a *Announcer) Announce(vips []netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.running {
		return errors.New("not running")
	}
	a.announced = sortedAddrs(vips)
	return nil
}

func sortedAddrs(v []netip.Addr) []netip.Addr {
	out := slices.Clone(v)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// Announced returns the recorded set.
func (a *Announcer) Announced() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.announced)
}

// Config returns the last configuration applied.
func (a *Announcer) Config() bgp.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Peers reports every configured peer established.
func (a *Announcer) Peers(context.Context) ([]bgp.PeerStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []bgp.PeerStatus
	for _, p := range a.cfg.Peers {
		out = append(out, bgp.PeerStatus{Address: p.Addr.String(), ASN: p.ASN, State: "established", HoldTime: p.HoldTime, Advertised: uint64(len(a.announced))})
	}
	return out, nil
}

// Running reports whether Apply started it and Stop did not stop it.
func (a *Announcer) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running
}

// Stop withdraws everything.
func (a *Announcer) Stop(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running, a.announced = false, nil
	return nil
}
