package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Names (protocols, schedulers, forwarding modes, check types, all-down
// policies) are matched case-insensitively against package lb's tables,
// aliases included, and stored in canonical form. Defaults and bounds are
// lb's limits.

// Defaults of an http check's request and expectation.
const (
	DefaultHTTPMethod   = "GET"
	DefaultHTTPPath     = "/"
	DefaultExpectStatus = "200-399"
)

// Service is one virtual service: a VIP, port and protocol, and the
// backends that serve it. It is both a config file entry and the body of
// the API's service requests.
type Service struct {
	VIP string `yaml:"vip" json:"vip"`
	// Port is 1-65535.
	Port int `yaml:"port" json:"port"`
	// Protocol is tcp (default) or udp.
	Protocol string `yaml:"protocol" json:"protocol"`
	// Scheduler is maglev (default; "mh" also accepted), source-hash
	// ("sh"), round-robin ("rr", "wrr") or least-conn ("lc", "wlc").
	Scheduler string `yaml:"scheduler" json:"scheduler"`
	// Persistence keeps a client address on one backend: its new
	// connections within this long of its previous one go to the same
	// backend while that is usable (drained included). Whole seconds up to
	// 30 days; 0 (default) is off. Works with every scheduler.
	Persistence Duration `yaml:"persistence,omitempty" json:"persistence,omitempty"`
	// Forward is dsr-l2 (default), the only mode so far.
	Forward string `yaml:"forward" json:"forward"`
	// Health is the service's health check; nil: backends are always up.
	Health *Health `yaml:"health,omitempty" json:"health,omitempty"`
	// Backends may be empty: the service's traffic is then dropped and
	// counted.
	Backends []Backend `yaml:"backends" json:"backends"`
}

// Backend is one real server of a service, or (Name) every address a DNS
// name resolves to.
type Backend struct {
	// Address is the backend's own IP address (not the VIP). Exactly one
	// of Address and Name is set.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Name is a DNS host name whose A or AAAA records (Family) are the
	// backends, each with Weight; xlbd re-resolves it (see Resolvers).
	// Stored lower case, without a trailing dot.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Family is the records Name is resolved to: ipv4 (A) or ipv6
	// (AAAA); default, and today the only choice, the VIP's family.
	// Stored only with Name.
	Family string `yaml:"family,omitempty" json:"family,omitempty"`
	// Weight is the relative share of new flows, 0-65535; nil means 1;
	// 0 drains (existing flows continue, no new ones).
	Weight *uint32 `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// Health is the per-service health check.
type Health struct {
	// Type is tcp, http, icmp or none, or ldirectord's connect (tcp),
	// negotiate (http), ping (icmp), on (none). Default: http if an http
	// block is given, else tcp.
	Type string `yaml:"type" json:"type"`
	// Interval between probes, 100ms-1h; default 2s.
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout of one probe, below Interval; default 1s (or half the
	// interval, if less).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Rise successes bring a backend up, Fall failures take it down;
	// 1-100, defaults 2 and 3.
	Rise int `yaml:"rise" json:"rise"`
	Fall int `yaml:"fall" json:"fall"`
	// Port to probe; 0 is the service port. Not with icmp or none.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Via is the path of tcp and http checks: backend (the default,
	// stored empty) probes the backend's own address; tunnel probes the
	// VIP on each backend through its ipip or gue tunnel, as clients'
	// packets reach it.
	Via string `yaml:"via,omitempty" json:"via,omitempty"`
	// HTTP configures type http (and only it).
	HTTP *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	// StartUp makes new backends start up instead of down.
	StartUp bool `yaml:"start_up,omitempty" json:"start_up,omitempty"`
	// AllDown is what happens when every backend is down: drop (default)
	// the traffic, or keep-last: keep sending it to the backends that were
	// up last.
	AllDown string `yaml:"all_down,omitempty" json:"all_down,omitempty"`
}

// HTTPCheck is the request of an http health check and the answer it
// expects.
type HTTPCheck struct {
	// Method is GET (default), HEAD, POST, ...; stored upper case.
	Method string `yaml:"method" json:"method"`
	// Path is the request target; default "/", must start with "/".
	Path string `yaml:"path" json:"path"`
	// Host is the Host header (and TLS server name); default the backend
	// address.
	Host  string `yaml:"host,omitempty" json:"host,omitempty"`
	HTTPS bool   `yaml:"https,omitempty" json:"https,omitempty"`
	// InsecureSkipVerify skips TLS certificate checks (https only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
	// ExpectStatus lists the good status codes: codes and ranges,
	// comma-separated, within 100-599; default "200-399".
	ExpectStatus string `yaml:"expect_status" json:"expect_status"`
	// ExpectBody, if set, must occur in the response body.
	ExpectBody string `yaml:"expect_body,omitempty" json:"expect_body,omitempty"`
}

// Normalize applies the defaults (protocol tcp, scheduler maglev, forward
// dsr-l2, weight 1, health check defaults), puts names and addresses in
// canonical form, and validates the service. Error paths are relative to
// the service ("port 0: out of range 1-65535"), for callers to prefix. On
// error s is unchanged.
func (s *Service) Normalize() error {
	n := s.Clone()
	if err := n.normalize(); err != nil {
		return err
	}
	*s = n
	return nil
}

// Key returns the service's VIP:PORT/PROTO; s need not be normalised.
func (s Service) Key() (lb.ServiceKey, error) {
	vip, err := parseAddr("vip", s.VIP)
	if err != nil {
		return lb.ServiceKey{}, err
	}
	if s.Port < 1 || s.Port > 65535 {
		return lb.ServiceKey{}, fieldErr("port", strconv.Itoa(s.Port), "out of range 1-65535")
	}
	name, err := pick("protocol", s.Protocol, lb.TCP, lb.Protocols)
	if err != nil {
		return lb.ServiceKey{}, err
	}
	p, _ := lb.Protocols.Lookup(name)
	return lb.ServiceKey{VIP: vip, Port: uint16(s.Port), Proto: p}, nil
}

// Addr returns the backend's address; b need not be normalised. A named
// backend (Name set) has none: an error.
func (b Backend) Addr() (netip.Addr, error) {
	if b.Name != "" && b.Address == "" {
		return netip.Addr{}, fieldErr("name", quote(b.Name), "a backend named by DNS has no address of its own")
	}
	return parseAddr("address", b.Address)
}

// ExpectsStatus reports whether code is one of h.ExpectStatus (the
// default if empty); false if the list is invalid.
func (h HTTPCheck) ExpectsStatus(code int) bool {
	for _, r := range h.StatusRanges() {
		if r[0] <= code && code <= r[1] {
			return true
		}
	}
	return false
}

// StatusRanges returns h.ExpectStatus (the default if empty) as
// inclusive ranges; nil if the list is invalid.
func (h HTTPCheck) StatusRanges() [][2]int {
	ranges, _, err := parseStatusList(cmp.Or(h.ExpectStatus, DefaultExpectStatus))
	if err != nil {
		return nil
	}
	return ranges
}

// Clone returns a deep copy: no pointer or slice is shared with s.
func (s Service) Clone() Service {
	s.Backends = slices.Clone(s.Backends)
	for i := range s.Backends {
		if w := s.Backends[i].Weight; w != nil {
			v := *w
			s.Backends[i].Weight = &v
		}
	}
	if s.Health != nil {
		h := s.Health.Clone()
		s.Health = &h
	}
	return s
}

// Clone returns a deep copy of the health check.
func (h Health) Clone() Health {
	if h.HTTP != nil {
		c := *h.HTTP
		h.HTTP = &c
	}
	return h
}

func (s *Service) normalize() error {
	k, err := s.Key()
	if err != nil {
		return err
	}
	s.VIP = k.VIP.String()
	s.Protocol = k.Proto.String()
	s.Scheduler, err = pick("scheduler", s.Scheduler, lb.DefaultScheduler, lb.Schedulers)
	if err != nil {
		return err
	}
	switch p := s.Persistence; {
	case lb.Persistence.Check(time.Duration(p)) != nil:
		return fieldErr("persistence", p.String(), "out of range 0 (off) to "+lb.FormatDuration(lb.Persistence.Max))
	case time.Duration(p)%time.Second != 0:
		return fieldErr("persistence", p.String(), "must be whole seconds (e.g. 300s)")
	}
	if s.Scheduler == lb.LeastConn.String() {
		active := 0
		for _, b := range s.Backends {
			if b.Weight == nil || *b.Weight > 0 {
				active++
			}
		}
		if active > lb.MaxLeastConnBackends {
			return fieldErr("backends", "", fmt.Sprintf("%d backends with weight above 0; least-conn scans at most %d", active, lb.MaxLeastConnBackends))
		}
	}
	s.Forward, err = pick("forward", s.Forward, lb.DefaultForward, lb.ForwardModes)
	if err != nil {
		return err
	}
	if s.Health != nil {
		if err := s.Health.normalize(); err != nil {
			return under("health", err)
		}
		if s.Health.Via == string(lb.CheckViaTunnel) && s.Forward == lb.DSRL2.String() {
			return fieldErr("health.via", quote(s.Health.Via), "needs forward ipip or gue (forward is "+s.Forward+")")
		}
	}
	if s.Backends == nil {
		s.Backends = []Backend{}
	}
	seen := make(map[netip.Addr]int, len(s.Backends))
	names := map[NameKey]int{}
	for i := range s.Backends {
		at := fmt.Sprintf("backends[%d]", i)
		if s.Backends[i].Name != "" {
			if err := s.Backends[i].normalizeNamed(k); err != nil {
				return under(at, err)
			}
			nk := s.Backends[i].NameKey()
			if j, dup := names[nk]; dup {
				return fieldErr(at+".name", quote(nk.Name), fmt.Sprintf("duplicate backend name (also backends[%d])", j))
			}
			names[nk] = i
			continue
		}
		given := s.Backends[i].Address
		a, err := s.Backends[i].normalize()
		if err != nil {
			return under(at, err)
		}
		if err := k.CheckBackend(a); err != nil {
			return fieldErr(at+".address", quote(given), err.Error())
		}
		if j, dup := seen[a]; dup {
			return fieldErr(at, "", fmt.Sprintf("duplicate backend %s (also backends[%d])", a, j))
		}
		seen[a] = i
	}
	return nil
}

func (b *Backend) normalize() (netip.Addr, error) {
	if b.Family != "" {
		return netip.Addr{}, fieldErr("family", quote(b.Family), "only with name (a backend named by DNS)")
	}
	a, err := b.Addr()
	if err != nil {
		return a, err
	}
	b.Address = a.String()
	if b.Weight == nil {
		w := uint32(1)
		b.Weight = &w
	}
	if err := lb.Weight.Check(*b.Weight); err != nil {
		return a, fieldErr("weight", strconv.FormatUint(uint64(*b.Weight), 10), err.Error())
	}
	return a, nil
}

func (h *Health) normalize() error {
	def := lb.CheckTCP
	if h.HTTP != nil {
		def = lb.CheckHTTP
	}
	t, err := pick("type", h.Type, def, lb.CheckTypes)
	if err != nil {
		return err
	}
	h.Type = t

	h.Interval = Duration(lb.CheckInterval.Or(time.Duration(h.Interval)))
	if err := lb.CheckInterval.Check(time.Duration(h.Interval)); err != nil {
		return fieldErr("interval", h.Interval.String(), err.Error())
	}
	switch {
	case h.Timeout == 0:
		h.Timeout = DefaultCheckTimeout(h.Interval)
	case h.Timeout < 0:
		return fieldErr("timeout", h.Timeout.String(), "must be greater than 0")
	case h.Timeout >= h.Interval:
		return fieldErr("timeout", h.Timeout.String(), "must be less than interval "+h.Interval.String())
	}
	for _, f := range []struct {
		l lb.Limit[int]
		v *int
	}{{lb.CheckRise, &h.Rise}, {lb.CheckFall, &h.Fall}} {
		*f.v = f.l.Or(*f.v)
		if err := f.l.Check(*f.v); err != nil {
			return fieldErr(f.l.Name, strconv.Itoa(*f.v), err.Error())
		}
	}
	if h.Port < 0 || h.Port > 65535 {
		return fieldErr("port", strconv.Itoa(h.Port), "out of range 1-65535 (0: the service port)")
	}
	if h.Port != 0 && (t == string(lb.CheckICMP) || t == string(lb.CheckNone)) {
		return fieldErr("port", strconv.Itoa(h.Port), "not used by type "+t)
	}
	if h.Via != "" {
		v, err := pick("via", h.Via, lb.CheckViaBackend, lb.CheckVias)
		if err != nil {
			return err
		}
		h.Via = v
		if v == string(lb.CheckViaBackend) {
			h.Via = "" // the default, stored empty
		}
	}
	if h.Via != "" && t != string(lb.CheckTCP) && t != string(lb.CheckHTTP) {
		return fieldErr("via", quote(h.Via), "only tcp and http checks go through a tunnel (type is "+t+")")
	}
	if h.HTTP != nil && t != string(lb.CheckHTTP) {
		return fieldErr("http", "", "only allowed with type http (type is "+t+")")
	}
	if t == string(lb.CheckHTTP) {
		if h.HTTP == nil {
			h.HTTP = &HTTPCheck{}
		}
		if err := h.HTTP.normalize(); err != nil {
			return under("http", err)
		}
	}
	h.AllDown, err = pick("all_down", h.AllDown, lb.AllDownDrop, lb.AllDowns)
	return err
}

// DefaultCheckTimeout is the timeout of a check with this interval (0:
// the default interval) when none is given: lb.DefaultCheckTimeout or half
// the interval, whichever is less.
func DefaultCheckTimeout(interval Duration) Duration {
	if interval == 0 {
		interval = Duration(lb.CheckInterval.Default)
	}
	return min(Duration(lb.DefaultCheckTimeout), interval/2)
}

// Probes reports whether the check probes (a type other than none).
func (h *Health) Probes() bool { return h != nil && h.Type != string(lb.CheckNone) }

func (c *HTTPCheck) normalize() error {
	if c.Method == "" {
		c.Method = DefaultHTTPMethod
	}
	m := strings.ToUpper(c.Method)
	if len(m) > 32 || strings.ContainsFunc(m, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return fieldErr("method", quote(c.Method), "not an HTTP method (e.g. GET, HEAD, POST)")
	}
	c.Method = m

	if c.Path == "" {
		c.Path = DefaultHTTPPath
	}
	switch {
	case !strings.HasPrefix(c.Path, "/"):
		return fieldErr("path", quote(c.Path), `must start with "/"`)
	case strings.ContainsFunc(c.Path, badTextRune):
		return fieldErr("path", quote(c.Path), "must not contain spaces or control characters (escape them, e.g. %20)")
	}
	if _, err := url.ParseRequestURI(c.Path); err != nil {
		return fieldErr("path", quote(c.Path), "not a valid request path")
	}
	if c.Host != "" && (strings.ContainsFunc(c.Host, badTextRune) || strings.ContainsAny(c.Host, "/?#@")) {
		return fieldErr("host", quote(c.Host), "not a valid host name")
	}
	if c.InsecureSkipVerify && !c.HTTPS {
		return fieldErr("insecure_skip_verify", "true", "only with https: true")
	}
	if c.ExpectStatus == "" {
		c.ExpectStatus = DefaultExpectStatus
	}
	_, norm, err := parseStatusList(c.ExpectStatus)
	if err != nil {
		return fieldErr("expect_status", quote(c.ExpectStatus), err.Error())
	}
	c.ExpectStatus = norm
	return nil
}

// badTextRune reports spaces and control characters.
func badTextRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// parseStatusList parses "200,204,300-399" into inclusive ranges, and
// returns it without spaces.
func parseStatusList(s string) ([][2]int, string, error) {
	var ranges [][2]int
	var parts []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := a, error(nil)
		if isRange {
			b, errB = strconv.Atoi(strings.TrimSpace(hi))
		}
		if part == "" || errA != nil || errB != nil {
			return nil, "", fmt.Errorf("%q is not a status code or range (e.g. 200,204,300-399)", part)
		}
		for _, n := range []int{a, b} {
			if n < 100 || n > 599 {
				return nil, "", fmt.Errorf("%d: out of range 100-599", n)
			}
		}
		if a > b {
			return nil, "", fmt.Errorf("range %q is backwards", part)
		}
		ranges = append(ranges, [2]int{a, b})
		if isRange {
			parts = append(parts, strconv.Itoa(a)+"-"+strconv.Itoa(b))
		} else {
			parts = append(parts, strconv.Itoa(a))
		}
	}
	return ranges, strings.Join(parts, ","), nil
}

// parseAddr parses a unicast IP address for the field at path;
// IPv4-mapped IPv6 becomes IPv4.
func parseAddr(path, s string) (netip.Addr, error) {
	a, err := lb.ParseAddr(s)
	if err != nil {
		if s == "" {
			return a, fieldErr(path, "", err.Error())
		}
		return a, fieldErr(path, quote(s), err.Error())
	}
	return a, nil
}

// pick matches v case-insensitively against an enum's names and aliases
// and returns the canonical name; empty gives def's.
func pick[T comparable](path, v string, def T, e lb.Enum[T]) (string, error) {
	if v == "" {
		return e.Name(def, ""), nil
	}
	x, ok := e.Lookup(v)
	if !ok {
		return "", fieldErr(path, quote(v), e.Want())
	}
	return e.Name(x, ""), nil
}
