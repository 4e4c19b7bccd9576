package table

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/maps/lb"
)

// maglevTestBackends returns n backends with distinct address-like keys,
// IDs 1..n and the given weight.
func maglevTestBackends(n int, weight uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{
			ID:     uint32(i + 1),
			Key:    fmt.Sprintf("198.18.%d.%d", i/256, i%256),
			Weight: weight,
		}
	}
	return bs
}

func mustMaglev(t testing.TB, bs []Backend, size uint32) []uint32 {
	t.Helper()
	table, err := Maglev(bs, size)
	if err != nil {
		t.Fatalf("Maglev(%d backends, size %d): unexpected error: %v", len(bs), size, err)
	}
	if len(table) != int(size) {
		t.Fatalf("Maglev(%d backends, size %d): table has %d slots", len(bs), size, len(table))
	}
	return table
}

// maglevCounts returns the number of slots owned by each ID (0 = empty).
func maglevCounts(table []uint32) map[uint32]int {
	c := make(map[uint32]int)
	for _, id := range table {
		c[id]++
	}
	return c
}

func maglevChanged(a, b []uint32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestMaglevEvenness(t *testing.T) {
	for _, size := range []uint32{lb.TableSize.Default, 655373} {
		const n = 100
		table := mustMaglev(t, maglevTestBackends(n, 1), size)
		counts := maglevCounts(table)
		if counts[0] != 0 {
			t.Errorf("size %d: %d empty slots, want 0", size, counts[0])
		}
		mean := float64(size) / n
		for id := uint32(1); id <= n; id++ {
			c := float64(counts[id])
			if c < 0.98*mean || c > 1.02*mean {
				t.Errorf("size %d: backend id %d owns %d slots, want within 2%% of mean %.1f", size, id, counts[id], mean)
			}
		}
	}
}

func TestMaglevLargeBackendSets(t *testing.T) {
	for _, size := range []uint32{lb.TableSize.Default, 655373} {
		const n = 4096
		table := mustMaglev(t, maglevTestBackends(n, 1), size)
		counts := maglevCounts(table)
		if counts[0] != 0 {
			t.Errorf("size %d: %d empty slots, want 0", size, counts[0])
		}
		lo, hi := int(size)/n, (int(size)+n-1)/n
		for id := uint32(1); id <= n; id++ {
			if c := counts[id]; c < lo || c > hi {
				t.Errorf("size %d: backend id %d owns %d slots, want %d-%d (equal weights)", size, id, c, lo, hi)
			}
		}
	}
}

func TestMaglevDisruption(t *testing.T) {
	const n = 100
	size := uint32(lb.TableSize.Default)
	maxChanged := int(0.02 * float64(size))
	all := maglevTestBackends(n+1, 1)
	base := mustMaglev(t, all[:n], size)

	t.Run("remove", func(t *testing.T) {
		for _, victim := range []int{0, 37, n - 1} {
			removed := all[victim].ID
			rest := slices.Delete(slices.Clone(all[:n]), victim, victim+1)
			after := mustMaglev(t, rest, size)
			if ch := maglevChanged(base, after); ch > maxChanged {
				t.Errorf("removing backend %q of %d changed %d slots (%.2f%%), want at most %d (2%%)",
					all[victim].Key, n, ch, 100*float64(ch)/float64(size), maxChanged)
			}
			for i, id := range base {
				if id != removed {
					continue
				}
				if after[i] == 0 || after[i] == removed {
					t.Fatalf("removing backend %q: slot %d it owned now holds id %d, want a remaining backend",
						all[victim].Key, i, after[i])
				}
			}
			if c := maglevCounts(after)[removed]; c != 0 {
				t.Errorf("removed backend %q still owns %d slots", all[victim].Key, c)
			}
		}
	})

	t.Run("add", func(t *testing.T) {
		after := mustMaglev(t, all[:n+1], size)
		if ch := maglevChanged(base, after); ch > maxChanged {
			t.Errorf("adding 1 backend to %d changed %d slots (%.2f%%), want at most %d (2%%)",
				n, ch, 100*float64(ch)/float64(size), maxChanged)
		}
		if c := maglevCounts(after)[all[n].ID]; c == 0 {
			t.Errorf("added backend %q owns no slot", all[n].Key)
		}
	})
}

func TestMaglevWeights(t *testing.T) {
	size := uint32(lb.TableSize.Default)

	t.Run("1:2", func(t *testing.T) {
		bs := maglevTestBackends(20, 1)
		for i := 10; i < 20; i++ {
			bs[i].Weight = 2
		}
		counts := maglevCounts(mustMaglev(t, bs, size))
		if counts[0] != 0 {
			t.Errorf("%d empty slots, want 0", counts[0])
		}
		for _, light := range bs[:10] {
			for _, heavy := range bs[10:] {
				ratio := float64(counts[heavy.ID]) / float64(counts[light.ID])
				if ratio < 2*0.95 || ratio > 2*1.05 {
					t.Errorf("weight-2 backend %q owns %d slots, weight-1 backend %q owns %d: ratio %.3f, want 2 within 5%%",
						heavy.Key, counts[heavy.ID], light.Key, counts[light.ID], ratio)
				}
			}
		}
	})

	t.Run("1:2:3", func(t *testing.T) {
		for _, scale := range []uint32{1, 100, 21845} {
			bs := maglevTestBackends(3, 0)
			for i := range bs {
				bs[i].Weight = uint32(i+1) * scale
			}
			counts := maglevCounts(mustMaglev(t, bs, size))
			if counts[0] != 0 {
				t.Errorf("weights %d:%d:%d: %d empty slots, want 0", scale, 2*scale, 3*scale, counts[0])
			}
			base := float64(counts[1])
			for i := 2; i <= 3; i++ {
				ratio := float64(counts[uint32(i)]) / base
				if ratio < float64(i)*0.98 || ratio > float64(i)*1.02 {
					t.Errorf("weights %d:%d:%d: slots %d:%d:%d, ratio of backend %d is %.4f, want %d within 2%%",
						scale, 2*scale, 3*scale, counts[1], counts[2], counts[3], i, ratio, i)
				}
			}
		}
	})

	t.Run("scale invariant", func(t *testing.T) {
		// Only weight ratios matter: scaling every weight by the same
		// factor must give the identical table.
		small := maglevTestBackends(30, 0)
		big := maglevTestBackends(30, 0)
		for i := range small {
			small[i].Weight = uint32(i%5 + 1)
			big[i].Weight = small[i].Weight * 1000
		}
		a := mustMaglev(t, small, size)
		b := mustMaglev(t, big, size)
		if ch := maglevChanged(a, b); ch != 0 {
			t.Errorf("scaling all weights by 1000 changed %d slots, want 0", ch)
		}
	})

	t.Run("extreme spread", func(t *testing.T) {
		// One heavy backend among 999 light ones, each light backend's
		// quota being just under one slot: rounding must not starve the
		// light backends (each gets its quota rounded, i.e. one slot), and
		// the heavy one stays within 0.1% of its share.
		bs := maglevTestBackends(1000, 1)
		bs[500].Weight = lb.MaxWeight
		counts := maglevCounts(mustMaglev(t, bs, size))
		var total uint64
		for _, b := range bs {
			total += uint64(b.Weight)
		}
		for _, b := range bs {
			want := float64(size) * float64(b.Weight) / float64(total)
			got := float64(counts[b.ID])
			if b.Weight == lb.MaxWeight {
				if got < want*0.999 || got > want*1.001 {
					t.Errorf("heavy backend %q owns %d slots, want %.1f within 0.1%%", b.Key, counts[b.ID], want)
				}
			} else if got < want-1 || got > want+1 {
				t.Errorf("light backend %q owns %d slots, want %.3f ± 1", b.Key, counts[b.ID], want)
			}
		}
	})
}

func TestMaglevDeterminism(t *testing.T) {
	size := uint32(lb.TableSize.Default)
	rng := rand.New(rand.NewPCG(1, 2))
	bs := maglevTestBackends(50, 0)
	for i := range bs {
		bs[i].Weight = uint32(rng.IntN(4)) // includes drained backends
	}
	bs[0].Weight = 3
	want := mustMaglev(t, bs, size)

	t.Run("shuffle", func(t *testing.T) {
		for round := range 20 {
			shuffled := slices.Clone(bs)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			before := slices.Clone(shuffled)
			got := mustMaglev(t, shuffled, size)
			if ch := maglevChanged(want, got); ch != 0 {
				t.Fatalf("shuffle %d: table differs from the unshuffled one in %d slots", round, ch)
			}
			if !slices.Equal(before, shuffled) {
				t.Fatalf("shuffle %d: Maglev modified its input slice", round)
			}
		}
	})

	t.Run("ids", func(t *testing.T) {
		// The permutation derives from Key only: renumbering the IDs must
		// map every slot to the same key.
		renumbered := slices.Clone(bs)
		for i := range renumbered {
			renumbered[i].ID = uint32(10000 + 7*(len(bs)-i))
		}
		keyOf := func(bs []Backend) map[uint32]string {
			m := make(map[uint32]string)
			for _, b := range bs {
				m[b.ID] = b.Key
			}
			return m
		}
		keysA, keysB := keyOf(bs), keyOf(renumbered)
		got := mustMaglev(t, renumbered, size)
		for i := range want {
			if ka, kb := keysA[want[i]], keysB[got[i]]; ka != kb {
				t.Fatalf("slot %d: key %q with original IDs, %q with renumbered IDs", i, ka, kb)
			}
		}
	})
}

// TestMaglevGolden pins the table for a fixed backend set. Every balancer node
// must build the identical table, including nodes running a different build:
// if this test fails, the hash, seeds or population order changed, and a
// mixed-version fleet would disagree on backend selection.
func TestMaglevGolden(t *testing.T) {
	bs := maglevTestBackends(100, 0)
	for i := range bs {
		bs[i].Weight = uint32(i%3 + 1)
	}
	table := mustMaglev(t, bs, lb.TableSize.Default)
	h := sha256.New()
	buf := make([]byte, 4)
	for _, id := range table {
		binary.LittleEndian.PutUint32(buf, id)
		h.Write(buf)
	}
	const want = "3908b8cf9747526cf5ec2d0f78762b9952f5593a3da23277e6d7a5b1ccbf56d3"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("golden table digest = %s, want %s: the Maglev table for a fixed backend set changed", got, want)
	}
}

