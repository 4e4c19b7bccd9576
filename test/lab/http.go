package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HealthPath is the path on which an HTTPServer answers "ok" (for health
// checks); every other path gets the greeting.
const HealthPath = "/healthz"

// stopper is a server the topology stops on Close.
type stopper interface{ Stop() }

// HTTPServer is a small HTTP/1.1 web server running in a host's namespace,
// started by Host.ServeHTTP: the classic "which server answered, and whom
// did it see" page of load-balancer tutorials.
type HTTPServer struct {
	name     string
	port     uint16
	host     *Host
	srv      *http.Server
	lns      []net.Listener
	requests atomic.Int64
	accepted sync.Map // netip.AddrPort of every connection accepted
	wg       sync.WaitGroup
	once     sync.Once
}

// ServeHTTP starts an HTTP server on port inside h's namespace, bound to
// the IPv4 and IPv6 wildcard addresses (so it also answers on the VIPs a
// backend holds on lo). name must not contain white space or "=".
//
// GET HealthPath answers 200 "ok\n". Every other request answers 200 with
// the greeting line "server=<name> client=<remote ip>:<port>\n" (see
// ParseReply). Connections are kept alive between requests, as HTTP/1.1
// clients expect.
//
// Stop closes the listeners and every open connection, as a server
// process that dies would; Topology.Close stops every server still running.
func (h *Host) ServeHTTP(name string, port uint16) (*HTTPServer, error) {
	return h.ServeHTTPAt(name, netip.AddrPortFrom(netip.IPv4Unspecified(), port), netip.AddrPortFrom(netip.IPv6Unspecified(), port))
}

// ServeHTTPAt is ServeHTTP on the given addresses only (one port): a
// service on a VIP, say, apart from the host's own address.
func (h *Host) ServeHTTPAt(name string, addrs ...netip.AddrPort) (*HTTPServer, error) {
	if len(addrs) == 0 {
		return nil, errors.New("serve http: no address")
	}
	port := addrs[0].Port()
	for _, a := range addrs {
		if a.Port() != port {
			return nil, fmt.Errorf("serve http %s: ports %d and %d: one port per server", name, port, a.Port())
		}
	}
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == '=' }) {
		return nil, fmt.Errorf("serve http: invalid server name %q", name)
	}
	if port == 0 {
		return nil, errors.New("serve http: port 0 is not supported")
	}
	s := &HTTPServer{name: name, port: port, host: h}
	s.srv = &http.Server{Handler: GreetingHandler(name, &s.requests), ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateNew {
				return
			}
			if a, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
				s.accepted.Store(netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), struct{}{})
			}
		}}
	for _, a := range addrs {
		l, err := h.NS.listenTCP(a)
		if err != nil {
			for _, l := range s.lns {
				_ = l.Close() // failing anyway; the error below says why
			}
			return nil, fmt.Errorf("serve http %s on %s: %w", name, h.Name, err)
		}
		s.lns = append(s.lns, l)
	}
	t := h.topo
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.servers[s] = struct{}{}
	}
	t.mu.Unlock()
	if closed {
		for _, l := range s.lns {
			_ = l.Close() // failing anyway with ErrClosed
		}
		return nil, ErrClosed
	}
	for _, l := range s.lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.srv.Serve(l) // returns http.ErrServerClosed on Stop
		}()
	}
	return s, nil
}

// GreetingHandler is an HTTPServer's handler, for servers of the lab
// that run as processes of their own (test/labweb): GET HealthPath
// answers "ok", every other request the greeting of server name, counted
// in requests (nil: not counted).
func GreetingHandler(name string, requests *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n") // a failed write is the client's to see
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if requests != nil {
			requests.Add(1)
		}
		remote, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s\n", Reply{Server: name, Client: remote})
	})
	return mux
}

// Name returns the name the server answers with.
func (s *HTTPServer) Name() string { return s.name }

