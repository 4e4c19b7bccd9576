//go:build integration

package test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// clientLoad is HTTP clients as browsers are: each opens a keep-alive
// connection through the VIP, sends a request every 50ms for 20 requests,
// closes it and opens the next. Their number sets the load (active flows);
// SetClients changes it. A connection that fails after its first answer
// broke on the server that answered it; one that fails before is
// unattributed.
type clientLoad struct {
	client *lab.Host
	vip    netip.AddrPort
	wg     sync.WaitGroup

	mu      sync.Mutex
	stops   []chan struct{}
	conns   map[string]int // connections answered, by server
	reqs    map[string]int
	broken  map[string]int
	unattr  int
	errs    []string
	started atomic.Int64
}

func newClientLoad(t *testing.T, client *lab.Host, vip netip.AddrPort) *clientLoad {
	l := &clientLoad{client: client, vip: vip, conns: map[string]int{}, reqs: map[string]int{}, broken: map[string]int{}}
	t.Cleanup(func() { l.SetClients(0) })
	return l
}

// SetClients starts or stops clients until n run; stopped ones finish
// their connection first (as a browser closing a tab would, between two
// requests).
func (l *clientLoad) SetClients(n int) {
	l.mu.Lock()
	for len(l.stops) < n {
		stop := make(chan struct{})
		l.stops = append(l.stops, stop)
		l.wg.Add(1)
		go l.run(l.client.Extra4[len(l.stops)%len(l.client.Extra4)], stop)
	}
	for len(l.stops) > n {
		close(l.stops[len(l.stops)-1])
		l.stops = l.stops[:len(l.stops)-1]
	}
	l.mu.Unlock()
	if n == 0 {
		l.wg.Wait()
	}
}

func (l *clientLoad) record(server string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if server == "" {
		l.unattr++
	} else {
		l.broken[server]++
	}
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf("server %q: %v", server, err))
	}
}

