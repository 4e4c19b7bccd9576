package lab

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Server is a TCP and UDP greeting/echo server running in a host's
// namespace, started by Host.Serve.
type Server struct {
	name     string
	port     uint16
	host     *Host
	tcp      []net.Listener
	udp      []*net.UDPConn
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex // guards conns and stopped
	conns    map[net.Conn]struct{}
	stopped  bool
	once     sync.Once
}

// Reply is a parsed greeting line: which server answered, and the client
// address and port it saw.
type Reply struct {
	// Server is the name the answering server was started with.
	Server string
	// Client is the source address and port of the query as the server
	// saw it.
	Client netip.AddrPort
}

// String formats r as the greeting line, without the newline.
func (r Reply) String() string {
	return fmt.Sprintf("server=%s client=%s", r.Server, r.Client)
}

// ParseReply parses a greeting line "server=NAME client=ADDR:PORT" (IPv6
// addresses in brackets); surrounding white space and the newline are
// ignored.
func ParseReply(line string) (Reply, error) {
	var r Reply
	var haveServer, haveClient bool
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Reply{}, fmt.Errorf("parse reply %q: field %q is not key=value", line, f)
		}
		switch k {
		case "server":
			r.Server, haveServer = v, v != ""
		case "client":
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return Reply{}, fmt.Errorf("parse reply %q: %w", line, err)
			}
			r.Client, haveClient = ap, true
		default:
			return Reply{}, fmt.Errorf("parse reply %q: unknown field %q", line, k)
		}
	}
	if !haveServer || !haveClient {
		return Reply{}, fmt.Errorf("parse reply %q: want server= and client=", line)
	}
	return r, nil
}

// Serve starts TCP and UDP servers on port inside h's namespace, bound to
// the IPv4 and IPv6 wildcard addresses (so they also answer on the VIPs a
// backend holds on lo). name must not contain white space.
//
// TCP: on accept the server writes one line
// "server=<name> client=<remote ip>:<port>\n", then echoes every line it
// receives back prefixed with "echo ", until the peer closes.
// UDP: every datagram is answered with the same greeting line, sent from
// the address the datagram was sent to (so a VIP on lo answers as the VIP).
//
// Stop closes the listeners and all open connections; Topology.Close stops
// every server still running.
func (h *Host) Serve(name string, port uint16) (*Server, error) {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == '=' }) {
		return nil, fmt.Errorf("serve: invalid server name %q", name)
	}
	if port == 0 {
		return nil, errors.New("serve: port 0 is not supported")
	}
	s := &Server{name: name, port: port, host: h, conns: map[net.Conn]struct{}{}}
	for _, a := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		ap := netip.AddrPortFrom(a, port)
		l, err := h.NS.listenTCP(ap)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("serve %s on %s: %w", name, h.Name, err)
		}
		s.tcp = append(s.tcp, l)
		u, err := h.NS.listenUDP(ap)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("serve %s on %s: %w", name, h.Name, err)
		}
		s.udp = append(s.udp, u)
	}
	t := h.topo
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.servers[s] = struct{}{}
	}
	t.mu.Unlock()
	if closed {
		s.Stop()
		return nil, ErrClosed
	}
	for _, l := range s.tcp {
		s.wg.Add(1)
		go s.acceptLoop(l)
	}
	for _, u := range s.udp {
		s.wg.Add(1)
		go s.udpLoop(u)
	}
	return s, nil
}

// Name returns the name the server answers with.
func (s *Server) Name() string { return s.name }

// Port returns the TCP and UDP port the server listens on.
func (s *Server) Port() uint16 { return s.port }

// Accepted returns the number of TCP connections accepted so far.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Stop closes the listeners and every open connection and waits for the
// server's goroutines to finish. It is idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopped = true
		// Stop reports nothing: close(2) frees a descriptor whatever it
		// returns, and wg.Wait below confirms every goroutine is done.
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		for _, l := range s.tcp {
			_ = l.Close()
		}
		for _, u := range s.udp {
			_ = u.Close()
		}
		s.wg.Wait()
		t := s.host.topo
		t.mu.Lock()
		delete(t.servers, s)
		t.mu.Unlock()
	})
}

