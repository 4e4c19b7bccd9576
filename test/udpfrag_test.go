//go:build integration

package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/lab"
)

// Large UDP datagrams through the VIP (issue 13): fragments.
const (
	fragPort    = 5300
	fragPayload = 8000 // UDP payload: 6 fragments at MTU 1500
	// fragSize4 and fragSize6 are what a host with MTU 1500 puts in a
	// fragment: 1500-20 and 1500-40-8, rounded down to 8.
	fragSize4 = 1480
	fragSize6 = 1448
	fragLater = 5 // fragments after the first one
	// fragArrive bounds the wait for a datagram that must arrive;
	// fragLost is how long one that must not arrive gets to show up.
	fragArrive = 5 * time.Second
	fragLost   = 2 * time.Second
)

// Counters of the fragment path.
const (
	mFragFirst     = "xlb_fragments_first_total"
	mFragForwarded = "xlb_fragments_forwarded_total"
	mFragUnmatched = `xlb_passed_packets_total{reason="fragment_unmatched"}`
	mFragEarly     = "xlb_fragments_early_total"
)

// The second VIP's only UDP service is source-hash.
var (
	shVIP4 = netip.MustParseAddr("198.18.1.2")
	shVIP6 = netip.MustParseAddr("2001:2:0:1::2")
)

