package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// pinger sends ICMP echo requests from one raw socket per address family
// and hands each reply to the probe waiting for it, matched by identifier,
// sequence number and source address. One socket serves every ICMP check,
// so thousands of backends cost two sockets, not thousands.
type pinger struct {
	id uint16

	mu      sync.Mutex
	conns   map[bool]net.PacketConn // by "is IPv6"
	seq     uint16
	waiters map[uint16]waiter
	closed  bool
}

type waiter struct {
	addr netip.Addr
	done chan struct{}
}

func newPinger() *pinger {
	return &pinger{
		id:      uint16(rand.Uint32()),
		conns:   map[bool]net.PacketConn{},
		waiters: map[uint16]waiter{},
	}
}

// conn returns the family's socket, opening it (and its reader) once.
func (p *pinger) conn(v6 bool) (net.PacketConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("health checker closed")
	}
	if c := p.conns[v6]; c != nil {
		return c, nil
	}
	network, laddr := "ip4:icmp", "0.0.0.0"
	if v6 {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	c, err := net.ListenPacket(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("open icmp socket (needs CAP_NET_RAW): %w", err)
	}
	// Replies of a burst of probes (and, on loopback, our own requests)
	// arrive together: room for thousands, beyond rmem_max if allowed.
	if rc, ok := c.(syscall.Conn); ok {
		if raw, err := rc.SyscallConn(); err == nil {
			// Best effort: a smaller buffer only drops replies of huge
			// bursts, which then count as timeouts.
			_ = raw.Control(func(fd uintptr) {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
				}
			})
		}
	}
	p.conns[v6] = c
	go p.read(c, v6)
	return c, nil
}

// read delivers echo replies until the socket is closed.
func (p *pinger) read(c net.PacketConn, v6 bool) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.IP)
		id, seq, ok := parseEchoReply(buf[:n], v6)
		if !ok || id != p.id {
			continue
		}
		p.mu.Lock()
		if w, ok := p.waiters[seq]; ok && w.addr == src.Unmap() {
			delete(p.waiters, seq)
			close(w.done)
		}
		p.mu.Unlock()
	}
}

// ping sends one echo request to addr and waits for its reply.
func (p *pinger) ping(ctx context.Context, addr netip.Addr) error {
	addr = addr.Unmap()
	c, err := p.conn(addr.Is6())
	if err != nil {
		return err
	}
	w := waiter{addr: addr, done: make(chan struct{})}
	p.mu.Lock()
	seq, ok := p.nextSeq()
	if !ok {
		p.mu.Unlock()
		return errors.New("too many echo requests in flight")
	}
	p.waiters[seq] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if p.waiters[seq].done == w.done {
			delete(p.waiters, seq)
		}
		p.mu.Unlock()
	}()
	if _, err := c.WriteTo(echoRequest(p.id, seq, addr.Is6()), &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return err
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nextSeq picks a sequence number no waiting probe uses. Callers hold mu.
func (p *pinger) nextSeq() (uint16, bool) {
	for range 1 << 16 {
		p.seq++
		if _, used := p.waiters[p.seq]; !used {
			return p.seq, true
		}
	}
	return 0, false
}

func (p *pinger) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close() // shutting down: the probes still waiting end with it
	}
}

// echoRequest builds an ICMP or ICMPv6 echo request. The kernel fills in
// the ICMPv6 checksum (it covers a pseudo-header only it knows): Marshal
// without one leaves it zero.
func echoRequest(id, seq uint16, v6 bool) []byte {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: []byte("xlb health check")}}
	b, err := m.Marshal(nil)
	if err != nil {
		panic("marshal an echo request: " + err.Error()) // a fixed, valid message
	}
	return b
}

// parseEchoReply returns the identifier and sequence of an echo reply.
func parseEchoReply(b []byte, v6 bool) (id, seq uint16, ok bool) {
	var want icmp.Type = ipv4.ICMPTypeEchoReply
	if v6 {
		want = ipv6.ICMPTypeEchoReply
	}
	m, err := icmp.ParseMessage(want.Protocol(), b)
	if err != nil || m.Type != want || m.Code != 0 {
		return 0, 0, false
	}
	e, isEcho := m.Body.(*icmp.Echo)
	if !isEcho {
		return 0, 0, false
	}
	return uint16(e.ID), uint16(e.Seq), true
}
