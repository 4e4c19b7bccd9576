package table

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Bounds on the table size accepted by Maglev. The lower bound keeps
// the skip range (size-1) non-trivial; the upper bound keeps every
// intermediate position sum below 2^32 and the table at most 256 MiB.
const (
	maglevMinSize = 3
	maglevMaxSize = 1 << 26
)

// Seeds for the two hashes that derive a backend's permutation. They are part
// of the on-the-wire contract between balancer nodes: changing them (or
// maglevHash) changes every table, so all nodes must be upgraded together.
const (
	maglevOffsetSeed = 0x6d61676c65762d6f // "maglev-o"
	maglevSkipSeed   = 0x6d61676c65762d73 // "maglev-s"
)

// Backend is one backend offered to a table builder.
type Backend struct {
	ID     uint32 // value written into the slots this backend owns; must not be 0 (0 marks an empty slot)
	Key    string // stable identity (e.g. the backend address "198.18.0.11"); the permutation derives from it only, so every balancer node builds the identical table for the same backend set
	Weight uint32 // relative share; 0 = owns no slot (drained)
}

// maglevState is the per-backend cursor of the population loop.
type maglevState struct {
	pos    uint32 // next candidate slot in this backend's permutation
	skip   uint32 // permutation stride, in [1, size-1]
	id     uint32 // value written into owned slots
	weight uint32 // > 0
	placed uint64 // slots placed so far
}

// The population heap holds one uint64 per active backend: the round of its
// next claim in the high bits and its Key-order index in the low
// maglevIndexBits, so that plain integer order is (round, Key order).
const (
	maglevIndexBits = 27 // > log2(maglevMaxSize): holds any backend index
	maglevIndexMask = 1<<maglevIndexBits - 1
	// maglevRoundCap bounds the stored round. The heaviest backend claims
	// a slot in every round, so the table is full by round size <=
	// maglevMaxSize; a claim due later never happens and clamping its
	// round to the cap cannot change the result.
	maglevRoundCap = 1<<(64-maglevIndexBits) - 1
)

// Maglev returns a table of `size` slots, each holding the ID of the backend that owns it, or 0 when no backend has a weight above 0.
//
// size must be a prime in [3, 2^26]. Keys must be non-empty and unique, IDs
// non-zero (they need not be unique: backends sharing an ID pool their
// slots), and weights at most lb.MaxWeight. The result depends only on the set
// of backends, not on their order in the slice, which is left unmodified. On
// error the table is nil.
//
// The algorithm is the Maglev population loop (Eisenbud et al., NSDI 2016)
// with weighted rounds: backends are sorted by Key; backend i has the
// permutation (offset_i + j*skip_i) mod size, with offset and skip derived
// from two seeded hashes of its Key. Every backend starts with half a unit
// of credit and gains Weight/maxWeight credit per round (maxWeight being the
// largest weight in the set); in each round, in Key order, a backend holding
// a whole unit spends it to claim its next free permutation slot, until the
// table is full. Backend i's k-th claim therefore falls in round
// ceil((k-1/2)*maxWeight/Weight_i), and the loop is driven by a min-heap on
// (round, Key order) so its cost does not depend on the spread of weights.
//
// Starting from half a unit makes each backend's slot count its weighted
// quota rounded to the nearest integer (Webster/Sainte-Laguë apportionment)
// rather than rounded down, which would hand the rounding losses of every
// light backend to the heaviest one. Backends of equal weight own equal
// shares to within one slot, and with all weights equal the loop is exactly
// the classic unweighted Maglev population.
func Maglev(backends []Backend, size uint32) ([]uint32, error) {
	var b Builder
	return b.Maglev(backends, size)
}

// Builder builds tables into buffers it keeps from one call to the next,
// so a daemon that builds thousands of tables allocates for the first
// only, and it keeps its last Maglev table: the next one of the same keys
// and weights (a service with the same backends as the one before, as on
// a host whose services share a pool) is that table relabelled with its
// IDs, some 50 us instead of some 2 ms. A table it returns is valid until
// its next build. A Builder is not safe for concurrent use; its zero value
// is ready.
type Builder struct {
	table  []uint32
	sorted []Backend
	states []maglevState
	heap   []uint64
	// last is the last Maglev table built, as backend indexes from 1 in
	// Key order, and lastKeys and lastWeights what it was built from.
	last        []uint32
	lastKeys    []string
	lastWeights []uint32
	ids         []uint32
	// full has one bit per slot, set once the slot is claimed: the
	// population loop's probes test it rather than the table, which is
	// 32 times its size (8 KiB against 256 KiB for the default size,
	// so the probes stay in the first-level cache).
	full []uint64
}

