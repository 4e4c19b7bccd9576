package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

func TestCounterRate(t *testing.T) {
	for _, tc := range []struct {
		prev, cur uint64
		dt, want  float64
	}{
		{100, 300, 2, 100},
		{100, 100, 1, 0},
		{0, 0, 1, 0},
		// Backwards (xlbd restarted, backend re-added): cur counts from
		// the reset, within the interval; never negative or huge.
		{1 << 40, 50, 0.5, 100},
		{1 << 40, 0, 1, 0},
		// No interval: no rate rather than a division by zero.
		{1, 2, 0, 0},
	} {
		if got := counterRate(tc.prev, tc.cur, tc.dt); got != tc.want {
			t.Errorf("counterRate(%d, %d, %v) = %v, want %v", tc.prev, tc.cur, tc.dt, got, tc.want)
		}
	}
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0.0"}, {0.5, "0.5"}, {950, "950.0"}, {9999, "9999.0"}, {12345, "12.3k"}, {4.56e6, "4.56M"}, {7.891e9, "7.89G"}} {
		if got := human(tc.v); got != tc.want {
			t.Errorf("human(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// names lists the rows' names in order: "svc", "  backend".
func names(groups []topGroup) string {
	var out []string
	for _, g := range groups {
		out = append(out, g.svc.service)
		for _, b := range g.backends {
			out = append(out, b.backend)
		}
	}
	return strings.Join(out, " ")
}

func TestTopSort(t *testing.T) {
	groups := func() []topGroup {
		return []topGroup{
			{svc: topRow{service: "198.18.1.10:80/tcp", pps: 10, bps: 900, nps: 1, active: 9},
				backends: []topRow{
					{backend: "198.18.0.9", pps: 4, bps: 800, nps: 0, active: 1},
					{backend: "198.18.0.10", pps: 6, bps: 100, nps: 1, active: 8},
				}},
			{svc: topRow{service: "198.18.1.2:80/tcp", pps: 20, bps: 100, nps: 3, active: 2},
				backends: []topRow{
					{backend: "198.18.0.21", pps: 20, bps: 100, nps: 3, active: 2},
					{backend: "198.18.0.3", pps: 0, bps: 0, nps: 0, active: 0},
				}},
			{svc: topRow{service: "198.18.1.2:53/udp", pps: 20, bps: 50, nps: 0, active: 0}},
		}
	}
	for _, tc := range []struct {
		key     sortKey
		reverse bool
		want    string
	}{
		// Ties (the two services at 20 pps) stay in name order: port 53
		// before 80, either way round.
		{sortPPS, false, "198.18.1.2:53/udp 198.18.1.2:80/tcp 198.18.0.21 198.18.0.3 198.18.1.10:80/tcp 198.18.0.10 198.18.0.9"},
		{sortPPS, true, "198.18.1.10:80/tcp 198.18.0.9 198.18.0.10 198.18.1.2:53/udp 198.18.1.2:80/tcp 198.18.0.3 198.18.0.21"},
		{sortBPS, false, "198.18.1.10:80/tcp 198.18.0.9 198.18.0.10 198.18.1.2:80/tcp 198.18.0.21 198.18.0.3 198.18.1.2:53/udp"},
		{sortNew, false, "198.18.1.2:80/tcp 198.18.0.21 198.18.0.3 198.18.1.10:80/tcp 198.18.0.10 198.18.0.9 198.18.1.2:53/udp"},
		{sortActive, false, "198.18.1.10:80/tcp 198.18.0.10 198.18.0.9 198.18.1.2:80/tcp 198.18.0.21 198.18.0.3 198.18.1.2:53/udp"},
		// Names in address order, not text order (.2 before .10, .3
		// before .21).
		{sortName, false, "198.18.1.2:53/udp 198.18.1.2:80/tcp 198.18.0.3 198.18.0.21 198.18.1.10:80/tcp 198.18.0.9 198.18.0.10"},
		{sortName, true, "198.18.1.10:80/tcp 198.18.0.10 198.18.0.9 198.18.1.2:80/tcp 198.18.0.21 198.18.0.3 198.18.1.2:53/udp"},
	} {
		g := groups()
		sortGroups(g, tc.key, tc.reverse)
		if got := names(g); got != tc.want {
			t.Errorf("sort by %s, reverse %v:\n  got  %s\n  want %s", tc.key, tc.reverse, got, tc.want)
		}
	}
}

const topSvc = "198.18.1.1:80/tcp"

// topLab is xlbd's real handlers with service topSvc and backends
// 198.18.0.11-13, whose counters advance by step on every status request
// (step(i) sets them for the i-th request, from 0), and a clock that
// advances one second per request.
type topLab struct {
	Client
	mu    sync.Mutex
	calls int
	now   time.Time
	step  func(i int)
}

func (l *topLab) Status(ctx context.Context) (api.Status, error) {
	l.mu.Lock()
	i := l.calls
	l.calls++
	l.now = testNow.Add(time.Duration(i) * time.Second)
	l.mu.Unlock()
	l.step(i)
	return l.Client.Status(ctx)
}

func (l *topLab) Now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

func newTopLab(t *testing.T) (*topLab, string) {
	t.Helper()
	sock, dp := drainLab(t, 0) // topSvc's backends 198.18.0.11 and .12
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out},
		[]string{"--api", sock, "backend", "add", topSvc, "198.18.0.13"}); code != 0 {
		t.Fatalf("backend add: %d %s", code, out.String())
	}
	k, _ := parseKey(topSvc)
	b11, b12 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	client := api.NewClient(sock)
	l := &topLab{Client: client, now: testNow}
	l.step = func(i int) {
		n := uint64(i)
		b12ctr := lb.BackendCounters{Packets: 300 * n, Bytes: 30_000 * n, NewFlows: 5 * n}
		if i == 2 {
			// 198.18.0.12 removed and added again: its counters start over.
			b12ctr = lb.BackendCounters{Packets: 50, Bytes: 5000, NewFlows: 1}
		}
		dp.SetCounters(k, lb.ServiceCounters{Packets: 1000 * n, Bytes: 125_000 * n, NewFlows: 15 * n}, map[netip.Addr]lb.BackendCounters{
			b11: {Packets: 700 * n, Bytes: 95_000 * n, NewFlows: 10 * n},
			b12: b12ctr,
		})
		dp.SetActive(k, b11, 12+n)
		dp.SetActive(k, b12, 3)
		if i == 2 {
			// A service added between the 2nd and 3rd samples: no rates yet.
			if _, err := client.AddService(context.Background(), config.Service{VIP: "198.18.1.2", Port: 53, Protocol: "udp",
				Backends: []config.Backend{{Address: "198.18.0.21"}}}); err != nil {
				t.Error(err)
			}
		}
	}
	return l, sock
}

// TestTopBatch: frames of rates from xlbd's real handlers, each counter's
// change over the real interval; a counter that went backwards and a
// service new since the last sample show no bogus rate.
func TestTopBatch(t *testing.T) {
	l, _ := newTopLab(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Client: l, Now: l.Now},
		[]string{"top", "--batch", "-n", "2", "--delay", "100ms"})
	if code != 0 || errOut.String() != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	want := `xlbctl top - 15:09:27  every 100ms  sorted by pps, descending
xlbd test on eth0 (native)  1 service, 3 backends  0 flows in the table

SERVICE / BACKEND  STATE       WEIGHT        PPS     BITS/S     NEW/S   ACTIVE
198.18.1.1:80/tcp  maglev                 1000.0      1.00M      15.0       16
  198.18.0.11      up               1      700.0     760.0k      10.0       13
  198.18.0.12      up               1      300.0     240.0k       5.0        3
  198.18.0.13      up               1        0.0        0.0       0.0        0

xlbctl top - 15:09:28  every 100ms  sorted by pps, descending
xlbd test on eth0 (native)  2 services, 4 backends  0 flows in the table

SERVICE / BACKEND  STATE       WEIGHT        PPS     BITS/S     NEW/S   ACTIVE
198.18.1.1:80/tcp  maglev                 1000.0      1.00M      15.0       17
  198.18.0.11      up               1      700.0     760.0k      10.0       14
  198.18.0.12      up               1       50.0      40.0k       1.0        3
  198.18.0.13      up               1        0.0        0.0       0.0        0
198.18.1.2:53/udp  maglev                      -          -         -        0
  198.18.0.21      up               1          -          -         -        0

`
	sameLines(t, "top --batch", out.String(), want)
}

