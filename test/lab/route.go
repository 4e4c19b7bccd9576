package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NextHops returns the gateways of the kernel's routes to exactly p in the
// main table of n: one for a plain route, one per path of a multipath
// (ECMP) route, sorted. No route gives an empty list and no error.
func (n *NS) NextHops(p netip.Prefix) ([]netip.Addr, error) {
	p = p.Masked()
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	filter := &netlink.Route{Dst: ipNet(p), Table: unix.RT_TABLE_MAIN}
	routes, err := n.nl.RouteListFiltered(fam, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("routes to %s in %s: %w", p, n.Name, err)
	}
	var hops []netip.Addr
	add := func(ip []byte) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			hops = append(hops, a.Unmap())
		}
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the filter matches a nil Dst to default routes only, but be sure
		}
		if len(r.MultiPath) == 0 {
			add(r.Gw)
		}
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops, nil
}

// AddRoute adds a static route to dst via gw to the main table of n, e.g.
// a VIP routed to one balancer node without a routing daemon. The route
// goes with the namespace.
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{Dst: ipNet(dst.Masked()), Gw: net.IP(gw.AsSlice())}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, n.Name, err)
	}
	return nil
}

// WaitNextHops polls NextHops every 10ms until the next hops of p are
// exactly want (in any order; empty want waits for the route to go) or ctx
// ends. It returns the last next hops seen and, if ctx ended first, an
// error saying so.
func (n *NS) WaitNextHops(ctx context.Context, p netip.Prefix, want []netip.Addr) ([]netip.Addr, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := n.NextHops(p)
		if err != nil {
			return got, err
		}
		if slices.Equal(got, want) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("route %s in %s: next hops %v, want %v: %w", p, n.Name, got, want, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