// maglevReference is a direct transcription of the weighted round loop that
// Maglev's heap implements: each round, in Key order, every backend
// accumulates Weight/maxWeight credit, starting from one half, and places
// one slot per whole unit of credit.
// Inputs must be valid.
func maglevReference(backends []Backend, size uint32) []uint32 {
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	bs = slices.DeleteFunc(bs, func(b Backend) bool { return b.Weight == 0 })
	table := make([]uint32, size)
	if len(bs) == 0 {
		return table
	}
	var maxWeight uint32
	for _, b := range bs {
		maxWeight = max(maxWeight, b.Weight)
	}
	pos := make([]uint64, len(bs))
	skip := make([]uint64, len(bs))
	credit := make([]uint32, len(bs)) // in units of 1/(2*maxWeight)
	for i, b := range bs {
		credit[i] = maxWeight // half a unit
		pos[i] = maglevHash(b.Key, maglevOffsetSeed) % uint64(size)
		skip[i] = maglevHash(b.Key, maglevSkipSeed)%uint64(size-1) + 1
	}
	filled := uint32(0)
	for {
		for i, b := range bs {
			credit[i] += 2 * b.Weight
			if credit[i] < 2*maxWeight {
				continue
			}
			credit[i] -= 2 * maxWeight
			for table[pos[i]] != 0 {
				pos[i] = (pos[i] + skip[i]) % uint64(size)
			}
			table[pos[i]] = b.ID
			pos[i] = (pos[i] + skip[i]) % uint64(size)
			if filled++; filled == size {
				return table
			}
		}
	}
}

func TestMaglevMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 30 {
		n := 1 + rng.IntN(200)
		size := []uint32{251, 1021, 4099, lb.TableSize.Default}[rng.IntN(4)]
		if uint32(n) > size {
			n = int(size)
		}
		bs := maglevTestBackends(n, 0)
		maxW := []int{1, 3, 100, lb.MaxWeight}[rng.IntN(4)]
		for i := range bs {
			bs[i].Weight = uint32(rng.IntN(maxW + 1))
		}
		got := mustMaglev(t, bs, size)
		want := maglevReference(bs, size)
		if ch := maglevChanged(want, got); ch != 0 {
			t.Fatalf("round %d (%d backends, size %d, weights 0-%d): %d slots differ from the reference round loop",
				round, n, size, maxW, ch)
		}
	}
}

func TestMaglevDrain(t *testing.T) {
	size := uint32(lb.TableSize.Default)

	t.Run("one drained", func(t *testing.T) {
		bs := maglevTestBackends(10, 1)
		bs[4].Weight = 0
		counts := maglevCounts(mustMaglev(t, bs, size))
		if c := counts[bs[4].ID]; c != 0 {
			t.Errorf("drained backend %q owns %d slots, want 0", bs[4].Key, c)
		}
		if counts[0] != 0 {
			t.Errorf("%d empty slots with 9 active backends, want 0", counts[0])
		}
	})

	t.Run("drained do not count toward size", func(t *testing.T) {
		bs := maglevTestBackends(10, 0)
		bs[0].Weight, bs[1].Weight = 1, 1
		counts := maglevCounts(mustMaglev(t, bs, 3))
		if counts[bs[0].ID]+counts[bs[1].ID] != 3 {
			t.Errorf("2 active backends in 3 slots: got counts %v", counts)
		}
	})

	cases := map[string][]Backend{
		"all zero": maglevTestBackends(10, 0),
		"empty":    {},
		"nil":      nil,
	}
	for name, bs := range cases {
		t.Run(name, func(t *testing.T) {
			table := mustMaglev(t, bs, size)
			if c := maglevCounts(table); c[0] != int(size) {
				t.Errorf("%d of %d slots are empty, want all", c[0], size)
			}
		})
	}
}

