package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/lab"
)

// requestTimeout bounds one request through the VIP. Generous: the
// machine may be busy, and a dead backend answers a SYN with a reset at
// once anyway.
const requestTimeout = 2 * time.Second

func (d *run) stepLab(ctx context.Context) error {
	d.ui.title("Lab: a client, a balancer and three web servers on one Ethernet segment")
	w := d.ui.wait("creating network namespaces")
	topo, err := lab.New(lab.Config{Backends: 3, ClientAddrs: 2})
	w.end("")
	if err != nil {
		return fmt.Errorf("build the lab: %w", err)
	}
	d.topo = topo
	d.res.Prefix = topo.Prefix
	d.res.Pins = d.pinDir()
	d.res.Clients = slices.Clone(topo.Client.Extra4)
	t := d.ui.table("HOST", "NAMESPACE", "ADDRESS", "ROLE")
	c := topo.Client
	t.row("client", c.NS.Name, fmt.Sprintf("%s, %s", c.Extra4[0], c.Extra4[1]), "sends HTTP requests to the VIP "+topo.VIP4.String())
	t.row("balancer", topo.Balancer.NS.Name, topo.Balancer.Addr4, "runs xlbd; its XDP program sits on "+lab.LinkName)
	for _, h := range topo.Backends {
		srv, err := h.ServeHTTP(h.Name, 80)
		if err != nil {
			return err
		}
		d.servers[h.Name] = srv
		d.res.Backends[h.Name] = h.Addr4
		t.row(h.Name, h.NS.Name, h.Addr4, "web server answering \"server="+h.Name+" client=ADDR:PORT\"")
	}
	t.flush()
	d.ui.line("Each backend holds the VIP %s on lo and does not answer ARP for it", topo.VIP4)
	d.ui.line("(arp_ignore=1, arp_announce=2): the set-up of a direct-server-return real server.")
	return nil
}

func (d *run) stepXlbd(ctx context.Context) error {
	rel, err := filepath.Rel(d.root, d.config)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = d.config
	}
	d.ui.title("Start xlbd with %s", rel)
	svc, err := d.checkConfig()
	if err != nil {
		return err
	}
	key, _ := svc.Key()
	d.service = key.String()
	d.res.Service = d.service
	d.vip = netip.AddrPortFrom(key.VIP, key.Port)
	d.health = *svc.Health
	h := d.health
	t := d.ui.table()
	t.row("service", fmt.Sprintf("%s, scheduler %s, forwarding %s", d.service, svc.Scheduler, svc.Forward))
	t.row("backends", backendList(svc))
	t.row("health check", fmt.Sprintf("%s GET %s every %s, timeout %s, fall %d, rise %d", h.Type, h.HTTP.Path, h.Interval, h.Timeout, h.Fall, h.Rise))
	t.flush()
	d.ui.line("$ xlbd --interface %s --config %s ...   (in the balancer's namespace, log to a file)", lab.LinkName, rel)

	if err := d.startXlbd(ctx); err != nil {
		return err
	}
	w := d.ui.wait("waiting for the health checks to bring the backends up")
	var st api.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err = d.status(ctx)
		if err != nil {
			w.end("")
			return err
		}
		up := 0
		for _, s := range st.Services {
			for _, b := range s.Backends {
				if b.State == api.StateUp {
					up++
				}
			}
		}
		w.set("%d of %d up", up, len(svc.Backends))
		if up == len(svc.Backends) {
			break
		}
		if time.Now().After(deadline) {
			w.end("")
			return fmt.Errorf("after 20s only %d of %d backends are up (xlbctl status shows why)", up, len(svc.Backends))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			w.end("")
			return err
		}
	}
	took := w.end("")
	d.ui.line("xlbd runs in the balancer's namespace (pid %d): XDP program attached to %s in %s mode,", d.res.XlbdPID, st.Interface, st.XDPMode)
	d.ui.line("all %d backends healthy after %s", len(svc.Backends), seconds(took))
	return nil
}

// checkConfig reads the demo's config and checks that it fits the lab:
// one service on the lab's VIP, an HTTP health check, the lab's backends.
func (d *run) checkConfig() (config.Service, error) {
	data, err := os.ReadFile(d.config)
	if err != nil {
		return config.Service{}, err
	}
	cfg, err := config.ParseConfig(data)
	if err != nil {
		return config.Service{}, fmt.Errorf("%s: %w", d.config, err)
	}
	var addrs []netip.Addr
	for _, h := range d.topo.Backends {
		addrs = append(addrs, h.Addr4)
	}
	return fitsLab(cfg, addrs)
}