// buffer returns b's table buffer resized to size slots, zeroed.
func (b *Builder) buffer(size uint32) []uint32 {
	if uint32(cap(b.table)) < size {
		b.table = make([]uint32, size)
	}
	b.table = b.table[:size]
	clear(b.table)
	return b.table
}

// Maglev is the package's Maglev building into b's buffer.
func (b *Builder) Maglev(backends []Backend, size uint32) ([]uint32, error) {
	if size < maglevMinSize || size > maglevMaxSize {
		return nil, fmt.Errorf("maglev size %d out of range %d-%d", size, maglevMinSize, maglevMaxSize)
	}
	if !lb.IsPrime(size) {
		return nil, fmt.Errorf("maglev size %d is not prime", size)
	}

	// Validate in Key order so the reported error, like the table, does not
	// depend on the order of the input slice.
	sorted := append(b.sorted[:0], backends...)
	b.sorted = sorted
	slices.SortFunc(sorted, func(a, b Backend) int {
		return strings.Compare(a.Key, b.Key)
	})
	active := 0
	var maxWeight uint32
	equal := true
	for i := range sorted {
		be := &sorted[i]
		if be.Key == "" {
			return nil, errors.New("backend key is empty")
		}
		if i > 0 && sorted[i-1].Key == be.Key {
			return nil, fmt.Errorf("duplicate backend key %q", be.Key)
		}
		if be.ID == 0 {
			return nil, fmt.Errorf("backend %q: id 0 is reserved", be.Key)
		}
		if be.Weight > lb.MaxWeight {
			return nil, fmt.Errorf("backend %q: weight %d out of range 0-%d", be.Key, be.Weight, lb.MaxWeight)
		}
		if be.Weight > 0 {
			if active > 0 && be.Weight != maxWeight {
				equal = false
			}
			active++
			maxWeight = max(maxWeight, be.Weight)
		}
	}
	if uint64(active) > uint64(size) {
		return nil, fmt.Errorf("maglev size %d smaller than %d backends with weight > 0", size, active)
	}

	table := b.buffer(size)
	if active == 0 {
		return table, nil
	}

	// The IDs are only labels: the table is a function of the keys and
	// weights. The population loop fills slots with backend indexes (Key
	// order, from 1), kept as b.last; a table of the same keys and weights
	// as the last (another service with the same backends) is the last
	// one relabelled, without running the loop again.
	if !b.sameAsLast(sorted, size) {
		states := b.states[:0]
		keys, weights := b.lastKeys[:0], b.lastWeights[:0]
		for i := range sorted {
			be := &sorted[i]
			if be.Weight == 0 {
				continue
			}
			states = append(states, maglevState{
				pos:    uint32(maglevHash(be.Key, maglevOffsetSeed) % uint64(size)),
				skip:   uint32(maglevHash(be.Key, maglevSkipSeed)%uint64(size-1)) + 1,
				id:     uint32(len(states) + 1),
				weight: be.Weight,
			})
			keys, weights = append(keys, be.Key), append(weights, be.Weight)
		}
		b.states = states
		words := int(size+63) / 64
		if cap(b.full) < words {
			b.full = make([]uint64, words)
		}
		full := b.full[:words]
		clear(full)
		if cap(b.last) < int(size) {
			b.last = make([]uint32, size)
		}
		b.last = b.last[:size]
		clear(b.last)
		if equal {
			maglevEqual(b.last, full, states)
		} else {
			b.maglevWeighted(b.last, full, states, maxWeight)
		}
		b.lastKeys, b.lastWeights = keys, weights
	}
	ids := b.ids[:0]
	for i := range sorted {
		if sorted[i].Weight > 0 {
			ids = append(ids, sorted[i].ID)
		}
	}
	b.ids = ids
	for i, idx := range b.last {
		table[i] = ids[idx-1]
	}
	return table, nil
}