// TestTopBatchUnreachable: xlbd out of reach at the start is an error,
// exit 1; later, the frame says so and the next one recovers.
func TestTopBatchUnreachable(t *testing.T) {
	r := xlbctl(t, &fakeClient{err: errors.New("cannot reach xlbd at /x.sock: connect: no such file")}, "top", "-b", "-n", "1", "-d", "0.1")
	if r.code != 1 || r.stderr != "xlbctl: top: cannot reach xlbd at /x.sock: connect: no such file\n" || r.stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}

	l, _ := newTopLab(t)
	fc := &flakyClient{Client: l, fail: map[int]bool{1: true}}
	var out, errOut bytes.Buffer
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Client: fc, Now: l.Now},
		[]string{"top", "-b", "-n", "2", "-d", "100ms"})
	frames := strings.Split(out.String(), "\n\nxlbctl top - ")
	if code != 0 || len(frames) != 2 {
		t.Fatalf("exit %d, stderr %q, %d frames:\n%s", code, errOut.String(), len(frames), out.String())
	}
	if !strings.Contains(frames[0], "\nxlbd unreachable: connection refused (retrying; figures below are from 15:09:26)\n") ||
		!strings.Contains(frames[0], "\n  198.18.0.11      up               1          -") {
		t.Errorf("frame 1 does not say xlbd is unreachable, or shows rates:\n%s", frames[0])
	}
	if strings.Contains(frames[1], "unreachable") || !strings.Contains(frames[1], "\n  198.18.0.11      up               1      700.0") {
		t.Errorf("frame 2 has not recovered:\n%s", frames[1])
	}
}

