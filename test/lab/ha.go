package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses of the HA topology (NewHA) beyond the segment's. All of them
// come from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48.
var (
	// RouterAddr4 is the router's IPv4 address on the segment: the
	// backends' and balancers' default gateway and BGP peer.
	RouterAddr4 = netip.MustParseAddr("198.18.0.1")
	// RouterAddr6 is the router's IPv6 address on the segment.
	RouterAddr6 = netip.MustParseAddr("2001:2::1")
	// ClientNet4 is the IPv4 subnet between the router and the client.
	ClientNet4 = netip.MustParsePrefix("198.19.0.0/24")
	// ClientNet6 is the IPv6 subnet between the router and the client.
	ClientNet6 = netip.MustParsePrefix("2001:2:1::/64")
	// RouterClientAddr4 is the router's IPv4 address on the client side:
	// the client's default gateway.
	RouterClientAddr4 = netip.MustParseAddr("198.19.0.1")
	// RouterClientAddr6 is the router's IPv6 address on the client side.
	RouterClientAddr6 = netip.MustParseAddr("2001:2:1::1")
	// HAClientAddr4 is the HA client's primary IPv4 address.
	HAClientAddr4 = netip.MustParseAddr("198.19.0.2")
	// HAClientAddr6 is the HA client's primary IPv6 address.
	HAClientAddr6 = netip.MustParseAddr("2001:2:1::2")

	firstHAExtra4 = netip.MustParseAddr("198.19.0.100")
	firstHAExtra6 = netip.MustParseAddr("2001:2:1::100")
)

// Defaults and limits of HAConfig.
const (
	// DefaultBalancers is the number of balancer nodes when
	// HAConfig.Balancers is 0.
	DefaultBalancers = 3
	// MaxBalancers is the largest allowed HAConfig.Balancers: their
	// addresses, 198.18.0.3 … 198.18.0.10, end where the backends' begin.
	MaxBalancers = 8
	// MaxRemoteBackends is the largest allowed HAConfig.RemoteBackends.
	MaxRemoteBackends = 8
	// MaxHAClientAddrs is the largest allowed HAConfig.ClientAddrs
	// (198.19.0.100 … 198.19.0.249).
	MaxHAClientAddrs = 150
	// RoleRouter names the router host and its namespace suffix.
	RoleRouter = "router"
	// RouterClientLink is the name of the router's client-facing
	// interface (its eth0 is on the segment).
	RouterClientLink = "eth1"
)

// HAConfig describes the topology NewHA builds. The zero value is a useful
// default: 3 balancer nodes, 3 backends, 8 extra client addresses, static
// neighbours, XDP_PASS on the balancers' bridge ports and the ECMP hash
// trap on the router.
type HAConfig struct {
	// Balancers is the number of balancer nodes lb1 … lbN: 0 means
	// DefaultBalancers. At least 1, at most MaxBalancers.
	Balancers int
	// Backends is the number of backend hosts: 0 means DefaultBackends, a
	// negative number means none. At most MaxBackends.
	Backends int
	// ClientAddrs is the number of extra client source addresses
	// (198.19.0.100+i, 2001:2:1::100+i): 0 means DefaultClientAddrs, a
	// negative number means none. At most MaxHAClientAddrs.
	ClientAddrs int
	// NoStaticNeigh skips the permanent neighbour entries, so hosts resolve
	// each other with ARP and NDP.
	NoStaticNeigh bool
	// PassOnAllPorts attaches the XDP_PASS program to every bridge port in
	// the segment namespace (the router's and the backends' too), not only
	// the balancers'.
	PassOnAllPorts bool
	// PassOn lists further hosts on the segment, by Host.Name ("router",
	// "be2", …), whose bridge ports get the XDP_PASS program.
	PassOn []string
	// PortXDP, as in Config: attached to the bridge ports instead of the
	// XDP_PASS program; the caller owns it.
	PortXDP *ebpf.Program
	// ClientLinkMTU, when set, is the MTU of the router's client-facing
	// interface (RouterClientLink) only; the client's own interface keeps
	// 1500. The router then cuts the path: packets towards the client
	// above it get an ICMP fragmentation needed or packet too big back,
	// as a real link with a small MTU (a tunnel, a PPPoE line) does. At
	// least 1280 (IPv6's minimum) and at most 1500; 0 leaves 1500.
	ClientLinkMTU int
	// RemoteBackends is the number of backends behind the router, each in
	// a subnet of its own (rbe1 on 198.19.10.0/24 and 2001:2:10::/64,
	// rbe2 on 198.19.11.0/24 and 2001:2:11::/64, …: the host .2, the
	// router .1), holding the VIPs on lo like the segment's backends: for
	// encapsulated forwarding (ipip, gue), which reaches them only
	// through the router. At most MaxRemoteBackends.
	RemoteBackends int
	// NoHashTrap leaves out the program on the router's client-facing
	// ingress that makes the router hash the real 5-tuple (see
	// HATopology), to show what happens without it.
	NoHashTrap bool
	// LinkUpTimeout bounds the wait for all links to come up (in NewHA
	// and SetBalancerLink); 0 means 10s.
	LinkUpTimeout time.Duration

	// hook, when set, is called before every build step of NewHA; an
	// error makes NewHA fail at that point (tests inject failures).
	hook func(t *HATopology, step string) error
}

