//go:build integration

package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// The HA tests: several balancer nodes, each a real xlbd with its GoBGP
// speaker, behind a router running BIRD 2 that installs one ECMP route per
// VIP. `go test -tags integration -run 'BGP|ECMP' ./test/...` runs them.

const (
	haPort    = 8080 // the maglev (or per-test) service
	haShPort  = 8081 // a source-hash service
	haHold    = 3 * time.Second
	haNodeASN = lab.DefaultBalancerASN
)

// haLab is an HA topology with BIRD on its router and an xlbd per
// balancer node (started by startNode).
type haLab struct {
	t     *testing.T
	topo  *lab.HATopology
	bird  *lab.Bird
	nodes []*xlbdproc.T
	sched string // the scheduler of the haPort service
}

// newHALab builds the topology with `balancers` nodes and BIRD peering
// with all of them, serves on every backend, and prepares (but does not
// start) an xlbd per node whose service on haPort uses sched.
func newHALab(t *testing.T, balancers int, sched string) *haLab {
	t.Helper()
	lab.RequireBird(t)
	topo := lab.NewHAT(t, lab.HAConfig{Balancers: balancers, Backends: 3, ClientAddrs: 60})
	for _, h := range topo.Backends {
		for _, port := range []uint16{haPort, haShPort} {
			if _, err := h.Serve(h.Name, port); err != nil {
				t.Fatal(err)
			}
		}
	}
	var neighbors []lab.BirdNeighbor
	for _, b := range topo.Balancers {
		neighbors = append(neighbors, lab.BirdNeighbor{Name: b.Name, Addr: b.Addr4, ASN: haNodeASN, Passive: true})
	}
	bird, err := topo.StartBird(lab.BirdConfig{HoldTime: haHold, Neighbors: neighbors})
	if err != nil {
		t.Fatal(err)
	}
	h := &haLab{t: t, topo: topo, bird: bird, sched: sched}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("BIRD log:\n%s", bird.Log())
		}
	})
	for i, b := range topo.Balancers {
		h.nodes = append(h.nodes, xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: b, Config: h.config(i, ""), Metrics: xlbdproc.DefaultMetrics}))
	}
	return h
}

// config is node i's config file: the same services on every node, their
// backends listed in an order of the node's own (a rotation), and BGP to
// the router. healthPort, when set, is the port the checks probe.
func (h *haLab) config(i int, healthPort string) string {
	b := h.topo.Balancers[i]
	var be strings.Builder
	n := len(h.topo.Backends)
	for j := range n {
		fmt.Fprintf(&be, "      - address: %s\n", h.topo.Backends[(i+j)%n].Addr4)
	}
	check := "{type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2" + healthPort + "}"
	return fmt.Sprintf(`interface: eth0
limits: {conntrack_size: 65536, max_services: 16, max_backends: 256}
services:
  - vip: %[1]s
    port: %[2]d
    scheduler: %[3]s
    health: %[4]s
    backends:
%[5]s  - vip: %[1]s
    port: %[6]d
    scheduler: source-hash
    health: %[4]s
    backends:
%[5]sbgp:
  asn: %[7]d
  router_id: %[8]s
  next_hop: %[8]s
  next_hop6: %[9]s
  graceful_restart: {restart_time: 60s}
  drain_time: 2s
  peers:
    - {address: %[10]s, asn: %[11]d, hold_time: 3s}
`, h.topo.VIP4, haPort, h.sched, check, be.String(), haShPort, haNodeASN, b.Addr4, b.Addr6, h.topo.Router.Addr4, lab.DefaultRouterASN)
}

var vip4Prefix = netip.PrefixFrom(lab.VIP4, 32)