// fitsLab returns the config's one service if it fits the lab: TCP on the
// lab's VIP, an HTTP health check, the lab's backend addresses in order.
func fitsLab(cfg *config.Config, backends []netip.Addr) (config.Service, error) {
	if len(cfg.Services) != 1 {
		return config.Service{}, fmt.Errorf("the demo config needs exactly one service, it has %d", len(cfg.Services))
	}
	svc := cfg.Services[0]
	key, err := svc.Key()
	if err != nil {
		return config.Service{}, err
	}
	if key.VIP != lab.VIP4 || svc.Protocol != "tcp" {
		return config.Service{}, fmt.Errorf("the demo config's service %s must be TCP on the lab's VIP %s", key, lab.VIP4)
	}
	if svc.Health == nil || svc.Health.Type != string(lb.CheckHTTP) || svc.Health.HTTP == nil {
		return config.Service{}, errors.New("the demo config's service needs an http health check")
	}
	if len(svc.Backends) != len(backends) {
		return config.Service{}, fmt.Errorf("the demo config has %d backends, the lab %d", len(svc.Backends), len(backends))
	}
	for i, b := range svc.Backends {
		if a, _ := b.Addr(); a != backends[i] {
			return config.Service{}, fmt.Errorf("the demo config's backend %d is %s, the lab's be%d is %s", i+1, b.Address, i+1, backends[i])
		}
	}
	return svc, nil
}

func backendList(svc config.Service) string {
	var s []string
	for _, b := range svc.Backends {
		s = append(s, b.Address)
	}
	return strings.Join(s, ", ")
}

// firstPort is the first client source port; the ports the demo uses stay
// below the kernel's ephemeral range (32768 up), which it never touches.
const firstPort = 10000

// nextSrc returns the next request's source: the client's two addresses
// in turn, each time with a port not used before in this run. So every
// request is a new flow: the connection table, which keeps a flow on its
// backend for as long as it remembers the 5-tuple, never sees one again
// (with kernel-chosen ports it can, as the demo's clients close with a
// reset and leave no TIME_WAIT to keep the kernel from reusing a port).
func (d *run) nextSrc() netip.AddrPort {
	return sourceN(d.topo.Client.Extra4, int(d.srcs.Add(1))-1)
}

// sourceN is the n-th source (from 0): the addresses in turn, each round
// with the next port from firstPort.
func sourceN(addrs []netip.Addr, n int) netip.AddrPort {
	return netip.AddrPortFrom(addrs[n%len(addrs)], uint16(firstPort+n/len(addrs)))
}

func (d *run) backendNames() []string {
	var names []string
	for _, h := range d.topo.Backends {
		names = append(names, h.Name)
	}
	return names
}

func (d *run) stepBalance(ctx context.Context) error {
	n := d.opts.Requests
	d.ui.title("Balance: %d HTTP requests to %s from two client addresses", n, d.vip)
	const shown = 8
	t := d.ui.table("#", "CLIENT", "ANSWERED BY", "CLIENT ADDRESS THE BACKEND SAW")
	counts := map[string]int{}
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
			w = d.ui.wait("%d more requests", n-shown)
		}
		src := d.nextSrc()
		r, err := d.topo.Client.GetHTTP(src, d.vip, requestTimeout)
		if err != nil {
			if w != nil {
				w.end("")
			} else {
				t.flush()
			}
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		if r.Client != src {
			d.res.SeenMismatches++
		}
		counts[r.Server]++
		if i < shown {
			d.res.Requests = append(d.res.Requests, Request{Client: src, Backend: r.Server, Seen: r.Client})
			t.row(i+1, src, r.Server, r.Client)
		} else if i%20 == 0 {
			w.set("%d/%d", i-shown, n-shown)
		}
	}
	if w != nil {
		w.end("%d more requests: all answered", n-shown)
	}
	d.res.Distribution = counts
	fmt.Fprintln(d.ui.w)
	d.distribution(counts, n)
	if d.res.SeenMismatches > 0 {
		return fmt.Errorf("%d answers came from backends that saw another address than the client's", d.res.SeenMismatches)
	}
	if len(counts) != len(d.topo.Backends) {
		return fmt.Errorf("requests reached %d backends, want all %d: %v", len(counts), len(d.topo.Backends), counts)
	}
	d.ui.line("Every backend saw the client's own address and port: xlb rewrites only the Ethernet")
	d.ui.line("header and the backend answers the client directly. A proxy would show its own address.")
	return nil
}

