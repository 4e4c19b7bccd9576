package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/maps/lb"
)

// BGP makes xlbd announce its VIPs to upstream routers, which spread the
// flows over every balancer that announces them (ECMP). Nil: no BGP.
type BGP struct {
	// ASN is this balancer's AS number, 1-4294967295 (not 23456, AS_TRANS).
	ASN uint32 `yaml:"asn" json:"asn"`
	// RouterID is the BGP identifier, an IPv4 address; default: the
	// interface's first IPv4 address.
	RouterID string `yaml:"router_id,omitempty" json:"router_id,omitempty"`
	// NextHop is the next hop announced with IPv4 VIPs, and NextHop6 with
	// IPv6 VIPs; default: the interface's first address of that family.
	NextHop  string `yaml:"next_hop,omitempty" json:"next_hop,omitempty"`
	NextHop6 string `yaml:"next_hop6,omitempty" json:"next_hop6,omitempty"`
	// GracefulRestart lets the routers keep this node's routes while xlbd
	// restarts (RFC 4724); the data plane forwards meanwhile.
	GracefulRestart GracefulRestart `yaml:"graceful_restart" json:"graceful_restart"`
	// Communities are attached to every announcement: "ASN:VALUE" (two
	// 16-bit numbers) or no-export, no-advertise, no-export-subconfed.
	Communities []string `yaml:"communities,omitempty" json:"communities,omitempty"`
	// LocalPref is sent to iBGP peers (0: not sent).
	LocalPref uint32 `yaml:"local_pref,omitempty" json:"local_pref,omitempty"`
	// DrainTime is how long a planned stop (SIGTERM) keeps the daemon up
	// after withdrawing every VIP, so that routers move the flows away
	// before the node goes; 0-10m, default 5s.
	DrainTime *Duration `yaml:"drain_time,omitempty" json:"drain_time,omitempty"`
	// VIPPolicy decides when a VIP that several services share is
	// announced: any (default: while at least one of them has a usable
	// backend) or all (while every one of them has).
	VIPPolicy string `yaml:"vip_policy" json:"vip_policy"`
	// VIPs override VIPPolicy for single VIPs.
	VIPs  []VIPPolicy `yaml:"vips,omitempty" json:"vips,omitempty"`
	Peers []Peer      `yaml:"peers" json:"peers"`
}

