package loader_test

import (
	"net/netip"
	"testing"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/priv"
)

// TestConntrackCount: the batched count equals the number of entries
// written, empty, within one batch and across several; on the per-CPU
// connection table (whose values the batch must size per CPU) it counts
// the empty table (maps.Conntrack writes no per-CPU entries).
func TestConntrackCount(t *testing.T) {
	priv.Require(t)
	for _, percpu := range []bool{false, true} {
		bal, err := loader.Open(loader.Options{ConntrackSize: 1 << 15, ConntrackPerCPU: percpu, MaxServices: 4, MaxBackends: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bal.Close() })
		ct := bal.Conntrack()
		written := 0
		counts := []int{0, 1, 4095, 4096, 4097, 10000}
		if percpu {
			counts = counts[:1]
		}
		for _, want := range counts {
			for ; written < want; written++ {
				if err := ct.Put(countFlow(written), maps.Flow{BackendID: 1}); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := ct.Count(); err != nil || n != want {
				t.Errorf("per-CPU %v: Count() = %d, %v; want %d", percpu, n, err, want)
			}
		}
	}
}

// BenchmarkConntrackCount: counting a connection table of 1M entries,
// batched (Count) against one entry at a time (the way it was), in the
// same run.
//
// Run: go test ./loader -run '^$' -bench ConntrackCount -benchtime 5x
func BenchmarkConntrackCount(b *testing.B) {
	priv.Require(b)
	const n = 1 << 20
	bal, err := loader.Open(loader.Options{ConntrackSize: n, MaxServices: 4, MaxBackends: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bal.Close() })
	ct := bal.Conntrack()
	for i := range n {
		if err := ct.Put(countFlow(i), maps.Flow{BackendID: 1}); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range []struct {
		name  string
		count func() (int, error)
	}{
		{"batch", ct.Count},
		{"each", func() (int, error) {
			c := 0
			err := ct.Iterate(func(lb.FlowKey, maps.Flow) bool { c++; return true })
			return c, err
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if got, err := v.count(); err != nil || got < n*9/10 {
					b.Fatalf("count %d, %v", got, err)
				}
			}
		})
	}
}

func countFlow(i int) lb.FlowKey {
	src := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	return lb.FlowKey{Proto: lb.TCP, Src: netip.AddrPortFrom(src, uint16(1024+i>>16)), Dst: netip.MustParseAddrPort("198.18.1.1:80")}
}