// startNodes starts the xlbd of the nodes listed (all if none) and waits
// until the router routes the VIP over exactly them.
func (h *haLab) startNodes(which ...int) {
	h.t.Helper()
	if len(which) == 0 {
		for i := range h.nodes {
			which = append(which, i)
		}
	}
	for _, i := range which {
		h.nodes[i].Start()
	}
	var names []string
	var hops []netip.Addr
	for i := range h.nodes {
		if h.nodes[i].Running() {
			names = append(names, h.topo.Balancers[i].Name)
			hops = append(hops, h.topo.Balancers[i].Addr4)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.bird.WaitEstablished(ctx, names...); err != nil {
		h.t.Fatal(err)
	}
	h.waitHops(hops, 30*time.Second)
}

// waitHops waits until the router's route to the VIP has exactly hops,
// and returns how long that took.
func (h *haLab) waitHops(hops []netip.Addr, timeout time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := h.topo.Router.NS.WaitNextHops(ctx, vip4Prefix, hops); err != nil {
		h.t.Fatal(err)
	}
	return time.Since(start)
}

func (h *haLab) hopsWithout(skip int) []netip.Addr {
	var out []netip.Addr
	for i, b := range h.topo.Balancers {
		if i != skip && h.nodes[i].Running() {
			out = append(out, b.Addr4)
		}
	}
	return out
}

// haStream is one long-lived TCP connection through the VIP: it sends a line
// every 100 ms and reads its echo.
type haStream struct {
	src     netip.AddrPort
	backend string // the backend that greeted it
	broken  atomic.Bool
	err     atomic.Value
	lines   atomic.Int64
}

// openStreams opens n streams from distinct client addresses and ports,
// and keeps them going until stop is closed. Each may wait up to 20 s for
// an echo: a flow whose node is lost waits for the router to converge.
func (h *haLab) openStreams(n int, port uint16, stop <-chan struct{}, wg *sync.WaitGroup) []*haStream {
	h.t.Helper()
	dst := netip.AddrPortFrom(h.topo.VIP4, port)
	var out []*haStream
	for i := range n {
		c := h.topo.Client
		s := &haStream{src: netip.AddrPortFrom(c.Extra4[i%len(c.Extra4)], uint16(30000+i))}
		conn, err := c.Dial(s.src, dst, 3*time.Second)
		if err != nil {
			h.t.Fatalf("stream %s: %v", s.src, err)
		}
		rd := bufio.NewReader(conn)
		greet, err := rd.ReadString('\n')
		if err != nil {
			h.t.Fatalf("stream %s: greeting: %v", s.src, err)
		}
		r, err := lab.ParseReply(greet)
		if err != nil {
			h.t.Fatal(err)
		}
		if r.Client != s.src {
			h.t.Errorf("stream %s: the backend saw the client as %s", s.src, r.Client)
		}
		s.backend = r.Server
		out = append(out, s)
		wg.Add(1)
		go func(conn net.Conn) {
			defer wg.Done()
			defer func() { _ = conn.Close() }() // the haStream is over
			fail := func(err error) { s.err.Store(err); s.broken.Store(true) }
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
					fail(err)
					return
				}
				msg := fmt.Sprintf("line %d", k)
				if _, err := fmt.Fprintln(conn, msg); err != nil {
					fail(err)
					return
				}
				got, err := rd.ReadString('\n')
				if err != nil || !strings.Contains(got, msg) {
					fail(fmt.Errorf("read %q: %v", got, err))
					return
				}
				s.lines.Add(1)
			}
		}(conn)
	}
	return out
}

// nodeOf returns the index of the node whose connection table holds src's
// flow, -1 if none does.
func (h *haLab) nodeOf(src netip.AddrPort) int {
	h.t.Helper()
	for i, n := range h.nodes {
		if !n.Running() {
			continue
		}
		flows, err := n.Client().Flows(context.Background(), 100000)
		if err != nil {
			h.t.Fatal(err)
		}
		if slices.ContainsFunc(flows, func(f api.Flow) bool { return f.Client == src.String() }) {
			return i
		}
	}
	return -1
}

// newConns opens n short connections to the VIP from many client addresses
// and counts the backends that answered and the failures.
func (h *haLab) newConns(n int, port uint16) (map[string]int, []error) {
	h.t.Helper()
	dst := netip.AddrPortFrom(h.topo.VIP4, port)
	counts := map[string]int{}
	var errs []error
	c := h.topo.Client
	for i := range n {
		src := netip.AddrPortFrom(c.Extra4[i%len(c.Extra4)], 0)
		r, err := c.Query("tcp", src, dst, 3*time.Second)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Client.Addr() != src.Addr() {
			errs = append(errs, fmt.Errorf("%s: the backend saw the client as %s", src.Addr(), r.Client))
		}
		counts[r.Server]++
	}
	return counts, errs
}