// flakyClient fails the status requests numbered in fail (from 0).
type flakyClient struct {
	Client
	mu   sync.Mutex
	n    int
	fail map[int]bool
}

func (f *flakyClient) Status(ctx context.Context) (api.Status, error) {
	f.mu.Lock()
	n := f.n
	f.n++
	f.mu.Unlock()
	st, err := f.Client.Status(ctx) // the clock and counters still advance
	if f.fail[n] {
		return api.Status{}, errors.New("connection refused")
	}
	return st, err
}

func TestTopUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--delay", "soon"}, `xlbctl: top: --delay "soon": want a duration such as 1s or 500ms, or seconds such as 2.5`},
		{[]string{"-d", "NaN"}, `xlbctl: top: --delay "NaN": want a duration such as 1s or 500ms, or seconds such as 2.5`},
		{[]string{"-d", "10ms"}, `xlbctl: top: --delay "10ms": out of range 100ms-1h0m0s`},
		{[]string{"-d", "0"}, `xlbctl: top: --delay "0": out of range 100ms-1h0m0s`},
		{[]string{"-d", "-1"}, `xlbctl: top: --delay "-1": out of range 100ms-1h0m0s`},
		{[]string{"--delay", "2h"}, `xlbctl: top: --delay "2h": out of range 100ms-1h0m0s`},
		{[]string{"-n", "0"}, `xlbctl: top: --iterations "0": want a number of frames, 1 or more`},
		{[]string{"--iterations", "three"}, `xlbctl: top: --iterations "three": want a number of frames, 1 or more`},
		{[]string{"-n"}, `xlbctl: top: flag --n needs a value (see xlbctl top --help)`},
		{[]string{"--sort", "pps"}, `xlbctl: top: unknown flag --sort (see xlbctl top --help)`},
		{[]string{"198.18.1.1:80/tcp"}, `xlbctl: top: unexpected argument "198.18.1.1:80/tcp" (usage: xlbctl top [--batch] [--iterations N] [--delay D])`},
		{[]string{"-o", "json"}, `xlbctl: top: unknown flag --o (see xlbctl top --help)`},
	} {
		r := xlbctl(t, &fakeClient{status: sampleStatus()}, append([]string{"top"}, tc.args...)...)
		if r.code != exitUsage || r.stderr != tc.want+"\n" || len(r.calls) != 0 {
			t.Errorf("%q: exit %d, stderr %q, calls %q\n  want exit 2, %q", tc.args, r.code, r.stderr, r.calls, tc.want)
		}
	}
}

