package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// router is a real BGP peer for the speaker: a second GoBGP, listening on
// 127.0.0.2 and accepting the speaker's session from 127.0.0.1.
type router struct {
	srv  *server.BgpServer
	port uint16
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 to listen on: %v", err)
	}
	defer func() { _ = l.Close() }()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func newRouter(t *testing.T) *router {
	t.Helper()
	r := &router{srv: server.NewBgpServer(), port: freePort(t)}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "198.18.0.1", ListenPort: int32(r.port), ListenAddresses: []string{"127.0.0.2"},
	}}); err != nil {
		t.Fatal(err)
	}
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
	}
	if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65010},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3}},
		AfiSafis:  []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		r.srv.Stop()
	})
	return r
}

// routes returns the router's routes as "prefix via nexthop [communities]".
func (r *router) routes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f},
			func(prefix bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					var via, comm string
					for _, a := range p.Attrs {
						switch a := a.(type) {
						case *bgp.PathAttributeNextHop:
							via = a.Value.String()
						case *bgp.PathAttributeMpReachNLRI:
							via = a.Nexthop.String()
						case *bgp.PathAttributeCommunities:
							comm = fmt.Sprintf(" %d:%d", a.Value[0]>>16, a.Value[0]&0xffff)
						}
					}
					out = append(out, prefix.String()+" via "+via+comm)
				}
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

func (r *router) waitRoutes(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := r.routes(t)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("router has %q, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	vip4 = netip.MustParseAddr("198.18.1.1")
	vip6 = netip.MustParseAddr("2001:2:0:1::1")
)

func speakerConfig(r *router) Config {
	return Config{
		ASN: 65010, RouterID: netip.MustParseAddr("198.18.0.3"),
		NextHop4: netip.MustParseAddr("198.18.0.3"), NextHop6: netip.MustParseAddr("2001:2::3"),
		GracefulRestart: true, RestartTime: 120 * time.Second,
		Communities: []uint32{65010<<16 | 100},
		Peers:       []Peer{{Addr: netip.MustParseAddr("127.0.0.2"), ASN: 65000, Port: r.port, HoldTime: 9 * time.Second}},
	}
}

// The speaker announces host routes with its next hop and communities,
// withdraws what leaves the set, follows attribute changes, and takes
// everything away when it stops.
func TestSpeakerAnnouncesToARealPeer(t *testing.T) {
	r := newRouter(t)
	s := New(nil, false)
	ctx := context.Background()
	t.Cleanup(func() { _ = s.Stop(ctx) })
	cfg := speakerConfig(r)
	if err := s.Apply(ctx, cfg, []netip.Addr{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, "198.18.1.1/32 via 198.18.0.3 65010:100", "2001:2:0:1::1/128 via 2001:2::3 65010:100")

	peers, err := s.Peers(ctx)
	if err != nil || len(peers) != 1 {
		t.Fatalf("peers: %+v, %v", peers, err)
	}
	p := peers[0]
	if p.State != "established" || p.Since.IsZero() || p.HoldTime != 9*time.Second || p.UpdatesSent == 0 || p.Advertised != 2 {
		t.Errorf("peer status: %+v", p)
	}

	if err := s.Announce([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, "198.18.1.1/32 via 198.18.0.3 65010:100")
	if got := s.Announced(); !slices.Equal(got, []netip.Addr{vip4}) {
		t.Errorf("announced: %v", got)
	}

	cfg.Communities = []uint32{65010<<16 | 200}
	if err := s.Apply(ctx, cfg, []netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, "198.18.1.1/32 via 198.18.0.3 65010:200")

	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t)
	if s.Running() {
		t.Error("running after Stop")
	}
}

// A peer that is not there stays in a connecting state; the routes wait in
// the RIB for it.
func TestSpeakerPeerDown(t *testing.T) {
	s := New(nil, false)
	ctx := context.Background()
	t.Cleanup(func() { _ = s.Stop(ctx) })
	cfg := Config{ASN: 65010, RouterID: netip.MustParseAddr("198.18.0.3"), NextHop4: netip.MustParseAddr("198.18.0.3"),
		Peers: []Peer{{Addr: netip.MustParseAddr("127.0.0.2"), ASN: 65000, Port: freePort(t), HoldTime: 3 * time.Second}}}
	if err := s.Apply(ctx, cfg, []netip.Addr{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	// vip6 has no next hop of its family: not announced.
	if got := s.Announced(); !slices.Equal(got, []netip.Addr{vip4}) {
		t.Errorf("announced: %v", got)
	}
	peers, err := s.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].State == "established" {
		t.Errorf("peers: %+v %v", peers, err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ASN: 1, RouterID: netip.MustParseAddr("198.18.0.3"), NextHop4: netip.MustParseAddr("198.18.0.3"),
		Peers: []Peer{{Addr: netip.MustParseAddr("198.18.0.1"), ASN: 2, Port: 179, HoldTime: 3 * time.Second}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"asn":       func(c *Config) { c.ASN = 0 },
		"router_id": func(c *Config) { c.RouterID = netip.MustParseAddr("2001:2::3") },
		"next hop":  func(c *Config) { c.NextHop4 = netip.Addr{} },
		"peers":     func(c *Config) { c.Peers = nil },
		"hold time": func(c *Config) { c.Peers[0].HoldTime = time.Second },
		"twice":     func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) },
	} {
		c := good
		c.Peers = slices.Clone(good.Peers)
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.Fields(name)[0]) && name != "twice" {
			t.Errorf("%s: %v", name, err)
		}
	}
}
