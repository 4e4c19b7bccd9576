package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// The HA lab's settings.
const (
	haClients  = 100             // client source addresses
	haHold     = 3 * time.Second // BGP hold time, BIRD's and the nodes'
	haStreams  = 24              // long-lived connections per step
	haNodeASN  = lab.DefaultBalancerASN
	haRouteASN = lab.DefaultRouterASN
	// haConverge bounds every wait for the router's route.
	haConverge = 30 * time.Second
)

// ErrNoBird is RunHA's error when BIRD is not installed.
var ErrNoBird = errors.New("the demo's router runs BIRD 2, which is not installed: apt-get install bird2, then run sudo make demo-ha again")

// findBird finds the bird binary (tests replace it).
var findBird = lab.BirdPath

func (d *haRun) stepBuild(ctx context.Context) error {
	d.ui.title("Build")
	bird, err := findBird()
	if err != nil {
		return ErrNoBird
	}
	if err := d.prepareHost(ctx); err != nil {
		return err
	}
	if err := d.setUp(ctx); err != nil {
		return err
	}
	d.res.Dir = d.dir
	if err := d.build(ctx); err != nil {
		return err
	}
	version := "BIRD"
	if out, err := exec.CommandContext(ctx, bird, "--version").CombinedOutput(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	d.ui.line("found %s at %s: the router's BGP daemon", version, bird)
	return nil
}

func (d *haRun) stepLab(ctx context.Context) error {
	d.ui.title("Lab: a client, a router running BIRD, three balancer nodes, three web servers")
	w := d.ui.wait("creating network namespaces")
	topo, err := lab.NewHA(lab.HAConfig{Balancers: 3, Backends: 3, ClientAddrs: haClients})
	w.end("")
	if err != nil {
		return fmt.Errorf("build the lab: %w", err)
	}
	d.topo = topo
	d.res.Prefix = topo.Prefix
	d.vip = netip.AddrPortFrom(topo.VIP4, 80)
	d.service = d.vip.String() + "/tcp"
	d.res.Service = d.service
	d.res.Nodes = map[string]netip.Addr{}
	for _, h := range topo.Backends {
		if _, err := h.ServeHTTP(h.Name, 80); err != nil {
			return err
		}
		d.res.Backends[h.Name] = h.Addr4
	}

	var neighbors []lab.BirdNeighbor
	for _, b := range topo.Balancers {
		neighbors = append(neighbors, lab.BirdNeighbor{Name: b.Name, Addr: b.Addr4, ASN: haNodeASN, Passive: true})
		d.res.Nodes[b.Name] = b.Addr4
		d.res.Pins = append(d.res.Pins, xlbdproc.HostBPFFS(b))
	}
	bird, err := topo.StartBird(lab.BirdConfig{HoldTime: haHold, Neighbors: neighbors})
	if err != nil {
		return err
	}
	d.bird = bird
	d.res.BirdDir, d.res.BirdPID = bird.Dir, bird.PID()

	r, c := topo.Router, topo.Client
	ex := c.Extra4
	t := d.ui.table("HOST", "NAMESPACE", "ADDRESS", "ROLE")
	t.row("client", c.NS.Name, fmt.Sprintf("%s-%s (%d addresses)", ex[0], ex[len(ex)-1], len(ex)), "connects to the VIP "+d.vip.String())
	t.row("router", r.NS.Name, fmt.Sprintf("%s, %s", r.ClientAddr4, r.Addr4), fmt.Sprintf("BIRD 2 (pid %d), AS %d: BGP with the nodes, hold time %s", bird.PID(), haRouteASN, haHold))
	for _, b := range topo.Balancers {
		t.row(b.Name, b.NS.Name, b.Addr4, fmt.Sprintf("balancer node: xlbd, AS %d, XDP on %s", haNodeASN, lab.LinkName))
	}
	for _, h := range topo.Backends {
		t.row(h.Name, h.NS.Name, h.Addr4, "web server; holds the VIP on lo (direct server return)")
	}
	t.flush()
	d.ui.line("The router forwards between the client and the segment of the nodes and backends. It")
	d.ui.line("learns the VIP from the nodes over BGP and hashes each connection's addresses and")
	d.ui.line("ports to pick one of the nodes announcing it (ECMP). Replies go from the backends")
	d.ui.line("straight to the router, not through a node.")
	return nil
}

// haConfig is node i's config file: the same service on every node, its
// backends listed in an order of the node's own (a rotation: the Maglev
// table does not depend on it), and BGP to the router.
func (d *haRun) haConfig(i int) string {
	b := d.topo.Balancers[i]
	var be strings.Builder
	n := len(d.topo.Backends)
	for j := range n {
		h := d.topo.Backends[(i+j)%n]
		fmt.Fprintf(&be, "      - address: %s   # %s\n", h.Addr4, h.Name)
	}
	return fmt.Sprintf(`# Node %[1]s of the HA demo (generated).
interface: %[2]s
limits: {conntrack_size: 65536, max_services: 16, max_backends: 64}
services:
  - vip: %[3]s
    port: %[4]d
    protocol: tcp
    scheduler: maglev
    health: {type: http, interval: 300ms, timeout: 200ms, rise: 1, fall: 2, http: {path: %[5]s}}
    backends:
%[6]sbgp:
  asn: %[7]d
  router_id: %[8]s
  next_hop: %[8]s
  graceful_restart: {restart_time: 60s}
  drain_time: 1s
  peers:
    - {address: %[9]s, asn: %[10]d, hold_time: %[11]s}
`, b.Name, lab.LinkName, d.vip.Addr(), d.vip.Port(), lab.HealthPath, be.String(), haNodeASN, b.Addr4,
		d.topo.Router.Addr4, haRouteASN, haHold)
}

// allHops are the addresses of every node: the route the router should
// have.
func (d *haRun) allHops() []netip.Addr { return d.hopsWithout(-1) }

func (d *haRun) hopsWithout(skip int) []netip.Addr {
	var out []netip.Addr
	for i, b := range d.topo.Balancers {
		if i != skip {
			out = append(out, b.Addr4)
		}
	}
	return out
}

func (d *haRun) vipPrefix() netip.Prefix { return netip.PrefixFrom(d.vip.Addr(), 32) }

// waitRoute waits until the router's route to the VIP has exactly hops and
// returns how long that took.
func (d *haRun) waitRoute(ctx context.Context, hops []netip.Addr) (time.Duration, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, haConverge)
	defer cancel()
	if _, err := d.topo.Router.NS.WaitNextHops(wctx, d.vipPrefix(), hops); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	return time.Since(start), nil
}