// screenText is the simulated screen's contents, one line per row with
// trailing blanks cut.
func screenText(s tcell.SimulationScreen) string {
	cells, w, h := s.GetContents()
	// GetContents hands out the screen's own cells, which the next Show
	// rewrites; read them under the screen's lock (a sync.Mutex it embeds).
	if l, ok := s.(sync.Locker); ok {
		l.Lock()
		defer l.Unlock()
	}
	var b strings.Builder
	for y := range h {
		var line strings.Builder
		for x := range w {
			r := cells[y*w+x].Runes
			if len(r) == 0 {
				line.WriteByte(' ')
				continue
			}
			line.WriteString(string(r))
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// simScreen is a simulated screen that says when top has initialised it:
// tcell's Init writes the screen's fields without its lock.
type simScreen struct {
	tcell.SimulationScreen
	ready chan struct{}
}

func newSimScreen() *simScreen {
	return &simScreen{SimulationScreen: tcell.NewSimulationScreen("UTF-8"), ready: make(chan struct{})}
}

func (s *simScreen) Init() error {
	defer close(s.ready)
	return s.SimulationScreen.Init()
}

// waitScreen waits until the screen shows every one of want.
func waitScreen(t *testing.T, s *simScreen, done <-chan int, want ...string) string {
	t.Helper()
	select {
	case <-s.ready:
	case code := <-done:
		t.Fatalf("top exited %d before it opened the screen", code)
	}
	deadline := time.After(10 * time.Second)
	for {
		text := screenText(s.SimulationScreen)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(text, w)
		}
		if ok {
			return text
		}
		select {
		case code := <-done:
			t.Fatalf("top exited %d before showing %q; screen:\n%s", code, want, text)
		case <-deadline:
			t.Fatalf("no %q after 10s; screen:\n%s", want, text)
		case <-time.After(time.Millisecond):
		}
	}
}

// rowOrder is the order in which the names appear on the screen.
func rowOrder(text string, names ...string) string {
	type pos struct {
		i    int
		name string
	}
	var ps []pos
	for _, n := range names {
		ps = append(ps, pos{strings.Index(text, "  "+n+" "), n})
	}
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ps[j].i < ps[i].i {
				ps[i], ps[j] = ps[j], ps[i]
			}
		}
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return strings.Join(out, " ")
}

// TestTopInteractive drives the live view through tcell's simulated
// screen: rates appear, keys change the sort, a resize redraws, q quits.
func TestTopInteractive(t *testing.T) {
	l, _ := newTopLab(t)
	scr := newSimScreen()
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), env{Stdout: &bytes.Buffer{}, Stderr: &errOut, Client: l, Now: l.Now,
			Screen: func() (tcell.Screen, error) { return scr, nil }}, []string{"top", "-d", "100ms"})
	}()
	// Init sets the simulated screen to 80x25.
	text := waitScreen(t, scr, done, "sorted by pps, descending", "  198.18.0.11      up               1      700.0", topKeys)
	if got := rowOrder(text, "198.18.0.11", "198.18.0.12", "198.18.0.13"); got != "198.18.0.11 198.18.0.12 198.18.0.13" {
		t.Errorf("by pps: rows %s\n%s", got, text)
	}
	scr.InjectKey(tcell.KeyRune, 'r', tcell.ModNone)
	text = waitScreen(t, scr, done, "sorted by pps, ascending")
	if got := rowOrder(text, "198.18.0.11", "198.18.0.13"); got != "198.18.0.13 198.18.0.11" {
		t.Errorf("by pps reversed: rows %s\n%s", got, text)
	}
	scr.InjectKey(tcell.KeyRune, 's', tcell.ModNone)
	waitScreen(t, scr, done, "sorted by name, ascending")
	scr.InjectKey(tcell.KeyRune, 'r', tcell.ModNone)
	text = waitScreen(t, scr, done, "sorted by name, descending")
	if got := rowOrder(text, "198.18.0.11", "198.18.0.12", "198.18.0.13"); got != "198.18.0.13 198.18.0.12 198.18.0.11" {
		t.Errorf("by name reversed: rows %s\n%s", got, text)
	}
	for _, k := range []struct {
		r    rune
		name string
	}{{'b', "bits/s"}, {'n', "new/s"}, {'a', "active"}, {'p', "pps"}} {
		scr.InjectKey(tcell.KeyRune, k.r, tcell.ModNone)
		waitScreen(t, scr, done, "sorted by "+k.name+", descending")
	}

	// A narrower window: lines are cut at its edge, and nothing breaks.
	scr.SetSize(40, 10)
	if err := scr.PostEvent(tcell.NewEventResize(40, 10)); err != nil {
		t.Fatal(err)
	}
	text = waitScreen(t, scr, done, "q quit  p pps  b bits/s  n new/s  a act")
	if lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n"); len(lines) != 10 {
		t.Errorf("%d lines on a 10-line screen:\n%s", len(lines), text)
	}

	scr.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	select {
	case code := <-done:
		if code != 0 || errOut.String() != "" {
			t.Errorf("q: exit %d, stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after q")
	}
}

