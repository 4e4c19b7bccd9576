package loader_test

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// BenchmarkConntrackVariants is the measurement behind the connection
// table's map type. For each variant it reports, per packet:
//   - hit-ns: an established flow (connection-table hit), BPF_PROG_TEST_RUN
//     with repeat, so syscall cost is amortised away;
//   - insert-ns: a new flow (one insert per packet), measured as single
//     test runs of distinct SYNs minus single runs of one established
//     frame, which cancels the per-call syscall cost.
//
// Run: go test ./loader -run '^$' -bench ConntrackVariants -benchtime 200000x
func BenchmarkConntrackVariants(b *testing.B) {
	priv.Require(b)
	variants := []struct {
		name string
		opts loader.Options
	}{
		{"lru-shared", loader.Options{}},
		{"lru-no-common", loader.Options{ConntrackNoCommonLRU: true}},
		{"lru-percpu", loader.Options{ConntrackPerCPU: true}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			opts := v.opts
			// No interface MAC: with repeat, each iteration sees the
			// previous one's output (addressed to the backend), which the
			// other-host check would otherwise pass to the kernel.
			opts.MAC = nil
			opts.ConntrackSize = 1 << 20
			opts.MaxServices, opts.MaxBackends = 16, 64
			bal, err := loader.Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := bal.Close(); err != nil {
					b.Errorf("close balancer: %v", err)
				}
			}()
			if err := bal.SetService(lb.Service{Key: web4, Backends: backends(web4.VIP, 3)}); err != nil {
				b.Fatal(err)
			}
			n := b.N
			frames := make([][]byte, n)
			for i := range frames {
				src := netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), 1})
				frames[i] = build(b, frame.Spec{Src: netip.AddrPortFrom(src, uint16(i)), Dst: ap("198.18.1.1:80"), SYN: true})
			}
			hit, insert := measureNewFlows(b, bal, frames)
			prog := bal.Program()
			// Inserts from every CPU at once: what the LRU's locking costs
			// under a SYN flood spread by RSS.
			cpus := runtime.NumCPU()
			par := make([][]byte, n)
			for i := range par {
				src := netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), 2})
				par[i] = build(b, frame.Spec{Src: netip.AddrPortFrom(src, uint16(i)), Dst: ap("198.18.1.1:80"), SYN: true})
			}
			var wg sync.WaitGroup
			start := time.Now()
			for c := 0; c < cpus; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					for i := c; i < n; i += cpus {
						if _, err := prog.Run(&ebpf.RunOptions{Data: par[i]}); err != nil {
							b.Error(err)
							return
						}
					}
				}(c)
			}
			wg.Wait()
			tPar := time.Since(start)
			b.ReportMetric(float64(tPar.Nanoseconds())/float64(n), "parallel-insert-call-ns")
			b.ReportMetric(hit, "hit-ns")
			b.ReportMetric(insert, "insert-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// measureNewFlows returns, in ns per packet, the cost of an established
// flow's packet (BPF_PROG_TEST_RUN with repeat, syscall cost amortised) and
// of a new flow's: single runs of the distinct SYNs in frames minus single
// runs of the established frame, interleaved, which cancels the per-call
// syscall cost, plus the established cost. It fails unless every SYN was
// forwarded and counted as a new flow. The timer covers the single runs.
func measureNewFlows(b *testing.B, bal *loader.Balancer, frames [][]byte) (hitNs, newNs float64) {
	b.Helper()
	prog := bal.Program()
	est := build(b, frame.Spec{Src: ap("198.18.0.100:999"), Dst: ap("198.18.1.1:80")})
	ret, hit, err := prog.Benchmark(est, 1_000_000, nil)
	if err != nil || ret != xdpTX {
		b.Fatalf("established: verdict %d, %v", ret, err)
	}
	one := func(frame []byte) time.Duration {
		start := time.Now()
		if ret, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil || ret != xdpTX {
			b.Fatalf("verdict %d, %v", ret, err)
		}
		return time.Since(start)
	}
	before, _ := bal.Stats().Global()
	b.ResetTimer()
	var tNew, tEst time.Duration
	for _, f := range frames {
		tNew += one(f)
		tEst += one(est)
	}
	b.StopTimer()
	after, _ := bal.Stats().Global()
	n := len(frames)
	if got := after.NewFlows - before.NewFlows; got != uint64(n) {
		b.Fatalf("%d new flows counted for %d distinct SYNs: the measurement does not insert", got, n)
	}
	hitNs = float64(hit.Nanoseconds())
	return hitNs, float64((tNew-tEst).Nanoseconds())/float64(n) + hitNs
}