func (d *haRun) stepNodes(ctx context.Context) error {
	d.ui.title("Start xlbd on the three nodes: each announces the VIP to the router over BGP")
	for i, b := range d.topo.Balancers {
		x, err := xlbdproc.New(xlbdproc.Options{Bins: d.bins, Host: b, Config: d.haConfig(i),
			Metrics: xlbdproc.DefaultMetrics, TempDir: d.dir})
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, x)
	}
	cfg := d.haConfig(0)
	d.ui.line("lb1's config, its bgp section (lb2 and lb3 differ in router_id and next_hop, and list")
	d.ui.line("the backends in another order):")
	d.ui.quote(cfg[strings.Index(cfg, "bgp:"):])
	d.ui.line("$ xlbd --interface %s --config ...   (on each node, in its namespace, log to a file)", lab.LinkName)
	for _, x := range d.nodes {
		if err := x.Launch(); err != nil {
			return err
		}
		d.res.XlbdPIDs = append(d.res.XlbdPIDs, x.PID())
	}
	for _, x := range d.nodes {
		if err := x.WaitAPI(ctx); err != nil {
			return err
		}
	}
	w := d.ui.wait("waiting for the health checks, the BGP sessions and the route")
	took, err := d.waitRoute(ctx, d.allHops())
	w.end("")
	if err != nil {
		return fmt.Errorf("the router did not route the VIP over the three nodes: %w", err)
	}
	d.res.Route = d.allHops()
	d.ui.line("all three nodes healthy, in session with the router and announcing %s after %s", d.vipPrefix(), seconds(took))
	fmt.Fprintln(d.ui.w)

	route, err := d.bird.Command("show route for " + d.vipPrefix().String())
	if err != nil {
		return err
	}
	d.res.BirdRoute = route
	d.ui.line("$ birdc show route for %s   (BIRD: one route per node, all used: \"merge paths\")", d.vipPrefix())
	d.ui.quote(route)
	if err := d.showKernelRoute(ctx); err != nil {
		return err
	}
	out, err := d.nodes[0].Ctl("bgp")
	if err != nil {
		return err
	}
	d.ui.line("$ xlbctl bgp   (on lb1)")
	d.ui.quote(strings.TrimRight(out, "\n"))
	fmt.Fprintln(d.ui.w)
	return d.showTables(ctx)
}