// GracefulRestart configures BGP graceful restart.
type GracefulRestart struct {
	// RestartTime is how long routers keep this node's routes while its
	// session is down after a restart, 1s-4095s (whole seconds); default
	// 120s. It must be longer than a restart of xlbd takes. 0 takes the
	// default; turn graceful restart off with disabled.
	RestartTime Duration `yaml:"restart_time" json:"restart_time"`
	// Disabled turns graceful restart off: a restart withdraws every VIP.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// VIPPolicy is the announcement policy of one VIP.
type VIPPolicy struct {
	VIP    string `yaml:"vip" json:"vip"`
	Policy string `yaml:"policy" json:"policy"`
}

// Peer is one BGP neighbour.
type Peer struct {
	// Address is the neighbour's IP address.
	Address string `yaml:"address" json:"address"`
	// ASN is its AS number: the same as ours for iBGP.
	ASN uint32 `yaml:"asn" json:"asn"`
	// Port is its BGP port, default 179.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// HoldTime is the hold time offered, 3s-65535s (whole seconds), default
	// 90s; the session uses the smaller of both sides'. A node that dies is
	// withdrawn by its routers within the hold time.
	HoldTime *Duration `yaml:"hold_time,omitempty" json:"hold_time,omitempty"`
	// Password is the TCP-MD5 key (RFC 2385), at most 80 bytes; empty: none.
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
}

// BGP announcement policies of a VIP shared by several services.
const (
	VIPPolicyAny = "any"
	VIPPolicyAll = "all"
)

// BGP bounds and defaults.
var (
	BGPRestartTime = lb.Limit[time.Duration]{Name: "restart_time", Default: 120 * time.Second, Min: time.Second, Max: 4095 * time.Second}
	BGPHoldTime    = lb.Limit[time.Duration]{Name: "hold_time", Default: 90 * time.Second, Min: 3 * time.Second, Max: 65535 * time.Second}
	BGPDrainTime   = lb.Limit[time.Duration]{Name: "drain_time", Default: 5 * time.Second, Min: 0, Max: 10 * time.Minute}
)

// DefaultBGPPort is the port of a peer unless given.
const DefaultBGPPort = 179

// asTrans is AS_TRANS (RFC 6793), never a real AS number.
const asTrans = 23456

// Clone returns a deep copy.
func (b *BGP) Clone() *BGP {
	if b == nil {
		return nil
	}
	c := *b
	c.Communities = slices.Clone(b.Communities)
	c.VIPs = slices.Clone(b.VIPs)
	c.Peers = slices.Clone(b.Peers)
	for i := range c.Peers {
		if h := c.Peers[i].HoldTime; h != nil {
			v := *h
			c.Peers[i].HoldTime = &v
		}
	}
	if b.DrainTime != nil {
		v := *b.DrainTime
		c.DrainTime = &v
	}
	return &c
}

func (b *BGP) normalize() error {
	// One form for "none": nil (what omitempty writes back).
	if len(b.Communities) == 0 {
		b.Communities = nil
	}
	if len(b.VIPs) == 0 {
		b.VIPs = nil
	}
	if b.ASN == 0 || b.ASN == asTrans {
		return fieldErr("asn", strconv.FormatUint(uint64(b.ASN), 10), "not an AS number (1-4294967295, not 23456)")
	}
	if b.RouterID != "" {
		a, err := netip.ParseAddr(b.RouterID)
		if err != nil || !a.Unmap().Is4() || a.IsUnspecified() {
			return fieldErr("router_id", quote(b.RouterID), "want an IPv4 address (the BGP identifier is 32 bits)")
		}
		b.RouterID = a.Unmap().String()
	}
	for _, nh := range []struct {
		path string
		v    *string
		v4   bool
	}{{"next_hop", &b.NextHop, true}, {"next_hop6", &b.NextHop6, false}} {
		if *nh.v == "" {
			continue
		}
		a, err := parseAddr(nh.path, *nh.v)
		if err != nil {
			return err
		}
		if a.Is4() != nh.v4 {
			return fieldErr(nh.path, quote(*nh.v), "wrong address family (next_hop is IPv4, next_hop6 IPv6)")
		}
		*nh.v = a.String()
	}
	if err := b.GracefulRestart.normalize(); err != nil {
		return under("graceful_restart", err)
	}
	for i, c := range b.Communities {
		norm, err := parseCommunity(c)
		if err != nil {
			return fieldErr("communities["+strconv.Itoa(i)+"]", quote(c), err.Error())
		}
		b.Communities[i] = norm
	}
	if b.DrainTime == nil {
		d := Duration(BGPDrainTime.Default)
		b.DrainTime = &d
	}
	if err := BGPDrainTime.Check(time.Duration(*b.DrainTime)); err != nil {
		return fieldErr("drain_time", b.DrainTime.String(), err.Error())
	}
	var err error
	if b.VIPPolicy, err = pickString("vip_policy", b.VIPPolicy, VIPPolicyAny, VIPPolicyAny, VIPPolicyAll); err != nil {
		return err
	}
	seenVIP := map[netip.Addr]int{}
	for i := range b.VIPs {
		at := "vips[" + strconv.Itoa(i) + "]"
		v := &b.VIPs[i]
		a, err := parseAddr("vip", v.VIP)
		if err != nil {
			return under(at, err)
		}
		if j, dup := seenVIP[a]; dup {
			return fieldErr(at, "", fmt.Sprintf("duplicate vip %s (also vips[%d])", a, j))
		}
		seenVIP[a] = i
		v.VIP = a.String()
		if v.Policy, err = pickString("policy", v.Policy, b.VIPPolicy, VIPPolicyAny, VIPPolicyAll); err != nil {
			return under(at, err)
		}
	}
	if len(b.Peers) == 0 {
		return fieldErr("peers", "", "required: at least one peer to announce to")
	}
	seen := map[netip.Addr]int{}
	for i := range b.Peers {
		at := "peers[" + strconv.Itoa(i) + "]"
		a, err := b.Peers[i].normalize()
		if err != nil {
			return under(at, err)
		}
		if j, dup := seen[a]; dup {
			return fieldErr(at, "", fmt.Sprintf("duplicate peer %s (also peers[%d])", a, j))
		}
		seen[a] = i
	}
	return nil
}

func (g *GracefulRestart) normalize() error {
	g.RestartTime = Duration(BGPRestartTime.Or(time.Duration(g.RestartTime)))
	rt := time.Duration(g.RestartTime)
	if err := BGPRestartTime.Check(rt); err != nil {
		return fieldErr("restart_time", g.RestartTime.String(), err.Error())
	}
	if rt%time.Second != 0 {
		return fieldErr("restart_time", g.RestartTime.String(), "must be whole seconds (e.g. 120s)")
	}
	return nil
}

func (p *Peer) normalize() (netip.Addr, error) {
	a, err := parseAddr("address", p.Address)
	if err != nil {
		return a, err
	}
	p.Address = a.String()
	if p.ASN == 0 || p.ASN == asTrans {
		return a, fieldErr("asn", strconv.FormatUint(uint64(p.ASN), 10), "not an AS number (1-4294967295, not 23456)")
	}
	if p.Port == 0 {
		p.Port = DefaultBGPPort
	}
	if p.Port < 1 || p.Port > 65535 {
		return a, fieldErr("port", strconv.Itoa(p.Port), "out of range 1-65535")
	}
	if p.HoldTime == nil {
		d := Duration(BGPHoldTime.Default)
		p.HoldTime = &d
	}
	ht := time.Duration(*p.HoldTime)
	if err := BGPHoldTime.Check(ht); err != nil {
		return a, fieldErr("hold_time", p.HoldTime.String(), err.Error()+" (BGP allows no hold time below 3s)")
	}
	if ht%time.Second != 0 {
		return a, fieldErr("hold_time", p.HoldTime.String(), "must be whole seconds (e.g. 9s)")
	}
	if len(p.Password) > 80 {
		return a, fieldErr("password", "", fmt.Sprintf("%d bytes, at most 80 (the TCP-MD5 key limit)", len(p.Password)))
	}
	return a, nil
}

// parseCommunity checks a standard community and returns it canonical.
func parseCommunity(s string) (string, error) {
	switch l := strings.ToLower(s); l {
	case "no-export", "no-advertise", "no-export-subconfed":
		return l, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	a, errA := strconv.ParseUint(hi, 10, 16)
	b, errB := strconv.ParseUint(lo, 10, 16)
	if !ok || errA != nil || errB != nil {
		return "", fmt.Errorf("want ASN:VALUE with two numbers 0-65535 (e.g. 65010:100), or no-export, no-advertise, no-export-subconfed")
	}
	return strconv.FormatUint(a, 10) + ":" + strconv.FormatUint(b, 10), nil
}

// pickString matches v case-insensitively against names; empty gives def.
func pickString(path, v, def string, names ...string) (string, error) {
	if v == "" {
		return def, nil
	}
	for _, n := range names {
		if strings.EqualFold(v, n) {
			return n, nil
		}
	}
	return "", fieldErr(path, quote(v), "want one of "+strings.Join(names, ", "))
}

// PolicyOf returns the announcement policy of vip.
func (b *BGP) PolicyOf(vip netip.Addr) string {
	for _, v := range b.VIPs {
		if a, err := netip.ParseAddr(v.VIP); err == nil && a == vip {
			return v.Policy
		}
	}
	return b.VIPPolicy
}
