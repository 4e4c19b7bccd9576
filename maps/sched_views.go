package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Active is the per-backend count of active flows (backend id -> flows).
// The data plane adds and subtracts as flows start and close; the daemon
// rewrites it from the connection table (see loader.Balancer.Sweep).
type Active struct{ m *ebpf.Map }

// NewActive wraps the backend_active map.
func NewActive(m *ebpf.Map) *Active { return &Active{m} }

// Get returns backend id's count as stored: it can dip below 0 (a close
// of a flow counted before a correction) until the next correction.
func (a *Active) Get(id uint32) (int64, error) {
	var v int64
	if err := a.m.Lookup(&id, &v); err != nil {
		return 0, fmt.Errorf("read active flows of backend %d: %w", id, err)
	}
	return v, nil
}

// Set writes backend id's count.
func (a *Active) Set(id uint32, n uint64) error {
	v := int64(n)
	if err := a.m.Put(&id, &v); err != nil {
		return fmt.Errorf("write active flows of backend %d: %w", id, err)
	}
	return nil
}

// PersistKey is one client address of one service.
type PersistKey struct {
	ServiceID uint32
	Client    netip.Addr
}

// Persistence is one persistence entry: the backend a client was sent to
// and when (CLOCK_MONOTONIC ns).
type Persistence struct {
	BackendID uint32
	LastSeen  uint64
}

// PersistTable is the client-persistence table.
type PersistTable struct{ m *ebpf.Map }

// NewPersistTable wraps the persist map.
func NewPersistTable(m *ebpf.Map) *PersistTable { return &PersistTable{m} }

func (k PersistKey) marshal() bpf.PersistKey {
	w, fam := addrWords(k.Client)
	return bpf.PersistKey{Addr: w, SvcId: k.ServiceID, Family: fam}
}

// Lookup returns a client's entry.
func (p *PersistTable) Lookup(k PersistKey) (Persistence, bool, error) {
	key := k.marshal()
	var v bpf.PersistEntry
	err := p.m.Lookup(&key, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Persistence{}, false, nil
	}
	if err != nil {
		return Persistence{}, false, fmt.Errorf("lookup persistence of %s: %w", k.Client, err)
	}
	return Persistence{BackendID: v.BackendId, LastSeen: v.LastSeen}, true, nil
}

// Put writes a client's entry.
func (p *PersistTable) Put(k PersistKey, e Persistence) error {
	key := k.marshal()
	v := bpf.PersistEntry{BackendId: e.BackendID, LastSeen: e.LastSeen}
	if err := p.m.Put(&key, &v); err != nil {
		return fmt.Errorf("put persistence of %s: %w", k.Client, err)
	}
	return nil
}

// Delete removes a client's entry; a missing one is not an error.
func (p *PersistTable) Delete(k PersistKey) error {
	key := k.marshal()
	if err := p.m.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete persistence of %s: %w", k.Client, err)
	}
	return nil
}

// Iterate calls fn for every entry until fn returns false.
func (p *PersistTable) Iterate(fn func(PersistKey, Persistence) bool) error {
	var (
		key bpf.PersistKey
		v   bpf.PersistEntry
	)
	it := p.m.Iterate()
	for it.Next(&key, &v) {
		k := PersistKey{ServiceID: key.SvcId, Client: wordsAddr(key.Addr, key.Family)}
		if !fn(k, Persistence{BackendID: v.BackendId, LastSeen: v.LastSeen}) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate persistence: %w", err)
	}
	return nil
}

// Config is the data plane's runtime settings map.
type Config struct{ m *ebpf.Map }

// NewConfig wraps the config map.
func NewConfig(m *ebpf.Map) *Config { return &Config{m} }