func (c HAConfig) normalize() (HAConfig, Config, error) {
	switch {
	case c.Balancers == 0:
		c.Balancers = DefaultBalancers
	case c.Balancers < 0 || c.Balancers > MaxBalancers:
		return c, Config{}, fmt.Errorf("lab: %d balancers, want 1 to %d", c.Balancers, MaxBalancers)
	}
	switch {
	case c.ClientAddrs == 0:
		c.ClientAddrs = DefaultClientAddrs
	case c.ClientAddrs < 0:
		c.ClientAddrs = 0
	case c.ClientAddrs > MaxHAClientAddrs:
		return c, Config{}, fmt.Errorf("lab: %d client addresses, at most %d", c.ClientAddrs, MaxHAClientAddrs)
	}
	if c.RemoteBackends < 0 || c.RemoteBackends > MaxRemoteBackends {
		return c, Config{}, fmt.Errorf("lab: %d remote backends, want 0 to %d", c.RemoteBackends, MaxRemoteBackends)
	}
	if c.ClientLinkMTU != 0 && (c.ClientLinkMTU < 1280 || c.ClientLinkMTU > 1500) {
		return c, Config{}, fmt.Errorf("lab: client link MTU %d, want 1280 to 1500", c.ClientLinkMTU)
	}
	base, err := Config{
		Backends:       c.Backends,
		ClientAddrs:    -1, // the HA client is not the segment's
		NoStaticNeigh:  c.NoStaticNeigh,
		PassOnAllPorts: c.PassOnAllPorts,
		PassOn:         c.PassOn,
		PortXDP:        c.PortXDP,
		LinkUpTimeout:  c.LinkUpTimeout,
	}.normalize()
	if err != nil {
		return c, Config{}, err
	}
	c.Backends = base.Backends
	c.LinkUpTimeout = base.LinkUpTimeout
	return c, base, nil
}

// Router is the HA topology's router: a host on the segment (its embedded
// Host: eth0, RouterAddr4, RouterAddr6) that forwards between the segment
// and the client on its second interface.
type Router struct {
	*Host
	// ClientLink is the name of the client-facing interface,
	// RouterClientLink.
	ClientLink string
	// ClientIfindex is ClientLink's interface index in the router's
	// namespace.
	ClientIfindex int
	// ClientMAC is ClientLink's hardware address.
	ClientMAC net.HardwareAddr
	// ClientAddr4 is the router's IPv4 address on ClientLink.
	ClientAddr4 netip.Addr
	// ClientAddr6 is the router's IPv6 address on ClientLink.
	ClientAddr6 netip.Addr

	side *Host // ClientLink seen as a host, for neighbour entries
}

