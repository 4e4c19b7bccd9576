package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/maps/table"
)

// ServiceStatus is a service as installed, with the ids the data plane uses.
type ServiceStatus struct {
	lb.Service
	ID       uint32
	Backends []BackendStatus
}

// BackendStatus is one backend as installed.
type BackendStatus struct {
	lb.Backend
	ID uint32
	// Usable: healthy and MAC known.
	Usable bool
	// InTable: usable with a weight above 0, so it receives new flows.
	InTable bool
}

type svcState struct {
	id  uint32
	cfg lb.Service
	// backend id by address
	ids map[netip.Addr]uint32
}

// Balancer drives one loaded data plane. Its methods are safe for
// concurrent use; each change is validated whole before any map is written.
type Balancer struct {
	opts     Options
	builders []*table.Builder // one per table-building goroutine, kept for their buffers
	objs     *bpf.Objects
	inner    *ebpf.MapSpec
	link     link.Link
	adopted  bool

	mu       sync.Mutex
	services map[lb.ServiceKey]*svcState
	svcIDs   *idAlloc
	beIDs    *idAlloc

	svcMap    *maps.Services
	beMap     *maps.Backends
	tables    *maps.SchedTables
	conntrack *maps.Conntrack
	// halfopen holds SYNs awaiting the handshake's next packet (the same
	// key and value as conntrack).
	halfopen *maps.Conntrack
	stats    *maps.Stats
	active   *maps.Active
	persist  *maps.PersistTable
	cfgMap   *maps.Config
	vipMap   *maps.VIPs
	// vips mirrors vipMap.
	vips map[netip.Addr]maps.VIP
	// vipFilter is the bitmap of the VIPs (vipFilterOf mirrors it, nil
	// until first written).
	vipFilter   *maps.VIPFilter
	vipFilterOf []netip.Addr
	// beSvc is each backend id's service key (backend_svc).
	beSvc *maps.BackendServices

	counts flowCounts
}

func (b *Balancer) initViews() {
	m := b.objs
	b.svcMap = maps.NewServices(m.Services)
	b.beMap = maps.NewBackends(m.Backends)
	b.tables = maps.NewSchedTables(m.MaglevTables, b.inner)
	b.conntrack = maps.NewConntrack(m.Conntrack)
	b.halfopen = maps.NewConntrack(m.Halfopen)
	b.stats = maps.NewStats(m.Stats, m.SvcStats, m.BackendStats)
	b.active = maps.NewActive(m.BackendActive)
	b.persist = maps.NewPersistTable(m.Persist)
	b.cfgMap = maps.NewConfig(m.Config)
	b.vipMap = maps.NewVIPs(m.Vips)
	b.vips = make(map[netip.Addr]maps.VIP)
	b.vipFilter = maps.NewVIPFilter(m.VipFilter)
	b.beSvc = maps.NewBackendServices(m.BackendSvc)
	b.services = make(map[lb.ServiceKey]*svcState)
	b.svcIDs = newIDAlloc(0, b.opts.MaxServices)
	b.beIDs = newIDAlloc(1, b.opts.MaxBackends) // 0 marks an empty slot
}

// Adopted reports whether Open re-adopted a pinned data plane.
func (b *Balancer) Adopted() bool { return b.adopted }

// Program is the loaded XDP program (for BPF_PROG_TEST_RUN).
func (b *Balancer) Program() *ebpf.Program { return b.objs.Xlb }

// Stats reads the data plane's counters.
func (b *Balancer) Stats() *maps.Stats { return b.stats }

// Conntrack is the connection table.
func (b *Balancer) Conntrack() *maps.Conntrack { return b.conntrack }

// HalfOpen is the half-open TCP table: SYNs awaiting the handshake's next
// packet.
func (b *Balancer) HalfOpen() *maps.Conntrack { return b.halfopen }

// Tables are the per-service Maglev tables.
func (b *Balancer) Tables() *maps.SchedTables { return b.tables }

// BackendMap is the backends array.
func (b *Balancer) BackendMap() *maps.Backends { return b.beMap }

