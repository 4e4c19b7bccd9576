package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses of the segment. All of them come from the benchmarking ranges
// 198.18.0.0/15 and 2001:2::/48.
var (
	// Subnet4 is the segment's IPv4 subnet.
	Subnet4 = netip.MustParsePrefix("198.18.0.0/24")
	// Subnet6 is the segment's IPv6 subnet.
	Subnet6 = netip.MustParsePrefix("2001:2::/64")
	// VIP4 is the IPv4 virtual IP, held by every backend on lo.
	VIP4 = netip.MustParseAddr("198.18.1.1")
	// VIP6 is the IPv6 virtual IP, held by every backend on lo.
	VIP6 = netip.MustParseAddr("2001:2:0:1::1")
	// ClientAddr4 is the client's primary IPv4 address.
	ClientAddr4 = netip.MustParseAddr("198.18.0.2")
	// ClientAddr6 is the client's primary IPv6 address.
	ClientAddr6 = netip.MustParseAddr("2001:2::2")
	// BalancerAddr4 is the balancer's IPv4 address.
	BalancerAddr4 = netip.MustParseAddr("198.18.0.3")
	// BalancerAddr6 is the balancer's IPv6 address.
	BalancerAddr6 = netip.MustParseAddr("2001:2::3")

	firstBackend4 = netip.MustParseAddr("198.18.0.11")
	firstBackend6 = netip.MustParseAddr("2001:2::11")
	firstExtra4   = netip.MustParseAddr("198.18.0.200")
	firstExtra6   = netip.MustParseAddr("2001:2::200")
)

// Defaults and limits of Config.
const (
	// DefaultBackends is the number of backends when Config.Backends is 0.
	DefaultBackends = 3
	// MaxBackends is the largest allowed Config.Backends.
	MaxBackends = 100
	// DefaultClientAddrs is the number of extra client source addresses
	// when Config.ClientAddrs is 0.
	DefaultClientAddrs = 8
	// MaxClientAddrs is the largest allowed Config.ClientAddrs.
	MaxClientAddrs = 50
	// LinkName is the name of every host's interface on the segment.
	LinkName = "eth0"
)

// Role names of the fixed hosts; backends are "be1" … "beN".
const (
	// RoleClient names the client host and its namespace suffix.
	RoleClient = "client"
	// RoleBalancer names the balancer host and its namespace suffix.
	RoleBalancer = "lb"
	// RoleSegment is the namespace suffix of the segment (bridge).
	RoleSegment = "seg"
)

// Config describes the topology New builds. The zero value is a useful
// default: 3 backends, 8 extra client addresses, static neighbours, and an
// XDP_PASS program on the balancer's bridge port only.
type Config struct {
	// Backends is the number of backend hosts: 0 means DefaultBackends, a
	// negative number means none. At most MaxBackends.
	Backends int
	// ClientAddrs is the number of extra client source addresses
	// (198.18.0.200+i, 2001:2::200+i): 0 means DefaultClientAddrs, a
	// negative number means none. At most MaxClientAddrs.
	ClientAddrs int
	// NoStaticNeigh skips the permanent neighbour entries, so hosts resolve
	// each other with ARP and NDP.
	NoStaticNeigh bool
	// PassOnAllPorts attaches the XDP_PASS program to every bridge port in
	// the segment namespace, not only the balancer's. Needed when any host
	// other than the balancer sends frames with XDP_TX or XDP_REDIRECT.
	PassOnAllPorts bool
	// PassOn lists further hosts, by Host.Name ("client", "be2", …), whose
	// bridge ports get the XDP_PASS program.
	PassOn []string
	// PortXDP, when set, is attached to the bridge ports (the balancer's,
	// PassOn's, PassOnAllPorts') instead of the XDP_PASS program, e.g. an
	// XDP switch for benchmarks. It must return XDP_PASS for frames it
	// does not handle. The caller owns it (Close does not close it) and
	// must load it with the XDP attach type.
	PortXDP *ebpf.Program
	// LinkUpTimeout bounds the wait for all links to come up; 0 means 10s.
	LinkUpTimeout time.Duration

	// hook, when set, is called before every build step of New; an error
	// makes New fail at that point (tests inject partial failures).
	hook func(t *Topology, step string) error
}