// Port returns the TCP port the server listens on.
func (s *HTTPServer) Port() uint16 { return s.port }

// Requests returns the number of greeting requests answered so far
// (health checks not included).
func (s *HTTPServer) Requests() int64 { return s.requests.Load() }

// Accepted reports whether the server accepted a TCP connection from
// remote (as it saw it), whether or not a request followed: a test tells
// by it on which server a connection that failed early had landed.
func (s *HTTPServer) Accepted(remote netip.AddrPort) bool {
	_, ok := s.accepted.Load(remote)
	return ok
}

// Stop closes the listeners and every open connection and waits for the
// server's goroutines to finish. It is idempotent.
func (s *HTTPServer) Stop() {
	s.once.Do(func() {
		// Its error is a listener's close(2), which frees the descriptor
		// whatever it returns; wg.Wait confirms every Serve has returned.
		_ = s.srv.Close()
		s.wg.Wait()
		t := s.host.topo
		t.mu.Lock()
		delete(t.servers, s)
		t.mu.Unlock()
	})
}

// HTTPConn is a kept-alive HTTP/1.1 client connection opened by
// Host.DialHTTP: every Get goes over the same TCP connection.
type HTTPConn struct {
	conn  net.Conn
	br    *bufio.Reader
	host  string
	Local netip.AddrPort // the connection's source address and port
}

// DialHTTP opens a TCP connection from src to dst inside h's namespace for
// HTTP requests that reuse it (keep-alive). An invalid (zero) src lets the
// kernel choose the source; port 0 picks an ephemeral port. The connection
// is closed by Close or by Topology.Close.
func (h *Host) DialHTTP(src, dst netip.AddrPort, timeout time.Duration) (*HTTPConn, error) {
	c, err := h.Dial(src, dst, timeout)
	if err != nil {
		return nil, err
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return &HTTPConn{
		conn:  c,
		br:    bufio.NewReader(c),
		host:  dst.String(),
		Local: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
	}, nil
}

// Get sends "GET path" on the connection and returns the parsed greeting
// of the answer; timeout bounds the exchange.
func (c *HTTPConn) Get(path string, timeout time.Duration) (Reply, error) {
	return c.get(path, false, timeout)
}

func (c *HTTPConn) get(path string, last bool, timeout time.Duration) (Reply, error) {
	if err := c.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return Reply{}, err
	}
	hdr := ""
	if last {
		hdr = "Connection: close\r\n"
	}
	if _, err := fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: xlb-lab\r\n%s\r\n", path, c.host, hdr); err != nil {
		return Reply{}, fmt.Errorf("http get %s: send: %w", path, err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return Reply{}, fmt.Errorf("http get %s: %w", path, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close() // read already; a close error has nothing to add
	if err != nil {
		return Reply{}, fmt.Errorf("http get %s: body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("http get %s: status %s", path, resp.Status)
	}
	return ParseReply(string(body))
}

// Close closes the connection with a reset (SO_LINGER 0), so no TIME_WAIT
// is left behind and the source port can be reused at once.
func (c *HTTPConn) Close() error {
	if tc, ok := c.conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	return c.conn.Close()
}

// GetHTTP makes one HTTP request ("GET /", Connection: close) from src to
// dst inside h's namespace and returns the parsed greeting. An invalid
// (zero) src lets the kernel choose the source; port 0 picks an ephemeral
// port. timeout bounds the connect and the exchange.
func (h *Host) GetHTTP(src, dst netip.AddrPort, timeout time.Duration) (Reply, error) {
	deadline := time.Now().Add(timeout)
	c, err := h.DialHTTP(src, dst, timeout)
	if err != nil {
		return Reply{}, err
	}
	defer func() { _ = c.Close() }() // a reset; the reply is what counts
	r, err := c.get("/", true, time.Until(deadline))
	if err != nil {
		return Reply{}, fmt.Errorf("from %s to %s: %w", c.Local, dst, err)
	}
	return r, nil
}
