//go:build integration

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/priv"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// ScreenshotDirEnv names a directory: TestStatusPage then also writes
// status-page.png (1280 px wide) and status-page-phone.png (375 px, its
// first screen) there, taken while traffic flows (make screenshots).
const ScreenshotDirEnv = "XLB_SCREENSHOT_DIR"

// pageRow is one backend row of the status page, read from the DOM: its
// data-* attributes and the text shown in its cells.
type pageRow struct {
	Backend     string `json:"backend"`
	State       string `json:"state"`
	StateText   string `json:"stateText"`
	Weight      string `json:"weight"`
	WeightText  string `json:"weightText"`
	Active      string `json:"activeFlows"`
	ActiveText  string `json:"activeText"`
	Packets     string `json:"packets"`
	PacketsText string `json:"packetsText"`
	Bytes       string `json:"bytes"`
	NewFlows    string `json:"newFlows"`
	NewText     string `json:"newText"`
	PPS         string `json:"pps"`
	Reason      string `json:"reason"`
	Check       string `json:"check"`
}

// pageService is one service table of the page.
type pageService struct {
	Service   string    `json:"service"`
	Scheduler string    `json:"scheduler"`
	Forward   string    `json:"forward"`
	Announced string    `json:"announced"`
	Health    string    `json:"health"`
	Packets   string    `json:"packets"` // the totals row
	Rows      []pageRow `json:"rows"`
}

// readPage is run in the page: what it shows, as pageService values.
const readPage = `[...document.querySelectorAll("section.service")].map(s => ({
  service: s.dataset.service, scheduler: s.dataset.scheduler, forward: s.dataset.forward,
  announced: s.dataset.announced, health: s.dataset.health,
  packets: s.querySelector("tfoot tr").dataset.packets || "",
  rows: [...s.querySelectorAll("tbody tr")].map(r => {
    const c = k => r.querySelector('[data-col="' + k + '"]').textContent;
    return {backend: r.dataset.backend, state: r.dataset.state, stateText: c("state"),
      weight: r.dataset.weight, weightText: c("weight"), activeFlows: r.dataset.activeFlows, activeText: c("active"),
      packets: r.dataset.packets, packetsText: c("packets"), bytes: r.dataset.bytes,
      newFlows: r.dataset.newFlows, newText: c("new"), pps: r.dataset.pps, reason: c("reason"), check: c("check")};
  })}))`

// browser is a headless chromium in the lab's balancer namespace (so it
// reaches xlbd's metrics listener on the namespace's loopback), driven
// through chromedp's pipe; every uncaught exception and console error of
// the page is collected.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

func newBrowser(t *testing.T, nsPath string) *browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		priv.SkipOrFail(t, fmt.Errorf("no chromium (Debian package chromium): %w", err))
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		priv.SkipOrFail(t, fmt.Errorf("no nsenter: %w", err))
	}
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Env("HOME="+dir),
		chromedp.WindowSize(1280, 900),
		// nsenter enters the network namespace only (the host's files
		// stay visible) and execs chromium: the same pid, which
		// chromedp stops when the context ends.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{nsenter, "--net=" + nsPath, "--", cmd.Path}, cmd.Args[1:]...)
			cmd.Path = nsenter
		}),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if left := stopProcessesOf(dir); len(left) > 0 {
			t.Errorf("chromium processes outlived the test: %v", left)
		}
	})
	b := &browser{ctx: ctx}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.mu.Lock()
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.errors = append(b.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
			b.mu.Unlock()
		}
	}()
	go func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.mu.Lock()
				b.errors = append(b.errors, "console.error: "+strings.Join(args, " "))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// stopProcessesOf kills, by pid, every process whose command line names
// dir: the browser's own processes all name its profile directory, and
// the crash handlers chromium starts in sessions of their own name the
// crash database under HOME; both are in dir, which is the test's own.
// It returns those still there after 10s.
func stopProcessesOf(dir string) []int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.Contains(string(cmdline), dir) {
				left = append(left, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL) // gone already: fine
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do runs actions, bounded.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v; page errors: %v; the page says: %q", what, err, b.pageErrors(), b.feedError())
	}
}