// showKernelRoute prints the router's kernel route to the VIP: one route,
// a next hop per node.
func (d *haRun) showKernelRoute(ctx context.Context) error {
	if _, err := exec.LookPath("ip"); err != nil {
		hops, err := d.topo.Router.NS.NextHops(d.vipPrefix())
		if err != nil {
			return err
		}
		d.ui.line("the router's kernel route to %s: next hops %v", d.vip.Addr(), hops)
		return nil
	}
	out, err := d.topo.Router.NS.Command(ctx, "ip", "route", "show", d.vip.Addr().String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route show %s: %w: %s", d.vip.Addr(), err, out)
	}
	d.ui.line("$ ip route show %s   (the router's kernel: one route, three next hops)", d.vip.Addr())
	d.ui.quote(strings.TrimRight(string(out), "\n"))
	return nil
}

// showTables prints each node's Maglev table digest: the same on every
// node, so every node picks the same backend for a connection.
func (d *haRun) showTables(ctx context.Context) error {
	t := d.ui.table("NODE", "MAGLEV TABLE (SHA-256)", "SLOTS PER BACKEND")
	var first string
	same := true
	for i, x := range d.nodes {
		tbl, err := x.Client().Table(ctx, d.service, false)
		if err != nil {
			return err
		}
		name := d.topo.Balancers[i].Name
		d.res.Tables[name] = tbl.SHA256
		var per []string
		for _, h := range d.topo.Backends {
			per = append(per, fmt.Sprintf("%s %d", h.Name, tbl.Counts[h.Addr4.String()]))
		}
		t.row(name, short(tbl.SHA256), strings.Join(per, ", "))
		if i == 0 {
			first = tbl.SHA256
		}
		same = same && tbl.SHA256 == first
	}
	t.flush()
	if !same {
		return errors.New("the nodes built different Maglev tables from the same backends")
	}
	d.ui.line("Every node builds the same table: whichever node the router picks, a connection")
	d.ui.line("goes to the same backend.")
	return nil
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16] + "…"
	}
	return sum
}

// newFlows reads each running node's new-flow count of the service.
func (d *haRun) newFlows(ctx context.Context) ([]int, error) {
	out := make([]int, len(d.nodes))
	for i, x := range d.nodes {
		st, err := x.Client().Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.topo.Balancers[i].Name, err)
		}
		for _, s := range st.Services {
			if s.Service == d.service {
				out[i] = int(s.NewFlows)
			}
		}
	}
	return out, nil
}

