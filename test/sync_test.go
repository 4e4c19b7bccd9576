//go:build integration

package test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

// httpLoad is real HTTP traffic through a VIP while a test changes the
// backends: keep-alive connections that send a request every few
// milliseconds (a broken one is replaced by a new one, so the load goes
// on) and workers that open a new connection for every request. Each
// connection is known by the server it reached; one that fails before its
// first answer is put on the server that accepted it (serverOf), else it
// stays unattributed.
type httpLoad struct {
	t        *testing.T
	client   *lab.Host
	vip      netip.AddrPort
	serverOf func(netip.AddrPort) string
	stop     chan struct{}
	wg       sync.WaitGroup

	mu sync.Mutex
	// per server: keep-alive requests answered, keep-alive connections
	// opened and broken, new connections answered and broken
	keepReqs, keepConns, keepBroken, newOK, newBroken map[string]int
	unattributed                                      int
	errs                                              []string
	newTotal                                          atomic.Int64
	keepTotal                                         atomic.Int64
}

func startHTTPLoad(t *testing.T, client *lab.Host, vip netip.AddrPort, keepAlive, newWorkers int, serverOf func(netip.AddrPort) string) *httpLoad {
	l := &httpLoad{t: t, client: client, vip: vip, serverOf: serverOf, stop: make(chan struct{}),
		keepReqs: map[string]int{}, keepConns: map[string]int{}, keepBroken: map[string]int{}, newOK: map[string]int{}, newBroken: map[string]int{}}
	for i := range keepAlive {
		l.wg.Add(1)
		go l.keepAlive(client.Extra4[i%len(client.Extra4)])
	}
	for i := range newWorkers {
		l.wg.Add(1)
		go l.newConns(client.Extra4[(i+3)%len(client.Extra4)])
	}
	t.Cleanup(l.Stop)
	return l
}

func (l *httpLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *httpLoad) fail(m map[string]int, local netip.AddrPort, server string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if server == "" {
		server = l.serverOf(local)
	}
	if server == "" {
		l.unattributed++
	} else {
		m[server]++
	}
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf("%s (server %q): %v", local, server, err))
	}
}

