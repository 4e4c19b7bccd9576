package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Address families of a backend named by DNS (Backend.Family).
const (
	FamilyIPv4 = "ipv4" // A records
	FamilyIPv6 = "ipv6" // AAAA records
	FamilyAny  = "any"  // both: refused while backends must share the VIP's family
)

// NameKey is what xlbd resolves for a backend named by DNS: the name and
// the family of its records. Services naming the same key share one
// resolution.
type NameKey struct {
	Name   string `json:"name"`
	Family string `json:"family"`
}

// String is NAME/FAMILY, e.g. "web.pool.example/ipv4".
func (k NameKey) String() string { return k.Name + "/" + k.Family }

// NameKey returns the name and family of a normalised named backend.
func (b Backend) NameKey() NameKey { return NameKey{Name: b.Name, Family: b.Family} }

// Named reports whether the backend is named by DNS rather than by address.
func (b Backend) Named() bool { return b.Name != "" }

// vipFamily is the family name of the service's VIP.
func vipFamily(k lb.ServiceKey) string {
	if k.VIP.Unmap().Is4() {
		return FamilyIPv4
	}
	return FamilyIPv6
}

// normalizeNamed checks a backend named by DNS of the service with key k:
// a host name and no address, a family (default the VIP's) the data plane
// can forward to, a weight (default 1).
// normalizeAlone checks a backend without its service (an API body, a
// backend set file): a backend named by DNS gets the partial check (its
// family's default and check need the service, and are done when it joins
// it); one with an address is normalised in full.
func (b *Backend) normalizeAlone() error {
	if b.Name == "" && b.Family == "" {
		_, err := b.normalize()
		return err
	}
	if b.Address != "" {
		return fieldErr("name", quote(b.Name), "give address or name, not both (address is "+quote(b.Address)+")")
	}
	if b.Name == "" {
		return fieldErr("family", quote(b.Family), "only with name (a backend named by DNS)")
	}
	if _, err := CanonicalHostname(b.Name); err != nil {
		return fieldErr("name", quote(b.Name), err.Error())
	}
	return nil
}

func (b *Backend) normalizeNamed(k lb.ServiceKey) error {
	if b.Address != "" && b.Name != "" {
		return fieldErr("name", quote(b.Name), "give address or name, not both (address is "+quote(b.Address)+")")
	}
	if b.Name == "" {
		return fieldErr("family", quote(b.Family), "only with name (a backend named by DNS)")
	}
	name, err := CanonicalHostname(b.Name)
	if err != nil {
		return fieldErr("name", quote(b.Name), err.Error())
	}
	b.Name = name
	fam := strings.ToLower(b.Family)
	switch fam {
	case "":
		fam = vipFamily(k)
	case "4", "inet", "a":
		fam = FamilyIPv4
	case "6", "inet6", "aaaa":
		fam = FamilyIPv6
	case FamilyIPv4, FamilyIPv6, FamilyAny:
	default:
		return fieldErr("family", quote(b.Family), "want ipv4, ipv6 or any")
	}
	if want := vipFamily(k); fam != want {
		// lb.ServiceKey.CheckBackend: every forwarding mode sends the
		// client's packet (or its encapsulation's inner packet) of the
		// VIP's family to the backend address.
		return fieldErr("family", quote(b.Family), "vip "+k.VIP.String()+" is "+want+": a backend must be of the vip's address family")
	}
	b.Family = fam
	if b.Weight == nil {
		w := uint32(1)
		b.Weight = &w
	}
	if err := lb.Weight.Check(*b.Weight); err != nil {
		return fieldErr("weight", strconv.FormatUint(uint64(*b.Weight), 10), err.Error())
	}
	return nil
}