// sameAsLast reports whether the backends with a weight above 0 in sorted
// have the keys and weights of b's last table, of the same size.
func (b *Builder) sameAsLast(sorted []Backend, size uint32) bool {
	if len(b.last) != int(size) {
		return false
	}
	n := 0
	for i := range sorted {
		be := &sorted[i]
		if be.Weight == 0 {
			continue
		}
		if n >= len(b.lastKeys) || be.Key != b.lastKeys[n] || be.Weight != b.lastWeights[n] {
			return false
		}
		n++
	}
	return n == len(b.lastKeys)
}

// maglevClaim places s's next free permutation slot in table and returns
// it. size is prime and 1 <= skip < size, so the permutation visits every
// slot and a free one is found while the table is not full.
func maglevClaim(table []uint32, full []uint64, s *maglevState) {
	size := uint32(len(table))
	pos, skip := s.pos, s.skip
	for full[pos>>6]&(1<<(pos&63)) != 0 {
		pos += skip
		if pos >= size {
			pos -= size
		}
	}
	full[pos>>6] |= 1 << (pos & 63)
	table[pos] = s.id
	pos += skip
	if pos >= size {
		pos -= size
	}
	s.pos = pos
}

// maglevEqual is the population loop when every backend has the same
// weight: each is due once per round, so the heap's order, (round, Key
// order), is plain rotation in Key order.
func maglevEqual(table []uint32, full []uint64, states []maglevState) {
	size := uint32(len(table))
	for filled := uint32(0); ; {
		for i := range states {
			maglevClaim(table, full, &states[i])
			if filled++; filled == size {
				return
			}
		}
	}
}

// maglevWeighted is the population loop driven by the min-heap on (round,
// Key order).
func (b *Builder) maglevWeighted(table []uint32, full []uint64, states []maglevState, maxWeight uint32) {
	size := uint32(len(table))
	heap := b.heap[:0]
	for i := range states {
		heap = append(heap, maglevHeapKey(maglevDue(1, maxWeight, states[i].weight), i))
	}
	b.heap = heap
	for i := len(heap)/2 - 1; i >= 0; i-- {
		maglevSiftDown(heap, i)
	}
	for filled := uint32(0); filled < size; filled++ {
		idx := int(heap[0] & maglevIndexMask)
		s := &states[idx]
		maglevClaim(table, full, s)
		s.placed++
		heap[0] = maglevHeapKey(maglevDue(s.placed+1, maxWeight, s.weight), idx)
		maglevSiftDown(heap, 0)
	}
}

// maglevDue is the round, counted from 1, in which a backend of weight w
// places its k-th slot (k >= 1) when the heaviest backend has weight
// maxWeight: the first round r with floor(r*w/maxWeight + 1/2) >= k, i.e.
// ceil((2k-1)*maxWeight / 2w). k <= 2^26 and maxWeight < 2^16, so the
// product cannot overflow.
func maglevDue(k uint64, maxWeight, w uint32) uint64 {
	num := (2*k - 1) * uint64(maxWeight)
	den := 2 * uint64(w)
	return (num + den - 1) / den
}

// maglevHeapKey packs a claim round and a backend index into a heap key.
func maglevHeapKey(round uint64, idx int) uint64 {
	return min(round, maglevRoundCap)<<maglevIndexBits | uint64(idx)
}

// maglevSiftDown restores the min-heap property below position i.
func maglevSiftDown(heap []uint64, i int) {
	n := len(heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && heap[r] < heap[l] {
			m = r
		}
		if heap[m] >= heap[i] {
			return
		}
		heap[i], heap[m] = heap[m], heap[i]
		i = m
	}
}

// maglevHash is a stable 64-bit hash of key: FNV-1a 64 over the eight
// little-endian bytes of seed followed by the key, then the SplitMix64
// finalizer so that near-identical keys (consecutive addresses) give
// unrelated offsets and skips. It must never change (see maglevOffsetSeed).
func maglevHash(key string, seed uint64) uint64 {
	const (
		fnvOffset64 = 14695981039346656037
		fnvPrime64  = 1099511628211
	)
	h := uint64(fnvOffset64)
	for i := 0; i < 8; i++ {
		h ^= (seed >> (8 * i)) & 0xff
		h *= fnvPrime64
	}
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime64
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