// feedError is the error the page shows about its feed (data-error).
func (b *browser) feedError() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.error`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

func evalIn[T any](t *testing.T, b *browser, what, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("browser: %s: %v; page errors: %v", what, err, b.pageErrors())
	}
	return v
}

// waitUpdates waits until the page has taken n more readings of its feed.
func (b *browser) waitUpdates(t *testing.T, n int) {
	t.Helper()
	now := evalIn[string](t, b, "read the update count", `document.body.dataset.updates`)
	from, _ := strconv.Atoi(now)
	b.do(t, fmt.Sprintf("wait for %d more updates", n), chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`Number(document.body.dataset.updates) >= %d`, from+n), chromedp.WithPollingInterval(100*time.Millisecond)))
}

// ctlStatus is "xlbctl status -o json".
func (e *daemonEnv) ctlStatus() api.Status {
	e.t.Helper()
	out := e.MustCtl("status", "-o", "json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("xlbctl status -o json: %v\n%s", err, out)
	}
	return st
}

// counters is what must not move between two readings for the page to be
// compared with them: every backend's state, weight and counters.
func counters(st api.Status) string {
	var b strings.Builder
	for _, s := range st.Services {
		fmt.Fprintf(&b, "%s %d %d %d|", s.Service, s.Packets, s.Bytes, s.NewFlows)
		for _, be := range s.Backends {
			fmt.Fprintf(&b, "%s %s %d %d %d %d %d|", be.Address, be.State, be.Weight, be.ActiveFlows, be.Packets, be.Bytes, be.NewFlows)
		}
	}
	return b.String()
}

// TestStatusPage loads xlbd's status page in a real headless chromium from
// a running xlbd in the lab: a service with three HTTP backends under an
// http health check, one drained, and an IPv6 round-robin service without
// a check, traffic through both VIPs (some of it on connections kept
// open). Once the counters stand still, every number
// the page shows (state, weight, active flows, packets, bytes, new flows)
// equals "xlbctl status -o json" read before and after, the drained
// backend shows as drained, no script error happened, and at 375 px wide
// nothing scrolls sideways. With XLB_SCREENSHOT_DIR set it also takes
// the screenshots for the docs while traffic flows (issue 16).
func TestStatusPage(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 3, ClientAddrs: 8})
	for _, h := range topo.Backends {
		srv, err := h.ServeHTTP(h.Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
	}
	// Two services, one table each: IPv4 under an http check, IPv6
	// round-robin without one.
	config := healthConfig(topo, 8080, fmt.Sprintf(
		"      type: http\n      interval: 1s\n      rise: 1\n      http: {path: %s}\n", lab.HealthPath))
	config += fmt.Sprintf("  - vip: %s\n    port: 8080\n    protocol: tcp\n    scheduler: round-robin\n    backends:\n", topo.VIP6)
	for _, h := range topo.Backends {
		config += fmt.Sprintf("      - address: %s\n", h.Addr6)
	}
	e := newDaemonEnv(t, topo, config)
	e.Start()
	svc := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	svc6 := fmt.Sprintf("[%s]:8080/tcp", topo.VIP6)
	e.waitAllUp(svc)
	for _, h := range topo.Backends {
		e.waitBackend(svc6, h.Addr6, "up", isUp)
	}
	vip := netip.AddrPortFrom(topo.VIP4, 8080)
	vip6 := netip.AddrPortFrom(topo.VIP6, 8080)

	// Connections kept open (active flows), then the drain: the drained
	// backend keeps the ones it has.
	var kept []*lab.HTTPConn
	keep := func(src netip.Addr, dst netip.AddrPort) {
		c, err := topo.Client.DialHTTP(netip.AddrPortFrom(src, 0), dst, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Get("/", 3*time.Second); err != nil {
			t.Fatalf("kept connection from %s to %s: %v", src, dst, err)
		}
		kept = append(kept, c)
	}
	for i := 0; i < 6; i++ {
		keep(topo.Client.Extra4[i], vip)
	}
	for i := 0; i < 3; i++ {
		keep(topo.Client.Extra6[i], vip6)
	}
	// Drain the backend that holds the most kept connections: it keeps
	// them, so the page must show it drained with active flows.
	var drained netip.Addr
	var most uint64
	for _, b := range e.ctlStatus().Services[0].Backends {
		if b.ActiveFlows > most {
			drained, most = netip.MustParseAddr(b.Address), b.ActiveFlows
		}
	}
	if most == 0 {
		t.Fatal("no active flows with 6 connections open")
	}
	e.MustCtl("backend", "drain", svc, drained.String())
	e.waitBackend(svc, drained, "drained", func(b api.BackendStatus) bool { return b.State == api.StateDrain && !b.InTable })
	// requests: one-shot requests from the client's extra addresses,
	// ephemeral ports (no clash with TIME_WAIT).
	requests := func(n int, srcs []netip.Addr, dst netip.AddrPort) bool {
		for i := 0; i < n; i++ {
			if _, err := topo.Client.GetHTTP(netip.AddrPortFrom(srcs[i%len(srcs)], 0), dst, 3*time.Second); err != nil {
				t.Errorf("request %d to %s: %v", i, dst, err)
				return false
			}
		}
		return true
	}
	traffic := func(n int) {
		if !requests(n, topo.Client.Extra4, vip) || !requests(n/2, topo.Client.Extra6, vip6) {
			return
		}
		for i, c := range kept {
			if _, err := c.Get("/", 3*time.Second); err != nil {
				t.Errorf("request on kept connection %d: %v", i, err)
				return
			}
		}
	}
	traffic(40)

	b := newBrowser(t, topo.Balancer.NS.Path)
	url := "http://" + xlbdproc.DefaultMetrics + "/"
	b.do(t, "load the page", chromedp.Navigate(url), chromedp.WaitReady(`body[data-ready="1"]`))

	if dir := os.Getenv(ScreenshotDirEnv); dir != "" {
		screenshots(t, b, dir, func() { traffic(30) })
	}

	// Read the page between two readings of xlbctl that agree (the
	// counters stand still: traffic stopped, and neither a late packet
	// nor xlbd's sweep of the active counts moved them meanwhile); when
	// they moved, try again.
	var page []pageService
	var after api.Status
	for attempt := 1; ; attempt++ {
		before := e.ctlStatus()
		b.waitUpdates(t, 2) // a reading taken after "before"
		page = evalIn[[]pageService](t, b, "read the page", readPage)
		after = e.ctlStatus()
		if counters(after) == counters(before) {
			break
		}
		if attempt == 10 {
			t.Fatalf("the counters never stood still while the page was read:\nbefore %s\nafter  %s", counters(before), counters(after))
		}
		t.Logf("the counters moved while the page was read (attempt %d):\nbefore %s\nafter  %s", attempt, counters(before), counters(after))
	}
	if len(page) != len(after.Services) {
		t.Fatalf("the page shows %d services, xlbctl %d: %+v", len(page), len(after.Services), page)
	}
	var sawDrained bool
	for si, want := range after.Services {
		got := page[si]
		t.Logf("page: %+v", got)
		health := "none"
		if want.Health != nil {
			health = want.Health.Type
		}
		if got.Service != want.Service || got.Scheduler != want.Scheduler || got.Forward != want.Forward || got.Health != health {
			t.Errorf("service head: %+v, want %s %s %s %s", got, want.Service, want.Scheduler, want.Forward, health)
		}
		if got.Packets != strconv.FormatUint(want.Packets, 10) {
			t.Errorf("%s: totals row packets %s, xlbctl %d", want.Service, got.Packets, want.Packets)
		}
		if len(got.Rows) != len(want.Backends) || len(got.Rows) != 3 {
			t.Fatalf("%s: the page shows %d backend rows, xlbctl %d", want.Service, len(got.Rows), len(want.Backends))
		}
		for i, w := range want.Backends {
			r := got.Rows[i]
			u := strconv.FormatUint
			checks := []struct{ what, got, want string }{
				{"address", r.Backend, w.Address},
				{"state", r.State, w.State},
				{"state shown", strings.TrimSpace(r.StateText), w.State},
				{"weight", r.Weight, u(uint64(w.Weight), 10)},
				{"weight shown", r.WeightText, u(uint64(w.Weight), 10)},
				{"active flows", r.Active, u(w.ActiveFlows, 10)},
				{"active flows shown", strings.ReplaceAll(r.ActiveText, ",", ""), u(w.ActiveFlows, 10)},
				{"packets", r.Packets, u(w.Packets, 10)},
				{"packets shown", strings.ReplaceAll(r.PacketsText, ",", ""), u(w.Packets, 10)},
				{"bytes", r.Bytes, u(w.Bytes, 10)},
				{"new flows", r.NewFlows, u(w.NewFlows, 10)},
				{"new flows shown", strings.ReplaceAll(r.NewText, ",", ""), u(w.NewFlows, 10)},
				{"packet rate (counters still)", r.PPS, "0.0"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s backend %s: %s on the page %q, xlbctl %q", want.Service, w.Address, c.what, c.got, c.want)
				}
			}
			switch {
			case want.Health != nil && (w.Check == nil || !strings.HasPrefix(r.Check, "http 200")):
				t.Errorf("backend %s: last check shown %q (xlbctl %+v)", w.Address, r.Check, w.Check)
			case want.Health == nil && r.Check != "\u2013":
				t.Errorf("backend %s without a check: last check shown %q", w.Address, r.Check)
			}
			if want.Service == svc && w.Address == drained.String() {
				sawDrained = true
				if r.State != api.StateDrain || w.ActiveFlows == 0 {
					t.Errorf("drained backend %s: page state %q, xlbctl active flows %d (want drain, kept connections)", w.Address, r.State, w.ActiveFlows)
				}
			} else if r.State != api.StateUp {
				t.Errorf("%s backend %s: page state %q, want up", want.Service, w.Address, r.State)
			}
			if w.Packets == 0 {
				t.Errorf("%s backend %s had no traffic: the test proves little", want.Service, w.Address)
			}
		}
	}
	if !sawDrained {
		t.Errorf("no row for the drained backend %s", drained)
	}

	// A phone: 375 CSS px, nothing wider than the screen.
	b.do(t, "phone viewport", chromedp.EmulateViewport(375, 812, chromedp.EmulateScale(2)))
	b.waitUpdates(t, 1)
	if w := evalIn[int](t, b, "page width", `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("at 375 px the page is %d px wide: it scrolls sideways", w)
	}
	if n := evalIn[int](t, b, "rows at 375 px", `document.querySelectorAll("section.service tbody tr").length`); n != 6 {
		t.Errorf("at 375 px the page shows %d backend rows", n)
	}
	if errs := b.pageErrors(); len(errs) > 0 {
		t.Errorf("the page's script failed: %v", errs)
	}
}

