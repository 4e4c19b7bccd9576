// Package bgp announces xlb's VIPs to routers over BGP, through GoBGP
// used as a library: it writes no BGP of its own. A Speaker holds the
// sessions and the set of announced host routes (/32, /128); the daemon
// decides which VIPs to announce and hands the set over on every change.
//
// xlbd connects out to its peers and does not listen: port 179 of the host
// stays free, and a router configured passive or active works alike.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Config is a speaker's whole configuration, defaults resolved.
type Config struct {
	ASN      uint32
	RouterID netip.Addr // IPv4
	// NextHop4 and NextHop6 are announced with IPv4 and IPv6 VIPs; a VIP
	// of a family without one is not announced.
	NextHop4, NextHop6 netip.Addr
	// GracefulRestart advertises the capability with RestartTime (RFC
	// 4724), so routers keep the routes while xlbd restarts.
	GracefulRestart bool
	RestartTime     time.Duration
	// Communities are standard communities, ASN<<16|VALUE.
	Communities []uint32
	// LocalPref is sent with every route (iBGP peers use it); 0: not sent.
	LocalPref uint32
	Peers     []Peer
}

// Peer is one neighbour.
type Peer struct {
	Addr     netip.Addr
	ASN      uint32
	Port     uint16
	HoldTime time.Duration
	Password string
}

// PeerStatus is a neighbour's session as GoBGP sees it.
type PeerStatus struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// Since is when the session reached State (established: its uptime).
	Since time.Time `json:"since,omitzero"`
	// HoldTime is the negotiated hold time while established.
	HoldTime        time.Duration `json:"hold_time"`
	UpdatesSent     uint64        `json:"updates_sent"`
	UpdatesReceived uint64        `json:"updates_received"`
	// Advertised is the number of routes sent to the peer.
	Advertised uint64 `json:"advertised"`
}

// Speaker is one BGP speaker. Its methods are safe for concurrent use.
type Speaker struct {
	log *slog.Logger

	mu      sync.Mutex
	srv     *server.BgpServer
	cfg     Config
	started bool
	// announced are the VIPs in the RIB, each as a host route.
	announced map[netip.Addr]bool
	// restarting marks the sessions of a daemon that restarted while the
	// data plane kept forwarding: GoBGP sets the Restart State bit and
	// sends its routes only after the peers' End-of-RIB (RFC 4724).
	restarting bool
}

// New returns a speaker that is not running; Apply starts it.
// restarting says xlbd restarted over a forwarding data plane (graceful
// restart's Restart State).
func New(log *slog.Logger, restarting bool) *Speaker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Speaker{log: log, announced: map[netip.Addr]bool{}, restarting: restarting}
}

// Validate checks a configuration without applying it.
func (c Config) Validate() error {
	if c.ASN == 0 {
		return errors.New("asn: missing")
	}
	if !c.RouterID.Is4() {
		return fmt.Errorf("router_id %s: want an IPv4 address", c.RouterID)
	}
	if c.NextHop4.IsValid() && !c.NextHop4.Is4() || c.NextHop6.IsValid() && !c.NextHop6.Is6() {
		return errors.New("next hops: of the wrong family")
	}
	if !c.NextHop4.IsValid() && !c.NextHop6.IsValid() {
		return errors.New("no next hop to announce (the interface has no address?)")
	}
	if len(c.Peers) == 0 {
		return errors.New("peers: none")
	}
	seen := map[netip.Addr]bool{}
	for _, p := range c.Peers {
		if !p.Addr.IsValid() || seen[p.Addr] {
			return fmt.Errorf("peer %s: missing or listed twice", p.Addr)
		}
		seen[p.Addr] = true
		if p.HoldTime < 3*time.Second {
			return fmt.Errorf("peer %s: hold time %s below 3s", p.Addr, p.HoldTime)
		}
	}
	return nil
}