func (d *haRun) stepSpread(ctx context.Context) error {
	n := d.opts.Requests
	d.ui.title("Spread: %d new connections from %d client addresses", n, min(n, haClients))
	sp := &Spread{Connections: n, Clients: min(n, haClients), NewFlows: map[string]int{}, Backends: map[string]int{}}
	d.res.Spread = sp
	before, err := d.newFlows(ctx)
	if err != nil {
		return err
	}
	const shown = 6
	t := d.ui.table("#", "CLIENT", "ANSWERED BY", "CLIENT ADDRESS THE BACKEND SAW")
	var w *wait
	for i := range n {
		if err := ctx.Err(); err != nil {
			if w != nil {
				w.end("")
			}
			return err
		}
		if i == shown {
			t.flush()
			w = d.ui.wait("%d more connections", n-shown)
		}
		src := d.nextSrc()
		r, err := d.topo.Client.GetHTTP(src, d.vip, requestTimeout)
		if err != nil {
			sp.Failed++
			if w != nil {
				w.end("")
			} else {
				t.flush()
			}
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		sp.Backends[r.Server]++
		if r.Client != src {
			sp.SeenMismatches++
		}
		if i < shown {
			sp.Requests = append(sp.Requests, Request{Client: src, Backend: r.Server, Seen: r.Client})
			t.row(i+1, src, r.Server, r.Client)
		} else if i%20 == 0 {
			w.set("%d/%d", i-shown, n-shown)
		}
	}
	if w != nil {
		w.end("%d more connections: all answered", n-shown)
	} else {
		t.flush()
	}
	after, err := d.newFlows(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(d.ui.w)
	tn := d.ui.table("NODE", "ADDRESS", "NEW FLOWS (ITS API)", "SHARE")
	for i, b := range d.topo.Balancers {
		k := after[i] - before[i]
		sp.NewFlows[b.Name] = k
		share := float64(k) / float64(n)
		tn.row(b.Name, b.Addr4, k, fmt.Sprintf("%5.1f%%  %s", 100*share, bar(share, 30)))
	}
	tn.flush()
	fmt.Fprintln(d.ui.w)
	tb := d.ui.table("BACKEND", "ADDRESS", "CONNECTIONS", "SHARE")
	for _, h := range d.topo.Backends {
		share := float64(sp.Backends[h.Name]) / float64(n)
		tb.row(h.Name, h.Addr4, sp.Backends[h.Name], fmt.Sprintf("%5.1f%%  %s", 100*share, bar(share, 30)))
	}
	tb.flush()
	if sp.SeenMismatches > 0 {
		return fmt.Errorf("%d answers came from backends that saw another address than the client's", sp.SeenMismatches)
	}
	for _, b := range d.topo.Balancers {
		if sp.NewFlows[b.Name] == 0 {
			return fmt.Errorf("the router sent none of %d connections to %s: %v", n, b.Name, sp.NewFlows)
		}
	}
	for _, h := range d.topo.Backends {
		if sp.Backends[h.Name] == 0 {
			return fmt.Errorf("no connection reached %s: %v", h.Name, sp.Backends)
		}
	}
	d.ui.line("The router spread the connections over the three nodes, each node spread its share")
	d.ui.line("over the three backends, and every backend saw the client's own address and port.")
	return nil
}

// nodeOfStreams returns, for each stream, the names of the nodes (among
// those listed) whose connection table holds it.
func (d *haRun) nodeOfStreams(ctx context.Context, set *streamSet, nodes []int) ([][]string, error) {
	out := make([][]string, len(set.list))
	for _, i := range nodes {
		flows, err := d.nodes[i].Client().Flows(ctx, 100000)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.topo.Balancers[i].Name, err)
		}
		have := map[string]bool{}
		for _, f := range flows {
			have[f.Client] = true
		}
		for k, s := range set.list {
			if have[s.client.String()] {
				out[k] = append(out[k], d.topo.Balancers[i].Name)
			}
		}
	}
	return out, nil
}

// streamsPerNode counts streams by their (single) node and returns the
// node of each and the index of the busiest node.
func (d *haRun) streamsPerNode(ctx context.Context, set *streamSet) ([]string, map[string]int, int, error) {
	where, err := d.nodeOfStreams(ctx, set, []int{0, 1, 2})
	if err != nil {
		return nil, nil, 0, err
	}
	of := make([]string, len(where))
	per := map[string]int{}
	for k, w := range where {
		if len(w) != 1 {
			return nil, nil, 0, fmt.Errorf("long-lived connection %s is in the connection table of %d nodes %v, want one", set.list[k].client, len(w), w)
		}
		of[k] = w[0]
		per[w[0]]++
	}
	busiest := 0
	for i, b := range d.topo.Balancers {
		if per[b.Name] > per[d.topo.Balancers[busiest].Name] {
			busiest = i
		}
	}
	return of, per, busiest, nil
}

func perNodeText(d *haRun, per map[string]int) string {
	var s []string
	for _, b := range d.topo.Balancers {
		s = append(s, fmt.Sprintf("%s %d", b.Name, per[b.Name]))
	}
	return strings.Join(s, ", ")
}