// CanonicalHostname checks a DNS host name (RFC 1123: labels of letters,
// digits and hyphens, 1-63 bytes each, not starting or ending with a
// hyphen, 253 bytes in all) and returns it lower case without a trailing
// dot. The name is looked up as given (fully qualified; no search list).
func CanonicalHostname(s string) (string, error) {
	if _, err := netip.ParseAddr(s); err == nil {
		return "", errorString("an IP address, not a name: use address")
	}
	n := strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case n == "":
		return "", errorString("empty host name")
	case len(n) > 253:
		return "", errorString("longer than 253 characters")
	}
	for label := range strings.SplitSeq(n, ".") {
		switch {
		case label == "":
			return "", errorString("empty label (two dots in a row)")
		case len(label) > 63:
			return "", errorString("label " + quote(label) + " longer than 63 characters")
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", errorString("label " + quote(label) + " starts or ends with a hyphen")
		}
		for _, r := range label {
			if !isLDH(r) {
				return "", errorString("not a host name: " + strconv.QuoteRune(r) + " (letters, digits, hyphens and dots only)")
			}
		}
	}
	if i := strings.LastIndexByte(n, '.'); strings.Trim(n[i+1:], "0123456789") == "" {
		return "", errorString("the last label is all digits: not a host name")
	}
	return n, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Resolvers configures how xlbd resolves backends named by DNS, like
// HAProxy's resolvers section. The zero value is the defaults.
type Resolvers struct {
	// Nameservers are ADDR or ADDR:PORT (port 53 by default), asked in
	// order; empty: the nameservers of /etc/resolv.conf, read at every
	// round of lookups.
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	// Timeout is how long one query waits for its answer, 100ms-30s;
	// default 2s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Attempts is how many queries one lookup makes at most, going round
	// the nameservers, 1-10; default 3.
	Attempts int `yaml:"attempts,omitempty" json:"attempts,omitempty"`
	// MinRefresh and MaxRefresh bound the time until a name is resolved
	// again after an answer: its TTL, clamped to [MinRefresh, MaxRefresh].
	// Defaults 1s and 5m; MinRefresh at least 100ms, MaxRefresh at most 24h.
	MinRefresh Duration `yaml:"min_refresh,omitempty" json:"min_refresh,omitempty"`
	MaxRefresh Duration `yaml:"max_refresh,omitempty" json:"max_refresh,omitempty"`
	// RetryInterval is the time until the next lookup after a failed one
	// (timeout, SERVFAIL, REFUSED, no server): 100ms-1h; default 5s. The
	// name's last good addresses stay meanwhile.
	RetryInterval Duration `yaml:"retry_interval,omitempty" json:"retry_interval,omitempty"`
	// HoldNXDomain is how long a name that had addresses keeps them once
	// the answer is "no such name" (NXDOMAIN) or "no records of that
	// family" (NODATA), as HAProxy's "hold nx": 0-24h; default 30s. After
	// it, the name has no addresses and they leave like removed backends.
	HoldNXDomain *Duration `yaml:"hold_nxdomain,omitempty" json:"hold_nxdomain,omitempty"`
	// VanishedDrain is how long an address gone from a name's answer stays
	// as a drained backend (weight 0: its flows go on, no new ones) while
	// it still has active flows: 0-24h; default 15m (the default TCP idle
	// timeout). 0 removes it at once (its flows move).
	VanishedDrain *Duration `yaml:"vanished_drain,omitempty" json:"vanished_drain,omitempty"`
}

// Defaults of the resolvers section.
const (
	DefaultDNSTimeout       = 2 * time.Second
	DefaultDNSAttempts      = 3
	DefaultDNSMinRefresh    = time.Second
	DefaultDNSMaxRefresh    = 5 * time.Minute
	DefaultDNSRetryInterval = 5 * time.Second
	DefaultDNSHoldNXDomain  = 30 * time.Second
	DefaultDNSVanishedDrain = 15 * time.Minute
)