// keepAlive runs keep-alive connections from src, one after another.
func (l *httpLoad) keepAlive(src netip.Addr) {
	defer l.wg.Done()
	for !l.stopped() {
		c, err := l.client.DialHTTP(netip.AddrPortFrom(src, 0), l.vip, 3*time.Second)
		if err != nil {
			l.fail(l.keepBroken, netip.AddrPortFrom(src, 0), "", err)
			continue
		}
		server := ""
		for !l.stopped() {
			r, err := c.Get("/", 3*time.Second)
			if err == nil && server != "" && r.Server != server {
				err = fmt.Errorf("answered by %s, was on %s", r.Server, server)
			}
			if err != nil {
				l.fail(l.keepBroken, c.Local, server, err)
				break
			}
			l.keepTotal.Add(1)
			l.mu.Lock()
			if server == "" {
				server = r.Server
				l.keepConns[server]++
			}
			l.keepReqs[server]++
			l.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
		_ = c.Close() // a reset: the test's own end of the connection
	}
}

// newConns makes one request per connection from src.
func (l *httpLoad) newConns(src netip.Addr) {
	defer l.wg.Done()
	for !l.stopped() {
		c, err := l.client.DialHTTP(netip.AddrPortFrom(src, 0), l.vip, 3*time.Second)
		if err != nil {
			l.fail(l.newBroken, netip.AddrPortFrom(src, 0), "", err)
			continue
		}
		r, err := c.Get("/", 3*time.Second)
		_ = c.Close()
		if err != nil {
			l.fail(l.newBroken, c.Local, "", err)
			continue
		}
		l.newTotal.Add(1)
		l.mu.Lock()
		l.newOK[r.Server]++
		l.mu.Unlock()
	}
}

// Stop ends the load and waits for its connections to close.
func (l *httpLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitNew waits until n more new connections answered, and each server
// named got at least one of them.
func (l *httpLoad) waitNew(n int64, servers ...string) {
	l.t.Helper()
	from := l.newTotal.Load()
	before := map[string]int{}
	l.mu.Lock()
	for _, s := range servers {
		before[s] = l.newOK[s]
	}
	l.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l.mu.Lock()
		done := l.newTotal.Load()-from >= n
		for _, s := range servers {
			done = done && l.newOK[s] > before[s]
		}
		l.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.t.Fatalf("waiting for %d new connections reaching %v: %d made, by server %v", n, servers, l.newTotal.Load()-from, l.newOK)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestBulkSyncUnderLoad: xlbctl backend sync replaces a service's set
// while keep-alive and new HTTP connections run through the VIP: it keeps
// be1, reweights be2, removes be3 and adds be4 and be5 in one step. No
// connection to a backend that stays breaks (kept backends keep their ids,
// so their flows keep their backend); be3's connections end as a removed
// backend's do (their next packet is rescheduled, and the new backend
// resets them); be4 and be5 get new connections once their checks pass.
// The same sync again changes nothing.
func TestBulkSyncUnderLoad(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 5, ClientAddrs: 8})
	servers := map[string]*lab.HTTPServer{}
	for _, h := range topo.Backends {
		srv, err := h.ServeHTTP(h.Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		servers[h.Name] = srv
	}
	be := topo.Backends
	key := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	e := newDaemonEnv(t, topo, fmt.Sprintf(`interface: eth0
services:
  - vip: %s
    port: 8080
    health: {type: tcp, interval: 200ms, rise: 2, fall: 2}
    backends: [{address: %s}, {address: %s}, {address: %s}]
`, topo.VIP4, be[0].Addr4, be[1].Addr4, be[2].Addr4))
	e.Start()
	for _, h := range be[:3] {
		e.waitBackend(key, h.Addr4, "up", isUp)
	}

	serverOf := func(remote netip.AddrPort) string {
		for name, s := range servers {
			if s.Accepted(remote) {
				return name
			}
		}
		return ""
	}
	load := startHTTPLoad(t, topo.Client, netip.AddrPortFrom(topo.VIP4, 8080), 24, 3, serverOf)
	load.waitNew(60, be[0].Name, be[1].Name, be[2].Name)
	load.mu.Lock()
	onRemoved := load.keepConns[be[2].Name]
	load.mu.Unlock()
	if onRemoved == 0 {
		t.Fatalf("no keep-alive connection on %s, the backend to remove: %v", be[2].Name, load.keepConns)
	}

	set := filepath.Join(t.TempDir(), "pool.txt")
	text := fmt.Sprintf("# the pool after the change\n%s\n%s 2\n\n%s\n%s   # new\n", be[0].Addr4, be[1].Addr4, be[3].Addr4, be[4].Addr4)
	if err := os.WriteFile(set, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.MustCtl("backend", "sync", key, "-f", set)
	t.Logf("xlbctl backend sync:\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("synced %s: 2 added, 1 removed, 1 reweighted, 1 kept\n", key),
		fmt.Sprintf("+ %s weight 1\n", be[3].Addr4), fmt.Sprintf("+ %s weight 1\n", be[4].Addr4),
		fmt.Sprintf("- %s weight 1\n", be[2].Addr4),
		fmt.Sprintf("~ %s weight 1 -> 2\n", be[1].Addr4),
		fmt.Sprintf("= %s weight 1\n", be[0].Addr4),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sync output lacks %q", want)
		}
	}
	if again := e.MustCtl("backend", "sync", key, "-f", set); !strings.HasPrefix(again, fmt.Sprintf("no change to %s: 0 added, 0 removed, 0 reweighted, 4 kept\n", key)) {
		t.Errorf("the same sync again:\n%s", again)
	}
	for _, h := range be[3:] {
		e.waitBackend(key, h.Addr4, "up", isUp)
	}
	load.waitNew(100, be[0].Name, be[1].Name, be[3].Name, be[4].Name)
	load.Stop()

	st := e.waitService(key, "with the synced set", func(s api.ServiceStatus) bool { return len(s.Backends) == 4 })
	var addrs []string
	for _, b := range st.Backends {
		addrs = append(addrs, fmt.Sprintf("%s=%d", b.Address, b.Weight))
	}
	slices.Sort(addrs)
	if want := []string{be[0].Addr4.String() + "=1", be[1].Addr4.String() + "=2", be[3].Addr4.String() + "=1", be[4].Addr4.String() + "=1"}; !slices.Equal(addrs, want) {
		t.Errorf("backends after the sync: %v, want %v", addrs, want)
	}

	load.mu.Lock()
	defer load.mu.Unlock()
	removed := be[2].Name
	staying := 0
	for name, n := range load.keepBroken {
		if name != removed {
			staying += n
		}
	}
	for name, n := range load.newBroken {
		if name != removed {
			staying += n
		}
	}
	t.Logf("keep-alive: %d requests on %d connections (by server %v); broken by server %v",
		load.keepTotal.Load(), sum(load.keepConns), load.keepConns, load.keepBroken)
	t.Logf("new connections: %d answered (by server %v); broken by server %v, unattributed %d",
		load.newTotal.Load(), load.newOK, load.newBroken, load.unattributed)
	t.Logf("connections to the backends that stay or joined broken: %d; to the removed %s: %d keep-alive (of %d it had), %d new",
		staying, removed, load.keepBroken[removed], load.keepConns[removed], load.newBroken[removed])
	if staying > 0 || load.unattributed > 0 {
		t.Errorf("%d connections to backends that stay broke, %d failed on no known server: %v", staying, load.unattributed, load.errs)
	}
}