// HATopology is several balancer nodes sharing one VIP behind a BGP/ECMP
// router, built by NewHA. Close removes it.
//
//	client ── router ══ segment (bridge) ══ lb1 … lbN, be1 … beM
//
// Under the topology's random prefix it creates:
//
//   - PREFIX-seg: the segment namespace with the bridge PREFIX-br, as in
//     New.
//   - PREFIX-router: the router. Its eth0 is on the segment (RouterAddr4,
//     RouterAddr6); its eth1 faces the client (RouterClientAddr4 in
//     ClientNet4, RouterClientAddr6 in ClientNet6). It forwards IPv4 and
//     IPv6, hashes multipath routes on the 5-tuple
//     (fib_multipath_hash_policy=1) and has rp_filter off. Routes to the
//     VIPs are for a routing daemon to install (StartBird).
//   - PREFIX-client: the client, HAClientAddr4 and HAClientAddr6 plus
//     extra source addresses, with default routes via the router.
//   - PREFIX-lb1 … PREFIX-lbN: the balancer nodes, 198.18.0.3+i and
//     2001:2::3+i, with default routes via the router. Their bridge ports
//     carry the XDP_PASS program, because a balancer sends frames to the
//     backends with XDP_TX. They hold no VIP: the data plane (or a test,
//     with Host.AddLoAddrs) decides.
//   - PREFIX-be1 … PREFIX-beM: the backends, as in New, with default
//     routes via the router, so direct server return replies reach the
//     client through it.
//
// The ECMP hash trap: a socket's flow hash travels with its packets across
// veth into the router's namespace, and the router's multipath choice then
// uses that hash instead of the 5-tuple. A TCP retransmission re-rolls the
// hash, so a black-holed next hop looks healed after about a second. A TCX
// program on the router's client-facing ingress (eth1) calls
// bpf_set_hash_invalid, so the router hashes the real 5-tuple.
type HATopology struct {
	// Prefix is the random name prefix of every namespace and bridge port.
	Prefix string
	// Segment is the namespace holding the bridge and the hosts' peers.
	Segment *NS
	// Bridge is the name of the bridge in Segment.
	Bridge string
	// Router connects the client to the segment.
	Router *Router
	// Client is the traffic source, behind the router. Its PeerName is
	// the router's RouterClientLink.
	Client *Host
	// Balancers are the balancer nodes lb1 … lbN.
	Balancers []*Host
	// Backends are the real servers be1 … beM.
	Backends []*Host
	// RemoteBackends are the real servers behind the router, rbe1 …, each
	// in its own subnet (HAConfig.RemoteBackends).
	RemoteBackends []*Host
	// remoteSides are the router's ends of their links.
	remoteSides []*Host
	// VIP4 is the IPv4 virtual IP (held on the backends' lo).
	VIP4 netip.Addr
	// VIP6 is the IPv6 virtual IP (held on the backends' lo).
	VIP6 netip.Addr

	cfg      HAConfig
	base     *Topology     // owns namespaces, links, servers, connections
	trapProg *ebpf.Program // the hash trap
	trapLink link.Link
	mu       sync.Mutex // guards closed, birds and, after NewHA, trapLink
	closed   bool
	birds    []*Bird
}

// NewHA builds an HA topology as described by cfg. If any step fails,
// everything built so far is removed before NewHA returns the error.
func NewHA(cfg HAConfig) (*HATopology, error) {
	cfg, bcfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	base, err := newTopology(bcfg)
	if err != nil {
		return nil, err
	}
	t := &HATopology{
		Prefix: base.Prefix,
		Bridge: base.Bridge,
		VIP4:   base.VIP4,
		VIP6:   base.VIP6,
		cfg:    cfg,
		base:   base,
	}
	base.cfg.hook = func(_ *Topology, step string) error { return t.step(step) }
	if err := t.build(); err != nil {
		err = fmt.Errorf("lab %s: %w", t.Prefix, err)
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failure: %w", cerr))
		}
		return nil, err
	}
	return t, nil
}

// NewHAT builds an HA topology for a test: it calls RequirePrivileged,
// then NewHA, and registers Close with tb.Cleanup (a Close error fails the
// test). A build error is fatal.
func NewHAT(tb testing.TB, cfg HAConfig) *HATopology {
	tb.Helper()
	RequirePrivileged(tb)
	t, err := NewHA(cfg)
	if err != nil {
		tb.Fatalf("build HA lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("close HA lab %s: %v", t.Prefix, err)
		}
	})
	return t
}

