package main

import "testing"

func TestSpreadStep(t *testing.T) {
	for _, n := range []uint32{1, 2, 7, 500_000, 1 << 20} {
		s := spreadStep(n)
		seen := make(map[uint64]bool, n)
		for k := uint64(0); k < uint64(n); k++ {
			seen[k*uint64(s)%uint64(n)] = true
		}
		if len(seen) != int(n) {
			t.Errorf("n=%d step %d: %d distinct flows in n steps, want all", n, s, len(seen))
		}
	}
}