// TestTopInteractiveUnreachable: the live view says xlbd is unreachable,
// keeps going, and Ctrl-C quits.
func TestTopInteractiveUnreachable(t *testing.T) {
	scr := newSimScreen()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(context.Background(), env{Stdout: &bytes.Buffer{}, Stderr: &errOut, Now: func() time.Time { return testNow },
			Screen: func() (tcell.Screen, error) { return scr, nil }},
			[]string{"--api", "/nonexistent/xlb.sock", "top", "-d", "100ms"})
	}()
	waitScreen(t, scr, done, "xlbd unreachable: cannot reach xlbd at /nonexistent/xlb.sock")
	scr.SetSize(200, 25)
	if err := scr.PostEvent(tcell.NewEventResize(200, 25)); err != nil {
		t.Fatal(err)
	}
	text := waitScreen(t, scr, done, "(is xlbd running? is --api right? are you root?) (retrying)")
	if strings.Contains(text, "SERVICE") {
		t.Errorf("a table without a sample:\n%s", text)
	}
	scr.InjectKey(tcell.KeyCtrlC, 0, tcell.ModCtrl)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("Ctrl-C: exit %d, stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after Ctrl-C")
	}
}

// Every key of the key line is handled, and other keys change nothing.
func TestTopKeys(t *testing.T) {
	v := &topView{}
	for _, s := range sortKeys {
		if !strings.Contains(topKeys, fmt.Sprintf("%c %s", s.r, s.key)) && !strings.Contains(topKeys, fmt.Sprintf("%c name", s.r)) {
			t.Errorf("key line %q lacks %c", topKeys, s.r)
		}
		if !v.handleKey(tcell.NewEventKey(tcell.KeyRune, s.r, tcell.ModNone)) || v.key != s.key {
			t.Errorf("%c: sort %s", s.r, v.key)
		}
	}
	before := *v
	for _, k := range []*tcell.EventKey{tcell.NewEventKey(tcell.KeyRune, 'x', tcell.ModNone), tcell.NewEventKey(tcell.KeyUp, 0, tcell.ModNone)} {
		if !v.handleKey(k) || *v != before {
			t.Errorf("%v changed the view or quit", k.Name())
		}
	}
	for _, k := range []*tcell.EventKey{tcell.NewEventKey(tcell.KeyRune, 'q', tcell.ModNone), tcell.NewEventKey(tcell.KeyCtrlC, 0, tcell.ModCtrl), tcell.NewEventKey(tcell.KeyEscape, 0, tcell.ModNone)} {
		if v.handleKey(k) {
			t.Errorf("%v does not quit", k.Name())
		}
	}
}

// TestTopBatchInterrupted: Ctrl-C ends batch mode with exit 0 and the
// frames so far, without a frame blaming xlbd.
func TestTopBatchInterrupted(t *testing.T) {
	l, _ := newTopLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env{Stdout: &out, Stderr: &errOut, Client: l, Now: l.Now}, []string{"top", "-b", "-d", "100ms"})
	}()
	waitFor(t, &out, "\n  198.18.0.11      up               1      700.0", done)
	cancel()
	select {
	case code := <-done:
		if code != 0 || errOut.String() != "" || strings.Contains(out.String(), "unreachable") {
			t.Errorf("exit %d, stderr %q, stdout:\n%s", code, errOut.String(), out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after Ctrl-C")
	}
}
