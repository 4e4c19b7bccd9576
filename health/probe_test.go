package health

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func targetOf(t *testing.T, hostport string) Target {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Addr: ap.Addr(), Port: ap.Port()}
}

// refusingPort returns a loopback port nothing listens on.
func refusingPort(t *testing.T) Target {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := targetOf(t, l.Addr().String())
	// The port must be free again, or it would not refuse.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return tg
}

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) Target {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	// The test is over: a loopback socket that fails to close has
	// nothing left to disturb.
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return targetOf(t, l.Addr().String())
}

func runProbe(p Prober, t Target, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p(ctx, t)
}

func TestTCPProbe(t *testing.T) {
	p := &probers{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }() // the test is over; nothing to disturb
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close() // the probe wants the connect only
		}
	}()
	if r := runProbe(p.tcp, targetOf(t, l.Addr().String()), time.Second); !r.OK || r.Reason != "connect ok" {
		t.Errorf("listening port: %+v", r)
	}
	if r := runProbe(p.tcp, refusingPort(t), time.Second); r.OK || r.Timeout || r.Reason != "connect refused" {
		t.Errorf("closed port: %+v, want connect refused", r)
	}
	// An expired deadline is a timeout, whatever the dialer was doing.
	if r := runProbe(p.tcp, hangingServer(t), 0); r.OK || !r.Timeout || r.Reason != "timeout" {
		t.Errorf("expired deadline: %+v, want timeout", r)
	}
}

func TestHTTPProbe(t *testing.T) {
	var gotHost, gotMethod, gotUA string
	var mu sync.Mutex
	// The handlers ignore write errors: a failed write is what the probe
	// sees and judges.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotHost, gotMethod, gotUA = r.Host, r.Method, r.UserAgent()
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("status: healthy\n"))
		case "/503":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "/500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/404":
			http.NotFound(w, r)
		case "/redirect":
			http.Redirect(w, r, "/503", http.StatusFound)
		case "/truncated":
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("short"))
		default:
			_, _ = w.Write([]byte("hello"))
		}
	}))
	defer srv.Close()
	tg := targetOf(t, srv.Listener.Addr().String())
	p := &probers{}
	for _, tc := range []struct {
		name    string
		cfg     HTTPConfig
		target  Target
		ok      bool
		timeout bool
		reason  string
	}{
		{"200", HTTPConfig{Path: "/ok"}, tg, true, false, "http 200"},
		{"body found", HTTPConfig{Path: "/ok", ExpectBody: "healthy"}, tg, true, false, "http 200"},
		{"wrong body", HTTPConfig{Path: "/", ExpectBody: "healthy"}, tg, false, false, `http 200: body lacks "healthy"`},
		{"503 is a failure", HTTPConfig{Path: "/503"}, tg, false, false, "http 503"},
		{"500 is a failure", HTTPConfig{Path: "/500"}, tg, false, false, "http 500"},
		{"404 is a failure by default", HTTPConfig{Path: "/404"}, tg, false, false, "http 404"},
		{"404 expected", HTTPConfig{Path: "/404", ExpectStatus: [][2]int{{404, 404}}}, tg, true, false, "http 404"},
		{"200 not in the expected set", HTTPConfig{Path: "/ok", ExpectStatus: [][2]int{{204, 204}}}, tg, false, false, "http 200"},
		{"redirect judged, not followed", HTTPConfig{Path: "/redirect"}, tg, true, false, "http 302"},
		{"redirect not expected", HTTPConfig{Path: "/redirect", ExpectStatus: [][2]int{{200, 299}}}, tg, false, false, "http 302"},
		{"truncated body", HTTPConfig{Path: "/truncated", ExpectBody: "x"}, tg, false, false, "http 200: reading body: connection closed"},
		{"refused", HTTPConfig{}, refusingPort(t), false, false, "connect refused"},
		{"accept and hang", HTTPConfig{}, hangingServer(t), false, true, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(p.http(tc.cfg), tc.target, 300*time.Millisecond)
			if r.OK != tc.ok || r.Timeout != tc.timeout || r.Reason != tc.reason {
				t.Fatalf("got %+v, want ok=%v timeout=%v reason %q", r, tc.ok, tc.timeout, tc.reason)
			}
		})
	}

	r := runProbe(p.http(HTTPConfig{Method: "HEAD", Path: "/ok", Host: "www.example.test"}), tg, time.Second)
	mu.Lock()
	defer mu.Unlock()
	if !r.OK || gotHost != "www.example.test" || gotMethod != "HEAD" || gotUA != "xlb-health-check" {
		t.Errorf("HEAD with host: %+v, server saw host %q method %q agent %q", r, gotHost, gotMethod, gotUA)
	}
}