func TestMaglevErrors(t *testing.T) {
	ok := maglevTestBackends(3, 1)
	with := func(f func(bs []Backend) []Backend) []Backend {
		return f(slices.Clone(ok))
	}
	cases := []struct {
		name     string
		backends []Backend
		size     uint32
		want     []string
	}{
		{"size not prime", ok, 65536, []string{"maglev size 65536 is not prime"}},
		{"size 0", ok, 0, []string{"maglev size 0 out of range"}},
		{"size 2", ok, 2, []string{"maglev size 2 out of range"}},
		{"size too large", ok, 1<<26 + 15, []string{"maglev size 67108879 out of range"}},
		{"id 0", with(func(bs []Backend) []Backend {
			bs[1].ID = 0
			bs[1].Key = "198.18.0.11"
			return bs
		}), lb.TableSize.Default, []string{`backend "198.18.0.11": id 0 is reserved`}},
		{"id 0 drained", with(func(bs []Backend) []Backend {
			bs[1].ID, bs[1].Weight = 0, 0
			return bs
		}), lb.TableSize.Default, []string{`backend "198.18.0.1": id 0 is reserved`}},
		{"duplicate key", with(func(bs []Backend) []Backend {
			bs[0].Key, bs[2].Key = "198.18.0.11", "198.18.0.11"
			return bs
		}), lb.TableSize.Default, []string{`duplicate backend key "198.18.0.11"`}},
		{"empty key", with(func(bs []Backend) []Backend {
			bs[2].Key = ""
			return bs
		}), lb.TableSize.Default, []string{"backend key is empty"}},
		{"weight too large", with(func(bs []Backend) []Backend {
			bs[0].Key, bs[0].Weight = "x", 70000
			return bs
		}), lb.TableSize.Default, []string{`backend "x": weight 70000 out of range 0-65535`}},
		{"size smaller than backends", maglevTestBackends(7, 1), 5, []string{"maglev size 5", "7 backends"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table, err := Maglev(tc.backends, tc.size)
			if err == nil {
				t.Fatalf("Maglev(size %d): got no error, want one containing %q", tc.size, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Maglev(size %d): error %q does not contain %q", tc.size, err, w)
				}
			}
			if table != nil {
				t.Errorf("Maglev(size %d): got a %d-slot table along with error %q, want nil", tc.size, len(table), err)
			}
		})
	}
}