func (s *Server) acceptLoop(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			_ = c.Close() // stopping: the connection is refused
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handleTCP(c)
	}
}

func (s *Server) handleTCP(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close() // the client is gone or the server stopping
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if _, err := fmt.Fprintf(c, "server=%s client=%s\n", s.name, remote); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			if _, werr := c.Write([]byte("echo " + line)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) udpLoop(u *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		_, oobn, _, from, err := u.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors reported on the socket
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		reply := fmt.Appendf(nil, "server=%s client=%s\n", s.name, from)
		_, _, _ = u.WriteMsgUDPAddrPort(reply, replyPktinfo(oob[:oobn]), from)
	}
}

// replyPktinfo turns the IP_PKTINFO / IPV6_PKTINFO control message of a
// received datagram into the control message that sends the reply from the
// datagram's destination address. It returns nil when there is none.
func replyPktinfo(oob []byte) []byte {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			in := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: in.Addr})
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			in := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: in.Addr})
		}
	}
	return nil
}

// trackedConn is a connection returned by Dial; Topology.Close closes it
// if the caller has not.
type trackedConn struct {
	*net.TCPConn
	topo *Topology
	once sync.Once
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() {
		c.topo.mu.Lock()
		delete(c.topo.conns, c)
		c.topo.mu.Unlock()
	})
	return err
}

// Dial opens a TCP connection from src to dst inside h's namespace and
// returns it for the caller to stream on. An invalid (zero) src lets the
// kernel choose the source address; port 0 picks an ephemeral port. timeout
// bounds the connect. The returned conn also has the methods of
// *net.TCPConn (CloseWrite, SetLinger, …) and is closed by Topology.Close
// if still open.
func (h *Host) Dial(src, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	c, err := h.NS.dial(unix.SOCK_STREAM, src, dst, time.Now().Add(timeout))
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", h.Name, err)
	}
	tc := &trackedConn{TCPConn: c.(*net.TCPConn), topo: h.topo}
	t := h.topo
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close() // failing anyway with ErrClosed
		return nil, ErrClosed
	}
	t.conns[tc] = struct{}{}
	return tc, nil
}

// Query sends one query from src to dst inside h's namespace and returns
// the parsed greeting. network is "tcp" or "udp" ("tcp4", "udp6" … are
// accepted; the family follows dst). An invalid (zero) src lets the kernel
// choose the source; port 0 picks an ephemeral port. timeout bounds the
// whole exchange (for UDP it is the read deadline; there is no retry).
//
// TCP queries connect, read the greeting and close with SO_LINGER 0 (a
// RST), so no TIME_WAIT is left behind and a fixed source port can be
// reused immediately. UDP queries send "query\n" from a connected socket.
func (h *Host) Query(network string, src, dst netip.AddrPort, timeout time.Duration) (Reply, error) {
	deadline := time.Now().Add(timeout)
	var typ int
	switch network {
	case "tcp", "tcp4", "tcp6":
		typ = unix.SOCK_STREAM
	case "udp", "udp4", "udp6":
		typ = unix.SOCK_DGRAM
	default:
		return Reply{}, fmt.Errorf("query: unknown network %q", network)
	}
	c, err := h.NS.dial(typ, src, dst, deadline)
	if err != nil {
		return Reply{}, fmt.Errorf("query %s %s from %s: %w", network, dst, h.Name, err)
	}
	defer func() {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close() // a reset; the reply is what counts
	}()
	if err := c.SetDeadline(deadline); err != nil {
		return Reply{}, err
	}
	if typ == unix.SOCK_DGRAM {
		if _, err := c.Write([]byte("query\n")); err != nil {
			return Reply{}, fmt.Errorf("query %s %s from %s: send: %w", network, dst, h.Name, err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return Reply{}, fmt.Errorf("query %s %s from %s: %w", network, dst, h.Name, err)
		}
		return ParseReply(string(buf[:n]))
	}
	line, err := bufio.NewReaderSize(c, 512).ReadString('\n')
	if err != nil {
		return Reply{}, fmt.Errorf("query %s %s from %s: %w", network, dst, h.Name, err)
	}
	return ParseReply(line)
}
