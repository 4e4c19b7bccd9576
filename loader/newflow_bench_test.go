package loader_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// BenchmarkNewFlow measures, per scheduler, what a packet costs the data
// plane:
//   - new-flow-ns: a SYN of a fresh tuple (scheduler choice, connection-
//     table insert, active-flow count, and with persistence the
//     persistence lookup and insert). Single test runs of distinct SYNs
//     minus single runs of one established frame, interleaved, cancel the
//     per-call syscall cost; the established frame's own cost (measured
//     with repeat) is added back.
//   - hit-ns: an established flow (repeat, syscall cost amortised).
//
// Run: go test ./loader -run '^$' -bench NewFlow -benchtime 100000x
func BenchmarkNewFlow(b *testing.B) {
	priv.Require(b)
	cases := []struct {
		name     string
		sched    lb.Scheduler
		persist  time.Duration
		backends int
	}{
		{"maglev", lb.Maglev, 0, 3},
		{"source-hash", lb.SourceHash, 0, 3},
		{"round-robin", lb.RoundRobin, 0, 3},
		{"least-conn", lb.LeastConn, 0, 3},
		{"least-conn-64", lb.LeastConn, 0, 64},
		{"maglev+persistence", lb.Maglev, 300 * time.Second, 3},
		{"least-conn+persistence", lb.LeastConn, 300 * time.Second, 3},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// No interface MAC: with repeat, each iteration sees the
			// previous one's output (see BenchmarkConntrackVariants).
			bal, err := loader.Open(loader.Options{ConntrackSize: 1 << 20, PersistSize: 1 << 20, MaxServices: 16, MaxBackends: 256})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := bal.Close(); err != nil {
					b.Errorf("close balancer: %v", err)
				}
			}()
			bes := backends(web4.VIP, 3)
			if c.backends > 3 {
				bes = manyBackends(c.backends)
			}
			if err := bal.SetService(lb.Service{Key: web4, Scheduler: c.sched, Persistence: c.persist, Backends: bes}); err != nil {
				b.Fatal(err)
			}
			frames := make([][]byte, b.N)
			for i := range frames {
				// A distinct client address per flow: with persistence,
				// every SYN also misses and inserts there.
				src := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
				frames[i] = build(b, frame.Spec{Src: netip.AddrPortFrom(src, uint16(1024+i>>16)), Dst: ap("198.18.1.1:80"), SYN: true})
			}
			hit, newFlow := measureNewFlows(b, bal, frames)
			b.ReportMetric(hit, "hit-ns")
			b.ReportMetric(newFlow, "new-flow-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}
