//go:build integration

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// bins are the xlbd and xlbctl every test runs, built once.
var bins *xlbdproc.Binaries

func TestMain(m *testing.M) { os.Exit(xlbdproc.RunTests(m, &bins)) }

// daemonEnv is one xlbd under test in a lab.
type daemonEnv struct {
	*xlbdproc.T
	t    *testing.T
	topo *lab.Topology
}

func newDaemonEnv(t *testing.T, topo *lab.Topology, config string) *daemonEnv {
	t.Helper()
	d := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Lab: topo, Config: config, Metrics: xlbdproc.DefaultMetrics})
	return &daemonEnv{T: d, t: t, topo: topo}
}

// do sends one API request; body is sent as is if a string, else as JSON.
func (e *daemonEnv) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	code, out, err := e.Request(context.Background(), method, path, r)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, out
}

func (e *daemonEnv) status() (api.Status, error) { return e.Client().Status(context.Background()) }

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
	if out, err := e.Run(context.Background()); err == nil || !strings.Contains(out, "sheduler") || !strings.Contains(out, "line ") {
		t.Fatalf("xlbd with a bad config: err %v, output %q", err, out)
	}
	if _, err := os.Stat(e.BPFFS()); !os.IsNotExist(err) {
		t.Fatalf("xlbd with a bad config left pins: %v", err)
	}
	e.WriteConfig(labConfig(topo, 8080))
	e.Start()

	web := netip.AddrPortFrom(topo.VIP4, 8080)
	if c := spreadOver(t, topo, web, 300, 20000); len(c) != 3 {
		t.Fatalf("config service: connections reached %v, want all 3 backends", c)
	}

	// The socket is root-only.
	if fi, err := os.Stat(e.Socket()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A second daemon for the same interface refuses, changing nothing.
	if out, err := e.Run(context.Background()); err == nil || !strings.Contains(out, "another xlbd") {
		t.Errorf("second xlbd: err %v, output %q; want a refusal naming another xlbd", err, out)
	}

	// The CLI: add a service with one backend, then the others.
	key2 := fmt.Sprintf("%s:9090/tcp", topo.VIP4)
	e.MustCtl("service", "add", key2, "--backend", topo.Backends[0].Addr4.String())
	for _, h := range topo.Backends[1:] {
		e.MustCtl("backend", "add", key2, h.Addr4.String())
	}
	if out := e.MustCtl("status"); !strings.Contains(out, key2) || strings.Count(out, " up ") < 6 {
		t.Errorf("xlbctl status does not show both services with their 6 backends up:\n%s", out)
	}
	// CLI errors: one line, non-zero exit, nothing changed.
	if out, err := e.Ctl("backend", "add", key2, "198.18.0.11", "--weight", "70000"); err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "70000") {
		t.Errorf("xlbctl with a bad weight: err %v, output %q", err, out)
	}
	if out, err := e.Ctl("service", "del", "198.18.1.1:1/tcp"); err == nil || !strings.Contains(out, "198.18.1.1:1/tcp") {
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
		// A body that is not an API error leaves msg.Error empty, which
		// fails below; the decoding error says why.
		derr := json.Unmarshal(out, &msg)
		if code != b.code || msg.Error == "" || !strings.Contains(msg.Error, b.want) {
			t.Errorf("%s %s %v: %d %q (decode: %v), want %d with an error naming %q", b.method, b.path, b.body, code, msg.Error, derr, b.code, b.want)
		}
	}
	if after, _ := e.status(); !sameServices(before, after) {
		t.Errorf("rejected requests changed the services")
	}

	// Drain one backend of the API service: no new connections reach it.
	drained := topo.Backends[0]
	e.MustCtl("backend", "drain", key2, drained.Addr4.String())
	if c := spreadOver(t, topo, api2, 200, 22000); c[drained.Name] != 0 {
		t.Errorf("drained backend got %d new connections", c[drained.Name])
	}
	// Weights: set 3 on one backend and it gets the larger share.
	heavy := topo.Backends[1]
	e.MustCtl("backend", "set", key2, heavy.Addr4.String(), "--weight", "3")
	var st api.Status
	if err := json.Unmarshal([]byte(e.MustCtl("status", "-o", "json")), &st); err != nil {
		t.Fatalf("xlbctl status -o json: %v", err)
	}
	if c := spreadOver(t, topo, api2, 400, 23000); c[heavy.Name] < 2*c[topo.Backends[2].Name] {
		t.Errorf("weight 3 vs 1: %v", c)
	}

	if out := e.MustCtl("flows", "--limit", "5"); !strings.Contains(out, topo.VIP4.String()) {
		t.Errorf("xlbctl flows shows no flow to the VIP:\n%s", out)
	}
	if out := e.MustCtl("stats"); !strings.Contains(out, key2) {
		t.Errorf("xlbctl stats lacks %s:\n%s", key2, out)
	}

	// SIGHUP with a broken file changes nothing.
	before, _ = e.status()
	e.WriteConfig(labConfig(topo, 8080) + "  - vip: 198.18.1.1\n    port: 99999\n")
	e.Reload()
	time.Sleep(300 * time.Millisecond)
	if after, _ := e.status(); !sameServices(before, after) {
		t.Errorf("SIGHUP with a broken file changed the services")
	}
	if !strings.Contains(e.Log(), "99999") {
		t.Errorf("broken reload not logged with the bad value:\n%s", e.Log())
	}
	// A valid file replaces API changes: the file is authoritative again.
	e.WriteConfig(labConfig(topo, 8080))
	e.Reload()
	waitUntil(t, "reload", func() bool { st, _ := e.status(); return len(st.Services) == 1 })

	// Metrics.
	metrics := e.Metrics()
	for _, want := range []string{"xlb_build_info{", "xlb_forwarded_packets_total ", `xlb_backend_up{backend="198.18.0.11",service="198.18.1.1:8080/tcp"} 1`,
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
	e.Start()
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
		defer func() { _ = c.Close() }() // the streams are over by then
		rd := bufio.NewReader(c)
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
					fail(fmt.Errorf("stream %s: deadline: %w", src, err))
					return
				}
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
	e.Kill() // SIGKILL: no cleanup at all
	time.Sleep(500 * time.Millisecond)
	linesDown, connsDown := lines.Load(), newConns.Load()
	time.Sleep(500 * time.Millisecond)
	if lines.Load() == linesDown || newConns.Load() == connsDown {
		t.Errorf("traffic stopped while xlbd was down")
	}
	e.Start()
	if !strings.Contains(e.Log(), "re-adopted") {
		t.Errorf("restarted xlbd did not re-adopt the pins:\n%s", e.Log())
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
	e.Stop()
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, 3*time.Second); err != nil {
		t.Errorf("after SIGTERM, forwarding stopped: %v", err)
	}

	// --detach stops forwarding and removes the pins.
	e.Kill()
	if out, err := e.Run(context.Background(), "--detach"); err != nil {
		t.Fatalf("xlbd --detach: %v\n%s", err, out)
	}
	if _, err := os.Stat(e.PinDir()); !os.IsNotExist(err) {
		t.Errorf("pins left after --detach: %v", err)
	}
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, time.Second); err == nil {
		t.Errorf("traffic still forwarded after --detach")
	}
}