// Active is the per-backend count of active flows.
func (b *Balancer) Active() *maps.Active { return b.active }

// Persistence is the client-persistence table.
func (b *Balancer) Persistence() *maps.PersistTable { return b.persist }

// Timeouts returns the connection table's idle timeouts in force.
func (b *Balancer) Timeouts() (lb.Timeouts, error) { return b.cfgMap.Timeouts() }

// SetTimeouts changes the connection table's idle timeouts; zero fields
// take DefaultTimeouts. They apply to every flow's next packet.
func (b *Balancer) SetTimeouts(t lb.Timeouts) error {
	t = t.OrDefault()
	if err := t.Validate(); err != nil {
		return err
	}
	return b.cfgMap.SetTimeouts(t)
}

// ICMP reads the data plane's ICMP switches.
func (b *Balancer) ICMP() (lb.ICMP, error) { return b.cfgMap.ICMP() }

// Encap reads the encapsulated modes' settings.
func (b *Balancer) Encap() (lb.Encap, error) { return b.cfgMap.Encap() }

// SetEncap sets the encapsulated modes' outer sources and GUE port while
// the data plane runs.
func (b *Balancer) SetEncap(e lb.Encap) error { return b.cfgMap.SetEncap(e) }

// SetICMP sets the data plane's ICMP switches (echo answering, error
// forwarding) while it runs.
func (b *Balancer) SetICMP(i lb.ICMP) error { return b.cfgMap.SetICMP(i) }

// vipEntries derives the vips map from the services: each address's
// number of services and, per protocol, the port of its only service of
// that protocol when that one is source-hash (a fragment without ports can
// be placed only then: by its client's address).
func vipEntries(svcs map[lb.ServiceKey]*svcState) map[netip.Addr]maps.VIP {
	type protoKey struct {
		vip   netip.Addr
		proto lb.Proto
	}
	perProto := make(map[protoKey][]lb.ServiceKey)
	out := make(map[netip.Addr]maps.VIP, len(svcs))
	for k := range svcs {
		e := out[k.VIP]
		e.Services++
		out[k.VIP] = e
		pk := protoKey{k.VIP, k.Proto}
		perProto[pk] = append(perProto[pk], k)
	}
	for pk, keys := range perProto {
		if len(keys) != 1 || svcs[keys[0]].cfg.Scheduler != lb.SourceHash {
			continue
		}
		e := out[pk.vip]
		switch pk.proto {
		case lb.TCP:
			e.FragTCP = keys[0].Port
		case lb.UDP:
			e.FragUDP = keys[0].Port
		}
		out[pk.vip] = e
	}
	return out
}

// syncVIPs makes the vips map (the addresses echo requests are answered
// for, with the source-hash service that takes a VIP's early fragments)
// match the installed services, writing only what changed.
func (b *Balancer) syncVIPs() error {
	want := vipEntries(b.services)
	for vip, e := range want {
		if old, ok := b.vips[vip]; ok && old == e {
			continue
		}
		if err := b.vipMap.Put(vip, e); err != nil {
			return err
		}
		b.vips[vip] = e
	}
	for vip := range b.vips {
		if _, ok := want[vip]; !ok {
			if err := b.vipMap.Delete(vip); err != nil {
				return err
			}
			delete(b.vips, vip)
		}
	}
	return b.syncVIPFilter()
}