// Host is one machine on the segment: a namespace with an eth0 whose peer
// is a port of the segment bridge.
type Host struct {
	// Name is the host's role: "client", "lb", "be1" … "beN".
	Name string
	// NS is the host's network namespace.
	NS *NS
	// Link is the name of the host's interface on the segment, "eth0".
	Link string
	// Ifindex is Link's interface index inside NS.
	Ifindex int
	// MAC is Link's hardware address.
	MAC net.HardwareAddr
	// Addr4 is the host's primary IPv4 address on Link (in Subnet4).
	Addr4 netip.Addr
	// Addr6 is the host's primary IPv6 address on Link (in Subnet6).
	Addr6 netip.Addr
	// Extra4 are further IPv4 source addresses (client only).
	Extra4 []netip.Addr
	// Extra6 are further IPv6 source addresses (client only).
	Extra6 []netip.Addr
	// PeerName is the name of the bridge port in the segment namespace
	// that Link is connected to, e.g. "xlbab12c-lb". The client of an
	// HATopology is not on the segment: its PeerName is the router's
	// client-facing interface, in the router's namespace.
	PeerName string
	// PeerIfindex is PeerName's interface index in its namespace.
	PeerIfindex int

	topo   *Topology
	peerNS *NS // the namespace holding PeerName
}

// Topology is a built edge segment. Close removes it.
type Topology struct {
	// Prefix is the random name prefix of every namespace and bridge port,
	// e.g. "xlbab12c".
	Prefix string
	// Segment is the namespace holding the bridge and the hosts' peers.
	Segment *NS
	// Bridge is the name of the bridge in Segment.
	Bridge string
	// Client is the traffic source.
	Client *Host
	// Balancer is the host that runs the XDP balancer.
	Balancer *Host
	// Backends are the real servers, be1 … beN.
	Backends []*Host
	// VIP4 is the IPv4 virtual IP (held on the backends' lo).
	VIP4 netip.Addr
	// VIP6 is the IPv6 virtual IP (held on the backends' lo).
	VIP6 netip.Addr

	cfg        Config
	namespaces []*NS         // every namespace created, in creation order
	peers      []nsLink      // host veths' far ends (bridge ports, mostly)
	others     []*Host       // further hosts, listed after the backends
	passProg   *ebpf.Program // XDP_PASS program for bridge ports
	ownPass    bool          // passProg was loaded by the lab
	passLinks  map[string]link.Link
	mu         sync.Mutex // guards everything below and passLinks
	closed     bool
	servers    map[stopper]struct{} // running Server and HTTPServer values
	conns      map[*trackedConn]struct{}
}

// Hosts returns the client, the balancer and the backends, in that order.
func (t *Topology) Hosts() []*Host {
	var hs []*Host
	for _, h := range []*Host{t.Client, t.Balancer} {
		if h != nil {
			hs = append(hs, h)
		}
	}
	hs = append(hs, t.Backends...)
	return append(hs, t.others...)
}

// nsLink names an interface in a namespace.
type nsLink struct {
	ns   *NS
	name string
}

// delete deletes the interface; one that is gone already is no error.
func (l nsLink) delete() error {
	if l.ns == nil || l.ns.nl == nil {
		return nil
	}
	dev, err := l.ns.nl.LinkByName(l.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("find %s in %s: %w", l.name, l.ns.Name, err)
		}
		return nil
	}
	if err := l.ns.nl.LinkDel(dev); err != nil {
		return fmt.Errorf("delete %s in %s: %w", l.name, l.ns.Name, err)
	}
	return nil
}