// screenshots writes the page at 1280 and 375 px wide into dir while
// traffic flows, so the rates show.
func screenshots(t *testing.T, b *browser, dir string, traffic func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			traffic()
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()
	// shoot takes the whole page, or on a phone the first screen of it.
	shoot := func(name string, w, h int64, scale float64, whole bool) {
		b.do(t, "viewport "+name, chromedp.EmulateViewport(w, h, chromedp.EmulateScale(scale)))
		b.waitUpdates(t, 3)
		capture := chromedp.CaptureScreenshot()
		if whole {
			capture = chromedp.FullScreenshot(100)
		}
		png, err := chromedp.Run(b.ctx, capture)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", filepath.Join(dir, name), len(png))
	}
	shoot("status-page.png", 1280, 720, 1, true)
	shoot("status-page-phone.png", 375, 812, 2, false)
	b.do(t, "desktop viewport", chromedp.EmulateViewport(1280, 900, chromedp.EmulateScale(1)))
}

// TestStatusPageBGP loads the status page of an xlbd that announces its
// VIPs to a real BGP router (BIRD in the HA lab): every service shows its
// VIP announced to the router's address, as xlbctl status -o json says.
func TestStatusPageBGP(t *testing.T) {
	h := newHALab(t, 1, "maglev")
	h.startNodes()
	node := h.nodes[0]
	router := h.topo.Router.Addr4.String()

	b := newBrowser(t, h.topo.Balancers[0].NS.Path)
	b.do(t, "load the page", chromedp.Navigate("http://"+xlbdproc.DefaultMetrics+"/"), chromedp.WaitReady(`body[data-ready="1"]`))
	b.do(t, "wait for every service announced to "+router, chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`(() => { const s = document.querySelectorAll("section.service"); return s.length > 0 && [...s].every(e => e.dataset.announcedTo === %q); })()`, router),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	shown := evalIn[[]string](t, b, "read the BGP facts", `[...document.querySelectorAll("section.service")].map(s =>
		s.dataset.service + " " + s.dataset.announced + " " + s.querySelector('[data-fact="bgp"] dd').textContent)`)

	var st api.Status
	out := node.MustCtl("status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("xlbctl status -o json: %v\n%s", err, out)
	}
	if !st.BGP || len(shown) != len(st.Services) || len(st.Services) != 3 {
		t.Fatalf("page %q, xlbctl bgp %v and %d services", shown, st.BGP, len(st.Services))
	}
	for i, s := range st.Services {
		want := fmt.Sprintf("%s true announced to %s", s.Service, router)
		if shown[i] != want || !s.Announced || strings.Join(s.AnnouncedTo, ",") != router {
			t.Errorf("page %q, want %q; xlbctl announced %v to %v", shown[i], want, s.Announced, s.AnnouncedTo)
		}
	}
	t.Logf("page: %q", shown)
	if errs := b.pageErrors(); len(errs) > 0 {
		t.Errorf("the page's script failed: %v", errs)
	}
}
