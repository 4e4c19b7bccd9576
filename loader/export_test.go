package loader

import (
	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
)

// FragsMap is the fragment table of b, for tests that age its entries.
func FragsMap(b *Balancer) *ebpf.Map { return b.objs.Frags }

// HalfOpenMap is the half-open table of b, for tests of its size.
func HalfOpenMap(b *Balancer) *ebpf.Map { return b.objs.Halfopen }

// MapOf is b's map called name, for tests that read and write its raw
// entries (the differential fuzz target).
func MapOf(b *Balancer, name string) *ebpf.Map {
	switch name {
	case bpf.MapFrags:
		return b.objs.Frags
	case bpf.MapVips:
		return b.objs.Vips
	case bpf.MapVipFilter:
		return b.objs.VipFilter
	case bpf.MapBackendSvc:
		return b.objs.BackendSvc
	}
	return b.mapByName(name)
}

// WithBatchTables is opts making a data plane whose tables have the
// layout of xlb before they were memory-mapped (filled by batch updates).
func WithBatchTables(opts Options) Options {
	opts.batchTables = true
	return opts
}

// MappedTables reports whether b fills its tables through a mapping.
func MappedTables(b *Balancer) bool { return b.tables.Mapped() }

// SameService is sameService, for its test.
var SameService = sameService
