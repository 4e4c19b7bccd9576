package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps/lb"
)

// DecapAddrSet is one of the decapsulator's address sets (decap_vips,
// decap_addrs): netip.Addr keys, IPv4 stored mapped (::ffff:a.b.c.d).
type DecapAddrSet struct{ m *ebpf.Map }

// NewDecapAddrSet wraps decap_vips or decap_addrs.
func NewDecapAddrSet(m *ebpf.Map) *DecapAddrSet { return &DecapAddrSet{m} }

// MarshalDecapAddr is a's key in the decapsulator's address maps.
func MarshalDecapAddr(a netip.Addr) bpf.DecapAddr {
	b := a.As16() // IPv4 comes out mapped
	var k bpf.DecapAddr
	for i := range k.A {
		// Network order in memory: the bytes as they are on the wire.
		k.A[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return k
}

func unmarshalDecapAddr(k bpf.DecapAddr) netip.Addr {
	var b [16]byte
	for i, w := range k.A {
		binary.NativeEndian.PutUint32(b[4*i:], w)
	}
	return netip.AddrFrom16(b).Unmap()
}

// All lists the set's addresses (unmapped).
func (s *DecapAddrSet) All() ([]netip.Addr, error) {
	var (
		k   bpf.DecapAddr
		v   uint8
		out []netip.Addr
	)
	it := s.m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, unmarshalDecapAddr(k))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", s.m.String(), err)
	}
	return out, nil
}

// Add puts a into the set.
func (s *DecapAddrSet) Add(a netip.Addr) error {
	k := MarshalDecapAddr(a)
	if err := s.m.Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("add %s: %w", a, err)
	}
	return nil
}

// Remove takes a out of the set; a missing one is not an error.
func (s *DecapAddrSet) Remove(a netip.Addr) error {
	k := MarshalDecapAddr(a)
	if err := s.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove %s: %w", a, err)
	}
	return nil
}

// DecapConfigMap is the decapsulator's one-entry settings map.
type DecapConfigMap struct{ m *ebpf.Map }

// NewDecapConfigMap wraps decap_config.
func NewDecapConfigMap(m *ebpf.Map) *DecapConfigMap { return &DecapConfigMap{m} }

// GUEPort reads the gue port (host order).
func (c *DecapConfigMap) GUEPort() (uint16, error) {
	var v bpf.DecapConfig
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("read decap config: %w", err)
	}
	return hostPort(v.GuePort), nil
}

// SetGUEPort writes the gue port (host order).
func (c *DecapConfigMap) SetGUEPort(p uint16) error {
	v := bpf.DecapConfig{GuePort: bePort(p)}
	if err := c.m.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write decap config: %w", err)
	}
	return nil
}

// DecapStats reads the decapsulator's per-CPU counters.
type DecapStats struct{ m *ebpf.Map }

// NewDecapStats wraps decap_stats.
func NewDecapStats(m *ebpf.Map) *DecapStats { return &DecapStats{m} }

// Read returns the counters summed over CPUs.
func (s *DecapStats) Read() (lb.DecapCounters, error) {
	var per []bpf.DecapCounters
	if err := s.m.Lookup(uint32(0), &per); err != nil {
		return lb.DecapCounters{}, fmt.Errorf("read decap counters: %w", err)
	}
	return LBDecap(sumCounters(per)), nil
}

// LBDecap converts the data plane's decap counters.
func LBDecap(c bpf.DecapCounters) lb.DecapCounters {
	k := func(mode, outer, inner string) lb.DecapKind {
		return lb.DecapKind{Mode: mode, Outer: outer, Inner: inner}
	}
	return lb.DecapCounters{
		RxPackets: c.RxPackets,
		Decap: map[lb.DecapKind]uint64{
			k("ipip", "ipv4", "ipv4"): c.DecapIpip4in4,
			k("ipip", "ipv6", "ipv6"): c.DecapIpip6in6,
			k("ipip", "ipv4", "ipv6"): c.DecapIpip6in4,
			k("ipip", "ipv6", "ipv4"): c.DecapIpip4in6,
			k("gue", "ipv4", "ipv4"):  c.DecapGue4in4,
			k("gue", "ipv6", "ipv6"):  c.DecapGue6in6,
			k("gue", "ipv4", "ipv6"):  c.DecapGue6in4,
			k("gue", "ipv6", "ipv4"):  c.DecapGue4in6,
		},
		Pass: map[string]uint64{
			"other":      c.PassOther,
			"not_local":  c.PassNotLocal,
			"wrong_port": c.PassWrongPort,
			"fragment":   c.PassFragment,
			"not_ip":     c.PassNotIp,
			"not_vip":    c.PassNotVip,
			"malformed":  c.PassMalformed,
			"error":      c.PassError,
		},
		ECNCE: c.EcnCe,
	}
}