func TestHTTPSProbe(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("secure ok")) // a failed write is the probe's to judge
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	tg := targetOf(t, srv.Listener.Addr().String())
	p := &probers{}
	r := runProbe(p.http(HTTPConfig{HTTPS: true, InsecureSkipVerify: true, ExpectBody: "secure"}), tg, time.Second)
	if !r.OK || r.Reason != "http 200" {
		t.Errorf("https, verification off: %+v", r)
	}
	r = runProbe(p.http(HTTPConfig{HTTPS: true}), tg, time.Second)
	if r.OK || !strings.Contains(r.Reason, "certificate") {
		t.Errorf("https with an untrusted certificate: %+v, want a certificate failure", r)
	}
	r = runProbe(p.http(HTTPConfig{}), tg, time.Second)
	if r.OK || r.Reason != "http 400" {
		t.Errorf("plain http to a TLS port: %+v, want http 400", r)
	}
}

// requireRawSockets skips without CAP_NET_RAW, or fails when CI demands
// the privileged tiers.
func requireRawSockets(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("ip4:icmp", "127.0.0.1")
	if err == nil {
		_ = c.Close() // only a test of the capability
		return
	}
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		t.Fatal(err)
	}
	if os.Getenv("XLB_REQUIRE_PRIV") == "1" {
		t.Fatalf("XLB_REQUIRE_PRIV=1 but raw sockets are not allowed: %v", err)
	}
	t.Skipf("SKIP (needs CAP_NET_RAW, e.g. sudo): %v", err)
}

func TestICMPProbe(t *testing.T) {
	requireRawSockets(t)
	p := &probers{ping: newPinger()}
	defer p.ping.close()
	for _, a := range []string{"127.0.0.1", "::1"} {
		if r := runProbe(p.icmp, Target{Addr: netip.MustParseAddr(a)}, time.Second); !r.OK || r.Reason != "echo reply" {
			t.Errorf("ping %s: %+v", a, r)
		}
	}
	// Many at once share the socket and each gets its own reply.
	var wg sync.WaitGroup
	fails := make(chan Result, 200)
	for range 200 {
		wg.Go(func() {
			if r := runProbe(p.icmp, Target{Addr: netip.MustParseAddr("127.0.0.1")}, 5*time.Second); !r.OK {
				fails <- r
			}
		})
	}
	wg.Wait()
	close(fails)
	for r := range fails {
		t.Errorf("concurrent ping: %+v", r)
	}
	if n := len(p.ping.waiters); n != 0 {
		t.Errorf("%d waiters left behind", n)
	}
}

func TestEchoCodec(t *testing.T) {
	m := echoRequest(0x1234, 7, false)
	if checksum(m) != 0 {
		t.Errorf("icmp request checksum does not verify: % x", m)
	}
	reply := append([]byte{}, m...)
	reply[0] = byte(ipv4.ICMPTypeEchoReply)
	if id, seq, ok := parseEchoReply(reply, false); !ok || id != 0x1234 || seq != 7 {
		t.Errorf("parse reply: %x %d %v", id, seq, ok)
	}
	if _, _, ok := parseEchoReply(m, false); ok {
		t.Error("an echo request parsed as a reply")
	}
	if _, _, ok := parseEchoReply(reply[:7], false); ok {
		t.Error("a 7-byte message parsed as a reply")
	}
	r6 := echoRequest(1, 2, true)
	r6[0] = byte(ipv6.ICMPTypeEchoReply)
	if id, seq, ok := parseEchoReply(r6, true); !ok || id != 1 || seq != 2 {
		t.Errorf("parse v6 reply: %d %d %v", id, seq, ok)
	}
}

// checksum is the Internet checksum (RFC 1071), written out here to check
// the library's.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestHungServersDoNotStall runs many checks against a server that
// accepts and never answers, beside one healthy backend: every hung check
// reports a timeout and the healthy one still comes up.
func TestHungServersDoNotStall(t *testing.T) {
	hung := hangingServer(t)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer good.Close()
	var mu sync.Mutex
	timeouts := map[string]bool{}
	up := make(chan string, 1)
	c := New(Options{
		OnResult: func(id string, r Result) {
			// Only the hung checks count: under load (the race detector,
			// 500 goroutines) the good one may time out once too, which
			// made the count 501 and the wait below never end.
			if r.Timeout && strings.HasPrefix(id, "hung") {
				mu.Lock()
				timeouts[id] = true
				mu.Unlock()
			}
		},
		OnChange: func(e Event) {
			if e.State.Up {
				select {
				case up <- e.ID:
				default:
				}
			}
		},
	})
	defer c.Close()
	cfg := Config{Type: HTTP, Interval: 400 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 1}
	const n = 500
	specs := []Spec{{ID: "good", Target: targetOf(t, good.Listener.Addr().String()), Config: cfg}}
	for i := range n {
		specs = append(specs, Spec{ID: "hung" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Target: hung, Config: cfg})
	}
	if err := c.Set(specs); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-up:
		if id != "good" {
			t.Fatalf("%s came up", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the healthy backend never came up beside hung ones")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(timeouts)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hung checks reported a timeout", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range specs[1:3] {
		if st, _ := c.State(s.ID); st.Up || st.Last.Reason != "timeout" {
			t.Errorf("%s: %+v, want down by timeout", s.ID, st)
		}
	}
}