// TestLargeUDP: 8000-byte UDP datagrams to a VIP, IPv4 and IPv6, arrive
// whole at a backend: sent by the client's kernel (which fragments them at
// MTU 1500, in order), and crafted fragment by fragment out of order:
//
//   - maglev, the first fragment first and the rest reversed: whole;
//   - source-hash (the VIP's only UDP service), entirely reversed (the
//     first fragment last): whole, at the client's source-hash backend,
//     by the policy that fragments arriving before their first go there;
//   - maglev, the first fragment last: lost, as documented (a fragment
//     before its first cannot tell the service): the datagram does not
//     arrive and xlb counts the later fragments as fragment_unmatched.
func TestLargeUDP(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	c, lb := topo.Client, topo.Balancer
	for _, r := range []struct{ vip, via netip.Addr }{{shVIP4, lb.Addr4}, {shVIP6, lb.Addr6}} {
		if err := c.NS.AddRoute(netip.PrefixFrom(r.vip, r.vip.BitLen()), r.via); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range topo.Backends {
		if err := h.AddLoAddrs(shVIP4, shVIP6); err != nil {
			t.Fatal(err)
		}
	}
	sink := newUDPSink(t, topo.Backends, fragPort)

	var b bytes.Buffer
	fmt.Fprintf(&b, "interface: eth0\nlimits: {conntrack_size: 65536, max_services: 16, max_backends: 256}\nservices:\n")
	for _, s := range []struct {
		vip   netip.Addr
		sched string
	}{{topo.VIP4, "maglev"}, {topo.VIP6, "maglev"}, {shVIP4, "source-hash"}, {shVIP6, "source-hash"}} {
		fmt.Fprintf(&b, "  - vip: %s\n    port: %d\n    protocol: udp\n    scheduler: %s\n    backends:\n", s.vip, fragPort, s.sched)
		for _, h := range topo.Backends {
			a := h.Addr4
			if s.vip.Is6() {
				a = h.Addr6
			}
			fmt.Fprintf(&b, "      - address: %s\n", a)
		}
	}
	e := newDaemonEnv(t, topo, b.String())
	e.Start()

	pkt, err := newPacketSocket(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(pkt) })

	tag := 0
	// next returns a fresh datagram: 8000 bytes, its first 4 the tag.
	next := func() (uint32, []byte) {
		tag++
		p := make([]byte, fragPayload)
		r := rand.NewChaCha8([32]byte{byte(tag), byte(tag >> 8), 'f'})
		_, _ = r.Read(p)
		binary.BigEndian.PutUint32(p, uint32(tag))
		return uint32(tag), p
	}

	for i, fam := range []struct {
		name      string
		vip, sh   netip.Addr
		src       netip.Addr
		size      int
		firstPort uint16
	}{
		{"ipv4", topo.VIP4, shVIP4, c.Extra4[0], fragSize4, 20000},
		{"ipv6", topo.VIP6, shVIP6, c.Extra6[0], fragSize6, 21000},
	} {
		t.Run(fam.name, func(t *testing.T) {
			mag, sh := netip.AddrPortFrom(fam.vip, fragPort), netip.AddrPortFrom(fam.sh, fragPort)
			src := func(n uint16) netip.AddrPort { return netip.AddrPortFrom(fam.src, fam.firstPort+n) }
			// The services are up: small datagrams get through.
			for _, dst := range []netip.AddrPort{mag, sh} {
				waitUntil(t, "a small datagram to "+dst.String(), func() bool {
					id, p := next()
					if err := sendUDP(c, src(0), dst, p[:64]); err != nil {
						t.Fatal(err)
					}
					_, _, ok := sink.wait(id, 300*time.Millisecond)
					return ok
				})
			}

			// The client's kernel fragments, in order.
			for n, dst := range []netip.AddrPort{mag, sh} {
				t.Run("kernel "+dst.String(), func(t *testing.T) {
					id, p := next()
					before := e.Metrics()
					if err := sendUDP(c, src(uint16(1+n)), dst, p); err != nil {
						t.Fatal(err)
					}
					sink.mustArrive(t, id, p)
					after := e.Metrics()
					wantDelta(t, before, after, mFragFirst, 1)
					wantDelta(t, before, after, mFragForwarded, fragLater)
					wantDelta(t, before, after, mFragUnmatched, 0)
					wantDelta(t, before, after, mFragEarly, 0)
				})
			}

			// Crafted fragments: an order of the indexes 0 (first) … 5.
			craft := func(t *testing.T, s, dst netip.AddrPort, p []byte, id uint32, order []int) {
				t.Helper()
				f := frame.MustBuild(frame.Spec{SrcMAC: c.MAC, DstMAC: lb.MAC, Src: s, Dst: dst, UDP: true, Payload: p})
				frags, err := frame.Fragments(f, fam.size, id)
				if err != nil {
					t.Fatal(err)
				}
				if len(frags) != 1+fragLater {
					t.Fatalf("%d fragments, want %d", len(frags), 1+fragLater)
				}
				for _, k := range order {
					if err := sendFrame(pkt, c.Ifindex, frags[k]); err != nil {
						t.Fatalf("send fragment %d: %v", k, err)
					}
				}
			}
			firstThenReversed := []int{0, 5, 4, 3, 2, 1}
			reversed := []int{5, 4, 3, 2, 1, 0}
			ipID := uint32(0x4000 + 0x100*i) // unlike the kernel's

			t.Run("maglev first fragment first, rest reversed", func(t *testing.T) {
				id, p := next()
				before := e.Metrics()
				craft(t, src(10), mag, p, ipID+1, firstThenReversed)
				sink.mustArrive(t, id, p)
				after := e.Metrics()
				wantDelta(t, before, after, mFragFirst, 1)
				wantDelta(t, before, after, mFragForwarded, fragLater)
				wantDelta(t, before, after, mFragUnmatched, 0)
				wantDelta(t, before, after, mFragEarly, 0)
			})

			t.Run("source-hash entirely reversed", func(t *testing.T) {
				// The client's source-hash backend, by a datagram that
				// needs no fragment policy.
				s := src(20)
				id0, p0 := next()
				if err := sendUDP(c, s, sh, p0[:64]); err != nil {
					t.Fatal(err)
				}
				want, _, ok := sink.wait(id0, fragArrive)
				if !ok {
					t.Fatalf("a small datagram from %s to %s did not arrive", s, sh)
				}
				id, p := next()
				before := e.Metrics()
				craft(t, s, sh, p, ipID+2, reversed)
				got := sink.mustArrive(t, id, p)
				after := e.Metrics()
				if got != want {
					t.Errorf("reversed datagram reached %s, want the client's source-hash backend %s", got, want)
				}
				wantDelta(t, before, after, mFragEarly, fragLater)
				wantDelta(t, before, after, mFragForwarded, fragLater)
				wantDelta(t, before, after, mFragFirst, 1)
				wantDelta(t, before, after, mFragUnmatched, 0)
			})

			t.Run("maglev first fragment last", func(t *testing.T) {
				id, p := next()
				before := e.Metrics()
				craft(t, src(30), mag, p, ipID+3, reversed)
				if be, _, ok := sink.wait(id, fragLost); ok {
					t.Errorf("datagram whose first fragment came last reached %s; the documented policy loses it", be)
				}
				after := e.Metrics()
				wantDelta(t, before, after, mFragUnmatched, fragLater)
				wantDelta(t, before, after, mFragEarly, 0)
			})
		})
	}
}