// Host returns the host with the given Name, or nil.
func (t *Topology) Host(name string) *Host {
	for _, h := range t.Hosts() {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func (c Config) normalize() (Config, error) {
	switch {
	case c.Backends == 0:
		c.Backends = DefaultBackends
	case c.Backends < 0:
		c.Backends = 0
	case c.Backends > MaxBackends:
		return c, fmt.Errorf("lab: %d backends, at most %d", c.Backends, MaxBackends)
	}
	switch {
	case c.ClientAddrs == 0:
		c.ClientAddrs = DefaultClientAddrs
	case c.ClientAddrs < 0:
		c.ClientAddrs = 0
	case c.ClientAddrs > MaxClientAddrs:
		return c, fmt.Errorf("lab: %d client addresses, at most %d", c.ClientAddrs, MaxClientAddrs)
	}
	if c.LinkUpTimeout <= 0 {
		c.LinkUpTimeout = 10 * time.Second
	}
	return c, nil
}

// randomPrefix returns "xlb" followed by 5 random hex digits whose segment
// namespace does not exist yet.
func randomPrefix() (string, error) {
	for range 16 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := "xlb" + hex.EncodeToString(b[:])[:5]
		if _, err := os.Lstat(filepath.Join(NetnsDir, p+"-"+RoleSegment)); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", errors.New("lab: no free name prefix")
}

// New builds a topology as described by cfg. If any step fails, everything
// built so far is removed before New returns the error.
func New(cfg Config) (*Topology, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	t, err := newTopology(cfg)
	if err != nil {
		return nil, err
	}
	if err := t.build(); err != nil {
		err = fmt.Errorf("lab %s: %w", t.Prefix, err)
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failure: %w", cerr))
		}
		return nil, err
	}
	return t, nil
}

// newTopology returns an empty topology with a fresh random prefix; cfg
// must be normalized.
func newTopology(cfg Config) (*Topology, error) {
	prefix, err := randomPrefix()
	if err != nil {
		return nil, err
	}
	return &Topology{
		Prefix:    prefix,
		Bridge:    prefix + "-br",
		VIP4:      VIP4,
		VIP6:      VIP6,
		cfg:       cfg,
		passLinks: map[string]link.Link{},
		servers:   map[stopper]struct{}{},
		conns:     map[*trackedConn]struct{}{},
	}, nil
}

func (t *Topology) step(name string) error {
	if t.cfg.hook != nil {
		return t.cfg.hook(t, name)
	}
	return nil
}

func (t *Topology) newNS(role string) (*NS, error) {
	n, err := newNS(t.Prefix + "-" + role)
	if err != nil {
		return nil, err
	}
	t.namespaces = append(t.namespaces, n)
	return n, nil
}

func (t *Topology) build() error {
	br, err := t.buildSegment()
	if err != nil {
		return err
	}

	client, err := t.addHost(RoleClient, ClientAddr4, ClientAddr6, br)
	if err != nil {
		return err
	}
	t.Client = client
	for i := range t.cfg.ClientAddrs {
		client.Extra4 = append(client.Extra4, addN(firstExtra4, i))
		client.Extra6 = append(client.Extra6, addN(firstExtra6, i))
	}
	if err := client.addAddrs(client.Extra4, client.Extra6, 32, 128); err != nil {
		return err
	}

	lb, err := t.addHost(RoleBalancer, BalancerAddr4, BalancerAddr6, br)
	if err != nil {
		return err
	}
	t.Balancer = lb

	if err := t.addBackends(br); err != nil {
		return err
	}

	if err := t.step("xdp"); err != nil {
		return err
	}
	if err := t.attachPass([]string{RoleBalancer}); err != nil {
		return err
	}

	if err := t.step("wait"); err != nil {
		return err
	}
	if err := t.waitUp(t.cfg.LinkUpTimeout); err != nil {
		return err
	}

	if err := t.step("routes"); err != nil {
		return err
	}
	if err := t.addClientRoutes(); err != nil {
		return err
	}

	if t.cfg.NoStaticNeigh {
		return nil
	}
	if err := t.step("neigh"); err != nil {
		return err
	}
	return t.addNeighbours()
}

// buildSegment creates the segment namespace, its bridge and the XDP
// program for bridge ports, and returns the bridge's interface index.
func (t *Topology) buildSegment() (int, error) {
	if err := t.step("segment"); err != nil {
		return 0, err
	}
	seg, err := t.newNS(RoleSegment)
	if err != nil {
		return 0, err
	}
	t.Segment = seg
	// The segment is pure layer 2: without IPv6 on its ports it sends no
	// router solicitations, MLD reports or DAD probes of its own.
	err = seg.run(func() error {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := writeSysctl(k, "1"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}

	if err := t.step("bridge"); err != nil {
		return 0, err
	}
	la := netlink.NewLinkAttrs()
	la.Name = t.Bridge
	if err := seg.nl.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		return 0, fmt.Errorf("add bridge %s: %w", t.Bridge, err)
	}
	br, err := seg.nl.LinkByName(t.Bridge)
	if err != nil {
		return 0, fmt.Errorf("find bridge: %w", err)
	}
	if err := seg.nl.LinkSetUp(br); err != nil {
		return 0, fmt.Errorf("bridge up: %w", err)
	}

	if err := t.step("program"); err != nil {
		return 0, err
	}
	if t.cfg.PortXDP != nil {
		t.passProg = t.cfg.PortXDP
	} else {
		if t.passProg, err = newPassProgram(); err != nil {
			return 0, err
		}
		t.ownPass = true
	}
	return br.Attrs().Index, nil
}

// addBackends adds the backends be1 … beN (Config.Backends) to the bridge
// and makes them real servers for the VIPs.
func (t *Topology) addBackends(bridgeIndex int) error {
	for i := range t.cfg.Backends {
		be, err := t.addHost(fmt.Sprintf("be%d", i+1), addN(firstBackend4, i), addN(firstBackend6, i), bridgeIndex)
		if err != nil {
			return err
		}
		t.Backends = append(t.Backends, be)
		if err := be.makeRealServer(t.VIP4, t.VIP6); err != nil {
			return err
		}
	}
	return nil
}

// attachPass attaches the XDP_PASS program (or Config.PortXDP) to the
// bridge ports of the hosts named in always, in Config.PassOn and, with
// Config.PassOnAllPorts, of every host.
func (t *Topology) attachPass(always []string) error {
	pass := append(slices.Clone(always), t.cfg.PassOn...)
	if t.cfg.PassOnAllPorts {
		for _, h := range t.Hosts() {
			pass = append(pass, h.Name)
		}
	}
	for _, name := range pass {
		h := t.Host(name)
		if h == nil {
			return fmt.Errorf("PassOn: no host %q", name)
		}
		if err := t.AddPassXDP(h.PeerName); err != nil {
			return err
		}
	}
	return nil
}

// addN returns a advanced by n.
func addN(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

// addHost creates a host namespace and its veth pair to the bridge, and
// configures lo and eth0.
func (t *Topology) addHost(role string, a4, a6 netip.Addr, bridgeIndex int) (*Host, error) {
	return t.addHostOn(role, netip.PrefixFrom(a4, Subnet4.Bits()), netip.PrefixFrom(a6, Subnet6.Bits()), t.Segment, t.Prefix+"-"+role, bridgeIndex)
}

// addHostOn creates a host namespace whose eth0 has the addresses a4 and
// a6 (with their prefix lengths) and is one end of a veth pair; the other
// end, peerName, lives in peerNS and is enslaved to the bridge
// bridgeIndex there if that is not 0.
func (t *Topology) addHostOn(role string, a4, a6 netip.Prefix, peerNS *NS, peerName string, bridgeIndex int) (*Host, error) {
	if err := t.step("host:" + role); err != nil {
		return nil, err
	}
	n, err := t.newNS(role)
	if err != nil {
		return nil, err
	}
	h := &Host{
		Name:     role,
		NS:       n,
		Link:     LinkName,
		Addr4:    a4.Addr(),
		Addr6:    a6.Addr(),
		PeerName: peerName,
		topo:     t,
		peerNS:   peerNS,
	}
	if len(h.PeerName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("interface name %q too long", h.PeerName)
	}
	// Quiet hosts: no router solicitations, no router advertisements taken.
	err = n.run(func() error {
		for _, k := range []string{"net.ipv6.conf.default.router_solicitations", "net.ipv6.conf.default.accept_ra"} {
			if err := writeSysctl(k, "0"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}

	la := netlink.NewLinkAttrs()
	la.Name = h.PeerName
	veth := &netlink.Veth{
		LinkAttrs:     la,
		PeerName:      LinkName,
		PeerNamespace: netlink.NsFd(n.handle),
	}
	if err := peerNS.nl.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("%s: add veth %s: %w", role, h.PeerName, err)
	}
	t.peers = append(t.peers, nsLink{peerNS, h.PeerName})
	peer, err := peerNS.nl.LinkByName(h.PeerName)
	if err != nil {
		return nil, fmt.Errorf("%s: find %s: %w", role, h.PeerName, err)
	}
	h.PeerIfindex = peer.Attrs().Index
	if bridgeIndex != 0 {
		if err := peerNS.nl.LinkSetMasterByIndex(peer, bridgeIndex); err != nil {
			return nil, fmt.Errorf("%s: enslave %s: %w", role, h.PeerName, err)
		}
	}
	if err := peerNS.nl.LinkSetUp(peer); err != nil {
		return nil, fmt.Errorf("%s: %s up: %w", role, h.PeerName, err)
	}

	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("%s: find lo: %w", role, err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("%s: lo up: %w", role, err)
	}
	eth, err := n.nl.LinkByName(LinkName)
	if err != nil {
		return nil, fmt.Errorf("%s: find %s: %w", role, LinkName, err)
	}
	h.Ifindex = eth.Attrs().Index
	h.MAC = slices.Clone(eth.Attrs().HardwareAddr)
	if err := n.run(func() error { return disableTxChecksum(LinkName) }); err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	if err := h.addAddrs([]netip.Addr{h.Addr4}, []netip.Addr{h.Addr6}, a4.Bits(), a6.Bits()); err != nil {
		return nil, err
	}
	if err := n.nl.LinkSetUp(eth); err != nil {
		return nil, fmt.Errorf("%s: %s up: %w", role, LinkName, err)
	}
	return h, nil
}

// addAddrs adds IPv4 and IPv6 addresses (IPv6 with nodad) to eth0.
func (h *Host) addAddrs(v4, v6 []netip.Addr, bits4, bits6 int) error {
	add := func(a netip.Addr, bits int) error {
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits))}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.NS.nl.AddrAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: h.Ifindex}}, addr); err != nil {
			return fmt.Errorf("%s: add %s to %s: %w", h.Name, addr.IPNet, h.Link, err)
		}
		return nil
	}
	for _, a := range v4 {
		if err := add(a, bits4); err != nil {
			return err
		}
	}
	for _, a := range v6 {
		if err := add(a, bits6); err != nil {
			return err
		}
	}
	return nil
}

