package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

// TunnelRoute is where a health check's connection goes through a tunnel:
// the VIP's port on Backend, by ipip (GUEPort 0) or gue to GUEPort, with
// Source as the outer source.
type TunnelRoute struct {
	Backend netip.Addr
	VIP     netip.AddrPort
	GUEPort uint16
	Source  netip.Addr
}

// Tunnel carries health checks' TCP connections to a VIP on one backend
// through its encapsulation (xlbd: loader/probe on the interface).
type Tunnel interface {
	Dial(ctx context.Context, r TunnelRoute) (net.Conn, error)
	Close() error
}

// checkTunnel carries the checks of services with health.via tunnel to
// their VIP on each backend: the tunnel is opened by the first such check
// (open), and stays until Close.
type checkTunnel struct {
	open func() (Tunnel, error)

	mu     sync.Mutex
	encap  lb.Encap // the outer source and gue port, as the data plane has them
	t      Tunnel
	closed bool
}

// setEncap records the encapsulation settings the data plane was given.
func (c *checkTunnel) setEncap(e lb.Encap) {
	c.mu.Lock()
	c.encap = e
	c.mu.Unlock()
}

// dial is the checker's TunnelDialer.
func (c *checkTunnel) dial(ctx context.Context, t health.Target) (net.Conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("health check tunnel closed")
	}
	if c.t == nil {
		if c.open == nil {
			c.mu.Unlock()
			return nil, errors.New("no health check tunnel in this xlbd")
		}
		tun, err := c.open()
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.t = tun
	}
	tun, e := c.t, c.encap
	c.mu.Unlock()

	src, name := e.Source4, "source_v4"
	if t.Via.Is6() {
		src, name = e.Source6, "source_v6"
	}
	if !src.IsValid() {
		return nil, fmt.Errorf("no outer source for %s (set encap.%s)", t.Via, name)
	}
	r := TunnelRoute{Backend: t.Via, VIP: netip.AddrPortFrom(t.Addr, t.Port), Source: src.Addr()}
	switch t.Tunnel {
	case lb.IPIP.String():
	case lb.GUE.String():
		r.GUEPort = e.GUEPort
	default:
		return nil, fmt.Errorf("no tunnel of mode %q", t.Tunnel)
	}
	return tun.Dial(ctx, r)
}

// close unloads the tunnel, if it was loaded.
func (c *checkTunnel) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.t == nil {
		return nil
	}
	return c.t.Close()
}