// syncVIPFilter makes the VIP filter's bitmap match the installed
// services' addresses, writing it only when they changed.
func (b *Balancer) syncVIPFilter() error {
	addrs := make([]netip.Addr, 0, len(b.vips))
	for vip := range b.vips {
		addrs = append(addrs, vip)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if b.vipFilterOf != nil && slices.Equal(addrs, b.vipFilterOf) {
		return nil
	}
	if err := b.vipFilter.Set(addrs); err != nil {
		return err
	}
	b.vipFilterOf = addrs
	return nil
}

// TableSize is the number of slots of every service's scheduler table.
func (b *Balancer) TableSize() uint32 { return b.opts.TableSize }

// Close releases the balancer's file descriptors. A pinned data plane
// keeps forwarding; an unpinned one is detached.
func (b *Balancer) Close() error {
	var errs []error
	if b.link != nil {
		errs = append(errs, b.link.Close())
	}
	errs = append(errs, b.objs.Close())
	return errors.Join(errs...)
}

// Detach removes the program from the interface and deletes the pins:
// forwarding stops and the connection table is gone.
func (b *Balancer) Detach() error {
	var errs []error
	if b.opts.PinDir != "" {
		if err := os.RemoveAll(b.opts.PinDir); err != nil {
			errs = append(errs, fmt.Errorf("remove pins %s: %w", b.opts.PinDir, err))
		}
	}
	// The pins went with the directory; closing the last link fd detaches.
	errs = append(errs, b.Close())
	return errors.Join(errs...)
}

// plan is a validated change to one service, ready to write.
type plan struct {
	key     lb.ServiceKey
	state   *svcState // new state
	old     *svcState // nil for a new service
	in      []table.Backend
	table   *ebpf.Map // the new table, filled, not yet installed (buildTables)
	newIDs  []uint32  // backend ids allocated for this change
	freeIDs []uint32  // backend ids of removed backends
	newSvc  bool
	noop    bool // the service is installed exactly so already
}

// planService validates s and computes its ids and its table's input
// without touching the maps (buildTables builds the table). Allocated ids
// are released again by abort.
func (b *Balancer) planService(s lb.Service) (*plan, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s.Key.VIP = s.Key.VIP.Unmap()
	s.Backends = slices.Clone(s.Backends)
	for i := range s.Backends {
		s.Backends[i].Addr = s.Backends[i].Addr.Unmap()
	}
	p := &plan{key: s.Key, old: b.services[s.Key]}
	if p.old != nil && sameService(p.old.cfg, s) {
		// Unchanged: no table to build, nothing to write. Sync runs on
		// every health or neighbour change; only the service that
		// changed pays for a rebuild.
		p.state, p.noop = p.old, true
		return p, nil
	}
	st := &svcState{cfg: s, ids: make(map[netip.Addr]uint32, len(s.Backends))}
	if p.old != nil {
		st.id = p.old.id
	} else {
		id, ok := b.svcIDs.alloc()
		if !ok {
			return nil, fmt.Errorf("service %s: no free service slot (limit %d)", s.Key, b.opts.MaxServices)
		}
		st.id, p.newSvc = id, true
	}
	p.state = st
	for _, be := range s.Backends {
		if p.old != nil {
			if id, ok := p.old.ids[be.Addr]; ok {
				st.ids[be.Addr] = id
				continue
			}
		}
		id, ok := b.beIDs.alloc()
		if !ok {
			b.abort(p)
			return nil, fmt.Errorf("service %s: backend %s: no free backend slot (limit %d)", s.Key, be.Addr, b.opts.MaxBackends)
		}
		st.ids[be.Addr] = id
		p.newIDs = append(p.newIDs, id)
	}
	if p.old != nil {
		for addr, id := range p.old.ids {
			if _, ok := st.ids[addr]; !ok {
				p.freeIDs = append(p.freeIDs, id)
			}
		}
	}
	p.in = make([]table.Backend, 0, len(s.Backends))
	for _, be := range s.Backends {
		if be.UsableFor(s.Forward) && be.Weight > 0 {
			p.in = append(p.in, table.Backend{ID: st.ids[be.Addr], Key: be.Addr.String(), Weight: be.Weight})
		}
	}
	return p, nil
}

// buildTables builds the table of every plan that changes its service
// and fills it into a fresh inner map (plan.table), on up to GOMAXPROCS
// goroutines, each with its own builder; only the maps stay, not the
// tables. Nothing is installed. On error every map made is closed and the
// error of the first failing plan (in plan order) is returned.
func (b *Balancer) buildTables(plans []*plan) error {
	var todo []*plan
	for _, p := range plans {
		if !p.noop {
			todo = append(todo, p)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	for len(b.builders) < workers {
		b.builders = append(b.builders, &table.Builder{})
	}
	errs := make([]error, len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(bld *table.Builder) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(todo) {
					return
				}
				p := todo[i]
				tbl, err := bld.Build(p.state.cfg.Scheduler, p.in, b.opts.TableSize)
				if err != nil {
					errs[i] = fmt.Errorf("service %s: %w", p.key, err)
					continue
				}
				if p.table, err = b.tables.NewTable(p.state.id, tbl); err != nil {
					errs[i] = err
				}
			}
		}(b.builders[w])
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			closeTables(plans)
			return err
		}
	}
	return nil
}

