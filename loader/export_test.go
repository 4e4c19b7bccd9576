package loader

import "github.com/cilium/ebpf"

// FragsMap is the fragment table of b, for tests that age its entries.
func FragsMap(b *Balancer) *ebpf.Map { return b.objs.Frags }

// HalfOpenMap is the half-open table of b, for tests of its size.
func HalfOpenMap(b *Balancer) *ebpf.Map { return b.objs.Halfopen }
