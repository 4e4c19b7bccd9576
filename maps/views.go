package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Services is the services map: lb.ServiceKey -> Service.
type Services struct{ m *ebpf.Map }

// NewServices wraps the services map.
func NewServices(m *ebpf.Map) *Services { return &Services{m} }

// Put inserts or replaces a service.
func (s *Services) Put(k lb.ServiceKey, v Service) error {
	key := marshalServiceKey(k)
	val := v.marshal()
	if err := s.m.Put(&key, &val); err != nil {
		return fmt.Errorf("put service %s: %w", k, err)
	}
	return nil
}

// Delete removes a service; a missing one is not an error.
func (s *Services) Delete(k lb.ServiceKey) error {
	key := marshalServiceKey(k)
	if err := s.m.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service %s: %w", k, err)
	}
	return nil
}

// All returns every service in the map.
func (s *Services) All() (map[lb.ServiceKey]Service, error) {
	out := make(map[lb.ServiceKey]Service)
	var (
		key bpf.SvcKey
		val bpf.Service
	)
	it := s.m.Iterate()
	for it.Next(&key, &val) {
		out[unmarshalServiceKey(key)] = unmarshalService(val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate services: %w", err)
	}
	return out, nil
}

// Backends is the backends array: backend id -> Backend.
type Backends struct{ m *ebpf.Map }

// NewBackends wraps the backends map.
func NewBackends(m *ebpf.Map) *Backends { return &Backends{m} }

// Put writes backend id.
func (b *Backends) Put(id uint32, v Backend) error {
	val, err := v.marshal()
	if err != nil {
		return err
	}
	if err := b.m.Put(&id, &val); err != nil {
		return fmt.Errorf("put backend %d (%s): %w", id, v.Addr, err)
	}
	return nil
}

// Clear zeroes backend id: it is no longer usable by any flow.
func (b *Backends) Clear(id uint32) error {
	var zero bpf.Backend
	if err := b.m.Put(&id, &zero); err != nil {
		return fmt.Errorf("clear backend %d: %w", id, err)
	}
	return nil
}

// Get reads backend id.
func (b *Backends) Get(id uint32) (Backend, error) {
	var val bpf.Backend
	if err := b.m.Lookup(&id, &val); err != nil {
		return Backend{}, fmt.Errorf("lookup backend %d: %w", id, err)
	}
	return unmarshalBackend(val), nil
}

// All returns every backend id in use (entries with an address).
func (b *Backends) All() (map[uint32]Backend, error) {
	out := make(map[uint32]Backend)
	var (
		id  uint32
		val bpf.Backend
	)
	it := b.m.Iterate()
	for it.Next(&id, &val) {
		if val.Family != 0 {
			out[id] = unmarshalBackend(val)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate backends: %w", err)
	}
	return out, nil
}

// SchedTables is the map-in-map of per-service scheduler tables (the
// Maglev table, the round-robin sequence or the least-conn list, built by
// package table). Its BPF map keeps its first name, maglev_tables, so that
// pinned data planes are re-adopted across upgrades. A table is never
// edited in place: a fresh inner map is filled (NewTable) and then
// replaces the outer entry in one update (Install, Swap), so packets see
// the old table or the new one.
//
// An update of a map-in-map from user space returns only after an RCU
// grace period (the kernel waits until no program can still hold the old
// inner map), some milliseconds: Install puts any number of tables in
// with one update, and so one wait.
type SchedTables struct {
	outer *ebpf.Map
	inner *ebpf.MapSpec

	keysOnce sync.Once
	keys     []uint32 // 0..size-1, for filling tables that cannot be mapped
}

// NewSchedTables wraps the outer map; inner is the spec of one table. An
// inner spec with BPF_F_MMAPABLE (the outer map's template must have it
// too) has its tables filled through a memory mapping, a fraction of a
// millisecond for 65537 slots where a batch update takes about ten.
func NewSchedTables(outer *ebpf.Map, inner *ebpf.MapSpec) *SchedTables {
	return &SchedTables{outer: outer, inner: inner}
}

// Size is the number of slots of every table.
func (t *SchedTables) Size() uint32 { return t.inner.MaxEntries }

// Mapped reports whether tables are filled through a memory mapping.
func (t *SchedTables) Mapped() bool { return t.inner.Flags&unix.BPF_F_MMAPABLE != 0 }

// NewTable returns a fresh inner map holding table, for service svcID
// (named in errors only); nothing is installed yet. The caller closes it
// (an installed table is held by the outer map).
func (t *SchedTables) NewTable(svcID uint32, table []uint32) (*ebpf.Map, error) {
	if uint32(len(table)) != t.inner.MaxEntries {
		return nil, fmt.Errorf("maglev table for service %d: %d slots, want %d", svcID, len(table), t.inner.MaxEntries)
	}
	m, err := ebpf.NewMap(t.inner)
	if err != nil {
		return nil, fmt.Errorf("create maglev table for service %d: %w", svcID, err)
	}
	if t.Mapped() {
		err = fillMapped(m, table)
	} else {
		t.keysOnce.Do(func() {
			t.keys = make([]uint32, t.inner.MaxEntries)
			for i := range t.keys {
				t.keys[i] = uint32(i)
			}
		})
		_, err = m.BatchUpdate(t.keys, table, nil)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("fill maglev table for service %d: %w", svcID, err)
	}
	return m, nil
}

// fillMapped writes table into the BPF_F_MMAPABLE array m through a
// shared mapping, unmapped before it returns. An array's values sit 8
// bytes apart whatever their size.
func fillMapped(m *ebpf.Map, table []uint32) error {
	const stride = 8
	size := (len(table)*stride + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map memory: %w", err)
	}
	for i, v := range table {
		binary.NativeEndian.PutUint32(mem[i*stride:], v)
	}
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("unmap memory: %w", err)
	}
	return nil
}

// Install makes tables[i] (from NewTable) service svcIDs[i]'s table, all
// in one update of the outer map. It returns how many were installed: on
// an error, the first n (in slice order) are in place, the rest not.
func (t *SchedTables) Install(svcIDs []uint32, tables []*ebpf.Map) (int, error) {
	if len(svcIDs) != len(tables) {
		return 0, fmt.Errorf("install maglev tables: %d services, %d tables", len(svcIDs), len(tables))
	}
	if len(tables) == 0 {
		return 0, nil
	}
	fds := make([]uint32, len(tables))
	for i, m := range tables {
		fds[i] = uint32(m.FD())
	}
	n, err := t.outer.BatchUpdate(svcIDs, fds, nil)
	if errors.Is(err, ebpf.ErrNotSupported) && n == 0 {
		// A kernel without batch updates of map-in-maps: one update
		// (and one grace period) each.
		for n = 0; n < len(tables); n++ {
			if err := t.outer.Put(&svcIDs[n], tables[n]); err != nil {
				return n, fmt.Errorf("install maglev table for service %d: %w", svcIDs[n], err)
			}
		}
		return n, nil
	}
	if err != nil && len(tables) == 1 {
		return n, fmt.Errorf("install maglev table for service %d: %w", svcIDs[0], err)
	}
	if err != nil {
		return n, fmt.Errorf("install maglev tables (%d of %d in place): %w", n, len(tables), err)
	}
	return n, nil
}

// Swap installs table as service svcID's table.
func (t *SchedTables) Swap(svcID uint32, table []uint32) error {
	m, err := t.NewTable(svcID, table)
	if err != nil {
		return err
	}
	defer m.Close() // the outer map holds its own reference
	_, err = t.Install([]uint32{svcID}, []*ebpf.Map{m})
	return err
}

// Delete removes service svcID's table.
func (t *SchedTables) Delete(svcID uint32) error {
	if err := t.outer.Delete(&svcID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete maglev table for service %d: %w", svcID, err)
	}
	return nil
}

// Get reads service svcID's installed table.
func (t *SchedTables) Get(svcID uint32) ([]uint32, error) {
	var id ebpf.MapID
	if err := t.outer.Lookup(&svcID, &id); err != nil {
		return nil, fmt.Errorf("lookup maglev table for service %d: %w", svcID, err)
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open maglev table for service %d: %w", svcID, err)
	}
	defer m.Close()
	n := m.MaxEntries()
	keys := make([]uint32, n)
	vals := make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	got := 0
	for got < int(n) {
		c, err := m.BatchLookup(&cursor, keys[got:], vals[got:], nil)
		got += c
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read maglev table for service %d: %w", svcID, err)
		}
	}
	table := make([]uint32, n)
	for i := 0; i < got; i++ {
		table[keys[i]] = vals[i]
	}
	return table, nil
}