// SetTimeouts writes the connection table's idle timeouts.
func (c *Config) SetTimeouts(t lb.Timeouts) error {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	v.TcpTimeoutNs = uint64(max(t.TCP, 0))
	v.TcpFinTimeoutNs = uint64(max(t.TCPFin, 0))
	v.UdpTimeoutNs = uint64(max(t.UDP, 0))
	if err := c.m.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetICMP writes the ICMP switches.
func (c *Config) SetICMP(i lb.ICMP) error {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	v.Flags &^= bpf.ConfigNoICMPEcho | bpf.ConfigNoICMPForward
	if i.NoEcho {
		v.Flags |= bpf.ConfigNoICMPEcho
	}
	if i.NoForward {
		v.Flags |= bpf.ConfigNoICMPForward
	}
	if err := c.m.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetEncap writes the encapsulated modes' settings: the outer sources
// (their host bits, at most lb.MaxEncapHashBits, take the flow hash) and
// the GUE port.
func (c *Config) SetEncap(e lb.Encap) error {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	v.EncapSrc4, v.EncapSrc4Bits, v.EncapSrc6, v.EncapSrc6Bits = 0, 0, [4]uint32{}, 0
	if p := e.Source4; p.IsValid() {
		if !p.Addr().Is4() || 32-p.Bits() > lb.MaxEncapHashBits4 {
			return fmt.Errorf("encap source %s: want an IPv4 prefix of at most %d host bits", p, lb.MaxEncapHashBits4)
		}
		w, _ := addrWords(p.Addr())
		v.EncapSrc4, v.EncapSrc4Bits = w[0], uint8(32-p.Bits())
	}
	if p := e.Source6; p.IsValid() {
		if !p.Addr().Is6() || 128-p.Bits() > lb.MaxEncapHashBits6 {
			return fmt.Errorf("encap source %s: want an IPv6 prefix of at most %d host bits", p, lb.MaxEncapHashBits6)
		}
		w, _ := addrWords(p.Addr())
		v.EncapSrc6, v.EncapSrc6Bits = w, uint8(128-p.Bits())
	}
	v.GuePort = bePort(e.GUEPort)
	if err := c.m.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Encap reads the encapsulated modes' settings.
func (c *Config) Encap() (lb.Encap, error) {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return lb.Encap{}, fmt.Errorf("read config: %w", err)
	}
	e := lb.Encap{GUEPort: hostPort(v.GuePort)}
	if v.EncapSrc4 != 0 {
		e.Source4 = netip.PrefixFrom(wordsAddr([4]uint32{v.EncapSrc4}, bpf.FamilyIPv4), 32-int(v.EncapSrc4Bits))
	}
	if v.EncapSrc6 != [4]uint32{} {
		e.Source6 = netip.PrefixFrom(wordsAddr(v.EncapSrc6, bpf.FamilyIPv6), 128-int(v.EncapSrc6Bits))
	}
	return e, nil
}

// ICMP reads the ICMP switches.
func (c *Config) ICMP() (lb.ICMP, error) {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return lb.ICMP{}, fmt.Errorf("read config: %w", err)
	}
	return lb.ICMP{NoEcho: v.Flags&bpf.ConfigNoICMPEcho != 0, NoForward: v.Flags&bpf.ConfigNoICMPForward != 0}, nil
}

// Timeouts reads the connection table's idle timeouts.
func (c *Config) Timeouts() (lb.Timeouts, error) {
	var v bpf.Config
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return lb.Timeouts{}, fmt.Errorf("read config: %w", err)
	}
	return lb.Timeouts{TCP: time.Duration(v.TcpTimeoutNs), TCPFin: time.Duration(v.TcpFinTimeoutNs), UDP: time.Duration(v.UdpTimeoutNs)}, nil
}

// VIPs is the set of addresses that are the VIP of some service, with
// what the data plane needs to know of each without a port.
type VIPs struct{ m *ebpf.Map }

// VIP is one address's entry.
type VIP struct {
	// Services is the number of services on the address (above 0).
	Services uint32
	// FragTCP and FragUDP are the port of the address's only TCP (UDP)
	// service when that service is source-hash, else 0: fragments that
	// come before their first go to its source-hash backend.
	FragTCP, FragUDP uint16
}

// NewVIPs wraps the vips map.
func NewVIPs(m *ebpf.Map) *VIPs { return &VIPs{m} }

func vipKey(a netip.Addr) bpf.VipKey {
	w, fam := addrWords(a)
	return bpf.VipKey{Addr: w, Family: fam}
}

// Put sets vip's entry.
func (v *VIPs) Put(vip netip.Addr, e VIP) error {
	k := vipKey(vip)
	val := bpf.Vip{Services: e.Services, FragPortTcp: bePort(e.FragTCP), FragPortUdp: bePort(e.FragUDP)}
	if err := v.m.Put(&k, &val); err != nil {
		return fmt.Errorf("put vip %s: %w", vip, err)
	}
	return nil
}

// Delete removes vip; a missing one is not an error.
func (v *VIPs) Delete(vip netip.Addr) error {
	k := vipKey(vip)
	if err := v.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete vip %s: %w", vip, err)
	}
	return nil
}