// closeTables closes the plans' fresh tables (those installed stay, held
// by the outer map).
func closeTables(plans []*plan) {
	for _, p := range plans {
		if p.table != nil {
			p.table.Close()
			p.table = nil
		}
	}
}

// abort returns the ids a plan allocated.
func (b *Balancer) abort(p *plan) {
	for _, id := range p.newIDs {
		b.beIDs.release(id)
	}
	if p.newSvc {
		b.svcIDs.release(p.state.id)
	}
}

// apply writes plans (built by buildTables) in an order that packets can
// never observe half done, for each service: new backends first (nothing
// points at them yet), then the new table in one swap, then the service
// entry, and last the removed backends (no table points at them any more;
// their flows move on the next packet). Every plan's backends are written
// before any table is swapped, and all tables go in with one update of
// the outer map: one RCU grace period for the lot (maps.SchedTables). On
// an error, the plans whose table is in place are recorded as installed,
// the others aborted (the next Sync writes them again).
func (b *Balancer) apply(plans []*plan) error {
	defer closeTables(plans)
	var todo []*plan
	for _, p := range plans {
		if !p.noop {
			todo = append(todo, p)
		}
	}
	abortFrom := func(i int) {
		for _, p := range todo[i:] {
			b.abort(p)
		}
	}
	if err := b.writeBackends(todo); err != nil {
		abortFrom(0)
		return err
	}
	ids := make([]uint32, len(todo))
	tables := make([]*ebpf.Map, len(todo))
	for i, p := range todo {
		ids[i], tables[i] = p.state.id, p.table
	}
	n, installErr := b.tables.Install(ids, tables)
	for i, p := range todo[:n] {
		if err := b.finish(p); err != nil {
			abortFrom(i)
			return fmt.Errorf("apply service %s: %w", p.key, err)
		}
	}
	if installErr != nil {
		abortFrom(n)
		return fmt.Errorf("apply service %s: %w", todo[n].key, installErr)
	}
	return b.syncVIPs()
}

// writeBackends writes the plans' backend entries, one batch update per
// map and plan (buffers reused from plan to plan, so a first start with
// 100000 backends holds a service's worth at a time): counters of new
// ids zeroed, and every backend whose entry changes.
func (b *Balancer) writeBackends(plans []*plan) error {
	var ids []uint32
	var vals []maps.Backend
	for _, p := range plans {
		st := p.state
		if p.newSvc {
			if err := b.stats.ResetService(st.id); err != nil {
				return fmt.Errorf("apply service %s: %w", p.key, err)
			}
		}
		if err := b.stats.ResetBackends(p.newIDs); err != nil {
			return fmt.Errorf("apply service %s: %w", p.key, err)
		}
		if err := b.active.Zero(p.newIDs); err != nil {
			return fmt.Errorf("apply service %s: %w", p.key, err)
		}
		var newID map[uint32]bool
		if p.old != nil {
			newID = make(map[uint32]bool, len(p.newIDs))
			for _, id := range p.newIDs {
				newID[id] = true
			}
		}
		ids, vals = ids[:0], vals[:0]
		for _, be := range st.cfg.Backends {
			id := st.ids[be.Addr]
			// A new forwarding mode rewrites every backend (its flags).
			if p.old != nil && !newID[id] && p.old.cfg.Forward == st.cfg.Forward && sameBackend(p.old.backend(be.Addr), be) {
				continue
			}
			ids = append(ids, id)
			vals = append(vals, maps.Backend{Addr: be.Addr, ServiceID: st.id, Weight: be.Weight, MAC: be.MAC, Usable: be.UsableFor(st.cfg.Forward), Failing: be.Failing || be.Down, Forward: st.cfg.Forward})
		}
		// Before the backends' entries: see maps.BackendServices.Put.
		if err := b.beSvc.PutBatch(p.newIDs, p.key); err != nil {
			return fmt.Errorf("apply service %s: %w", p.key, err)
		}
		if err := b.beMap.PutBatch(ids, vals); err != nil {
			return fmt.Errorf("apply service %s: %w", p.key, err)
		}
	}
	return nil
}