// distribution prints requests per backend with a bar.
func (d *run) distribution(counts map[string]int, n int) {
	t := d.ui.table("BACKEND", "ADDRESS", "REQUESTS", "SHARE")
	for _, h := range d.topo.Backends {
		share := 0.0
		if n > 0 {
			share = float64(counts[h.Name]) / float64(n)
		}
		t.row(h.Name, h.Addr4, counts[h.Name], fmt.Sprintf("%5.1f%%  %s", 100*share, bar(share, 30)))
	}
	t.flush()
}

// outcome is one request of the failover step's steady stream.
type outcome struct {
	start   time.Time
	backend string
	err     error
}

// stream sends requests one after the other, about 40 a second, until
// stopped, and records each.
type stream struct {
	mu   sync.Mutex
	outs []outcome
	stop chan struct{}
	done chan struct{}
}

func (d *run) startStream() *stream {
	s := &stream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			start := time.Now()
			r, err := d.topo.Client.GetHTTP(d.nextSrc(), d.vip, requestTimeout)
			s.mu.Lock()
			s.outs = append(s.outs, outcome{start: start, backend: r.Server, err: err})
			s.mu.Unlock()
			time.Sleep(25 * time.Millisecond)
		}
	}()
	return s
}

func (s *stream) counts() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.outs {
		if o.err != nil {
			failed++
		} else {
			ok++
		}
	}
	return ok, failed
}

func (s *stream) end() []outcome {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outs)
}

// watch shows a spinner with the stream's counts for dur.
func (d *run) watch(ctx context.Context, s *stream, dur time.Duration, format string, args ...any) error {
	w := d.ui.wait(format, args...)
	defer w.end("")
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		ok, failed := s.counts()
		w.set("%d answered, %d failed", ok, failed)
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// awaitState polls xlbctl status until the backend is in state, showing the
// stream's counts. It returns the backend's status and when it was seen.
func (d *run) awaitState(ctx context.Context, s *stream, addr, state string, limit time.Duration, format string, args ...any) (api.BackendStatus, time.Time, error) {
	w := d.ui.wait(format, args...)
	defer w.end("")
	deadline := time.Now().Add(limit)
	for {
		b, err := d.backendStatus(ctx, addr)
		if err != nil {
			return b, time.Time{}, err
		}
		if b.State == state {
			return b, time.Now(), nil
		}
		if time.Now().After(deadline) {
			return b, time.Time{}, fmt.Errorf("xlbd did not mark backend %s %s within %s (xlbctl status shows it %s%s)", addr, state, limit, b.State, reasonSuffix(b.Reason))
		}
		ok, failed := s.counts()
		w.set("%d answered, %d failed", ok, failed)
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return b, time.Time{}, err
		}
	}
}

// changedAt is when xlbd says the state changed (its since), else when it
// was seen, never before after.
func changedAt(b api.BackendStatus, seen, after time.Time) time.Time {
	if !b.Since.IsZero() && !b.Since.Before(after) && !b.Since.After(seen) {
		return b.Since
	}
	return seen
}

