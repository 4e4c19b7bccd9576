package table

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Build returns the scheduler table the data plane reads for a
// service with scheduler sched: the Maglev table for maglev and
// source-hash, the round-robin sequence, or the least-conn candidate list.
// Backends with weight 0 take no part (drained).
func Build(sched lb.Scheduler, backends []Backend, size uint32) ([]uint32, error) {
	var b Builder
	return b.Build(sched, backends, size)
}

// Build is the package's Build into b's buffer.
func (b *Builder) Build(sched lb.Scheduler, backends []Backend, size uint32) ([]uint32, error) {
	switch sched {
	case lb.Maglev, lb.SourceHash:
		return b.Maglev(backends, size)
	case lb.RoundRobin:
		return b.RoundRobin(backends, size)
	case lb.LeastConn:
		return b.LeastConn(backends, size)
	}
	return nil, fmt.Errorf("scheduler %s has no table", sched)
}

// checkBackends validates backends as Maglev does and returns those
// with a weight above 0 in Key order (in b's buffer).
func (b *Builder) checkBackends(backends []Backend) ([]Backend, error) {
	sorted := append(b.sorted[:0], backends...)
	b.sorted = sorted
	slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	out := sorted[:0]
	for i, be := range sorted {
		switch {
		case be.Key == "":
			return nil, errors.New("backend key is empty")
		case i > 0 && sorted[i-1].Key == be.Key:
			return nil, fmt.Errorf("duplicate backend key %q", be.Key)
		case be.ID == 0:
			return nil, fmt.Errorf("backend %q: id 0 is reserved", be.Key)
		case be.Weight > lb.MaxWeight:
			return nil, fmt.Errorf("backend %q: weight %d out of range 0-%d", be.Key, be.Weight, lb.MaxWeight)
		}
		if be.Weight > 0 {
			out = append(out, be)
		}
	}
	return out, nil
}

// RoundRobin returns size slots holding a smooth weighted round-robin
// sequence of the backends with weight above 0 (all 0 when there is none).
// The data plane walks it with one cursor per CPU, wrapping at size.
//
// The sequence is stride scheduling: backend i's k-th turn falls at virtual
// time (2k-1)/(2*Weight_i), and turns are taken in time order (ties in Key
// order). The first N slots therefore give every backend its weighted
// share to within one slot, whatever N is, and any N consecutive slots to
// within two: a cursor's picks follow the weights closely at every point.
func RoundRobin(backends []Backend, size uint32) ([]uint32, error) {
	var b Builder
	return b.RoundRobin(backends, size)
}

// RoundRobin is the package's RoundRobin into b's buffer.
func (b *Builder) RoundRobin(backends []Backend, size uint32) ([]uint32, error) {
	if size < 1 {
		return nil, fmt.Errorf("round-robin table size %d: must be at least 1", size)
	}
	active, err := b.checkBackends(backends)
	if err != nil {
		return nil, err
	}
	table := b.buffer(size)
	if len(active) == 0 {
		return table, nil
	}
	// next[i] is the index k (from 1) of backend i's next turn.
	next := make([]uint64, len(active))
	heap := make([]int, len(active))
	for i := range active {
		next[i] = 1
		heap[i] = i
	}
	// before orders backends by the time of their next turn,
	// (2k_a-1)/w_a < (2k_b-1)/w_b by cross-multiplication (k <= 2^26 and
	// w < 2^16: no overflow), then by Key order.
	before := func(a, b int) bool {
		x := (2*next[a] - 1) * uint64(active[b].Weight)
		y := (2*next[b] - 1) * uint64(active[a].Weight)
		if x != y {
			return x < y
		}
		return a < b
	}
	down := func(i int) {
		n := len(heap)
		for {
			l := 2*i + 1
			if l >= n {
				return
			}
			m := l
			if r := l + 1; r < n && before(heap[r], heap[l]) {
				m = r
			}
			if !before(heap[m], heap[i]) {
				return
			}
			heap[i], heap[m] = heap[m], heap[i]
			i = m
		}
	}
	for i := len(heap)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for s := range table {
		i := heap[0]
		table[s] = active[i].ID
		next[i]++
		down(0)
	}
	return table, nil
}

// LeastConn returns the least-conn table of size slots: slot 0 holds
// the number n of backends with weight above 0, slots 1..n their IDs in Key
// order, the rest 0. The data plane reads weights and active-flow counts
// live, so a weight change needs no new table to take effect, but one is
// built anyway (a backend drained to 0 leaves the list).
func LeastConn(backends []Backend, size uint32) ([]uint32, error) {
	var b Builder
	return b.LeastConn(backends, size)
}

// LeastConn is the package's LeastConn into b's buffer.
func (b *Builder) LeastConn(backends []Backend, size uint32) ([]uint32, error) {
	active, err := b.checkBackends(backends)
	if err != nil {
		return nil, err
	}
	if len(active) > lb.MaxLeastConnBackends {
		return nil, fmt.Errorf("least-conn: %d backends with weight above 0, at most %d", len(active), lb.MaxLeastConnBackends)
	}
	if uint64(len(active))+1 > uint64(size) {
		return nil, fmt.Errorf("least-conn: %d backends do not fit a table of %d slots", len(active), size)
	}
	table := b.buffer(size)
	table[0] = uint32(len(active))
	for i, b := range active {
		table[1+i] = b.ID
	}
	return table, nil
}