// TestBGPECMP: BIRD installs one route with every node as a next hop, new
// connections from many clients land on every node and every backend, and
// every backend sees the client's address.
func TestBGPECMP(t *testing.T) {
	h := newHALab(t, 3, "maglev")
	h.startNodes()
	v6 := netip.PrefixFrom(lab.VIP6, 128)
	var hops6 []netip.Addr
	for _, b := range h.topo.Balancers {
		hops6 = append(hops6, b.Addr6)
	}
	// No IPv6 service, no IPv6 VIP in BGP (the route would have come with
	// the IPv4 one, over the same sessions).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := h.topo.Router.NS.WaitNextHops(ctx, v6, hops6); err == nil {
		t.Errorf("IPv6 VIP routed although no IPv6 service exists")
	}

	before := h.newFlowsPerNode()
	counts, errs := h.newConns(300, haPort)
	for i, err := range errs {
		if i < 5 {
			t.Error(err)
		}
	}
	after := h.newFlowsPerNode()
	t.Logf("300 connections: backends %v; new flows per node %v", counts, diff(after, before))
	for _, b := range h.topo.Backends {
		if counts[b.Name] == 0 {
			t.Errorf("backend %s got none of 300 connections: %v", b.Name, counts)
		}
	}
	total := 0
	for i, n := range diff(after, before) {
		total += n
		if n == 0 {
			t.Errorf("node %s scheduled none of 300 connections", h.topo.Balancers[i].Name)
		}
	}
	if total < 300 {
		t.Errorf("%d new flows counted over the nodes for 300 connections", total)
	}

	// Every node reports its session and its announcement.
	for i, n := range h.nodes {
		st, err := n.Client().BGP(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].HoldTime != 3*1e9 ||
			!slices.Equal(st.Announced, []string{vip4Prefix.String()}) {
			t.Errorf("node %d: bgp %+v", i, st)
		}
		out := n.MustCtl("bgp")
		if !strings.Contains(out, "established") || !strings.Contains(out, "Announced: "+vip4Prefix.String()) {
			t.Errorf("node %d: xlbctl bgp:\n%s", i, out)
		}
		if m := n.Metrics(); !strings.Contains(m, `xlb_bgp_peer_up{peer="`+h.topo.Router.Addr4.String()+`"} 1`) ||
			!strings.Contains(m, "xlb_bgp_announced_prefixes 1\n") {
			t.Errorf("node %d: bgp metrics missing:\n%s", i, grepLines(m, "xlb_bgp"))
		}
		if s := n.MustCtl("status"); !strings.Contains(s, "bgp: vip announced") {
			t.Errorf("node %d: status does not say the VIP is announced:\n%s", i, s)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func diff(a, b []int) []int {
	out := make([]int, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// newFlowsPerNode reads each node's new-flow count of the haPort service.
func (h *haLab) newFlowsPerNode() []int {
	h.t.Helper()
	out := make([]int, len(h.nodes))
	for i, n := range h.nodes {
		if !n.Running() {
			continue
		}
		st, err := n.Client().Status(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		for _, s := range st.Services {
			if strings.HasSuffix(s.Service, fmt.Sprintf(":%d/tcp", haPort)) {
				out[i] = int(s.NewFlows)
			}
		}
	}
	return out
}

// TestBGPIdenticalTables: with the backends listed in a different order on
// every node, the maglev and source-hash tables are byte for byte the same.
func TestBGPIdenticalTables(t *testing.T) {
	h := newHALab(t, 3, "maglev")
	h.startNodes()
	for _, port := range []int{haPort, haShPort} {
		key := fmt.Sprintf("%s:%d/tcp", h.topo.VIP4, port)
		var first api.Table
		for i, n := range h.nodes {
			tbl, err := n.Client().Table(context.Background(), key, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(tbl.Counts) != len(h.topo.Backends) {
				t.Errorf("node %d, %s: %v", i, key, tbl.Counts)
			}
			if i == 0 {
				first = tbl
				t.Logf("%s (%s): %d slots, sha256 %s, per backend %v", key, tbl.Scheduler, tbl.Size, tbl.SHA256, tbl.Counts)
				continue
			}
			if tbl.SHA256 != first.SHA256 || !slices.Equal(tbl.Slots, first.Slots) {
				t.Errorf("node %d's table of %s differs from node 0's", i, key)
			}
		}
	}
}

// TestBGPNodeLossMaglev, …SourceHash and …LeastConn: long-lived streams
// while one node's link goes down. The streams on the other nodes must not
// notice. Those on the lost node reach their backend through another node
// once the router converged: with maglev and source-hash every node picks
// the same backend, so none breaks; least-conn picks by the node's own
// counts, so the figure is reported.
//
// The router's ECMP (Linux: hash-threshold) also moves some flows between
// the surviving nodes when a next hop leaves the group: harmless under
// maglev and source-hash, a reschedule under least-conn.
func TestBGPNodeLossMaglev(t *testing.T) { testNodeLoss(t, "maglev", "maglev", haPort, true) }
func TestBGPNodeLossSourceHash(t *testing.T) {
	testNodeLoss(t, "maglev", "source-hash", haShPort, true)
}
func TestBGPNodeLossLeastConn(t *testing.T) {
	testNodeLoss(t, "least-conn", "least-conn", haPort, false)
}

func testNodeLoss(t *testing.T, sched, name string, port uint16, wantNoneBroken bool) {
	h := newHALab(t, 3, sched)
	h.startNodes()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	streams := h.openStreams(30, port, stop, &wg)
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(500 * time.Millisecond)

	// The node that carries the most streams goes.
	per := make([]int, len(h.nodes))
	onNode := make([]int, len(streams))
	for i, s := range streams {
		onNode[i] = h.nodeOf(s.src)
		if onNode[i] >= 0 {
			per[onNode[i]]++
		}
	}
	lost := 0
	for i := range per {
		if per[i] > per[lost] {
			lost = i
		}
	}
	t.Logf("streams per node %v; node %s goes", per, h.topo.Balancers[lost].Name)
	if err := h.topo.SetBalancerLink(lost, false); err != nil {
		t.Fatal(err)
	}
	conv := h.waitHops(h.hopsWithout(lost), 30*time.Second)
	t.Logf("the router withdrew %s %v after its link went down (hold time %v)", h.topo.Balancers[lost].Name, conv.Round(10*time.Millisecond), haHold)
	time.Sleep(3 * time.Second) // the moved streams run on their new nodes

	var brokenLost, brokenOther, onLost int
	for i, s := range streams {
		if onNode[i] == lost {
			onLost++
		}
		if s.broken.Load() {
			if onNode[i] == lost {
				brokenLost++
			} else {
				brokenOther++
				if wantNoneBroken {
					t.Errorf("stream %s on a surviving node broke: %v", s.src, s.err.Load())
				}
			}
		}
	}
	t.Logf("%s, node loss: %d of %d streams on the lost node broke, %d of %d on the others",
		name, brokenLost, onLost, brokenOther, len(streams)-onLost)
	if wantNoneBroken && brokenLost > 0 {
		t.Errorf("%d of the %d streams of the lost node broke: with %s every node picks the same backend", brokenLost, onLost, name)
	}
	// New connections work on the surviving nodes.
	if _, errs := h.newConns(60, port); len(errs) > 0 {
		t.Errorf("%d of 60 new connections failed after the node loss, first: %v", len(errs), errs[0])
	}
}

// TestBGPGracefulRestart: kill -9 of one node's xlbd and a restart, under
// load: no connection breaks, and the router's route to that node never
// loses it (graceful restart keeps it while the session is down).
func TestBGPGracefulRestart(t *testing.T) {
	h := newHALab(t, 3, "maglev")
	h.startNodes()
	all := h.hopsWithout(-1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	streams := h.openStreams(30, haPort, stop, &wg)

	// Watch the route every 10 ms from before the kill to after the
	// restart.
	var missing atomic.Int64
	watchDone := make(chan struct{})
	watchStop := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if got, err := h.topo.Router.NS.NextHops(vip4Prefix); err != nil || !slices.Equal(got, all) {
				missing.Add(1)
			}
		}
	}()
	var failedNew atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, errs := h.newConns(5, haPort); len(errs) > 0 {
				failedNew.Add(int64(len(errs)))
			}
		}
	}()

	time.Sleep(time.Second)
	h.nodes[1].Kill()
	time.Sleep(time.Second)
	h.nodes[1].Start()
	if !strings.Contains(h.nodes[1].Log(), "re-adopted") {
		t.Errorf("the restarted xlbd did not re-adopt its data plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.bird.WaitEstablished(ctx, h.topo.Balancers[1].Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(watchStop)
	<-watchDone
	close(stop)
	wg.Wait()

	broken := 0
	for _, s := range streams {
		if s.broken.Load() {
			broken++
			t.Errorf("stream %s broke: %v", s.src, s.err.Load())
		}
	}
	t.Logf("kill -9 and restart of %s: %d of %d streams broke, %d new connections failed, the route lacked a next hop in %d of its samples",
		h.topo.Balancers[1].Name, broken, len(streams), failedNew.Load(), missing.Load())
	if missing.Load() > 0 {
		t.Errorf("the router's route lost a next hop during the restart (%d samples of 10 ms)", missing.Load())
	}
	if failedNew.Load() > 0 {
		t.Errorf("%d new connections failed during the restart", failedNew.Load())
	}
	if all, err := h.bird.ShowProtocolsAll(h.topo.Balancers[1].Name); err == nil {
		t.Logf("after the restart:\n%s", grepLines(all, "restart"))
	}
}

// TestBGPWithdrawWhenBackendsFail: every backend of one node fails that
// node's checks: it withdraws the VIP, and the others keep serving it.
func TestBGPWithdrawWhenBackendsFail(t *testing.T) {
	h := newHALab(t, 3, "maglev")
	h.startNodes()
	// Node 2 now checks a port nothing listens on.
	h.nodes[2].WriteConfig(h.config(2, ", port: 9"))
	h.nodes[2].Reload()
	conv := h.waitHops(h.hopsWithout(2), 30*time.Second)
	t.Logf("node lb3 withdrew its VIP %v after its backends began failing", conv.Round(10*time.Millisecond))
	st, err := h.nodes[2].Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Services[0].Announced {
		t.Errorf("status says the VIP is still announced: %+v", st.Services[0])
	}
	counts, errs := h.newConns(120, haPort)
	if len(errs) > 0 {
		t.Errorf("%d of 120 connections failed, first: %v", len(errs), errs[0])
	}
	t.Logf("120 connections with lb3 withdrawn: %v", counts)
	// Its backends pass again: it comes back.
	h.nodes[2].WriteConfig(h.config(2, ""))
	h.nodes[2].Reload()
	h.waitHops(h.hopsWithout(-1), 30*time.Second)
}

// TestBGPPlannedStop: SIGTERM withdraws the node's VIPs first and exits
// only after its drain time: no connection breaks.
func TestBGPPlannedStop(t *testing.T) {
	h := newHALab(t, 3, "maglev")
	h.startNodes()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	streams := h.openStreams(30, haPort, stop, &wg)
	time.Sleep(500 * time.Millisecond)

	var failedNew atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, errs := h.newConns(5, haPort); len(errs) > 0 {
				failedNew.Add(int64(len(errs)))
			}
		}
	}()
	stopped := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		err := h.nodes[0].Daemon.Stop(20 * time.Second)
		if err != nil {
			t.Errorf("stop: %v", err)
		}
		stopped <- time.Now()
	}()
	withdrawn := h.waitHops(h.hopsWithout(0), 30*time.Second)
	exited := (<-stopped).Sub(start)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("SIGTERM: the router dropped lb1 %v later, xlbd exited %v later (drain_time 2s)",
		withdrawn.Round(10*time.Millisecond), exited.Round(10*time.Millisecond))
	if exited < withdrawn {
		t.Errorf("xlbd exited (%v) before the router dropped it (%v)", exited, withdrawn)
	}
	broken := 0
	for _, s := range streams {
		if s.broken.Load() {
			broken++
			t.Errorf("stream %s broke: %v", s.src, s.err.Load())
		}
	}
	if failedNew.Load() > 0 {
		t.Errorf("%d new connections failed across the planned stop", failedNew.Load())
	}
	t.Logf("planned stop: %d of %d streams broke, %d new connections failed", broken, len(streams), failedNew.Load())
}

// TestBGPNodeJoin: a fourth node joins; the streams that the router moves
// onto it keep their backends (maglev).
func TestBGPNodeJoin(t *testing.T) {
	h := newHALab(t, 4, "maglev")
	h.startNodes(0, 1, 2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	streams := h.openStreams(40, haPort, stop, &wg)
	time.Sleep(500 * time.Millisecond)
	h.startNodes(3)
	time.Sleep(3 * time.Second)
	// A stream the router moved is in the new node's connection table (and
	// still in its old node's, until it idles out there).
	flows, err := h.nodes[3].Client().Flows(context.Background(), 100000)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, s := range streams {
		if slices.ContainsFunc(flows, func(f api.Flow) bool { return f.Client == s.src.String() }) {
			moved++
		}
	}
	close(stop)
	wg.Wait()
	broken := 0
	for _, s := range streams {
		if s.broken.Load() {
			broken++
			t.Errorf("stream %s broke: %v", s.src, s.err.Load())
		}
	}
	t.Logf("a fourth node joined: %d of %d streams moved onto it, %d broke", moved, len(streams), broken)
	if moved == 0 {
		t.Errorf("no stream moved onto the new node: the router did not re-hash")
	}
}

// TestBGPBadConfig: a bad bgp section is refused, naming the field, and
// nothing of it is applied: at start, on SIGHUP and through the API.
func TestBGPBadConfig(t *testing.T) {
	h := newHALab(t, 1, "maglev")
	good := h.config(0, "")
	n := h.nodes[0]

	n.WriteConfig(strings.Replace(good, "asn: 65001", "asn: 0", 1))
	out, err := n.Run(context.Background())
	if err == nil || !strings.Contains(out, "bgp.asn 0: not an AS number") {
		t.Errorf("start with asn 0: %v\n%s", err, out)
	}

	n.WriteConfig(good)
	h.startNodes()
	for _, bad := range []struct{ from, to, want string }{
		{"hold_time: 3s", "hold_time: 1s", "bgp.peers[0].hold_time 1s: out of range 3s-"},
		{"{address: " + h.topo.Router.Addr4.String() + ",", "{address: 198.18.0.300,", `198.18.0.300`},
		{"asn: 65001", "asn: 0", "bgp.asn 0"},
	} {
		n.WriteConfig(strings.Replace(good, bad.from, bad.to, 1))
		n.Reload()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(n.Log(), bad.want) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(n.Log(), bad.want) {
			t.Errorf("reload with %s: the log does not say %q", bad.to, bad.want)
		}
	}
	st, err := n.Client().BGP(context.Background())
	if err != nil || st.ASN != haNodeASN || len(st.Peers) != 1 || st.Peers[0].State != "established" {
		t.Errorf("after the refused reloads: %+v %v", st, err)
	}
	code, body, err := n.Request(context.Background(), "PUT", "/v1/bgp", strings.NewReader(`{"asn":65001,"peers":[{"address":"198.18.0.1","asn":65000,"hold_time":"2s"}]}`))
	if err != nil || code != 400 || !strings.Contains(string(body), "peers[0].hold_time 2s") {
		t.Errorf("PUT /v1/bgp with a hold time of 2s: %d %s %v", code, body, err)
	}
	h.waitHops(h.hopsWithout(-1), 5*time.Second)
	n.WriteConfig(good)
}