func (d *run) stepFailover(ctx context.Context) error {
	victim := d.topo.Backends[1]
	h := d.health
	bound := time.Duration(h.Fall)*time.Duration(h.Interval) + time.Duration(h.Timeout)
	limit := max(10*time.Second, 5*bound)
	d.ui.title("Failover: kill %s's web server while requests keep coming", victim.Name)
	f := &Failover{Backend: victim.Name, Bound: bound}
	d.res.Failover = f

	s := d.startStream()
	defer s.end()
	if err := d.watch(ctx, s, time.Second, "sending requests, about 40 a second"); err != nil {
		return err
	}
	d.servers[victim.Name].Stop()
	f.Killed = time.Now()
	d.ui.line("killed %s's web server: it refuses connections, as when the process dies", victim.Name)

	b, seen, err := d.awaitState(ctx, s, victim.Addr4.String(), api.StateDown, limit,
		"waiting for the health check to take %s out", victim.Name)
	if err != nil {
		return err
	}
	f.Seen, f.Down = seen, changedAt(b, seen, f.Killed)
	f.Detection, f.Reason = f.Down.Sub(f.Killed), b.Reason
	d.ui.line("xlbd marked %s down %s after the kill (at most fall × interval + timeout = %s)", victim.Name, seconds(f.Detection), seconds(bound))
	if err := d.watch(ctx, s, 2*time.Second, "requests go on to the other backends"); err != nil {
		return err
	}

	srv, err := victim.ServeHTTP(victim.Name, 80)
	if err != nil {
		return fmt.Errorf("restart %s: %w", victim.Name, err)
	}
	d.servers[victim.Name] = srv
	f.Restarted = time.Now()
	d.ui.line("restarted %s's web server", victim.Name)
	b, seenUp, err := d.awaitState(ctx, s, victim.Addr4.String(), api.StateUp, limit,
		"waiting for the health check to bring %s back", victim.Name)
	if err != nil {
		return err
	}
	f.Up = changedAt(b, seenUp, f.Restarted)
	f.Rejoin = f.Up.Sub(f.Restarted)
	d.ui.line("xlbd marked %s up again %s after the restart", victim.Name, seconds(f.Rejoin))
	if err := d.watch(ctx, s, 1500*time.Millisecond, "requests reach all three again"); err != nil {
		return err
	}
	outs := s.end()

	// Phases by when each request started: the detection bounds use when
	// the demo saw the change, so a request counted "while down" surely
	// started after xlbd had taken the backend out.
	names := []string{PhaseBefore, PhaseDetect, PhaseDown, PhaseRestart, PhaseRejoined}
	edges := []time.Time{f.Killed, f.Seen, f.Restarted, seenUp}
	phases := make([]Phase, len(names))
	for i := range phases {
		phases[i] = Phase{Name: names[i], ByBackend: map[string]int{}}
	}
	for _, o := range outs {
		i := 0
		for i < len(edges) && !o.start.Before(edges[i]) {
			i++
		}
		if o.err != nil {
			phases[i].Failed++
		} else {
			phases[i].OK++
			phases[i].ByBackend[o.backend]++
		}
	}
	f.Phases = phases

	fmt.Fprintln(d.ui.w)
	tl := d.ui.table("TIME", "EVENT")
	tl.row("+0.00s", victim.Name+" killed")
	tl.row("+"+seconds(f.Down.Sub(f.Killed)), fmt.Sprintf("xlbd: %s down (%s)", victim.Name, orDash(f.Reason)))
	tl.row("+"+seconds(f.Restarted.Sub(f.Killed)), victim.Name+" restarted")
	tl.row("+"+seconds(f.Up.Sub(f.Killed)), fmt.Sprintf("xlbd: %s up", victim.Name))
	tl.flush()
	fmt.Fprintln(d.ui.w)
	hdr := []string{"REQUESTS STARTED", "ANSWERED", "FAILED"}
	hdr = append(hdr, d.backendNames()...)
	t := d.ui.table(hdr...)
	for _, p := range phases {
		row := []any{p.Name, p.OK, p.Failed}
		for _, n := range d.backendNames() {
			row = append(row, p.ByBackend[n])
		}
		t.row(row...)
	}
	t.flush()

	down, back := phases[2], phases[4]
	switch {
	case phases[0].Failed > 0:
		return fmt.Errorf("%d requests failed before the kill", phases[0].Failed)
	case down.Failed > 0:
		return fmt.Errorf("%d requests failed after xlbd took %s out", down.Failed, victim.Name)
	case down.ByBackend[victim.Name] > 0:
		return fmt.Errorf("%d requests reached %s while it was down", down.ByBackend[victim.Name], victim.Name)
	case back.Failed > 0:
		return fmt.Errorf("%d requests failed after %s rejoined", back.Failed, victim.Name)
	case back.ByBackend[victim.Name] == 0:
		return fmt.Errorf("no request reached %s after it rejoined", victim.Name)
	}
	if failed := phases[1].Failed; failed > 0 {
		d.ui.line("Only requests hashed to %s before the health check caught it failed (%d);", victim.Name, failed)
		d.ui.line("once it was out, every request succeeded on the others, and it rejoined when healthy.")
	} else {
		d.ui.line("No request failed; once %s was out every request went to the others, and it", victim.Name)
		d.ui.line("rejoined when healthy.")
	}
	return nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (d *run) stepDrain(ctx context.Context) error {
	victim := d.topo.Backends[0]
	const want, newConns = 2, 300
	d.ui.title("Drain %s with xlbctl: open connections stay, new ones go elsewhere", victim.Name)
	dr := &Drain{Backend: victim.Name, New: map[string]int{}}
	d.res.Drain = dr

	// Kept-alive connections through the VIP until two land on the victim.
	for i := 0; len(d.held) < want; i++ { // i bounds the attempts
		if i >= 100 {
			return fmt.Errorf("no %d of 100 connections landed on %s", want, victim.Name)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := d.topo.Client.DialHTTP(d.nextSrc(), d.vip, requestTimeout)
		if err != nil {
			return fmt.Errorf("open a kept-alive connection: %w", err)
		}
		r, err := c.Get("/", requestTimeout)
		if err != nil {
			_ = c.Close() // failing anyway; the error below says why
			return fmt.Errorf("request on a kept-alive connection: %w", err)
		}
		if r.Server != victim.Name {
			_ = c.Close() // not one to hold; a reset ends it
			continue
		}
		d.held = append(d.held, c)
		dr.Held = append(dr.Held, HeldConn{Local: c.Local, Before: r.Server})
	}
	d.ui.line("opened %d HTTP keep-alive connections that landed on %s: %s, %s", want, victim.Name, dr.Held[0].Local, dr.Held[1].Local)

	cmd := []string{"backend", "drain", d.service, victim.Addr4.String()}
	out, err := d.ctl(cmd...)
	if err != nil {
		return err
	}
	d.ui.line("$ xlbctl %s", strings.Join(cmd, " "))
	d.ui.block(strings.TrimSpace(out))
	b, err := d.backendStatus(ctx, victim.Addr4.String())
	if err != nil {
		return err
	}
	dr.State = b.State

	ask := func() {
		for i, c := range d.held {
			r, err := c.Get("/", requestTimeout)
			if err != nil {
				dr.Held[i].Error = err.Error()
				dr.Held[i].After = append(dr.Held[i].After, "")
				continue
			}
			dr.Held[i].After = append(dr.Held[i].After, r.Server)
		}
	}
	ask()
	w := d.ui.wait("%d new connections", newConns)
	for i := range newConns {
		if err := ctx.Err(); err != nil {
			w.end("")
			return err
		}
		r, err := d.topo.Client.GetHTTP(d.nextSrc(), d.vip, requestTimeout)
		if err != nil {
			dr.NewFailed++
		} else {
			dr.New[r.Server]++
		}
		if i%20 == 0 {
			w.set("%d/%d", i, newConns)
		}
	}
	w.end("")
	ask()

	fmt.Fprintln(d.ui.w)
	t := d.ui.table("KEPT-ALIVE CONNECTION", "BEFORE THE DRAIN", "AFTER IT", fmt.Sprintf("AFTER %d NEW CONNECTIONS", newConns))
	for _, h := range dr.Held {
		t.row(h.Local, h.Before, orDash(h.After[0]), orDash(h.After[1]))
	}
	t.flush()
	fmt.Fprintln(d.ui.w)
	d.ui.line("%d new connections after the drain:", newConns)
	d.distribution(dr.New, newConns)

	for _, h := range dr.Held {
		for _, a := range h.After {
			if a != victim.Name {
				return fmt.Errorf("kept-alive connection %s to drained %s: answered by %q after the drain (%s)", h.Local, victim.Name, a, h.Error)
			}
		}
	}
	switch {
	case dr.State != api.StateDrain:
		return fmt.Errorf("xlbctl status shows drained %s as %q, want %q", victim.Name, dr.State, api.StateDrain)
	case dr.NewFailed > 0:
		return fmt.Errorf("%d new connections failed after the drain", dr.NewFailed)
	case dr.New[victim.Name] > 0:
		return fmt.Errorf("drained %s got %d new connections", victim.Name, dr.New[victim.Name])
	}
	d.ui.line("The open connections kept talking to %s; no new connection went to it.", victim.Name)
	// Done with them; close(2) frees each whatever it returns.
	for _, c := range d.held {
		_ = c.Close()
	}
	d.held = nil
	return nil
}

func (d *run) stepShow(ctx context.Context) error {
	d.ui.title("What the operator sees")
	for _, cmd := range [][]string{{"status"}, {"stats"}} {
		out, err := d.ctl(cmd...)
		if err != nil {
			return err
		}
		d.ui.line("$ xlbctl %s", strings.Join(cmd, " "))
		d.ui.block(strings.TrimRight(out, "\n"))
		fmt.Fprintln(d.ui.w)
	}
	d.ui.line("Prometheus metrics are served on 127.0.0.1:9641/metrics in the balancer's namespace.")
	return nil
}