func BenchmarkMaglev(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 4096} {
		b.Run(fmt.Sprintf("backends=%d/size=%d", n, lb.TableSize.Default), func(b *testing.B) {
			bs := maglevTestBackends(n, 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Maglev(bs, lb.TableSize.Default); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A daemon building one table after another reuses one Builder; a
	// service with the same backends as the one before (as when every
	// service of a host has the same pool) takes the last table
	// relabelled with its IDs.
	b.Run(fmt.Sprintf("builder-same-set/backends=100/size=%d", lb.TableSize.Default), func(b *testing.B) {
		bs := maglevTestBackends(100, 1)
		var bld Builder
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			for j := range bs {
				bs[j].ID = uint32(i*100 + j + 1)
			}
			if _, err := bld.Maglev(bs, lb.TableSize.Default); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backends=4096/size=655373", func(b *testing.B) {
		bs := maglevTestBackends(4096, 1)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Maglev(bs, 655373); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// One Builder used for a run of tables of every scheduler, sizes and
// weights gives each the table a fresh build gives: nothing of one build
// leaks into the next through the reused buffers.
func TestBuilderReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var b Builder
	for round := range 60 {
		n := 1 + rng.IntN(150)
		size := []uint32{251, 1021, 4099, lb.TableSize.Default}[rng.IntN(4)]
		bs := maglevTestBackends(n, 0)
		equal := rng.IntN(2) == 0
		w := uint32(1 + rng.IntN(5))
		for i := range bs {
			if equal {
				bs[i].Weight = w
			} else {
				bs[i].Weight = uint32(rng.IntN(4))
			}
		}
		sched := []lb.Scheduler{lb.Maglev, lb.SourceHash, lb.RoundRobin, lb.LeastConn}[rng.IntN(4)]
		want, wantErr := Build(sched, bs, size)
		got, err := b.Build(sched, bs, size)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("round %d: error %v, fresh build %v", round, err, wantErr)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d (%s, %d backends, size %d, equal weights %v): the reused builder's table differs from a fresh one",
				round, sched, n, size, equal)
		}
		if sched == lb.Maglev && err == nil {
			if ch := maglevChanged(maglevReference(bs, size), got); ch != 0 {
				t.Fatalf("round %d: %d slots differ from the reference round loop", round, ch)
			}
		}
	}
}

// A Builder given the same keys and weights again (other IDs, pooled IDs,
// other drained backends) relabels its last table; any other change of
// keys, weights or size builds afresh. Each table is what a fresh build
// gives.
func TestBuilderSameSet(t *testing.T) {
	base := maglevTestBackends(50, 2)
	for i := range base {
		base[i].Weight = uint32(1 + i%3)
	}
	with := func(f func(bs []Backend) []Backend) []Backend { return f(slices.Clone(base)) }
	steps := []struct {
		name string
		bs   []Backend
		size uint32
	}{
		{"first", base, 4099},
		{"other ids", with(func(bs []Backend) []Backend {
			for i := range bs {
				bs[i].ID += 1000
			}
			return bs
		}), 4099},
		{"pooled ids", with(func(bs []Backend) []Backend {
			for i := range bs {
				bs[i].ID = uint32(1 + i%4)
			}
			return bs
		}), 4099},
		{"drained backend added", with(func(bs []Backend) []Backend {
			return append(bs, Backend{ID: 999, Key: "198.18.9.9", Weight: 0})
		}), 4099},
		{"reversed input", with(func(bs []Backend) []Backend { slices.Reverse(bs); return bs }), 4099},
		{"one weight changed", with(func(bs []Backend) []Backend { bs[7].Weight = 3; return bs }), 4099},
		{"back to the first", base, 4099},
		{"one drained", with(func(bs []Backend) []Backend { bs[3].Weight = 0; return bs }), 4099},
		{"one key changed", with(func(bs []Backend) []Backend { bs[3].Key = "198.18.9.8"; return bs }), 4099},
		{"one fewer", base[1:], 4099},
		{"other size", base, 4093},
		{"equal weights", maglevTestBackends(50, 1), 4093},
		{"equal weights again", maglevTestBackends(50, 1), 4093},
		{"equal weights, twice as heavy", maglevTestBackends(50, 2), 4093},
	}
	var b Builder
	for _, st := range steps {
		got, err := b.Maglev(st.bs, st.size)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want := mustMaglev(t, st.bs, st.size)
		if ch := maglevChanged(want, got); ch != 0 {
			t.Fatalf("%s: %d slots differ from a fresh build", st.name, ch)
		}
	}
}