func (t *HATopology) step(name string) error {
	if t.cfg.hook != nil {
		return t.cfg.hook(t, name)
	}
	return nil
}

// Hosts returns the router, the client, the balancers and the backends, in
// that order.
func (t *HATopology) Hosts() []*Host {
	var hs []*Host
	if t.Router != nil {
		hs = append(hs, t.Router.Host)
	}
	if t.Client != nil {
		hs = append(hs, t.Client)
	}
	hs = append(hs, t.Balancers...)
	hs = append(hs, t.Backends...)
	return append(hs, t.RemoteBackends...)
}

// Host returns the host with the given Name ("router", "client", "lb2",
// "be1", …), or nil.
func (t *HATopology) Host(name string) *Host {
	for _, h := range t.Hosts() {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func (t *HATopology) build() error {
	b := t.base
	br, err := b.buildSegment()
	t.Segment = b.Segment
	if err != nil {
		return err
	}

	if err := t.addRouter(br); err != nil {
		return err
	}

	// The client hangs off the router's second interface.
	r := t.Router
	c, err := b.addHostOn(RoleClient, netip.PrefixFrom(HAClientAddr4, ClientNet4.Bits()),
		netip.PrefixFrom(HAClientAddr6, ClientNet6.Bits()), r.NS, RouterClientLink, 0)
	if err != nil {
		return err
	}
	b.Client, t.Client = c, c
	for i := range t.cfg.ClientAddrs {
		c.Extra4 = append(c.Extra4, addN(firstHAExtra4, i))
		c.Extra6 = append(c.Extra6, addN(firstHAExtra6, i))
	}
	if err := c.addAddrs(c.Extra4, c.Extra6, 32, 128); err != nil {
		return err
	}
	if err := t.addRouterClientSide(); err != nil {
		return err
	}
	if err := t.addRemoteBackends(); err != nil {
		return err
	}

	var names []string
	for i := range t.cfg.Balancers {
		name := fmt.Sprintf("lb%d", i+1)
		h, err := b.addHost(name, addN(BalancerAddr4, i), addN(BalancerAddr6, i), br)
		if err != nil {
			return err
		}
		b.others = append(b.others, h)
		t.Balancers = append(t.Balancers, h)
		names = append(names, name)
	}

	err = b.addBackends(br)
	t.Backends = b.Backends
	if err != nil {
		return err
	}

	if err := t.step("xdp"); err != nil {
		return err
	}
	if err := b.attachPass(names); err != nil {
		return err
	}

	if !t.cfg.NoHashTrap {
		if err := t.step("hashtrap"); err != nil {
			return err
		}
		if err := t.attachHashTrap(); err != nil {
			return err
		}
	}

	if err := t.step("wait"); err != nil {
		return err
	}
	if err := b.waitUp(t.cfg.LinkUpTimeout); err != nil {
		return err
	}

	if err := t.step("routes"); err != nil {
		return err
	}
	if err := c.addDefaultRoutes(r.ClientAddr4, r.ClientAddr6); err != nil {
		return err
	}
	for _, h := range append(slices.Clone(t.Balancers), t.Backends...) {
		if err := h.addDefaultRoutes(r.Addr4, r.Addr6); err != nil {
			return err
		}
	}
	for i, h := range t.RemoteBackends {
		if err := h.addDefaultRoutes(t.remoteSides[i].Addr4, t.remoteSides[i].Addr6); err != nil {
			return err
		}
	}

	if t.cfg.NoStaticNeigh {
		return nil
	}
	if err := t.step("neigh"); err != nil {
		return err
	}
	return t.addNeighbours()
}

// addRouter adds the router to the segment and makes it forward.
func (t *HATopology) addRouter(bridgeIndex int) error {
	b := t.base
	h, err := b.addHost(RoleRouter, RouterAddr4, RouterAddr6, bridgeIndex)
	if err != nil {
		return err
	}
	b.others = append(b.others, h)
	t.Router = &Router{
		Host:        h,
		ClientLink:  RouterClientLink,
		ClientAddr4: RouterClientAddr4,
		ClientAddr6: RouterClientAddr6,
	}
	err = h.NS.run(func() error {
		for _, kv := range [][2]string{
			{"net.ipv4.ip_forward", "1"},
			{"net.ipv6.conf.all.forwarding", "1"},
			{"net.ipv4.fib_multipath_hash_policy", "1"},
			{"net.ipv6.fib_multipath_hash_policy", "1"},
			// Direct server return: the replies come from the VIP,
			// which is routed towards the segment anyway, but a lab
			// should not depend on reverse path filtering.
			{"net.ipv4.conf.all.rp_filter", "0"},
			{"net.ipv4.conf.default.rp_filter", "0"},
			{"net.ipv4.conf." + LinkName + ".rp_filter", "0"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", RoleRouter, err)
	}
	return nil
}

// addRouterClientSide configures the router's client-facing interface,
// created (and brought up) with the client.
func (t *HATopology) addRouterClientSide() error {
	r := t.Router
	eth, err := r.NS.nl.LinkByName(r.ClientLink)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", r.Name, r.ClientLink, err)
	}
	r.ClientIfindex = eth.Attrs().Index
	r.ClientMAC = slices.Clone(eth.Attrs().HardwareAddr)
	if mtu := t.cfg.ClientLinkMTU; mtu != 0 {
		if err := r.NS.nl.LinkSetMTU(eth, mtu); err != nil {
			return fmt.Errorf("%s: %s mtu %d: %w", r.Name, r.ClientLink, mtu, err)
		}
	}
	r.side = &Host{
		Name:    r.Name,
		NS:      r.NS,
		Link:    r.ClientLink,
		Ifindex: r.ClientIfindex,
		MAC:     r.ClientMAC,
		Addr4:   r.ClientAddr4,
		Addr6:   r.ClientAddr6,
		topo:    t.base,
	}
	err = r.NS.run(func() error {
		if err := writeSysctl("net.ipv4.conf."+r.ClientLink+".rp_filter", "0"); err != nil {
			return err
		}
		return disableTxChecksum(r.ClientLink)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", r.Name, err)
	}
	return r.side.addAddrs([]netip.Addr{r.ClientAddr4}, []netip.Addr{r.ClientAddr6}, ClientNet4.Bits(), ClientNet6.Bits())
}

// addDefaultRoutes adds IPv4 and IPv6 default routes via gw4 and gw6 on
// eth0.
func (h *Host) addDefaultRoutes(gw4, gw6 netip.Addr) error {
	for _, gw := range []netip.Addr{gw4, gw6} {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		route := &netlink.Route{LinkIndex: h.Ifindex, Dst: ipNet(dst), Gw: net.IP(gw.AsSlice())}
		if err := h.NS.nl.RouteAdd(route); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", h.Name, gw, err)
		}
	}
	return nil
}

// addNeighbours installs permanent neighbour entries: client ↔ router,
// router ↔ balancers and backends, balancers ↔ backends.
func (t *HATopology) addNeighbours() error {
	r, c := t.Router, t.Client
	if err := c.addNeigh(r.side); err != nil {
		return err
	}
	if err := r.side.addNeigh(c); err != nil {
		return err
	}
	for _, h := range append(slices.Clone(t.Balancers), t.Backends...) {
		if err := r.addNeigh(h); err != nil {
			return err
		}
		if err := h.addNeigh(r.Host); err != nil {
			return err
		}
	}
	for _, lb := range t.Balancers {
		for _, be := range t.Backends {
			if err := lb.addNeigh(be); err != nil {
				return err
			}
			if err := be.addNeigh(lb); err != nil {
				return err
			}
		}
	}
	for i, h := range t.RemoteBackends {
		if err := h.addNeigh(t.remoteSides[i]); err != nil {
			return err
		}
		if err := t.remoteSides[i].addNeigh(h); err != nil {
			return err
		}
	}
	return nil
}

// RemoteNets returns remote backend i's subnets (0-based).
func RemoteNets(i int) (netip.Prefix, netip.Prefix) {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(10 + i), 0}), 24),
		netip.MustParsePrefix(fmt.Sprintf("2001:2:%x::/64", 0x10+i))
}

// addRemoteBackends adds the backends behind the router, each on a link
// of its own from the router (named like the host), in its own subnet.
func (t *HATopology) addRemoteBackends() error {
	r := t.Router
	for i := range t.cfg.RemoteBackends {
		name := fmt.Sprintf("rbe%d", i+1)
		n4, n6 := RemoteNets(i)
		h, err := t.base.addHostOn(name, netip.PrefixFrom(n4.Addr().Next().Next(), n4.Bits()),
			netip.PrefixFrom(n6.Addr().Next().Next(), n6.Bits()), r.NS, name, 0)
		if err != nil {
			return err
		}
		t.RemoteBackends = append(t.RemoteBackends, h)
		if err := h.makeRealServer(t.VIP4, t.VIP6); err != nil {
			return err
		}
		eth, err := r.NS.nl.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s: find %s: %w", r.Name, name, err)
		}
		side := &Host{Name: r.Name, NS: r.NS, Link: name, Ifindex: eth.Attrs().Index, MAC: slices.Clone(eth.Attrs().HardwareAddr),
			Addr4: n4.Addr().Next(), Addr6: n6.Addr().Next(), topo: t.base}
		t.remoteSides = append(t.remoteSides, side)
		err = r.NS.run(func() error {
			if err := writeSysctl("net.ipv4.conf."+name+".rp_filter", "0"); err != nil {
				return err
			}
			return disableTxChecksum(name)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		if err := side.addAddrs([]netip.Addr{side.Addr4}, []netip.Addr{side.Addr6}, n4.Bits(), n6.Bits()); err != nil {
			return err
		}
	}
	return nil
}

// AddPassXDP attaches the lab's XDP_PASS program (or HAConfig.PortXDP) to
// the bridge port peerName in the segment namespace (a Host.PeerName), as
// Topology.AddPassXDP does.
func (t *HATopology) AddPassXDP(peerName string) error {
	return t.base.AddPassXDP(peerName)
}

// SetBalancerLink takes the bridge port of balancer node i (0-based index
// into Balancers) down or brings it back up: the node's cable is pulled
// or plugged in again. The node sees its carrier go and keeps its
// addresses; nothing is said to the router, so a BGP session with the node
// ends only when its hold timer expires. Bringing the link up waits until
// it is operational again (HAConfig.LinkUpTimeout).
func (t *HATopology) SetBalancerLink(i int, up bool) error {
	if i < 0 || i >= len(t.Balancers) {
		return fmt.Errorf("lab: no balancer %d (have %d)", i, len(t.Balancers))
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	h := t.Balancers[i]
	port, err := t.Segment.nl.LinkByName(h.PeerName)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", h.Name, h.PeerName, err)
	}
	if !up {
		if err := t.Segment.nl.LinkSetDown(port); err != nil {
			return fmt.Errorf("%s: %s down: %w", h.Name, h.PeerName, err)
		}
		return nil
	}
	if err := t.Segment.nl.LinkSetUp(port); err != nil {
		return fmt.Errorf("%s: %s up: %w", h.Name, h.PeerName, err)
	}
	return h.waitUp(time.Now().Add(t.cfg.LinkUpTimeout), t.cfg.LinkUpTimeout)
}

// AddLoAddrs adds addresses (as /32 or /128, IPv6 with nodad) to h's lo,
// e.g. a VIP on a balancer node that answers for it itself. Close removes
// them with the namespace.
func (h *Host) AddLoAddrs(addrs ...netip.Addr) error {
	lo, err := h.NS.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: find lo: %w", h.Name, err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.NS.nl.AddrAdd(lo, addr); err != nil {
			return fmt.Errorf("%s: add %s to lo: %w", h.Name, a, err)
		}
	}
	return nil
}

// Close removes everything the topology created: it stops the BIRD
// daemons, detaches the hash trap, then does what Topology.Close does
// (servers, connections, commands, XDP programs, veth pairs, the bridge and
// the namespaces). It is idempotent and keeps going after errors, returning
// them all.
func (t *HATopology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	birds := t.birds
	t.birds = nil
	trapLink := t.trapLink
	t.trapLink = nil
	t.mu.Unlock()

	var errs []error
	for _, b := range birds {
		if err := b.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if trapLink != nil {
		if err := trapLink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach hash trap: %w", err))
		}
	}
	if t.trapProg != nil {
		t.trapProg.Close()
	}
	if err := t.base.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