// watchStreams shows a spinner with the streams' counts for dur.
func (d *haRun) watchStreams(ctx context.Context, set *streamSet, dur time.Duration, format string, args ...any) error {
	w := d.ui.wait(format, args...)
	defer w.end("")
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		ok, broken := set.counts()
		w.set("%d answering, %d broken", ok, broken)
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func (d *haRun) stepNodeLoss(ctx context.Context) error {
	d.ui.title("Node loss: a node's link goes down under %d long-lived connections", haStreams)
	nl := &NodeLoss{HoldTime: haHold}
	d.res.NodeLoss = nl
	set, err := d.openStreams(ctx, haStreams)
	if err != nil {
		return err
	}
	d.ui.line("opened %d kept-alive HTTP connections from %d client addresses; each sends a request", haStreams, haStreams)
	d.ui.line("every %s, and every answer names the backend", streamEvery)
	of, per, lost, err := d.streamsPerNode(ctx, set)
	if err != nil {
		return err
	}
	if err := d.watchStreams(ctx, set, time.Second, "connections running"); err != nil {
		return err
	}
	lname := d.topo.Balancers[lost].Name
	nl.Node = lname
	d.ui.line("connections per node (from their connection tables): %s", perNodeText(d, per))

	if err := d.topo.SetBalancerLink(lost, false); err != nil {
		return err
	}
	nl.Down = time.Now()
	d.ui.line("pulled %s's cable (its link is down): nothing tells the router, only BGP's hold time", lname)
	w := d.ui.wait("waiting for the router to drop %s (hold time %s)", lname, haHold)
	nl.Detection, err = d.waitRoute(ctx, d.hopsWithout(lost))
	w.end("")
	if err != nil {
		return fmt.Errorf("the router did not drop %s: %w", lname, err)
	}
	dropped := nl.Down.Add(nl.Detection)
	d.ui.line("the router dropped %s %s after its link went down", lname, seconds(nl.Detection))

	// The lost node's connections resume once TCP retransmits through
	// the new route.
	w = d.ui.wait("waiting for %s's connections to answer again through the other nodes", lname)
	deadline := time.Now().Add(streamWait + 5*time.Second)
	for {
		waiting := 0
		for k, s := range set.list {
			if st := s.state(); of[k] == lname && st.err == nil && !st.lastAt.After(dropped) {
				waiting++
			}
		}
		w.set("%d waiting", waiting)
		if waiting == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			w.end("")
			return err
		}
	}
	w.end("")
	if err := d.watchStreams(ctx, set, time.Second, "connections running"); err != nil {
		return err
	}
	var survivors []int
	for i := range d.nodes {
		if i != lost {
			survivors = append(survivors, i)
		}
	}
	after, err := d.nodeOfStreams(ctx, set, survivors)
	if err != nil {
		return err
	}
	set.stop()

	var lostRows []Stream
	moved := 0
	for k, s := range set.list {
		st := s.state()
		row := Stream{Client: s.client, NodeBefore: of[k], BackendBefore: s.first, BackendAfter: st.last,
			Answers: st.answers, LongestPause: st.pause, Broken: st.broken(s.first)}
		row.NodeAfter = of[k]
		for _, n := range after[k] {
			if n != of[k] {
				row.NodeAfter = n
			}
		}
		if st.err != nil {
			row.Error = st.err.Error()
		}
		if of[k] == lname && st.err == nil && !st.lastAt.After(dropped) {
			row.Broken, row.Error = true, "no answer since the router dropped "+lname
		}
		nl.Streams = append(nl.Streams, row)
		if row.Broken {
			nl.Broken++
		}
		if of[k] != lname {
			if row.NodeAfter != row.NodeBefore {
				moved++
			}
			continue
		}
		nl.OnLost++
		if row.Broken {
			nl.BrokenOnLost++
		} else if st.resumed.After(nl.Down) {
			nl.Resumed = max(nl.Resumed, st.resumed.Sub(nl.Down))
		}
		if row.BackendAfter == row.BackendBefore && !row.Broken {
			nl.KeptBackend++
		}
		lostRows = append(lostRows, row)
	}

	fmt.Fprintln(d.ui.w)
	tl := d.ui.table("TIME", "EVENT")
	tl.row("+0.00s", fmt.Sprintf("%s's link down", lname))
	tl.row("+"+seconds(nl.Detection), fmt.Sprintf("the router drops %s: its hold timer (%s) expired; route via %s", lname, haHold, hopNames(d, d.hopsWithout(lost))))
	if nl.Resumed > 0 {
		tl.row("+"+seconds(nl.Resumed), fmt.Sprintf("the last of %s's connections answers again (TCP retransmitted)", lname))
	}
	tl.flush()
	if proto, err := d.bird.Command("show protocols"); err == nil {
		fmt.Fprintln(d.ui.w)
		d.ui.line("$ birdc show protocols")
		d.ui.quote(proto)
	}
	fmt.Fprintln(d.ui.w)
	d.ui.line("%s's connections:", lname)
	t := d.ui.table("CONNECTION", "NODE BEFORE", "BACKEND BEFORE", "NODE AFTER", "BACKEND AFTER", "LONGEST PAUSE", "RESULT")
	for _, r := range lostRows {
		verdict := "same backend"
		switch {
		case r.Error != "":
			verdict = "BROKEN: " + r.Error
		case r.BackendAfter != r.BackendBefore:
			verdict = "BROKEN: another backend"
		}
		t.row(r.Client, r.NodeBefore, r.BackendBefore, r.NodeAfter, r.BackendAfter, seconds(r.LongestPause), verdict)
	}
	t.flush()
	others := len(set.list) - nl.OnLost
	d.ui.line("%d of %s's %d connections broke: each went on through another node to the same", nl.BrokenOnLost, lname, nl.OnLost)
	d.ui.line("backend, which still had it open. The other nodes' %d connections: %d broke (the", others, nl.Broken-nl.BrokenOnLost)
	d.ui.line("router's re-hash moved %d of them between the surviving nodes, to the same backend).", moved)
	switch {
	case nl.OnLost == 0:
		return fmt.Errorf("%s carried no connection", lname)
	case nl.Broken > 0:
		return fmt.Errorf("%d of %d long-lived connections broke when %s went (%d of its %d)", nl.Broken, len(set.list), lname, nl.BrokenOnLost, nl.OnLost)
	case nl.KeptBackend != nl.OnLost:
		return fmt.Errorf("only %d of %s's %d connections kept their backend", nl.KeptBackend, lname, nl.OnLost)
	}

	if err := d.topo.SetBalancerLink(lost, true); err != nil {
		return err
	}
	w = d.ui.wait("plugged %s's cable back in: waiting for the router to use it again", lname)
	nl.Rejoin, err = d.waitRoute(ctx, d.allHops())
	w.end("")
	if err != nil {
		return fmt.Errorf("%s did not come back: %w", lname, err)
	}
	d.ui.line("plugged %s's cable back in: the router routes over all three nodes again after %s", lname, seconds(nl.Rejoin))
	return nil
}

