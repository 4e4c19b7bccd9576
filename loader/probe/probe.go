// Package probe is the health checks' tunnel: it loads bpf/probe.c's two
// TC programs onto the balancer's interface (tcx egress and ingress, links
// owned by this process, never pinned: a check is a live connection, and
// ends with its daemon) and dials TCP connections to a VIP on one given
// backend through that backend's encapsulation, with the kernel's own TCP
// stack, so http and tcp checks follow the path clients' packets take.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps"
)

// ProbeMSS is the MSS the tunnel's sockets announce and use: their
// segments must still fit the path once encapsulated (at most 48 bytes of
// outer headers), and checks carry little.
const ProbeMSS = 1200

// Tunnel is the loaded and attached pair of programs. Its methods are safe
// for concurrent use.
type Tunnel struct {
	iface  *net.Interface
	objs   bpf.ProbeObjects
	links  []link.Link
	probes *maps.Probes

	mu     sync.Mutex
	closed bool
}

// Open loads the programs and attaches them to the interface named iface
// (egress: the checks' packets out; ingress: the answers in), beside the
// XDP program, which they do not touch.
func Open(iface string) (*Tunnel, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	t, err := load()
	if err != nil {
		return nil, err
	}
	t.iface = ifc
	for _, a := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{{t.objs.ProbeOut, ebpf.AttachTCXEgress}, {t.objs.ProbeIn, ebpf.AttachTCXIngress}} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: a.prog, Attach: a.attach})
		if err != nil {
			_ = t.Close() // what was attached so far
			return nil, fmt.Errorf("attach health check tunnel to %s (%s): %w", iface, a.attach, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// load loads the programs and maps, attached nowhere.
func load() (*Tunnel, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := bpf.LoadProbeSpec()
	if err != nil {
		return nil, fmt.Errorf("load probe collection spec: %w", err)
	}
	t := &Tunnel{}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("load health check tunnel: %w", err)
	}
	t.probes = maps.NewProbes(t.objs.Probes)
	return t, nil
}

// Close detaches and unloads the programs. Connections still open lose
// their path.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Route is where a connection goes: the VIP's port on Backend, reached by
// ipip (GUEPort 0) or gue to GUEPort, with Source as the outer source.
type Route struct {
	Backend netip.Addr
	VIP     netip.AddrPort
	GUEPort uint16
	Source  netip.Addr
}

func (r Route) String() string {
	mode := "ipip"
	if r.GUEPort != 0 {
		mode = fmt.Sprintf("gue:%d", r.GUEPort)
	}
	return fmt.Sprintf("%s via %s (%s)", r.VIP, r.Backend, mode)
}

// Dial opens a TCP connection to r.VIP on r.Backend through the tunnel.
// The socket is bound to the tunnel's interface (a backend routed out of
// another fails rather than being reached untunnelled), and its local
// port registered before it connects; closing the connection resets it
// (no TIME_WAIT whose packets would outlive the registration) and
// removes the registration.
func (t *Tunnel) Dial(ctx context.Context, r Route) (net.Conn, error) {
	if !r.Backend.IsValid() || !r.VIP.IsValid() || !r.Source.IsValid() ||
		r.Backend.Is4() != r.VIP.Addr().Is4() || r.Source.Is4() != r.Backend.Is4() {
		return nil, fmt.Errorf("tunnel route %s from %s: want addresses of one family", r, r.Source)
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, errors.New("health check tunnel closed")
	}
	var registered *maps.ProbeRoute
	d := net.Dialer{Control: func(network, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { registered, err = t.prepare(int(fd), r) }); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(r.Backend, r.VIP.Port()).String())
	if err != nil {
		if registered != nil {
			_ = t.probes.Delete(*registered) // the connection never was
		}
		return nil, err
	}
	return &tunnelConn{Conn: conn, t: t, route: *registered}, nil
}

// prepare readies socket fd for the tunnel: bound to the interface and to
// a port of its own, reset on close, a small MSS, and registered.
func (t *Tunnel) prepare(fd int, r Route) (*maps.ProbeRoute, error) {
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, t.iface.Name); err != nil {
		return nil, fmt.Errorf("bind to device %s: %w", t.iface.Name, err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return nil, fmt.Errorf("set SO_LINGER: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, ProbeMSS); err != nil {
		return nil, fmt.Errorf("set TCP_MAXSEG: %w", err)
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if r.Backend.Is6() {
		sa = &unix.SockaddrInet6{}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind a local port: %w", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	var port int
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	pr := maps.ProbeRoute{Backend: r.Backend, VIP: r.VIP.Addr(), Source: r.Source, Port: r.VIP.Port(), LocalPort: uint16(port), GUEPort: r.GUEPort}
	if err := t.probes.Add(pr); err != nil {
		return nil, err
	}
	return &pr, nil
}

// Registered counts the connections registered now.
func (t *Tunnel) Registered() (int, error) {
	n, err := t.probes.Len()
	return n / 2, err
}

// Counters are the tunnel's counters, summed over CPUs.
type Counters struct {
	// Out: packets encapsulated to a backend; In: answers readdressed;
	// Errors: registered packets a helper failed on.
	Out, In, Errors uint64
}

// Stats reads the counters.
func (t *Tunnel) Stats() (Counters, error) {
	var per []bpf.ProbeCounters
	if err := t.objs.ProbeStats.Lookup(uint32(0), &per); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, p := range per {
		c.Out += p.Out
		c.In += p.In
		c.Errors += p.Errors
	}
	return c, nil
}

// tunnelConn removes its registration when closed.
type tunnelConn struct {
	net.Conn
	t     *Tunnel
	route maps.ProbeRoute
	once  sync.Once
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if derr := c.t.probes.Delete(c.route); derr != nil && err == nil {
			err = derr
		}
	})
	return err
}