// Apply makes cfg the speaker's configuration and vips the announced set.
// The first call starts the speaker: the routes go into its RIB before any
// peer is added, so a restarted xlbd offers its routes in the first
// exchange (a router that kept them by graceful restart sees them stay). A
// change of ASN, router ID or graceful restart restarts every session;
// other changes touch only the peers and routes that changed.
func (s *Speaker) Apply(ctx context.Context, cfg Config, vips []netip.Addr) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started && !sameGlobal(s.cfg, cfg) {
		if err := s.stopLocked(ctx); err != nil {
			return err
		}
	}
	if !s.started {
		return s.startLocked(ctx, cfg, vips)
	}
	old := s.cfg
	s.cfg = cfg
	if !sameAttrs(old, cfg) {
		// New attributes for every route: re-add them all.
		s.announced = map[netip.Addr]bool{}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{DeleteAll: true}); err != nil {
			return fmt.Errorf("bgp: withdraw for new attributes: %w", err)
		}
	}
	if err := s.announceLocked(vips); err != nil {
		return err
	}
	return s.syncPeersLocked(ctx, old.Peers, cfg.Peers)
}

func sameGlobal(a, b Config) bool {
	return a.ASN == b.ASN && a.RouterID == b.RouterID && a.GracefulRestart == b.GracefulRestart && a.RestartTime == b.RestartTime
}

func sameAttrs(a, b Config) bool {
	return a.NextHop4 == b.NextHop4 && a.NextHop6 == b.NextHop6 && a.LocalPref == b.LocalPref && slices.Equal(a.Communities, b.Communities)
}

func (s *Speaker) startLocked(ctx context.Context, cfg Config, vips []netip.Addr) error {
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	srv := server.NewBgpServer(server.LoggerOption(s.log.With("component", "gobgp"), lvl))
	go srv.Serve()
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: -1, // connect out only: the host's port 179 stays free
	}})
	if err != nil {
		return fmt.Errorf("bgp: start: %w", err)
	}
	s.srv, s.cfg, s.started = srv, cfg, true
	s.announced = map[netip.Addr]bool{}
	if err := s.announceLocked(vips); err != nil {
		return errors.Join(err, s.stopLocked(ctx))
	}
	if err := s.syncPeersLocked(ctx, nil, cfg.Peers); err != nil {
		return errors.Join(err, s.stopLocked(ctx))
	}
	return nil
}

// stopLocked stops the speaker: its sessions close with a Cease
// NOTIFICATION, and routers drop its routes at once.
func (s *Speaker) stopLocked(ctx context.Context) error {
	if !s.started {
		return nil
	}
	err := s.srv.StopBgp(ctx, &api.StopBgpRequest{})
	s.started = false
	s.announced = map[netip.Addr]bool{}
	// A restart of the speaker inside a running xlbd is no graceful
	// restart of the forwarding plane's announcements: start afresh.
	s.restarting = false
	if err != nil {
		return fmt.Errorf("bgp: stop: %w", err)
	}
	return nil
}

// Stop withdraws everything and closes the sessions (a planned stop:
// routers drop this node at once). The speaker can be started again with
// Apply.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Speaker) peerRequest(p Peer) *api.Peer {
	family := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: s.cfg.GracefulRestart}},
		}
	}
	hold := uint64(p.HoldTime / time.Second)
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(hold/3, 1), ConnectRetry: 2,
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		GracefulRestart: &api.GracefulRestart{
			Enabled:         s.cfg.GracefulRestart,
			RestartTime:     uint32(s.cfg.RestartTime / time.Second),
			LocalRestarting: s.cfg.GracefulRestart && s.restarting,
		},
		AfiSafis: []*api.AfiSafi{family(api.Family_AFI_IP), family(api.Family_AFI_IP6)},
	}
}

// syncPeersLocked adds, changes and deletes peers from old to next.
func (s *Speaker) syncPeersLocked(ctx context.Context, old, next []Peer) error {
	byAddr := map[netip.Addr]Peer{}
	for _, p := range old {
		byAddr[p.Addr] = p
	}
	for _, p := range next {
		was, ok := byAddr[p.Addr]
		delete(byAddr, p.Addr)
		if ok && reflect.DeepEqual(was, p) {
			continue
		}
		if ok {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Addr.String()}); err != nil {
				return fmt.Errorf("bgp: peer %s: %w", p.Addr, err)
			}
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peerRequest(p)}); err != nil {
			return fmt.Errorf("bgp: peer %s: %w", p.Addr, err)
		}
	}
	for a := range byAddr {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			return fmt.Errorf("bgp: peer %s: %w", a, err)
		}
	}
	return nil
}