func (l *clientLoad) run(src netip.Addr, stop chan struct{}) {
	defer l.wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		l.started.Add(1)
		c, err := l.client.DialHTTP(netip.AddrPortFrom(src, 0), l.vip, 3*time.Second)
		if err != nil {
			l.record("", err)
			continue
		}
		server := ""
		for i := 0; i < 20; i++ {
			r, err := c.Get("/", 3*time.Second)
			if err == nil && server != "" && r.Server != server {
				err = fmt.Errorf("answered by %s, was on %s", r.Server, server)
			}
			if err != nil {
				l.record(server, err)
				break
			}
			l.mu.Lock()
			if server == "" {
				server = r.Server
				l.conns[server]++
			}
			l.reqs[server]++
			l.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
}

// answered returns the connections answered by server so far.
func (l *clientLoad) answered(server string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[server]
}

// TestAutoscalerExample runs examples/autoscaler/autoscale.sh with its
// netns hook against a real xlbd: instances are web servers (test/labweb)
// in the lab's backend namespaces, the load figure the service's active
// flows. 20 browser-like clients make it scale from 1 instance to 3 (each
// new one synced in and taking connections); down to 2 clients, it scales
// back to 1, each time syncing the leaving instance to weight 0, waiting
// with "xlbctl backend drain --wait" until its flows are gone, syncing it
// away and only then stopping it. No connection breaks, at any step.
func TestAutoscalerExample(t *testing.T) {
	for _, tool := range []string{"jq", "curl", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the autoscaler example needs %s: %v", tool, err)
		}
	}
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	key := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	e := newDaemonEnv(t, topo, fmt.Sprintf(`interface: eth0
services:
  - vip: %s
    port: 8080
    health: {type: http, interval: 200ms, rise: 2, fall: 2, http: {path: %s}}
    backends: []
`, topo.VIP4, lab.HealthPath))
	e.Start()

	dir := t.TempDir()
	labweb := filepath.Join(dir, "labweb")
	if out, err := exec.Command(xlbdproc.GoTool(), "build", "-o", labweb, "github.com/xlb-lb/xlb/test/labweb").CombinedOutput(); err != nil {
		t.Fatalf("build labweb: %v\n%s", err, out)
	}
	script, err := filepath.Abs("../examples/autoscaler/autoscale.sh")
	if err != nil {
		t.Fatal(err)
	}
	var pool []string
	names := map[string]string{} // address -> backend host name
	for _, h := range topo.Backends {
		pool = append(pool, h.NS.Name+"="+h.Addr4.String())
		names[h.Addr4.String()] = h.NS.Name
	}
	runDir := filepath.Join(dir, "run")
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(),
		"SERVICE="+key,
		"INSTANCES="+filepath.Join(filepath.Dir(script), "netns-instances.sh"),
		"MIN=1", "MAX=3", "TARGET=6", "DOWN_PERCENT=70", "UP_SAMPLES=1", "DOWN_SAMPLES=2", "INTERVAL=1", "DRAIN_TIMEOUT=60s",
		"STATE_DIR="+filepath.Join(dir, "state"),
		"XLBCTL="+bins.Xlbctl(), "XLB_API="+e.Socket(),
		"POOL="+strings.Join(pool, " "),
		"WEB_CMD="+labweb+` --name "$INSTANCE_NAME" --port 8080`,
		"PORT=8080", "HEALTH="+lab.HealthPath, "RUN_DIR="+runDir,
	)
	out := &syncWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, which the instances it starts inherit: the
	// cleanup ends them all by that group's id (the script's pid).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Its exit status is of no interest once the test is over: it was
		// told to stop.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-exited:
			_ = err
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err := <-exited
			_ = err
		}
		// Instances the hook started, should one have left the group.
		pids, _ := filepath.Glob(filepath.Join(runDir, "*.pid"))
		for _, p := range pids {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("autoscale.sh output:\n%s", out.String())
		}
	})
	wait := func(what string, cond func(api.ServiceStatus) bool) api.ServiceStatus {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			st, err := e.status()
			if err == nil {
				for _, s := range st.Services {
					if s.Service == key && cond(s) {
						return s
					}
				}
			}
			select {
			case err := <-exited:
				t.Fatalf("autoscale.sh exited (%v) waiting for %s; output:\n%s", err, what, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status %+v; output:\n%s", what, st, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	allUp := func(n int) func(api.ServiceStatus) bool {
		return func(s api.ServiceStatus) bool {
			if len(s.Backends) != n {
				return false
			}
			for _, b := range s.Backends {
				if !isUp(b) {
					return false
				}
			}
			return true
		}
	}
	first := wait("the first instance, up", allUp(1))
	firstName := names[first.Backends[0].Address]

	load := newClientLoad(t, topo.Client, netip.AddrPortFrom(topo.VIP4, 8080))
	load.SetClients(20)
	big := wait("three instances, up", allUp(3))
	for _, b := range big.Backends {
		name := names[b.Address]
		deadline := time.Now().Add(60 * time.Second)
		for load.answered(name) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("instance %s got no connection", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("scaled up to 3 instances: connections so far %v", load.conns)

	load.SetClients(2)
	small := wait("back to one instance", allUp(1))
	if got := names[small.Backends[0].Address]; got != firstName {
		t.Errorf("the instance left is %s, want the first one, %s (last in, first out)", got, firstName)
	}
	// Connections to the one left go on after the scale-down.
	before := load.answered(firstName)
	deadline := time.Now().Add(30 * time.Second)
	for load.answered(firstName) < before+5 {
		if time.Now().After(deadline) {
			t.Fatalf("no new connections to %s after the scale-down", firstName)
		}
		time.Sleep(50 * time.Millisecond)
	}
	load.SetClients(0)

	log := out.String()
	t.Logf("autoscale.sh output:\n%s", log)
	if n := strings.Count(log, "drained, no active flows left"); n != 2 {
		t.Errorf("%d drains completed, want 2 (one per scale-down)", n)
	}
	if strings.Contains(log, "removing it anyway") || strings.Contains(log, "sync failed") {
		t.Errorf("a drain timed out or a sync failed")
	}
	if n := strings.Count(log, "autoscale: stopped "); n != 2 {
		t.Errorf("%d instances stopped, want 2", n)
	}
	// The stopped instances' processes are gone.
	for _, h := range topo.Backends {
		if h.NS.Name == firstName {
			continue
		}
		if _, err := os.Stat(filepath.Join(runDir, h.NS.Name+".pid")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("instance %s still has its pid file after it was stopped", h.NS.Name)
		}
	}
	load.mu.Lock()
	defer load.mu.Unlock()
	total, reqs := 0, 0
	for s, n := range load.conns {
		total += n
		reqs += load.reqs[s]
	}
	t.Logf("connections: %d answered (%d requests), by instance %v; broken %v, failed before an answer %d", total, reqs, load.conns, load.broken, load.unattr)
	if len(load.broken) > 0 || load.unattr > 0 {
		t.Errorf("connections broke: %v, %d before an answer: %v", load.broken, load.unattr, load.errs)
	}
}