// Conntrack is the connection table.
type Conntrack struct{ m *ebpf.Map }

// NewConntrack wraps the conntrack map.
func NewConntrack(m *ebpf.Map) *Conntrack { return &Conntrack{m} }

// Lookup returns a flow's entry.
func (c *Conntrack) Lookup(k lb.FlowKey) (Flow, bool, error) {
	key := MarshalFlowKey(k)
	var val bpf.Flow
	err := c.m.Lookup(&key, &val)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Flow{}, false, nil
	}
	if err != nil {
		return Flow{}, false, fmt.Errorf("lookup flow %s: %w", k, err)
	}
	return unmarshalFlow(val), true, nil
}

// Put inserts or replaces a flow's entry.
func (c *Conntrack) Put(k lb.FlowKey, f Flow) error {
	key := MarshalFlowKey(k)
	val := f.marshal()
	if err := c.m.Put(&key, &val); err != nil {
		return fmt.Errorf("put flow %s: %w", k, err)
	}
	return nil
}

// Delete removes a flow's entry; a missing one is not an error.
func (c *Conntrack) Delete(k lb.FlowKey) error {
	key := MarshalFlowKey(k)
	if err := c.m.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete flow %s: %w", k, err)
	}
	return nil
}

// Iterate calls fn for every flow until fn returns false.
func (c *Conntrack) Iterate(fn func(lb.FlowKey, Flow) bool) error {
	var (
		key bpf.FlowKey
		val bpf.Flow
	)
	it := c.m.Iterate()
	for it.Next(&key, &val) {
		if !fn(unmarshalFlowKey(key), unmarshalFlow(val)) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate flows: %w", err)
	}
	return nil
}