// finish completes a plan whose table is in place: the service entry, the
// removed backends cleared, the new state recorded.
func (b *Balancer) finish(p *plan) error {
	st := p.state
	if p.old == nil || p.old.cfg.Scheduler != st.cfg.Scheduler || p.old.cfg.Forward != st.cfg.Forward || p.old.cfg.Persistence != st.cfg.Persistence {
		if err := b.svcMap.Put(p.key, maps.Service{ID: st.id, Scheduler: st.cfg.Scheduler, Forward: st.cfg.Forward, Persistence: st.cfg.Persistence}); err != nil {
			return err
		}
	}
	for _, id := range p.freeIDs {
		if err := b.beMap.Clear(id); err != nil {
			return err
		}
		b.beIDs.release(id)
	}
	b.services[p.key] = st
	return nil
}

func (s *svcState) backend(addr netip.Addr) lb.Backend {
	for _, be := range s.cfg.Backends {
		if be.Addr == addr {
			return be
		}
	}
	return lb.Backend{}
}

// sameService reports whether a and b are deeply equal, as
// reflect.DeepEqual would (a nil MAC differs from an empty one), at a
// fraction of its cost: Sync compares every service on every health or
// neighbour change. TestSameServiceComplete fails when lb.Service or
// lb.Backend gains a field this does not compare.
func sameService(a, b lb.Service) bool {
	if a.Key != b.Key || a.Scheduler != b.Scheduler || a.Forward != b.Forward || a.Persistence != b.Persistence ||
		len(a.Backends) != len(b.Backends) || (a.Backends == nil) != (b.Backends == nil) {
		return false
	}
	for i := range a.Backends {
		x, y := &a.Backends[i], &b.Backends[i]
		if x.Addr != y.Addr || x.Weight != y.Weight || x.Down != y.Down || x.Failing != y.Failing ||
			(x.MAC == nil) != (y.MAC == nil) || !slices.Equal(x.MAC, y.MAC) {
			return false
		}
	}
	return true
}

func sameBackend(a, b lb.Backend) bool {
	return a.Addr == b.Addr && a.Weight == b.Weight && a.Down == b.Down && a.Failing == b.Failing && slices.Equal(a.MAC, b.MAC)
}

// SetService creates or replaces a service with exactly the given backends.
// Existing flows keep their backend while it stays usable.
func (b *Balancer) SetService(s lb.Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := b.planService(s)
	if err != nil {
		return err
	}
	plans := []*plan{p}
	if err := b.buildTables(plans); err != nil {
		b.abort(p)
		return err
	}
	return b.apply(plans)
}

// Sync makes the installed services exactly svcs: every service is
// validated and its table built before the first map is written, and
// services not listed are deleted.
func (b *Balancer) Sync(svcs []lb.Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := make(map[lb.ServiceKey]bool, len(svcs))
	for _, s := range svcs {
		k := s.Key
		k.VIP = k.VIP.Unmap()
		if seen[k] {
			return fmt.Errorf("service %s: listed twice", k)
		}
		seen[k] = true
	}
	plans := make([]*plan, 0, len(svcs))
	abortAll := func() {
		for _, p := range plans {
			b.abort(p)
		}
	}
	for _, s := range svcs {
		p, err := b.planService(s)
		if err != nil {
			abortAll()
			return err
		}
		plans = append(plans, p)
	}
	if err := b.buildTables(plans); err != nil {
		abortAll()
		return err
	}
	for key := range b.services {
		if !seen[key] {
			if err := b.deleteLocked(key); err != nil {
				closeTables(plans)
				abortAll()
				return err
			}
		}
	}
	return b.apply(plans)
}

