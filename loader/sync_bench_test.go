package loader_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/priv"
)

// syncBenchServices are n services of perService backends each: the same
// backends behind every service (as on an edge host, and as the bench's
// memory part configures xlbd), or with distinct, each service's own
// (every table built from scratch).
func syncBenchServices(n, perService int, distinct bool) []lb.Service {
	out := make([]lb.Service, n)
	for s := range out {
		bes := make([]lb.Backend, perService)
		for i := range bes {
			a := netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
			if distinct {
				k := 0xc6120000 + 2048 + uint32(s*perService+i) // 198.18.8.0 on, in 198.18.0.0/15, beyond the VIPs
				a = netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
			}
			bes[i] = lb.Backend{Addr: a, MAC: net.HardwareAddr{2, 0xbe, 0, 0, 0, byte(i)}, Weight: 1}
		}
		out[s] = lb.Service{Key: lb.ServiceKey{VIP: netip.AddrFrom4([4]byte{198, 18, byte(4 + s/250), byte(1 + s%250)}), Port: 80, Proto: lb.TCP}, Backends: bes}
	}
	return out
}

// BenchmarkSync measures Balancer.Sync with the default table size:
//   - first: services x 100 backends onto an empty data plane (xlbd's
//     first start; BENCH_SYNC_SERVICES sets the number, default 100), the
//     same backends behind every service;
//   - first-distinct-backends: the same with each service's own backends
//     (no table the same as another);
//   - add-backend: one backend added to one of those services (what
//     `xlbctl backend add` asks of the data plane).
//
// Run: go test ./loader -run '^$' -bench Sync -benchtime 3x
func BenchmarkSync(b *testing.B) {
	priv.Require(b)
	n := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_SYNC_SERVICES")); err == nil && v > 0 {
		n = v
	}
	const perService = 100
	open := func(b *testing.B) *loader.Balancer {
		bal, err := loader.Open(loader.Options{MaxServices: 1024, MaxBackends: 1 << 17, ConntrackSize: 1024})
		if err != nil {
			b.Fatal(err)
		}
		return bal
	}
	closeBal := func(b *testing.B, bal *loader.Balancer) {
		if err := bal.Close(); err != nil {
			b.Errorf("close balancer: %v", err)
		}
	}
	svcs := syncBenchServices(n, perService, false)
	for _, c := range []struct {
		name string
		svcs []lb.Service
	}{{"first", svcs}, {"first-distinct-backends", syncBenchServices(n, perService, true)}} {
		b.Run(fmt.Sprintf("%s/services=%d", c.name, n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				bal := open(b)
				b.StartTimer()
				if err := bal.Sync(c.svcs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				closeBal(b, bal)
				b.StartTimer()
			}
		})
	}
	b.Run(fmt.Sprintf("add-backend/services=%d", n), func(b *testing.B) {
		bal := open(b)
		defer closeBal(b, bal)
		if err := bal.Sync(svcs); err != nil {
			b.Fatal(err)
		}
		added := make([]lb.Service, len(svcs))
		copy(added, svcs)
		added[0].Backends = append(append([]lb.Backend(nil), svcs[0].Backends...),
			lb.Backend{Addr: netip.MustParseAddr("198.18.0.200"), MAC: net.HardwareAddr{2, 0xbe, 0, 0, 1, 0}, Weight: 1})
		for i := 0; b.Loop(); i++ {
			next := added
			if i%2 == 1 {
				next = svcs
			}
			if err := bal.Sync(next); err != nil {
				b.Fatal(err)
			}
		}
	})
}