// countBatch is how many entries Count reads per system call. A hash
// map's batch must hold a whole bucket, which is far smaller.
const countBatch = 4096

// Count returns the number of entries. It reads them countBatch at a time
// (BPF_MAP_LOOKUP_BATCH): with a million flows that is some 250 system
// calls instead of a million, and status, the status page, top and every
// scrape count the table. Where the kernel has no batch lookup for the
// map it counts one entry at a time.
func (c *Conntrack) Count() (int, error) {
	keys := make([]bpf.FlowKey, countBatch)
	vals := make([]bpf.Flow, countBatch*valuesPerKey(c.m))
	var cursor ebpf.MapBatchCursor
	n := 0
	for {
		got, err := c.m.BatchLookup(&cursor, keys, vals, nil)
		n += got
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return n, nil
		case errors.Is(err, ebpf.ErrNotSupported) && n == 0:
			return c.countEach()
		case err != nil:
			return 0, fmt.Errorf("count flows: %w", err)
		}
	}
}

// countEach counts the entries one at a time.
func (c *Conntrack) countEach() (int, error) {
	n := 0
	err := c.Iterate(func(lb.FlowKey, Flow) bool { n++; return true })
	return n, err
}

// valuesPerKey is how many values a lookup returns per key: one per
// possible CPU for a per-CPU map, else one.
func valuesPerKey(m *ebpf.Map) int {
	switch m.Type() {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
	default:
		return 1
	}
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 1 // the lookup then fails and says why
	}
	return n
}

// Stats reads the per-CPU counters, summed over CPUs.
type Stats struct{ global, svc, backend *ebpf.Map }

// NewStats wraps the three counter maps.
func NewStats(global, svc, backend *ebpf.Map) *Stats { return &Stats{global, svc, backend} }

// GlobalCounters are the data plane's global counters (see structs.h).
type GlobalCounters = bpf.GlobalCounters

// ServiceCounters are one service's counters.
type ServiceCounters = bpf.SvcCounters

// BackendCounters are one backend's counters.
type BackendCounters = bpf.BackendCounters

// Global returns the global counters summed over CPUs.
func (s *Stats) Global() (GlobalCounters, error) {
	var per []bpf.GlobalCounters
	if err := s.global.Lookup(uint32(0), &per); err != nil {
		return GlobalCounters{}, fmt.Errorf("read global counters: %w", err)
	}
	return sumCounters(per), nil
}

// Service returns service id's counters summed over CPUs.
func (s *Stats) Service(id uint32) (ServiceCounters, error) {
	var per []bpf.SvcCounters
	if err := s.svc.Lookup(id, &per); err != nil {
		return ServiceCounters{}, fmt.Errorf("read counters of service %d: %w", id, err)
	}
	return sumCounters(per), nil
}

// Backend returns backend id's counters summed over CPUs.
func (s *Stats) Backend(id uint32) (BackendCounters, error) {
	var per []bpf.BackendCounters
	if err := s.backend.Lookup(id, &per); err != nil {
		return BackendCounters{}, fmt.Errorf("read counters of backend %d: %w", id, err)
	}
	return sumCounters(per), nil
}

// ResetService zeroes service id's counters (a new service reusing an id
// must not inherit its predecessor's numbers).
func (s *Stats) ResetService(id uint32) error {
	zero := make([]bpf.SvcCounters, ebpfPossibleCPUs())
	if err := s.svc.Put(id, zero); err != nil {
		return fmt.Errorf("reset counters of service %d: %w", id, err)
	}
	return nil
}