// makeRealServer puts the VIPs on lo and sets the ARP sysctls a direct
// server return backend needs: answer ARP only for addresses on the
// receiving interface, announce only such addresses, no reverse path filter.
func (h *Host) makeRealServer(vip4, vip6 netip.Addr) error {
	if err := h.AddLoAddrs(vip4, vip6); err != nil {
		return err
	}
	err := h.NS.run(func() error {
		for _, dev := range []string{"all", LinkName} {
			for _, kv := range [][2]string{{"arp_ignore", "1"}, {"arp_announce", "2"}, {"rp_filter", "0"}} {
				if err := writeSysctl("net.ipv4.conf."+dev+"."+kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	return nil
}

// waitUp waits until every eth0, every bridge port and the bridge are
// operationally up.
func (t *Topology) waitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, h := range t.Hosts() {
		if err := h.waitUp(deadline, timeout); err != nil {
			return err
		}
	}
	for {
		br, err := t.Segment.nl.LinkByName(t.Bridge)
		if err != nil {
			return fmt.Errorf("find bridge: %w", err)
		}
		if br.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge %s not up after %v (operstate %s)", t.Bridge, timeout, br.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUp waits until h's eth0 and its peer are operationally up with a
// carrier.
func (h *Host) waitUp(deadline time.Time, timeout time.Duration) error {
	for _, c := range []struct {
		nl   *netlink.Handle
		name string
	}{{h.NS.nl, LinkName}, {h.peerNS.nl, h.PeerName}} {
		for {
			l, err := c.nl.LinkByName(c.name)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", h.Name, c.name, err)
			}
			a := l.Attrs()
			if a.OperState == netlink.OperUp && a.RawFlags&unix.IFF_LOWER_UP != 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s not up after %v (operstate %s)", h.Name, c.name, timeout, a.OperState)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// addClientRoutes routes the VIPs from the client via the balancer.
func (t *Topology) addClientRoutes() error {
	c, lb := t.Client, t.Balancer
	for _, r := range []struct{ dst, gw netip.Addr }{{t.VIP4, lb.Addr4}, {t.VIP6, lb.Addr6}} {
		route := &netlink.Route{
			LinkIndex: c.Ifindex,
			Dst:       ipNet(netip.PrefixFrom(r.dst, r.dst.BitLen())),
			Gw:        net.IP(r.gw.AsSlice()),
		}
		if err := c.NS.nl.RouteAdd(route); err != nil {
			return fmt.Errorf("client: route %s via %s: %w", route.Dst, r.gw, err)
		}
	}
	return nil
}

// addNeighbours installs permanent neighbour entries: client → balancer,
// balancer → client and backends, backends → client (all its source
// addresses) and balancer.
func (t *Topology) addNeighbours() error {
	c, lb := t.Client, t.Balancer
	if err := c.addNeigh(lb); err != nil {
		return err
	}
	if err := lb.addNeigh(c); err != nil {
		return err
	}
	for _, be := range t.Backends {
		if err := lb.addNeigh(be); err != nil {
			return err
		}
		if err := be.addNeigh(c); err != nil {
			return err
		}
		if err := be.addNeigh(lb); err != nil {
			return err
		}
	}
	return nil
}

// addNeigh adds permanent neighbour entries on h for every address of o.
func (h *Host) addNeigh(o *Host) error {
	addrs := append([]netip.Addr{o.Addr4, o.Addr6}, o.Extra4...)
	addrs = append(addrs, o.Extra6...)
	for _, a := range addrs {
		fam := netlink.FAMILY_V4
		if a.Is6() {
			fam = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{
			LinkIndex:    h.Ifindex,
			Family:       fam,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(a.AsSlice()),
			HardwareAddr: o.MAC,
		}
		if err := h.NS.nl.NeighSet(n); err != nil {
			return fmt.Errorf("%s: neighbour %s lladdr %s: %w", h.Name, a, o.MAC, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// AddPassXDP attaches the lab's XDP_PASS program (or Config.PortXDP), in native (driver) mode,
// to the bridge port peerName in the segment namespace (a Host.PeerName).
// A veth only delivers frames that its peer sent with XDP_TX or that were
// redirected into it when it has an XDP program of its own; this gives it
// one. Adding it to a port that already has it is a no-op.
func (t *Topology) AddPassXDP(peerName string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if _, ok := t.passLinks[peerName]; ok {
		return nil
	}
	var l link.Link
	err := t.Segment.run(func() error {
		// The ifindex is resolved in the namespace of the calling
		// thread, so attach from inside the segment namespace.
		ifc, err := net.InterfaceByName(peerName)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{
			Program:   t.passProg,
			Interface: ifc.Index,
			Flags:     link.XDPDriverMode,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("attach XDP_PASS to %s: %w", peerName, err)
	}
	t.passLinks[peerName] = l
	return nil
}

var memlockOnce sync.Once

// newPassProgram loads an XDP program that returns XDP_PASS.
func newPassProgram() (*ebpf.Program, error) {
	// A no-op on kernels that charge BPF memory to the cgroup (5.11+);
	// older kernels need a raised RLIMIT_MEMLOCK.
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })
	prog, err := ebpf.NewProgram(passProgramSpec())
	if err != nil {
		return nil, fmt.Errorf("load XDP_PASS program: %w", err)
	}
	return prog, nil
}

// Close removes everything the topology created: it stops servers, closes
// connections from Dial, kills commands, detaches XDP programs, deletes the
// veth pairs and the bridge and removes the namespaces. It is idempotent: a
// second call does nothing and returns nil. It keeps going after errors and
// returns them all.
func (t *Topology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	servers := t.servers
	conns := t.conns
	links := t.passLinks
	t.servers, t.conns, t.passLinks = nil, nil, nil
	t.mu.Unlock()

	var errs []error
	for s := range servers {
		s.Stop()
	}
	// Connections the caller left open: close(2) frees each whatever it
	// returns.
	for c := range conns {
		_ = c.TCPConn.Close()
	}
	for name, l := range links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach XDP from %s: %w", name, err))
		}
	}
	if t.passProg != nil && t.ownPass {
		t.passProg.Close()
	}
	// Deleting one end of a veth pair deletes both.
	del := slices.Clone(t.peers)
	if t.Segment != nil {
		del = append(del, nsLink{t.Segment, t.Bridge})
	}
	for _, d := range del {
		if err := d.delete(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range slices.Backward(t.namespaces) {
		if err := n.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