func hopNames(d *haRun, hops []netip.Addr) string {
	var s []string
	for _, h := range hops {
		for _, b := range d.topo.Balancers {
			if b.Addr4 == h {
				s = append(s, b.Name)
			}
		}
	}
	return strings.Join(s, ", ")
}

func (d *haRun) stepRestart(ctx context.Context) error {
	d.ui.title("Restart: kill -9 one node's xlbd under load and start it again")
	rs := &Restart{}
	d.res.Restart = rs
	set, err := d.openStreams(ctx, haStreams)
	if err != nil {
		return err
	}
	_, per, victim, err := d.streamsPerNode(ctx, set)
	if err != nil {
		return err
	}
	vname := d.topo.Balancers[victim].Name
	rs.Node, rs.Streams = vname, len(set.list)
	x := d.nodes[victim]
	d.ui.line("opened %d long-lived connections (per node: %s); new connections keep coming,", haStreams, perNodeText(d, per))
	d.ui.line("and the router's route is read every 10 ms")

	all := d.allHops()
	stop := make(chan struct{})
	var bg sync.WaitGroup
	var samples, missing, conns, failed atomic.Int64
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			got, err := d.topo.Router.NS.NextHops(d.vipPrefix())
			samples.Add(1)
			if err != nil || !slices.Equal(got, all) {
				missing.Add(1)
			}
		}
	})
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, err := d.topo.Client.GetHTTP(d.nextSrc(), d.vip, requestTimeout)
			conns.Add(1)
			if err != nil {
				failed.Add(1)
			}
		}
	})
	stopBG := sync.OnceFunc(func() { close(stop); bg.Wait() })
	defer stopBG()

	if err := d.watchStreams(ctx, set, time.Second, "under load"); err != nil {
		return err
	}
	rs.OldPID = x.PID()
	if err := x.Kill(); err != nil {
		return err
	}
	rs.Killed = time.Now()
	d.ui.line("$ kill -9 %d   (xlbd on %s; its XDP program stays attached: the link is pinned)", rs.OldPID, vname)

	// BIRD sees the session's TCP connection close, with no NOTIFICATION:
	// it keeps the node's route, marked stale, for the restart time.
	var birdAt time.Duration
	for time.Since(rs.Killed) < 900*time.Millisecond && rs.BirdSaid == "" {
		if all, err := d.bird.ShowProtocolsAll(vname); err == nil && strings.Contains(all, "graceful restart active") {
			rs.BirdSaid = grepBird(all)
			birdAt = time.Since(rs.Killed)
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	if err := sleep(ctx, time.Until(rs.Killed.Add(time.Second))); err != nil {
		return err
	}
	started := time.Now()
	err = x.Start(ctx)
	if pid := x.PID(); pid != rs.OldPID {
		rs.NewPID = pid
		d.res.XlbdPIDs = append(d.res.XlbdPIDs, pid)
	}
	if err != nil {
		return fmt.Errorf("restart xlbd on %s: %w", vname, err)
	}
	rs.APIBack = time.Since(rs.Killed)
	rs.Readopted = strings.Contains(x.Log(), "re-adopted")
	w := d.ui.wait("waiting for BIRD's session with %s", vname)
	ectx, cancel := context.WithTimeout(ctx, haConverge)
	err = d.bird.WaitEstablished(ectx, vname)
	cancel()
	w.end("")
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	rs.Established = time.Since(rs.Killed)
	if err := d.watchStreams(ctx, set, 2*time.Second, "under load"); err != nil {
		return err
	}
	stopBG()
	_, rs.Broken = set.counts()
	set.stop()
	rs.RouteSamples, rs.RouteMissing = int(samples.Load()), int(missing.Load())
	rs.NewConns, rs.NewFailed = int(conns.Load()), int(failed.Load())

	fmt.Fprintln(d.ui.w)
	tl := d.ui.table("TIME", "EVENT")
	tl.row("+0.00s", fmt.Sprintf("kill -9 of xlbd on %s (pid %d)", vname, rs.OldPID))
	if rs.BirdSaid != "" {
		tl.row("+"+seconds(birdAt), fmt.Sprintf("BIRD: session with %s lost; graceful restart: its route stays", vname))
	}
	tl.row("+"+seconds(started.Sub(rs.Killed)), fmt.Sprintf("xlbd started again (pid %d)", rs.NewPID))
	readopt := ""
	if rs.Readopted {
		readopt = ": it re-adopted the pinned data plane and its flows"
	}
	tl.row("+"+seconds(rs.APIBack), "its API answers"+readopt)
	tl.row("+"+seconds(rs.Established), fmt.Sprintf("BIRD: session with %s established again", vname))
	tl.flush()
	if rs.BirdSaid != "" {
		fmt.Fprintln(d.ui.w)
		d.ui.line("$ birdc show protocols all %s   (while xlbd was down; excerpt)", vname)
		d.ui.quote(rs.BirdSaid)
	}
	fmt.Fprintln(d.ui.w)
	t := d.ui.table()
	t.row("the router's route", fmt.Sprintf("read %d times, %d of them without all three next hops", rs.RouteSamples, rs.RouteMissing))
	t.row("long-lived connections", fmt.Sprintf("%d, %d broken", rs.Streams, rs.Broken))
	t.row("new connections meanwhile", fmt.Sprintf("%d, %d failed", rs.NewConns, rs.NewFailed))
	t.flush()
	switch {
	case rs.RouteMissing > 0:
		return fmt.Errorf("the router's route lacked a next hop in %d of %d readings during the restart", rs.RouteMissing, rs.RouteSamples)
	case rs.Broken > 0:
		return fmt.Errorf("%d of %d long-lived connections broke during the restart", rs.Broken, rs.Streams)
	case rs.NewFailed > 0:
		return fmt.Errorf("%d of %d new connections failed during the restart", rs.NewFailed, rs.NewConns)
	case !rs.Readopted:
		return fmt.Errorf("the restarted xlbd on %s did not re-adopt its data plane", vname)
	}
	d.ui.line("Nothing moved: the data plane kept forwarding without xlbd, the router kept the")
	d.ui.line("route (graceful restart), and the new xlbd took over the pinned maps and flows.")
	return nil
}

// grepBird returns the lines of "show protocols all" that tell the
// session's state and its graceful restart.
func grepBird(all string) string {
	var out []string
	for l := range strings.Lines(all) {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "BGP state:") || strings.Contains(t, "restart") || strings.HasPrefix(t, "Last error:") {
			out = append(out, strings.TrimRight(l, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