// ResetBackend zeroes backend id's counters.
func (s *Stats) ResetBackend(id uint32) error {
	zero := make([]bpf.BackendCounters, ebpfPossibleCPUs())
	if err := s.backend.Put(id, zero); err != nil {
		return fmt.Errorf("reset counters of backend %d: %w", id, err)
	}
	return nil
}

// LBGlobal converts the data plane's global counters to the vocabulary's.
func LBGlobal(g GlobalCounters) lb.GlobalCounters {
	return lb.GlobalCounters{
		RxPackets: g.RxPackets, TxPackets: g.TxPackets,
		PassNotIP: g.PassNotIp, PassNotVIP: g.PassNotVip, PassMalformed: g.PassMalformed,
		PassFragment: g.PassFragment, PassIPv6Ext: g.PassIpv6Ext, PassTTL: g.PassTtl, PassOtherHost: g.PassOtherHost,
		DropNoBackend: g.DropNoBackend, DropInternal: g.DropInternal,
		ConntrackHits: g.ConntrackHits, NewFlows: g.NewFlows, Reschedules: g.Reschedules,
		ConntrackInsertErrors: g.ConntrackInsertErrors,
		ExpiredFlows:          g.ExpiredFlows, ClosedFlows: g.ClosedFlows, PersistHits: g.PersistHits,
		ICMPEchoReplies:     g.IcmpEchoReplies,
		ICMPErrorsForwarded: g.IcmpErrorsForwarded, ICMPErrorsUnmatched: g.IcmpErrorsUnmatched,
		FragFirst: g.FragFirst, FragForwarded: g.FragForwarded, FragUnmatched: g.FragUnmatched,
		FragEarly: g.FragEarly, HalfOpenNew: g.HalfopenNew, HalfOpenPromoted: g.HalfopenPromoted,
		EncapPackets: g.EncapPackets, EncapFIBMiss: g.EncapFibMiss, EncapTooBig: g.EncapTooBig, EncapErrors: g.EncapErrors,
		EncapICMPTooBig: g.EncapIcmpTooBig, EncapFIBLookups: g.EncapFibLookups,
	}
}

// LBService converts a service's counters to the vocabulary's.
func LBService(c ServiceCounters) lb.ServiceCounters {
	return lb.ServiceCounters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows, DropNoBackend: c.DropNoBackend}
}

// LBBackend converts a backend's counters to the vocabulary's.
func LBBackend(c BackendCounters) lb.BackendCounters {
	return lb.BackendCounters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows}
}

// batchPut writes n entries of array m with one batch update (a kernel
// without batch updates: one update each, put(i)).
func batchPut(m *ebpf.Map, keys []uint32, values any, put func(i int) error) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, values, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := put(i); err != nil {
			return err
		}
	}
	return nil
}

// PutBatch writes backends ids[i] = vs[i] with one batch update.
func (b *Backends) PutBatch(ids []uint32, vs []Backend) error {
	vals := make([]bpf.Backend, len(vs))
	for i, v := range vs {
		val, err := v.marshal()
		if err != nil {
			return err
		}
		vals[i] = val
	}
	err := batchPut(b.m, ids, vals, func(i int) error { return b.m.Put(&ids[i], &vals[i]) })
	if err != nil {
		return fmt.Errorf("put %d backends: %w", len(ids), err)
	}
	return nil
}

// ResetBackends zeroes the counters of backends ids with one batch update.
func (s *Stats) ResetBackends(ids []uint32) error {
	n := ebpfPossibleCPUs()
	zero := make([]bpf.BackendCounters, len(ids)*n)
	err := batchPut(s.backend, ids, zero, func(i int) error { return s.backend.Put(ids[i], zero[:n]) })
	if err != nil {
		return fmt.Errorf("reset counters of %d backends: %w", len(ids), err)
	}
	return nil
}

// Slot reads slot i of service svcID's installed table: one lookup, not
// the whole table.
func (t *SchedTables) Slot(svcID, i uint32) (uint32, error) {
	var id ebpf.MapID
	if err := t.outer.Lookup(&svcID, &id); err != nil {
		return 0, fmt.Errorf("lookup maglev table for service %d: %w", svcID, err)
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return 0, fmt.Errorf("open maglev table for service %d: %w", svcID, err)
	}
	defer m.Close()
	var v uint32
	if err := m.Lookup(&i, &v); err != nil {
		return 0, fmt.Errorf("read slot %d of the table of service %d: %w", i, svcID, err)
	}
	return v, nil
}