// wantDelta checks that series moved by exactly want between two scrapes.
func wantDelta(t *testing.T, before, after, series string, want float64) {
	t.Helper()
	if d := metricValue(t, after, series) - metricValue(t, before, series); d != want {
		t.Errorf("%s moved by %v, want %v", series, d, want)
	}
}

// sendUDP sends p from src to dst with an ordinary UDP socket in h's
// namespace: the kernel fragments it.
func sendUDP(h *lab.Host, src, dst netip.AddrPort, p []byte) error {
	var c *net.UDPConn
	err := h.NS.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return fmt.Errorf("udp socket %s -> %s: %w", src, dst, err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write(p); err != nil {
		return fmt.Errorf("send %d bytes %s -> %s: %w", len(p), src, dst, err)
	}
	return nil
}

// newPacketSocket opens an AF_PACKET socket in h's namespace that only
// sends (protocol 0: it receives nothing).
func newPacketSocket(h *lab.Host) (int, error) {
	fd := -1
	err := h.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("packet socket in %s: %w", h.Name, err)
	}
	return fd, nil
}

// sendFrame sends a whole Ethernet frame out of interface ifindex.
func sendFrame(fd, ifindex int, f []byte) error {
	return unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifindex})
}

// udpSink receives on port on every backend (any local address, both
// families) and keeps what arrives, by the tag in a datagram's first 4
// bytes.
type udpSink struct {
	mu   sync.Mutex
	got  map[uint32][]udpArrival
	wg   sync.WaitGroup
	conn []*net.UDPConn
}

type udpArrival struct {
	backend string
	payload []byte
}

func newUDPSink(t *testing.T, backends []*lab.Host, port int) *udpSink {
	t.Helper()
	s := &udpSink{got: map[uint32][]udpArrival{}}
	t.Cleanup(func() {
		for _, c := range s.conn {
			_ = c.Close()
		}
		s.wg.Wait()
	})
	for _, h := range backends {
		var c *net.UDPConn
		err := h.NS.Do(func() error {
			var err error
			c, err = net.ListenUDP("udp", &net.UDPAddr{Port: port}) // dual stack
			return err
		})
		if err != nil {
			t.Fatalf("listen udp :%d in %s: %v", port, h.Name, err)
		}
		s.conn = append(s.conn, c)
		s.wg.Add(1)
		go func(name string) {
			defer s.wg.Done()
			buf := make([]byte, 65536)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if n < 4 {
					continue
				}
				tag := binary.BigEndian.Uint32(buf)
				s.mu.Lock()
				s.got[tag] = append(s.got[tag], udpArrival{name, slices.Clone(buf[:n])})
				s.mu.Unlock()
			}
		}(h.Name)
	}
	return s
}

// wait waits up to timeout for the datagram tagged tag and returns where
// it arrived (the first copy).
func (s *udpSink) wait(tag uint32, timeout time.Duration) (string, []byte, bool) {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		a := s.got[tag]
		s.mu.Unlock()
		if len(a) > 0 {
			return a[0].backend, a[0].payload, true
		}
		if time.Now().After(deadline) {
			return "", nil, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustArrive waits for the datagram tagged tag and checks it arrived once,
// whole and unchanged; it returns the backend.
func (s *udpSink) mustArrive(t *testing.T, tag uint32, want []byte) string {
	t.Helper()
	be, got, ok := s.wait(tag, fragArrive)
	if !ok {
		t.Fatalf("datagram %d (%d bytes) did not arrive within %v", tag, len(want), fragArrive)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("datagram %d at %s: %d bytes, content equal %v; want %d bytes", tag, be, len(got), bytes.Equal(got, want), len(want))
	}
	time.Sleep(50 * time.Millisecond) // a duplicate would be a copy elsewhere
	s.mu.Lock()
	n := len(s.got[tag])
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("datagram %d arrived %d times", tag, n)
	}
	return be
}
