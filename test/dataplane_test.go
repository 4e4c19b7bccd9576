//go:build integration

package test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/lab"
)

// startBalancer loads and attaches the data plane (native XDP) on the
// balancer's eth0 and installs the given services with every lab backend.
func startBalancer(t *testing.T, topo *lab.Topology, keys ...lb.ServiceKey) *loader.Balancer {
	t.Helper()
	var bal *loader.Balancer
	err := topo.Balancer.NS.Do(func() error {
		var err error
		bal, err = loader.Open(loader.Options{
			Interface: lab.LinkName, XDPMode: lb.Native,
			MaxServices: 16, MaxBackends: 256, ConntrackSize: 1 << 16,
		})
		return err
	})
	if err != nil {
		t.Fatalf("start balancer: %v", err)
	}
	t.Cleanup(func() {
		if err := bal.Close(); err != nil {
			t.Errorf("close balancer: %v", err)
		}
	})
	for _, k := range keys {
		var bes []lb.Backend
		for _, h := range topo.Backends {
			addr := h.Addr4
			if k.VIP.Is6() {
				addr = h.Addr6
			}
			bes = append(bes, lb.Backend{Addr: addr, MAC: h.MAC, Weight: 1})
		}
		if err := bal.SetService(lb.Service{Key: k, Backends: bes}); err != nil {
			t.Fatalf("set service %s: %v", k, err)
		}
	}
	return bal
}

// TestL2DSR is the data plane end to end on a modelled edge segment: the
// client, a one-armed balancer and three backends on one bridge. Every
// connection must succeed, land on a backend in a fair share, and the
// backend must see the client's real address (no proxying, no NAT).
func TestL2DSR(t *testing.T) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		t.Run(fam, func(t *testing.T) {
			topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 20})
			vip, srcs := topo.VIP4, topo.Client.Extra4
			if fam == "ipv6" {
				vip, srcs = topo.VIP6, topo.Client.Extra6
			}
			const port = 8080
			for _, h := range topo.Backends {
				srv, err := h.Serve(h.Name, port)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(srv.Stop)
			}
			tcpSvc := lb.ServiceKey{VIP: vip, Port: port, Proto: lb.TCP}
			udpSvc := lb.ServiceKey{VIP: vip, Port: port, Proto: lb.UDP}
			bal := startBalancer(t, topo, tcpSvc, udpSvc)

			check := func(network string, n int) {
				t.Helper()
				dst := netip.AddrPortFrom(vip, port)
				perServer := map[string]int{}
				var mu sync.Mutex
				var wg sync.WaitGroup
				errs := make(chan error, n)
				const workers = 8
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := w; i < n; i += workers {
							src := netip.AddrPortFrom(srcs[i%len(srcs)], uint16(20000+i))
							r, err := topo.Client.Query(network, src, dst, 3*time.Second)
							if err != nil {
								errs <- fmt.Errorf("%s %s -> %s: %w", network, src, dst, err)
								continue
							}
							if r.Client != src {
								errs <- fmt.Errorf("%s %s: backend %s saw client %s, want the real client address", network, src, r.Server, r.Client)
							}
							mu.Lock()
							perServer[r.Server]++
							mu.Unlock()
						}
					}(w)
				}
				wg.Wait()
				close(errs)
				failed := 0
				for err := range errs {
					if failed < 5 {
						t.Error(err)
					}
					failed++
				}
				if failed > 0 {
					t.Fatalf("%s: %d of %d requests failed", network, failed, n)
				}
				for _, h := range topo.Backends {
					share := float64(perServer[h.Name]) / float64(n)
					t.Logf("%s: backend %s got %d (%.1f%%)", network, h.Name, perServer[h.Name], 100*share)
					if share < 0.25 || share > 0.42 {
						t.Errorf("%s: backend %s got %.1f%% of %d connections, want 25%%-42%%", network, h.Name, 100*share, n)
					}
				}
			}
			check("tcp", 3000)
			check("udp", 600)

			g, err := bal.Stats().Global()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("data plane: %+v", g)
			if g.NewFlows < 3600 || g.TxPackets < 3600 {
				t.Errorf("data plane counted %d new flows, %d forwarded packets: traffic did not go through XDP", g.NewFlows, g.TxPackets)
			}
			if g.DropNoBackend != 0 || g.DropInternal != 0 {
				t.Errorf("drops: %+v", g)
			}
			for _, k := range []lb.ServiceKey{tcpSvc, udpSvc} {
				st, _ := bal.Service(k)
				c, _ := bal.Stats().Service(st.ID)
				if c.NewFlows == 0 || c.Packets < c.NewFlows {
					t.Errorf("service %s counters: %+v", k, c)
				}
			}
		})
	}
}