// DeleteService removes a service. Its packets go to the kernel again.
func (b *Balancer) DeleteService(key lb.ServiceKey) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	key.VIP = key.VIP.Unmap()
	if _, ok := b.services[key]; !ok {
		return fmt.Errorf("service %s: %w", key, ErrNoService)
	}
	return b.deleteLocked(key)
}

// ErrNoService means the service is not installed.
var ErrNoService = errors.New("no such service")

func (b *Balancer) deleteLocked(key lb.ServiceKey) error {
	st := b.services[key]
	if err := b.svcMap.Delete(key); err != nil {
		return err
	}
	if err := b.tables.Delete(st.id); err != nil {
		return err
	}
	for _, id := range st.ids {
		if err := b.beMap.Clear(id); err != nil {
			return err
		}
		b.beIDs.release(id)
	}
	b.svcIDs.release(st.id)
	delete(b.services, key)
	return b.syncVIPs()
}

// Services returns the installed services sorted by key.
func (b *Balancer) Services() []ServiceStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ServiceStatus, 0, len(b.services))
	for _, st := range b.services {
		ss := ServiceStatus{Service: st.cfg, ID: st.id}
		ss.Service.Backends = nil
		for _, be := range st.cfg.Backends {
			ss.Backends = append(ss.Backends, BackendStatus{
				Backend: be, ID: st.ids[be.Addr],
				Usable: be.UsableFor(st.cfg.Forward), InTable: be.UsableFor(st.cfg.Forward) && be.Weight > 0,
			})
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// Service returns one installed service.
func (b *Balancer) Service(key lb.ServiceKey) (ServiceStatus, bool) {
	key.VIP = key.VIP.Unmap()
	for _, s := range b.Services() {
		if s.Key == key {
			return s, true
		}
	}
	return ServiceStatus{}, false
}

// recoverState rebuilds the in-memory view of services and ids from the
// re-adopted maps, so the next SetService keeps every id (and so every
// flow) in place.
func (b *Balancer) recoverState() error {
	svcs, err := b.svcMap.All()
	if err != nil {
		return err
	}
	bes, err := b.beMap.All()
	if err != nil {
		return err
	}
	byID := make(map[uint32]*svcState, len(svcs))
	for key, v := range svcs {
		if v.ID >= b.opts.MaxServices {
			return fmt.Errorf("pinned service %s has id %d beyond max services %d", key, v.ID, b.opts.MaxServices)
		}
		st := &svcState{id: v.ID, cfg: lb.Service{Key: key, Scheduler: v.Scheduler, Forward: v.Forward, Persistence: v.Persistence}, ids: map[netip.Addr]uint32{}}
		b.services[key] = st
		byID[v.ID] = st
		b.svcIDs.take(v.ID)
	}
	ids := make([]uint32, 0, len(bes))
	for id := range bes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		be := bes[id]
		st := byID[be.ServiceID]
		if st == nil || id >= b.opts.MaxBackends {
			continue // orphan: cleared by the next change of its id
		}
		b.beIDs.take(id)
		st.ids[be.Addr] = id
		// Down is what made a backend unusable though it could be used
		// (dsr-l2: its MAC known; encapsulated: always).
		couldUse := len(be.MAC) == 6 || st.cfg.Forward.Encapsulated()
		st.cfg.Backends = append(st.cfg.Backends, lb.Backend{Addr: be.Addr, MAC: be.MAC, Weight: be.Weight, Down: !be.Usable && couldUse, Failing: be.Failing && be.Usable})
	}
	// backend_svc and the vips map are not pinned: this program's are
	// empty until now.
	for _, st := range b.services {
		ids := make([]uint32, 0, len(st.ids))
		for _, id := range st.ids {
			ids = append(ids, id)
		}
		if err := b.beSvc.PutBatch(ids, st.cfg.Key); err != nil {
			return err
		}
	}
	return b.syncVIPs()
}
