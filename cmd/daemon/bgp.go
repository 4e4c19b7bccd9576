package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/bgp"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Announcer is the BGP speaker the daemon drives: *bgp.Speaker in xlbd, a
// recorder in tests.
type Announcer interface {
	// Apply makes cfg the configuration and vips the announced set,
	// starting the speaker if it is not running.
	Apply(ctx context.Context, cfg bgp.Config, vips []netip.Addr) error
	// Announce makes vips the announced set.
	Announce(vips []netip.Addr) error
	// Announced returns the announced set.
	Announced() []netip.Addr
	// Peers returns the sessions.
	Peers(ctx context.Context) ([]bgp.PeerStatus, error)
	// Running reports whether the speaker runs.
	Running() bool
	// Stop closes every session: its routes are withdrawn at once.
	Stop(ctx context.Context) error
}

// bgpTimeout bounds one change of the speaker.
const bgpTimeout = 10 * time.Second

// speakerConfig resolves c's defaults: the router ID and next hops come
// from the interface's addresses when not given.
func speakerConfig(c *config.BGP, ifaceAddrs []netip.Addr) (bgp.Config, error) {
	out := bgp.Config{
		ASN:             c.ASN,
		GracefulRestart: !c.GracefulRestart.Disabled,
		RestartTime:     time.Duration(c.GracefulRestart.RestartTime),
		LocalPref:       c.LocalPref,
	}
	first := func(v4 bool) netip.Addr {
		for _, a := range ifaceAddrs {
			if a.Is4() == v4 && a.IsGlobalUnicast() {
				return a
			}
		}
		return netip.Addr{}
	}
	pick := func(s string, v4 bool) netip.Addr {
		if s != "" {
			return netip.MustParseAddr(s) // normalised by config
		}
		return first(v4)
	}
	out.RouterID = pick(c.RouterID, true)
	if c.RouterID == "" && c.NextHop != "" {
		out.RouterID = netip.MustParseAddr(c.NextHop)
	}
	out.NextHop4, out.NextHop6 = pick(c.NextHop, true), pick(c.NextHop6, false)
	if !out.RouterID.IsValid() {
		return out, badRequest("bgp.router_id: required: the interface has no IPv4 address to take it from")
	}
	if !out.NextHop4.IsValid() && !out.NextHop6.IsValid() {
		return out, badRequest("bgp.next_hop: required: the interface has no address to announce as next hop")
	}
	for _, s := range c.Communities {
		v, ok := communityValue(s)
		if !ok {
			return out, badRequest("bgp.communities: %q: not a community", s)
		}
		out.Communities = append(out.Communities, v)
	}
	for _, p := range c.Peers {
		out.Peers = append(out.Peers, bgp.Peer{Addr: netip.MustParseAddr(p.Address), ASN: p.ASN, Port: uint16(p.Port),
			HoldTime: time.Duration(*p.HoldTime), Password: p.Password})
	}
	return out, nil
}

// communityValue encodes a normalised community.
func communityValue(s string) (uint32, bool) {
	switch s {
	case "no-export":
		return 0xffffff01, true
	case "no-advertise":
		return 0xffffff02, true
	case "no-export-subconfed":
		return 0xffffff03, true
	}
	hi, lo, ok := strings.Cut(s, ":")
	a, errA := strconv.ParseUint(hi, 10, 16)
	b, errB := strconv.ParseUint(lo, 10, 16)
	return uint32(a<<16 | b), ok && errA == nil && errB == nil
}

// announcedVIPs are the VIPs to announce for services svcs as installed:
// a VIP goes out while its services have a usable backend (healthy, MAC
// known, weight above 0): any of them, or all of them under the VIP's
// policy all.
func announcedVIPs(svcs []lb.Service, c *config.BGP) []netip.Addr {
	if c == nil {
		return nil
	}
	type tally struct{ services, usable int }
	byVIP := map[netip.Addr]*tally{}
	for _, s := range svcs {
		v := s.Key.VIP.Unmap()
		t := byVIP[v]
		if t == nil {
			t = &tally{}
			byVIP[v] = t
		}
		t.services++
		if slices.ContainsFunc(s.Backends, func(b lb.Backend) bool { return b.UsableFor(s.Forward) && b.Weight > 0 }) {
			t.usable++
		}
	}
	var out []netip.Addr
	for v, t := range byVIP {
		if t.usable > 0 && (c.PolicyOf(v) != config.VIPPolicyAll || t.usable == t.services) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// applyBGP brings the speaker to next (nil: off) announcing vips. Callers
// hold d.mu.
func (d *Daemon) applyBGP(next *config.BGP, vips []netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), bgpTimeout)
	defer cancel()
	if next == nil {
		if d.bgp != nil && d.bgp.Running() {
			return d.bgp.Stop(ctx)
		}
		return nil
	}
	if d.bgp == nil {
		return badRequest("bgp: this xlbd has no BGP speaker")
	}
	if reflect.DeepEqual(next, d.bgpCfg) && d.bgp.Running() {
		return d.bgp.Announce(vips)
	}
	sc, err := speakerConfig(next, d.ifaceAddrs)
	if err != nil {
		return err
	}
	if err := d.bgp.Apply(ctx, sc, vips); err != nil {
		return badRequest("%w", err)
	}
	return nil
}

// logAnnouncements logs the VIPs that went out or were withdrawn.
func (d *Daemon) logAnnouncements(before, after []netip.Addr) {
	for _, v := range after {
		if !slices.Contains(before, v) {
			d.log.Info("bgp: announcing vip", "vip", v)
		}
	}
	for _, v := range before {
		if !slices.Contains(after, v) {
			d.log.Warn("bgp: withdrawing vip: no usable backend under its policy", "vip", v)
		}
	}
}

// Withdraw takes every VIP out of BGP and keeps the sessions up: the first
// step of a planned stop. The data plane goes on forwarding what still
// arrives while the routers converge.
func (d *Daemon) Withdraw() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.withdrawn = true
	if d.bgp == nil || !d.bgp.Running() {
		return nil
	}
	before := d.bgp.Announced()
	if err := d.bgp.Announce(nil); err != nil {
		return err
	}
	d.logAnnouncements(before, nil)
	return nil
}

// DrainTime is how long a planned stop waits after Withdraw.
func (d *Daemon) DrainTime() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bgpCfg == nil || d.bgpCfg.DrainTime == nil {
		return 0
	}
	return time.Duration(*d.bgpCfg.DrainTime)
}

// StopBGP closes the sessions (the last step of a planned stop).
func (d *Daemon) StopBGP() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bgp == nil || !d.bgp.Running() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), bgpTimeout)
	defer cancel()
	if err := d.bgp.Stop(ctx); err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	return nil
}
