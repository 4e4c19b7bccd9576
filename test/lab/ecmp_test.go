//go:build integration

package lab

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// syncBuffer is a log sink that GoBGP's goroutines may write to after the
// test ended (t.Log would panic then).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// speakerConfig is what startSpeaker needs to announce a node's VIPs.
type speakerConfig struct {
	asn      uint32
	peer     netip.Addr // the router
	peerASN  uint32
	password string
	hold     time.Duration
	routes   []netip.Prefix // announced with the node's own address of their family as next hop
}

// startSpeaker runs an embedded GoBGP v4 server in h's namespace: its
// Serve loop runs on a thread locked in the namespace (NS.Do), so the
// listener it creates there belongs to the namespace; the peer is passive,
// so GoBGP never dials from an ordinary goroutine (which would be in the
// host's namespace). The speaker stops in t.Cleanup.
func startSpeaker(t *testing.T, h *Host, cfg speakerConfig, logs *syncBuffer) *server.BgpServer {
	t.Helper()
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: lvl})).With("node", h.Name)
	s := server.NewBgpServer(server.LoggerOption(log, lvl))
	served := make(chan error, 1)
	go func() {
		served <- h.NS.Do(func() error {
			s.Serve()
			return nil
		})
	}()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("%s: GoBGP: %v", h.Name, err)
		}
	})

	ctx := context.Background()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        cfg.asn,
		RouterId:   h.Addr4.String(),
		ListenPort: 179,
	}})
	if err != nil {
		t.Fatalf("%s: start BGP: %v", h.Name, err)
	}
	family := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		}
	}
	hold := uint64(cfg.hold / time.Second)
	err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: cfg.peer.String(),
			PeerAsn:         cfg.peerASN,
			AuthPassword:    cfg.password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
			// Only after an administrative reset (default 30 s). After
			// any other session loss GoBGP stays Idle, refusing the
			// router's connections, for a fixed 5 s (holdtimeIdle in
			// its fsm.go): a node whose cable comes back returns after
			// 5 s at least.
			IdleHoldTimeAfterReset: 1,
		}},
		Transport:       &api.Transport{PassiveMode: true},
		GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: 30},
		AfiSafis:        []*api.AfiSafi{family(api.Family_AFI_IP), family(api.Family_AFI_IP6)},
	}})
	if err != nil {
		t.Fatalf("%s: add peer %s: %v", h.Name, cfg.peer, err)
	}

	for _, p := range cfg.routes {
		nlri, err := bgp.NewIPAddrPrefix(p)
		if err != nil {
			t.Fatal(err)
		}
		attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
		fam := bgp.RF_IPv4_UC
		if p.Addr().Is4() {
			nh, err := bgp.NewPathAttributeNextHop(h.Addr4)
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, nh)
		} else {
			fam = bgp.RF_IPv6_UC
			mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, h.Addr6)
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, mp)
		}
		if _, err := s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: fam, Nlri: nlri, Attrs: attrs}}}); err != nil {
			t.Fatalf("%s: announce %s: %v", h.Name, p, err)
		}
	}
	return s
}