// Effective returns r with the defaults filled in (r nil: all defaults).
// r must be normalised.
func (r *Resolvers) Effective() Resolvers {
	var e Resolvers
	if r != nil {
		e = *r
	}
	e.Nameservers = append([]string(nil), e.Nameservers...)
	if e.Timeout == 0 {
		e.Timeout = Duration(DefaultDNSTimeout)
	}
	if e.Attempts == 0 {
		e.Attempts = DefaultDNSAttempts
	}
	if e.MinRefresh == 0 {
		e.MinRefresh = Duration(DefaultDNSMinRefresh)
		if e.MaxRefresh != 0 {
			e.MinRefresh = min(e.MinRefresh, e.MaxRefresh)
		}
	}
	if e.MaxRefresh == 0 {
		e.MaxRefresh = Duration(DefaultDNSMaxRefresh)
	}
	if e.RetryInterval == 0 {
		e.RetryInterval = Duration(DefaultDNSRetryInterval)
	}
	e.HoldNXDomain = durationOr(e.HoldNXDomain, DefaultDNSHoldNXDomain)
	e.VanishedDrain = durationOr(e.VanishedDrain, DefaultDNSVanishedDrain)
	return e
}

// Clone returns a deep copy (nil stays nil).
func (r *Resolvers) Clone() *Resolvers {
	if r == nil {
		return nil
	}
	c := *r
	c.Nameservers = append([]string(nil), r.Nameservers...)
	if r.HoldNXDomain != nil {
		c.HoldNXDomain = durationOr(r.HoldNXDomain, 0)
	}
	if r.VanishedDrain != nil {
		c.VanishedDrain = durationOr(r.VanishedDrain, 0)
	}
	return &c
}

// NameserverAddrs returns the nameservers as ADDR:PORT (port 53 unless
// given); r must be normalised.
func (r *Resolvers) NameserverAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	if r == nil {
		return nil
	}
	for _, s := range r.Nameservers {
		if ap, err := parseNameserver(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

func parseNameserver(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, errorString("not ADDR or ADDR:PORT (e.g. 198.18.0.53, [2001:2::53]:5353)")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func (r *Resolvers) normalize() error {
	for i, s := range r.Nameservers {
		ap, err := parseNameserver(s)
		if err != nil {
			return fieldErr("nameservers["+strconv.Itoa(i)+"]", quote(s), err.Error())
		}
		r.Nameservers[i] = ap.String()
	}
	type bound struct {
		name     string
		v        Duration
		lo, hi   time.Duration
		zeroOkay bool
	}
	for _, b := range []bound{
		{"timeout", r.Timeout, 100 * time.Millisecond, 30 * time.Second, true},
		{"min_refresh", r.MinRefresh, 100 * time.Millisecond, 24 * time.Hour, true},
		{"max_refresh", r.MaxRefresh, 100 * time.Millisecond, 24 * time.Hour, true},
		{"retry_interval", r.RetryInterval, 100 * time.Millisecond, time.Hour, true},
	} {
		if b.v == 0 && b.zeroOkay {
			continue
		}
		if time.Duration(b.v) < b.lo || time.Duration(b.v) > b.hi {
			return fieldErr(b.name, b.v.String(), "out of range "+Duration(b.lo).String()+"-"+Duration(b.hi).String()+" (0 or absent: the default)")
		}
	}
	if r.Attempts < 0 || r.Attempts > 10 {
		return fieldErr("attempts", strconv.Itoa(r.Attempts), "out of range 1-10 (0 or absent: the default 3)")
	}
	for _, f := range []struct {
		name string
		h    *Duration
	}{{"hold_nxdomain", r.HoldNXDomain}, {"vanished_drain", r.VanishedDrain}} {
		name, h := f.name, f.h
		if h != nil && (*h < 0 || time.Duration(*h) > 24*time.Hour) {
			return fieldErr(name, h.String(), "out of range 0-24h")
		}
	}
	if e := r.Effective(); e.MinRefresh > e.MaxRefresh {
		return fieldErr("min_refresh", e.MinRefresh.String(), "more than max_refresh "+e.MaxRefresh.String())
	}
	return nil
}

// durationOr returns a copy of *d, or def when d is nil.
func durationOr(d *Duration, def time.Duration) *Duration {
	v := Duration(def)
	if d != nil {
		v = *d
	}
	return &v
}

// isLDH reports a letter (lower case), digit or hyphen.
func isLDH(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' }