// Announce makes vips the announced set: host routes for the new ones,
// withdrawals for those no longer listed. A VIP whose family has no next
// hop is left out.
func (s *Speaker) Announce(vips []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("bgp: not running")
	}
	return s.announceLocked(vips)
}

func (s *Speaker) announceLocked(vips []netip.Addr) error {
	want := map[netip.Addr]bool{}
	for _, v := range vips {
		v = v.Unmap()
		if (v.Is4() && s.cfg.NextHop4.IsValid()) || (v.Is6() && s.cfg.NextHop6.IsValid()) {
			want[v] = true
		}
	}
	var add, del []*apiutil.Path
	for v := range want {
		if !s.announced[v] {
			p, err := s.path(v)
			if err != nil {
				return err
			}
			add = append(add, p)
		}
	}
	for v := range s.announced {
		if !want[v] {
			p, err := s.path(v)
			if err != nil {
				return err
			}
			del = append(del, p)
		}
	}
	if len(add) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			return fmt.Errorf("bgp: announce: %w", err)
		}
		for _, p := range add {
			s.announced[hostAddr(p)] = true
		}
	}
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			return fmt.Errorf("bgp: withdraw: %w", err)
		}
		for _, p := range del {
			delete(s.announced, hostAddr(p))
		}
	}
	return nil
}

func hostAddr(p *apiutil.Path) netip.Addr {
	return p.Nlri.(*bgp.IPAddrPrefix).Prefix.Addr()
}

// path is vip's host route with this speaker's attributes.
func (s *Speaker) path(vip netip.Addr) (*apiutil.Path, error) {
	prefix := netip.PrefixFrom(vip, vip.BitLen())
	nlri, err := bgp.NewIPAddrPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("bgp: prefix %s: %w", prefix, err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	family := bgp.RF_IPv4_UC
	if vip.Is4() {
		nh, err := bgp.NewPathAttributeNextHop(s.cfg.NextHop4)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", s.cfg.NextHop4, err)
		}
		attrs = append(attrs, nh)
	} else {
		family = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(family, []bgp.PathNLRI{{NLRI: nlri}}, s.cfg.NextHop6)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", s.cfg.NextHop6, err)
		}
		attrs = append(attrs, mp)
	}
	if len(s.cfg.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(s.cfg.Communities))
	}
	if s.cfg.LocalPref > 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(s.cfg.LocalPref))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs}, nil
}

// Announced returns the VIPs in the RIB, sorted.
func (s *Speaker) Announced() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Addr, 0, len(s.announced))
	for v := range s.announced {
		out = append(out, v)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Running reports whether the speaker has been started.
func (s *Speaker) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Peers returns every neighbour's session, in configuration order.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	srv, started, peers := s.srv, s.started, s.cfg.Peers
	s.mu.Unlock()
	if !started {
		return nil, nil
	}
	got := map[string]*api.Peer{}
	err := srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		got[p.GetConf().GetNeighborAddress()] = p
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	out := make([]PeerStatus, 0, len(peers))
	for _, c := range peers {
		ps := PeerStatus{Address: c.Addr.String(), ASN: c.ASN, State: "idle"}
		if p := got[c.Addr.String()]; p != nil {
			st := p.GetState()
			ps.State = stateName(st.GetSessionState())
			ps.UpdatesSent = st.GetMessages().GetSent().GetUpdate()
			ps.UpdatesReceived = st.GetMessages().GetReceived().GetUpdate()
			if ts := p.GetTimers().GetState(); ts != nil {
				if up := ts.GetUptime(); up != nil && ps.State == "established" {
					ps.Since = up.AsTime()
				} else if down := ts.GetDowntime(); down != nil && ps.State != "established" {
					ps.Since = down.AsTime()
				}
				if ps.State == "established" {
					ps.HoldTime = time.Duration(ts.GetNegotiatedHoldTime()) * time.Second
				}
			}
			for _, af := range p.GetAfiSafis() {
				ps.Advertised += af.GetState().GetAdvertised()
			}
		}
		out = append(out, ps)
	}
	return out, nil
}

func stateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "idle"
}
