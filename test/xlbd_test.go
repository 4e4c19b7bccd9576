//go:build integration

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xlb-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	out, err := exec.Command("go", "build", "-o", dir+"/", "../cmd/...").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonEnv is one xlbd under test: its files, its pins and its process.
type daemonEnv struct {
	t      *testing.T
	topo   *lab.Topology
	dir    string
	bpffs  string
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	client *http.Client
}

func (e *daemonEnv) sock() string   { return filepath.Join(e.dir, "xlb.sock") }
func (e *daemonEnv) config() string { return filepath.Join(e.dir, "xlb.yaml") }

func newDaemonEnv(t *testing.T, topo *lab.Topology, config string) *daemonEnv {
	t.Helper()
	e := &daemonEnv{t: t, topo: topo, dir: t.TempDir(), bpffs: "/sys/fs/bpf/" + topo.Prefix}
	e.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.sock())
		}}}
	e.writeConfig(config)
	t.Cleanup(func() {
		e.kill()
		os.RemoveAll(e.bpffs) // removing the pinned link detaches
		if t.Failed() && e.logs != nil {
			t.Logf("xlbd log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *daemonEnv) writeConfig(s string) {
	e.t.Helper()
	if err := os.WriteFile(e.config(), []byte(s), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *daemonEnv) args(extra ...string) []string {
	return append([]string{"--interface", lab.LinkName, "--config", e.config(), "--bpffs", e.bpffs,
		"--api", e.sock(), "--state", filepath.Join(e.dir, "state.json"), "--metrics", "127.0.0.1:9641", "--run-dir", e.dir}, extra...)
}

// start runs xlbd in the balancer's namespace and waits until its API
// answers.
func (e *daemonEnv) start() {
	e.t.Helper()
	e.logs = &bytes.Buffer{}
	e.cmd = e.topo.Balancer.NS.Command(context.Background(), filepath.Join(binDir, "xlbd"), e.args()...)
	e.cmd.Stdout, e.cmd.Stderr = e.logs, e.logs
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := e.status(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("xlbd did not come up:\n%s", e.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctl runs xlbctl against this daemon and returns its output.
func (e *daemonEnv) ctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "xlbctl"), append([]string{"--api", e.sock()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustCtl runs xlbctl and fails the test if it fails.
func (e *daemonEnv) mustCtl(args ...string) string {
	e.t.Helper()
	out, err := e.ctl(args...)
	if err != nil {
		e.t.Fatalf("xlbctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs xlbd to completion (for commands that must fail).
func (e *daemonEnv) run(extra ...string) (string, error) {
	cmd := e.topo.Balancer.NS.Command(context.Background(), filepath.Join(binDir, "xlbd"), e.args(extra...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *daemonEnv) kill() {
	if e.cmd != nil && e.cmd.Process != nil {
		e.cmd.Process.Signal(syscall.SIGKILL)
		e.cmd.Wait()
		e.cmd = nil
	}
}

func (e *daemonEnv) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://xlbd"+path, r)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (e *daemonEnv) status() (api.Status, error) {
	var st api.Status
	resp, err := e.client.Get("http://xlbd/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// metrics scrapes xlbd's /metrics inside the balancer's namespace.
func (e *daemonEnv) metrics() string {
	e.t.Helper()
	var body string
	if err := e.topo.Balancer.NS.Do(func() error {
		// Dial here: the socket must be created inside the namespace
		// (http.Get would dial from another goroutine and thread).
		c, err := net.Dial("tcp", "127.0.0.1:9641")
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: xlbd\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	}); err != nil {
		e.t.Fatalf("scrape metrics: %v", err)
	}
	return body
}

func svcPath(key string) string { return "/v1/services/" + url.PathEscape(key) }

func labConfig(topo *lab.Topology, port int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nlimits:\n  conntrack_size: 65536\n  max_services: 64\n  max_backends: 1024\nservices:\n")
	fmt.Fprintf(&b, "  - vip: %s\n    port: %d\n    protocol: tcp\n    backends:\n", topo.VIP4, port)
	for _, h := range topo.Backends {
		fmt.Fprintf(&b, "      - address: %s\n", h.Addr4)
	}
	return b.String()
}

func serveAll(t *testing.T, topo *lab.Topology, port uint16) {
	t.Helper()
	for _, h := range topo.Backends {
		srv, err := h.Serve(h.Name, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
	}
}

// spreadOver opens n connections to dst and counts answering backends.
func spreadOver(t *testing.T, topo *lab.Topology, dst netip.AddrPort, n, firstPort int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		src := netip.AddrPortFrom(topo.Client.Extra4[i%len(topo.Client.Extra4)], uint16(firstPort+i))
		r, err := topo.Client.Query("tcp", src, dst, 3*time.Second)
		if err != nil {
			t.Fatalf("connection %d from %s: %v", i, src, err)
		}
		if r.Client != src {
			t.Fatalf("backend %s saw %s, want %s", r.Server, r.Client, src)
		}
		counts[r.Server]++
	}
	return counts
}

// TestDaemon drives the real xlbd: config, API changes, rejected input,
// SIGHUP, a second daemon, socket permissions, metrics.
func TestDaemon(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	serveAll(t, topo, 9090)
	e := newDaemonEnv(t, topo, labConfig(topo, 8080)+"    sheduler: maglev\n")

	// A bad config file: xlbd does not start, names the line and key,
	// and attaches nothing.
	if out, err := e.run(); err == nil || !strings.Contains(out, "sheduler") || !strings.Contains(out, "line ") {
		t.Fatalf("xlbd with a bad config: err %v, output %q", err, out)
	}
	if _, err := os.Stat(e.bpffs); !os.IsNotExist(err) {
		t.Fatalf("xlbd with a bad config left pins: %v", err)
	}
	e.writeConfig(labConfig(topo, 8080))
	e.start()

	web := netip.AddrPortFrom(topo.VIP4, 8080)
	if c := spreadOver(t, topo, web, 300, 20000); len(c) != 3 {
		t.Fatalf("config service: connections reached %v, want all 3 backends", c)
	}

	// The socket is root-only.
	if fi, err := os.Stat(e.sock()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A second daemon for the same interface refuses, changing nothing.
	if out, err := e.run(); err == nil || !strings.Contains(out, "another xlbd") {
		t.Errorf("second xlbd: err %v, output %q; want a refusal naming another xlbd", err, out)
	}

	// The CLI: add a service with one backend, then the others.
	key2 := fmt.Sprintf("%s:9090/tcp", topo.VIP4)
	e.mustCtl("service", "add", key2, "--backend", topo.Backends[0].Addr4.String())
	for _, h := range topo.Backends[1:] {
		e.mustCtl("backend", "add", key2, h.Addr4.String())
	}
	if out := e.mustCtl("status"); !strings.Contains(out, key2) || strings.Count(out, " up ") < 6 {
		t.Errorf("xlbctl status does not show both services with their 6 backends up:\n%s", out)
	}
	// CLI errors: one line, non-zero exit, nothing changed.
	if out, err := e.ctl("backend", "add", key2, "198.18.0.11", "--weight", "70000"); err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "70000") {
		t.Errorf("xlbctl with a bad weight: err %v, output %q", err, out)
	}
	if out, err := e.ctl("service", "del", "198.18.1.1:1/tcp"); err == nil || !strings.Contains(out, "198.18.1.1:1/tcp") {
		t.Errorf("xlbctl deleting a missing service: err %v, output %q", err, out)
	}
	api2 := netip.AddrPortFrom(topo.VIP4, 9090)
	if c := spreadOver(t, topo, api2, 300, 21000); len(c) != 3 {
		t.Fatalf("API service: connections reached %v", c)
	}

	// Bad requests are rejected with a clear error and change nothing.
	before, _ := e.status()
	bad := []struct {
		method, path string
		body         any
		code         int
		want         string
	}{
		{"POST", "/v1/services", map[string]any{"vip": "198.18.1.300", "port": 80}, 400, "198.18.1.300"},
		{"POST", "/v1/services", map[string]any{"vip": topo.VIP4.String(), "port": 70000}, 400, "70000"},
		{"POST", "/v1/services", map[string]any{"vip": topo.VIP4.String(), "port": 8080, "protocol": "tcp"}, 409, "already exists"},
		{"POST", "/v1/services", `{"vip": "198.18.1.1", "port": 81, "colour": "red"}`, 400, "colour"},
		{"POST", "/v1/services", `{not json`, 400, ""},
		{"POST", svcPath(key2) + "/backends", map[string]any{"address": topo.Backends[0].Addr4.String()}, 409, "already exists"},
		{"POST", svcPath(key2) + "/backends", map[string]any{"address": "198.18.0.50", "weight": 70000}, 400, "70000"},
		{"PUT", svcPath(key2) + "/backends/198.18.0.99", map[string]any{"weight": 3}, 404, "198.18.0.99"},
		{"DELETE", svcPath("198.18.1.1:1/tcp"), nil, 404, "no such service"},
		{"DELETE", "/v1/services/nonsense", nil, 400, "nonsense"},
	}
	for _, b := range bad {
		code, out := e.do(b.method, b.path, b.body)
		var msg api.Error
		json.Unmarshal(out, &msg)
		if code != b.code || msg.Error == "" || !strings.Contains(msg.Error, b.want) {
			t.Errorf("%s %s %v: %d %q, want %d with an error naming %q", b.method, b.path, b.body, code, msg.Error, b.code, b.want)
		}
	}
	if after, _ := e.status(); !sameServices(before, after) {
		t.Errorf("rejected requests changed the services")
	}

	// Drain one backend of the API service: no new connections reach it.
	drained := topo.Backends[0]
	e.mustCtl("backend", "drain", key2, drained.Addr4.String())
	if c := spreadOver(t, topo, api2, 200, 22000); c[drained.Name] != 0 {
		t.Errorf("drained backend got %d new connections", c[drained.Name])
	}
	// Weights: set 3 on one backend and it gets the larger share.
	heavy := topo.Backends[1]
	e.mustCtl("backend", "set", key2, heavy.Addr4.String(), "--weight", "3")
	var st api.Status
	if err := json.Unmarshal([]byte(e.mustCtl("status", "-o", "json")), &st); err != nil {
		t.Fatalf("xlbctl status -o json: %v", err)
	}
	if c := spreadOver(t, topo, api2, 400, 23000); c[heavy.Name] < 2*c[topo.Backends[2].Name] {
		t.Errorf("weight 3 vs 1: %v", c)
	}

	if out := e.mustCtl("flows", "--limit", "5"); !strings.Contains(out, topo.VIP4.String()) {
		t.Errorf("xlbctl flows shows no flow to the VIP:\n%s", out)
	}
	if out := e.mustCtl("stats"); !strings.Contains(out, key2) {
		t.Errorf("xlbctl stats lacks %s:\n%s", key2, out)
	}

	// SIGHUP with a broken file changes nothing.
	before, _ = e.status()
	e.writeConfig(labConfig(topo, 8080) + "  - vip: 198.18.1.1\n    port: 99999\n")
	e.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if after, _ := e.status(); !sameServices(before, after) {
		t.Errorf("SIGHUP with a broken file changed the services")
	}
	if !strings.Contains(e.logs.String(), "99999") {
		t.Errorf("broken reload not logged with the bad value:\n%s", e.logs)
	}
	// A valid file replaces API changes: the file is authoritative again.
	e.writeConfig(labConfig(topo, 8080))
	e.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "reload", func() bool { st, _ := e.status(); return len(st.Services) == 1 })

	// Metrics.
	metrics := e.metrics()
	for _, want := range []string{"xlb_build_info{", "xlb_forwarded_packets_total ", `xlb_backend_up{service="198.18.1.1:8080/tcp",backend="198.18.0.11"} 1`,
		`xlb_service_new_flows_total{service="198.18.1.1:8080/tcp"}`, `xlb_passed_packets_total{reason="not_service"}`, "xlb_conntrack_entries "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func sameServices(a, b api.Status) bool {
	strip := func(s api.Status) string {
		var keys []string
		for _, svc := range s.Services {
			k := svc.Service + " " + svc.Scheduler
			for _, be := range svc.Backends {
				k += fmt.Sprintf(" %s/%d", be.Address, be.Weight)
			}
			keys = append(keys, k)
		}
		return strings.Join(keys, "\n")
	}
	return strip(a) == strip(b)
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDaemonRestart kills xlbd with SIGKILL while clients stream on
// established connections and keep opening new ones: no connection breaks,
// no new connection fails, and the restarted xlbd re-adopts the data plane
// with the API's changes.
func TestDaemonRestart(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	e := newDaemonEnv(t, topo, labConfig(topo, 8080))
	e.start()
	// An API change that must survive the restart.
	if code, out := e.do("POST", svcPath(fmt.Sprintf("%s:8080/tcp", topo.VIP4))+"/backends/"+topo.Backends[2].Addr4.String()+"/drain", nil); code != 200 {
		t.Fatalf("drain: %d %s", code, out)
	}
	dst := netip.AddrPortFrom(topo.VIP4, 8080)

	// Long-lived connections, each streaming a line every 20 ms.
	const streams = 12
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     []error
		lines    atomic.Int64
		newConns atomic.Int64
	)
	fail := func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() }
	for i := 0; i < streams; i++ {
		src := netip.AddrPortFrom(topo.Client.Extra4[i%8], uint16(30000+i))
		c, err := topo.Client.Dial(src, dst, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rd := bufio.NewReader(c)
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				c.SetDeadline(time.Now().Add(3 * time.Second))
				msg := fmt.Sprintf("line %d", n)
				if _, err := fmt.Fprintln(c, msg); err != nil {
					fail(fmt.Errorf("stream %s: write: %w", src, err))
					return
				}
				got, err := rd.ReadString('\n')
				if err != nil || !strings.Contains(got, msg) {
					fail(fmt.Errorf("stream %s: read %q: %v", src, got, err))
					return
				}
				lines.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	// New connections all along.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			src := netip.AddrPortFrom(topo.Client.Extra4[i%8], uint16(40000+i%20000))
			if _, err := topo.Client.Query("tcp", src, dst, 3*time.Second); err != nil {
				fail(fmt.Errorf("new connection %s: %w", src, err))
			}
			newConns.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	time.Sleep(500 * time.Millisecond)
	e.kill() // SIGKILL: no cleanup at all
	time.Sleep(500 * time.Millisecond)
	linesDown, connsDown := lines.Load(), newConns.Load()
	time.Sleep(500 * time.Millisecond)
	if lines.Load() == linesDown || newConns.Load() == connsDown {
		t.Errorf("traffic stopped while xlbd was down")
	}
	e.start()
	if !strings.Contains(e.logs.String(), "re-adopted") {
		t.Errorf("restarted xlbd did not re-adopt the pins:\n%s", e.logs)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	for i, err := range errs {
		if i < 5 {
			t.Error(err)
		}
	}
	if len(errs) > 0 {
		t.Fatalf("%d failures across the restart (%d lines streamed, %d new connections)", len(errs), lines.Load(), newConns.Load())
	}
	t.Logf("across the restart: %d lines streamed on %d connections, %d new connections, none failed", lines.Load(), streams, newConns.Load())

	st, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Services[0].Backends {
		if b.Address == topo.Backends[2].Addr4.String() && b.State != "drain" {
			t.Errorf("API drain lost across the restart: %+v", b)
		}
	}

	// SIGTERM stops xlbd on purpose: forwarding goes on without it.
	e.cmd.Process.Signal(syscall.SIGTERM)
	e.cmd.Wait()
	e.cmd = nil
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, 3*time.Second); err != nil {
		t.Errorf("after SIGTERM, forwarding stopped: %v", err)
	}

	// --detach stops forwarding and removes the pins.
	e.kill()
	if out, err := e.run("--detach"); err != nil {
		t.Fatalf("xlbd --detach: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.bpffs, lab.LinkName)); !os.IsNotExist(err) {
		t.Errorf("pins left after --detach: %v", err)
	}
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, time.Second); err == nil {
		t.Errorf("traffic still forwarded after --detach")
	}
}
