// Package health probes backends (tcp connect, http request, icmp echo, or
// none) and runs each through a rise/fall state machine, reporting every
// transition to its caller. It is pure Go and knows nothing of the data
// plane: the daemon turns transitions into map updates.
package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Type is the kind of probe.
type Type string

// The probe types.
const (
	TCP  Type = "tcp"  // a TCP connect succeeds
	HTTP Type = "http" // an HTTP request gets an expected status (and body)
	ICMP Type = "icmp" // an echo request gets its reply
	None Type = "none" // always up; never probes
)

// Config is one service's health check.
type Config struct {
	Type Type
	// Interval between the starts of two probes; each wait is shortened by
	// up to a tenth at random so checks do not synchronise.
	Interval time.Duration
	// Timeout bounds one probe; it must be below Interval.
	Timeout time.Duration
	// Rise consecutive successes bring a backend up, Fall consecutive
	// failures take it down.
	Rise, Fall int
	// HTTP is the request and expectation of an HTTP check.
	HTTP HTTPConfig
}

// HTTPConfig is the request an HTTP check sends and what it expects back.
type HTTPConfig struct {
	Method string // default GET
	Path   string // default "/"
	// Host is the Host header and TLS server name; empty: the address.
	Host               string
	HTTPS              bool
	InsecureSkipVerify bool
	// ExpectStatus lists inclusive ranges of good status codes; empty
	// means 200-399.
	ExpectStatus [][2]int
	// ExpectBody, if set, must occur in the first MaxBody bytes of the body.
	ExpectBody string
}

// MaxBody is how much of a response body an HTTP check reads.
const MaxBody = 1 << 20

// Validate checks the parameters a probe loop relies on.
func (c Config) Validate() error {
	switch c.Type {
	case TCP, HTTP, ICMP, None:
	default:
		return fmt.Errorf("type %q: want tcp, http, icmp or none", c.Type)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("interval %s: must be greater than 0", c.Interval)
	}
	if c.Timeout <= 0 || c.Timeout >= c.Interval {
		return fmt.Errorf("timeout %s: must be greater than 0 and less than interval %s", c.Timeout, c.Interval)
	}
	if c.Rise < 1 {
		return fmt.Errorf("rise %d: must be at least 1", c.Rise)
	}
	if c.Fall < 1 {
		return fmt.Errorf("fall %d: must be at least 1", c.Fall)
	}
	for _, r := range c.HTTP.ExpectStatus {
		if r[0] < 100 || r[1] > 599 || r[0] > r[1] {
			return fmt.Errorf("expect status %d-%d: want a range within 100-599", r[0], r[1])
		}
	}
	return nil
}

// expects reports whether code is a good status.
func (h HTTPConfig) expects(code int) bool {
	if len(h.ExpectStatus) == 0 {
		return 200 <= code && code <= 399
	}
	for _, r := range h.ExpectStatus {
		if r[0] <= code && code <= r[1] {
			return true
		}
	}
	return false
}

// Target is what one check probes: a backend's address and the port of
// tcp and http checks; or, with Via, a VIP's port on one backend, reached
// through that backend's tunnel.
type Target struct {
	Addr netip.Addr
	Port uint16
	// Via, when valid, is the backend whose tunnel carries the check to
	// Addr (a VIP): the service as clients reach it. Options.Tunnel dials
	// it; only tcp and http checks go through a tunnel.
	Via netip.Addr
	// Tunnel is how Via is reached (the service's forwarding mode), for
	// Options.Tunnel; opaque to this package.
	Tunnel string
}

func (t Target) String() string {
	s := t.Addr.String()
	if t.Port != 0 {
		s = netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	if t.Via.IsValid() {
		s += " via " + t.Via.String()
	}
	return s
}

// TunnelDialer opens a TCP connection to t.Addr:t.Port through backend
// t.Via's tunnel.
type TunnelDialer func(ctx context.Context, t Target) (net.Conn, error)