// All returns every VIP's entry.
func (v *VIPs) All() (map[netip.Addr]VIP, error) {
	out := make(map[netip.Addr]VIP)
	var (
		k   bpf.VipKey
		val bpf.Vip
	)
	it := v.m.Iterate()
	for it.Next(&k, &val) {
		out[wordsAddr(k.Addr, k.Family)] = VIP{Services: val.Services, FragTCP: hostPort(val.FragPortTcp), FragUDP: hostPort(val.FragPortUdp)}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate vips: %w", err)
	}
	return out, nil
}

// VIPSlot is the data plane's vip_filter slot of an address (hash.h
// vip_slot): its words as the data plane loads them, folded.
func VIPSlot(a netip.Addr) uint32 {
	w, _ := addrWords(a)
	x := w[0] ^ w[1] ^ w[2] ^ w[3]
	x ^= x >> 16
	return x & (bpf.VipFilterBits - 1)
}

// VIPFilter is the one-entry vip_filter map: a bit per VIPSlot, set for
// every VIP, which TCP and UDP frames are checked against before any
// lookup.
type VIPFilter struct{ m *ebpf.Map }

// NewVIPFilter wraps the vip_filter map.
func NewVIPFilter(m *ebpf.Map) *VIPFilter { return &VIPFilter{m} }

// Set makes the filter's bits exactly those of vips, in one write: a
// frame sees either the old bitmap or the new one word by word, and each
// word of either is right for the VIPs it covers at that moment.
func (f *VIPFilter) Set(vips []netip.Addr) error {
	var v bpf.VipFilter
	for _, a := range vips {
		s := VIPSlot(a)
		v.Bits[s/64] |= 1 << (s % 64)
	}
	zero := uint32(0)
	if err := f.m.Put(&zero, &v); err != nil {
		return fmt.Errorf("write vip filter: %w", err)
	}
	return nil
}

// Get reads the filter's bitmap.
func (f *VIPFilter) Get() (bpf.VipFilter, error) {
	var v bpf.VipFilter
	zero := uint32(0)
	if err := f.m.Lookup(&zero, &v); err != nil {
		return v, fmt.Errorf("read vip filter: %w", err)
	}
	return v, nil
}

// BackendServices is the backend_svc array: backend id -> its service's
// key, which an established flow's frames are checked against instead of
// looking the service up.
type BackendServices struct{ m *ebpf.Map }

// NewBackendServices wraps the backend_svc map.
func NewBackendServices(m *ebpf.Map) *BackendServices { return &BackendServices{m} }

// Put records that backend id belongs to service k. Written before the
// backend's own entry, so an id reused by another service never pairs
// the old service's key with the new service's backend.
func (b *BackendServices) Put(id uint32, k lb.ServiceKey) error {
	v := marshalServiceKey(k)
	if err := b.m.Put(&id, &v); err != nil {
		return fmt.Errorf("put service of backend %d: %w", id, err)
	}
	return nil
}

// PutBatch records that backends ids belong to service k, with one batch
// update (Put's order rules apply).
func (b *BackendServices) PutBatch(ids []uint32, k lb.ServiceKey) error {
	if len(ids) == 0 {
		return nil
	}
	v := marshalServiceKey(k)
	vals := make([]bpf.SvcKey, len(ids))
	for i := range vals {
		vals[i] = v
	}
	err := batchPut(b.m, ids, vals, func(i int) error { return b.m.Put(&ids[i], &vals[i]) })
	if err != nil {
		return fmt.Errorf("put service of %d backends: %w", len(ids), err)
	}
	return nil
}

// Zero sets the counts of backends ids to 0 with one batch update.
func (a *Active) Zero(ids []uint32) error {
	zero := make([]int64, len(ids))
	err := batchPut(a.m, ids, zero, func(i int) error { return a.m.Put(&ids[i], &zero[i]) })
	if err != nil {
		return fmt.Errorf("zero active flows of %d backends: %w", len(ids), err)
	}
	return nil
}

// Cursors are round-robin's per-CPU cursors by service id (rr_cursor).
type Cursors struct{ m *ebpf.Map }

// NewCursors wraps the rr_cursor map.
func NewCursors(m *ebpf.Map) *Cursors { return &Cursors{m} }

// Get returns service svcID's cursor on each possible CPU, in CPU order.
func (c *Cursors) Get(svcID uint32) ([]uint32, error) {
	var v []uint32
	if err := c.m.Lookup(&svcID, &v); err != nil {
		return nil, fmt.Errorf("read round-robin cursors of service %d: %w", svcID, err)
	}
	return v, nil
}
