package main

import (
	"math"
	"testing"

	"github.com/xlb-lb/xlb/test/bench/benchbpf"
)

func TestLatBuckets(t *testing.T) {
	// Contiguous from 0 to LatEnd, then the overflow bucket.
	prevHi := 0.0
	for i := 0; i < benchbpf.LatOverflow; i++ {
		lo, hi := latBucketRange(i)
		if lo != prevHi || hi <= lo {
			t.Fatalf("bucket %d: [%v, %v) after %v", i, lo, hi, prevHi)
		}
		prevHi = hi
	}
	if prevHi != benchbpf.LatEnd {
		t.Errorf("buckets end at %v, want %d", prevHi, benchbpf.LatEnd)
	}
	if lo, hi := latBucketRange(benchbpf.LatOverflow); lo != benchbpf.LatEnd || !math.IsInf(hi, 1) {
		t.Errorf("overflow bucket [%v, %v)", lo, hi)
	}
	// The same arithmetic as bench.c's lat_bucket.
	for _, c := range []struct {
		ns   float64
		want int
	}{{0, 0}, {49, 0}, {50, 1}, {99_999, 1999}, {100_000, 2000}, {109_999, 2000}, {110_000, 2001}, {9_999_999, 2989}} {
		lo, hi := latBucketRange(c.want)
		if c.ns < lo || c.ns >= hi {
			t.Errorf("%v ns: bucket %d is [%v, %v)", c.ns, c.want, lo, hi)
		}
	}
}

func TestHistPercentile(t *testing.T) {
	h := make([]uint64, benchbpf.LatBuckets)
	if !math.IsNaN(histPercentile(h, 0.5)) {
		t.Error("empty histogram: want NaN")
	}
	// 100 samples in [1000, 1050): rank k is at 1000 + 50*(k-0.5)/100.
	h[20] = 100
	if got := histPercentile(h, 0.5); got != 1024.75 {
		t.Errorf("p50 = %v, want 1024.75", got)
	}
	if got := histPercentile(h, 0.99); got != 1049.25 {
		t.Errorf("p99 = %v, want 1049.25", got)
	}
	// 98 fast samples and 2 slow ones: p99 lies in the slow bucket.
	h[20] = 98
	h[2000] = 2 // [100 us, 110 us)
	if got := histPercentile(h, 0.99); got < 100_000 || got >= 110_000 {
		t.Errorf("p99 = %v, want in [100000, 110000)", got)
	}
	if got := histPercentile(h, 0.5); got < 1000 || got >= 1050 {
		t.Errorf("p50 = %v, want in [1000, 1050)", got)
	}
	// Overflow: its lower bound. The future bucket does not count.
	h = make([]uint64, benchbpf.LatBuckets)
	h[benchbpf.LatOverflow] = 1
	h[benchbpf.LatFuture] = 1000
	if got := histPercentile(h, 0.99); got != benchbpf.LatEnd {
		t.Errorf("overflow p99 = %v, want %d", got, benchbpf.LatEnd)
	}
}

func TestHistSub(t *testing.T) {
	got := histSub([]uint64{5, 7, 9}, []uint64{1, 7, 2})
	if got[0] != 4 || got[1] != 0 || got[2] != 7 {
		t.Errorf("histSub = %v", got)
	}
}