// TestECMPLab proves the HA lab with a real BGP speaker: three balancer
// nodes each announce the VIPs with GoBGP, BIRD on the router merges them
// into one multipath route, the router spreads client connections over the
// three nodes on the 5-tuple, and a node whose cable is pulled leaves the
// route when its session's hold timer expires (and comes back after its
// cable is plugged in again).
func TestECMPLab(t *testing.T) {
	RequireBird(t)
	const (
		port  = 8080
		hold  = 3 * time.Second
		conns = 300
	)
	topo := NewHAT(t, HAConfig{Balancers: 3, Backends: -1, ClientAddrs: 32})
	vip4 := netip.PrefixFrom(topo.VIP4, 32)
	vip6 := netip.PrefixFrom(topo.VIP6, 128)

	// Every node answers for the VIPs itself (no xlb data plane here), with
	// its name, and announces them with itself as next hop. lb2's session
	// is protected with TCP-MD5.
	logs := &syncBuffer{}
	var neighbors []BirdNeighbor
	var want4, want6 []netip.Addr
	for _, lb := range topo.Balancers {
		if err := lb.AddLoAddrs(topo.VIP4, topo.VIP6); err != nil {
			t.Fatal(err)
		}
		if _, err := lb.Serve(lb.Name, port); err != nil {
			t.Fatal(err)
		}
		password := ""
		if lb.Name == "lb2" {
			password = "xlb-lab-md5"
		}
		startSpeaker(t, lb, speakerConfig{
			asn: DefaultBalancerASN, peer: topo.Router.Addr4, peerASN: DefaultRouterASN,
			password: password, hold: hold, routes: []netip.Prefix{vip4, vip6},
		}, logs)
		neighbors = append(neighbors, BirdNeighbor{Name: lb.Name, Addr: lb.Addr4, ASN: DefaultBalancerASN, Password: password})
		want4 = append(want4, lb.Addr4)
		want6 = append(want6, lb.Addr6)
	}

	start := time.Now()
	bird, err := topo.StartBird(BirdConfig{HoldTime: hold, Neighbors: neighbors})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("BIRD configuration:\n%s", birdConf(bird.Config, bird.LogPath))
			t.Logf("BIRD log:\n%s", bird.Log())
			t.Logf("GoBGP log:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bird.WaitEstablished(ctx); err != nil {
		t.Fatal(err)
	}
	established := time.Since(start)
	r := topo.Router
	if _, err := r.NS.WaitNextHops(ctx, vip4, want4); err != nil {
		t.Fatal(err)
	}
	t.Logf("BIRD started, 3 sessions Established after %v, 3 next hops for %s after %v",
		established.Round(time.Millisecond), vip4, time.Since(start).Round(time.Millisecond))
	// One route with three next hops, not three routes.
	routes, err := r.NS.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(vip4), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || len(routes[0].MultiPath) != 3 {
		t.Fatalf("routes to %s: %v, want one with three next hops", vip4, routes)
	}
	if all, err := bird.ShowProtocolsAll("lb2"); err != nil {
		t.Error(err)
	} else {
		t.Logf("show protocols all lb2:\n%s", all)
	}
	// IPv6 over the same (IPv4) sessions.
	if hops, err := r.NS.WaitNextHops(ctx, vip6, want6); err != nil {
		t.Errorf("IPv6: %v", err)
	} else {
		t.Logf("%s: next hops %v", vip6, hops)
	}

	// Connections from many source addresses and ports spread over the
	// three nodes.
	spread := func(n int, srcs []netip.Addr, dst netip.Addr) (map[string]int, []error) {
		counts := map[string]int{}
		var errs []error
		for i := range n {
			reply, err := topo.Client.Query("tcp", netip.AddrPortFrom(srcs[i%len(srcs)], 0), netip.AddrPortFrom(dst, port), 2*time.Second)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			counts[reply.Server]++
		}
		return counts, errs
	}
	counts, errs := spread(conns, topo.Client.Extra4, topo.VIP4)
	t.Logf("%d connections to %s: %v", conns, topo.VIP4, counts)
	if len(errs) > 0 {
		t.Errorf("%d of %d connections failed, first: %v", len(errs), conns, errs[0])
	}
	for _, lb := range topo.Balancers {
		if counts[lb.Name] == 0 {
			t.Errorf("%s got none of %d connections: %v", lb.Name, conns, counts)
		}
	}
	counts6, errs6 := spread(conns, topo.Client.Extra6, topo.VIP6)
	t.Logf("%d connections to %s: %v (%d failed)", conns, topo.VIP6, counts6, len(errs6))

	// The router hashes the 5-tuple: the same tuple from a new socket
	// takes the same next hop. Without the hash trap the choice follows
	// each socket's random hash.
	flips := func() (int, error) {
		flipped := 0
		for i := range 20 {
			src := netip.AddrPortFrom(topo.Client.Extra4[i%len(topo.Client.Extra4)], uint16(41000+i))
			var first string
			for j := range 5 {
				reply, err := topo.Client.Query("tcp", src, netip.AddrPortFrom(topo.VIP4, port), 2*time.Second)
				if err != nil {
					return flipped, err
				}
				if j == 0 {
					first = reply.Server
				} else if reply.Server != first {
					flipped++
					break
				}
			}
		}
		return flipped, nil
	}
	if n, err := flips(); err != nil || n != 0 {
		t.Errorf("with the hash trap, %d of 20 fixed 5-tuples changed node over 5 connections (%v)", n, err)
	}
	if err := topo.SetHashTrap(false); err != nil {
		t.Fatal(err)
	}
	n, err := flips()
	t.Logf("without the hash trap, %d of 20 fixed 5-tuples changed node over 5 connections (%v)", n, err)
	if err := topo.SetHashTrap(true); err != nil {
		t.Fatal(err)
	}

	// Pull lb3's cable: nothing tells the router; BIRD drops lb3's route
	// when the hold timer expires.
	const lost = 2
	down := time.Now()
	if err := topo.SetBalancerLink(lost, false); err != nil {
		t.Fatal(err)
	}
	ctx30, cancel30 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel30()
	if _, err := r.NS.WaitNextHops(ctx30, vip4, want4[:lost]); err != nil {
		t.Fatalf("after %s's link went down: %v", topo.Balancers[lost].Name, err)
	}
	converged := time.Since(down)
	t.Logf("link of %s down: %s lost that next hop after %v (hold time %v)",
		topo.Balancers[lost].Name, vip4, converged.Round(time.Millisecond), hold)
	if state, err := bird.BGPState(topo.Balancers[lost].Name); err != nil || state == "Established" {
		t.Errorf("BIRD's session with %s: %q %v", topo.Balancers[lost].Name, state, err)
	}
	counts, errs = spread(60, topo.Client.Extra4, topo.VIP4)
	t.Logf("60 connections after convergence: %v", counts)
	if len(errs) > 0 || counts[topo.Balancers[lost].Name] != 0 {
		t.Errorf("after convergence: %v, %d failed (%v)", counts, len(errs), errs)
	}

	// Plug it back in: the session comes back and so does the next hop.
	up := time.Now()
	if err := topo.SetBalancerLink(lost, true); err != nil {
		t.Fatal(err)
	}
	ctx60, cancel60 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel60()
	if _, err := r.NS.WaitNextHops(ctx60, vip4, want4); err != nil {
		t.Fatalf("after %s's link came back: %v", topo.Balancers[lost].Name, err)
	}
	t.Logf("link of %s up: next hop back after %v", topo.Balancers[lost].Name, time.Since(up).Round(time.Millisecond))
}
