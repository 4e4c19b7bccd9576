package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"
	"golang.org/x/term"

	"github.com/xlb-lb/xlb/cmd/api"
)

// Limits of top's --delay.
const (
	topMinDelay     = 100 * time.Millisecond
	topMaxDelay     = time.Hour
	topDefaultDelay = time.Second
)

// sortKey is the column top sorts by.
type sortKey int

const (
	sortPPS sortKey = iota
	sortBPS
	sortNew
	sortActive
	sortName
)

// sortKeys maps each sort key to its key press and its name in the
// header.
var sortKeys = []struct {
	key  sortKey
	r    rune
	name string
}{
	{sortPPS, 'p', "pps"},
	{sortBPS, 'b', "bits/s"},
	{sortNew, 'n', "new/s"},
	{sortActive, 'a', "active"},
	{sortName, 's', "name"},
}

func (k sortKey) String() string {
	for _, s := range sortKeys {
		if s.key == k {
			return s.name
		}
	}
	return "?"
}

// topSample is one GET /v1/status, with the time its answer arrived.
type topSample struct {
	at  time.Time
	st  api.Status
	err error
}

// topRow is one line of top: a service, or a backend of the service
// above it.
type topRow struct {
	// service is the service key; backend the backend's address, empty on
	// a service's row.
	service, backend string
	state            string
	weight           string
	// rated: the row was in the previous sample too, so pps, bps and
	// nps are rates over the interval (else they are shown as "-").
	rated         bool
	pps, bps, nps float64
	active        uint64
}

// topGroup is a service's row and its backends' rows.
type topGroup struct {
	svc      topRow
	backends []topRow
}

// counterRate is the per-second rate of a counter that went from prev to
// cur in dt seconds. A counter that went backwards was reset in the
// interval (xlbd restarted with fresh maps, or the backend was removed
// and added again): cur then counts from the reset, which happened within
// the interval, so cur/dt is a rate no higher than the true one rather
// than a huge or negative one.
func counterRate(prev, cur uint64, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	if cur < prev {
		return float64(cur) / dt
	}
	return float64(cur-prev) / dt
}

// counters are the cumulative counters of a service or a backend.
type counters struct{ packets, bytes, newFlows uint64 }

// topRates turns two samples into rows: the rates over the interval
// between them (prev may be nil or failed: no rates yet).
func topRates(prev, cur *topSample) []topGroup {
	old := map[string]counters{}
	var dt float64
	if prev != nil && prev.err == nil {
		dt = cur.at.Sub(prev.at).Seconds()
		for _, s := range prev.st.Services {
			old[s.Service] = counters{s.Packets, s.Bytes, s.NewFlows}
			for _, b := range s.Backends {
				old[s.Service+" "+b.Address] = counters{b.Packets, b.Bytes, b.NewFlows}
			}
		}
	}
	row := func(id string, r topRow, c counters) topRow {
		if o, ok := old[id]; ok && dt > 0 {
			r.rated = true
			r.pps = counterRate(o.packets, c.packets, dt)
			r.bps = 8 * counterRate(o.bytes, c.bytes, dt)
			r.nps = counterRate(o.newFlows, c.newFlows, dt)
		}
		return r
	}
	groups := make([]topGroup, 0, len(cur.st.Services))
	for _, s := range cur.st.Services {
		var g topGroup
		var active uint64
		for _, b := range s.Backends {
			active += b.ActiveFlows
			g.backends = append(g.backends, row(s.Service+" "+b.Address,
				topRow{service: s.Service, backend: b.Address, state: b.State, weight: strconv.FormatUint(uint64(b.Weight), 10), active: b.ActiveFlows},
				counters{b.Packets, b.Bytes, b.NewFlows}))
		}
		state := s.Scheduler
		if s.AllDown != "" {
			state = "all-down"
		}
		g.svc = row(s.Service, topRow{service: s.Service, state: state, weight: "", active: active},
			counters{s.Packets, s.Bytes, s.NewFlows})
		groups = append(groups, g)
	}
	return groups
}

// compareRows orders two rows by key, the largest first for numbers and
// in address order for names; reverse turns it around.
func compareRows(a, b topRow, key sortKey, reverse bool) int {
	var c int
	switch key {
	case sortPPS:
		c = cmp.Compare(b.pps, a.pps)
	case sortBPS:
		c = cmp.Compare(b.bps, a.bps)
	case sortNew:
		c = cmp.Compare(b.nps, a.nps)
	case sortActive:
		c = cmp.Compare(b.active, a.active)
	}
	if c == 0 {
		c = compareNames(a, b)
		if key != sortName {
			// Ties stay in name order whichever way the column goes.
			return c
		}
	}
	if reverse {
		return -c
	}
	return c
}

// compareNames orders services by VIP, port and protocol and backends by
// address (numerically, not as text).
func compareNames(a, b topRow) int {
	if a.backend != "" || b.backend != "" {
		x, errX := netip.ParseAddr(a.backend)
		y, errY := netip.ParseAddr(b.backend)
		if errX == nil && errY == nil {
			return x.Compare(y)
		}
		return strings.Compare(a.backend, b.backend)
	}
	x, errX := parseKey(a.service)
	y, errY := parseKey(b.service)
	if errX == nil && errY == nil {
		return cmp.Or(x.VIP.Compare(y.VIP), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Proto, y.Proto))
	}
	return strings.Compare(a.service, b.service)
}

// sortGroups sorts the services, and each service's backends, by key.
func sortGroups(groups []topGroup, key sortKey, reverse bool) {
	for i := range groups {
		slices.SortStableFunc(groups[i].backends, func(a, b topRow) int { return compareRows(a, b, key, reverse) })
	}
	slices.SortStableFunc(groups, func(a, b topGroup) int { return compareRows(a.svc, b.svc, key, reverse) })
}

// human formats a rate with an SI suffix: 950.0, 12.3k, 4.56M.
func human(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.1f", v)
}

// topView is what top shows: the latest two samples and the sort order.
type topView struct {
	prev, cur *topSample
	// last is the latest sample that succeeded, kept on screen while
	// xlbd is unreachable.
	last    *topSample
	key     sortKey
	reverse bool
	delay   time.Duration
}

// add takes a new sample.
func (v *topView) add(s *topSample) {
	if s.err != nil {
		v.cur = s
		return
	}
	v.prev, v.cur, v.last = v.last, s, s
}

// styled line kinds, for the screen's colours.
type lineKind int

const (
	lineTitle lineKind = iota
	lineError
	lineHeader
	lineService
	lineBackend
	lineBackendDown
	lineBlank
)

type topLine struct {
	kind lineKind
	text string
}

// lines renders the view as text lines, the same in batch mode and on
// the screen.
func (v *topView) lines() []topLine {
	var out []topLine
	dir := "descending"
	if v.key == sortName {
		dir = "ascending"
	}
	if v.reverse {
		dir = map[string]string{"ascending": "descending", "descending": "ascending"}[dir]
	}
	if v.cur == nil {
		return []topLine{{lineTitle, "xlbctl top: waiting for the first sample"}}
	}
	title := fmt.Sprintf("xlbctl top - %s  every %s  sorted by %s, %s", v.cur.at.Format("15:04:05"), v.delay, v.key, dir)
	out = append(out, topLine{lineTitle, title})
	if v.cur.err != nil {
		msg := "xlbd unreachable: " + oneLine(v.cur.err.Error())
		if v.last != nil {
			msg += fmt.Sprintf(" (retrying; figures below are from %s)", v.last.at.Format("15:04:05"))
		} else {
			msg += " (retrying)"
		}
		out = append(out, topLine{lineError, msg})
	}
	if v.last == nil {
		return out
	}
	st := v.last.st
	nb := 0
	for _, s := range st.Services {
		nb += len(s.Backends)
	}
	out = append(out, topLine{lineTitle, fmt.Sprintf("xlbd %s on %s (%s)  %d %s, %d %s  %d flows in the table",
		orDash(st.Version), orDash(st.Interface), orDash(st.XDPMode),
		len(st.Services), plural(uint64(len(st.Services)), "service", "services"), nb, plural(uint64(nb), "backend", "backends"), st.Flows)})
	prev := v.prev
	if v.last != v.cur {
		prev = nil // stale: no rates to show
	}
	groups := topRates(prev, v.last)
	sortGroups(groups, v.key, v.reverse)
	width := len("SERVICE / BACKEND")
	for _, g := range groups {
		width = max(width, len(g.svc.service))
		for _, b := range g.backends {
			width = max(width, 2+len(b.backend))
		}
	}
	format := func(name, state, weight, pps, bps, nps, active string) string {
		return fmt.Sprintf("%-*s  %-11s %6s %10s %10s %9s %8s", width, name, state, weight, pps, bps, nps, active)
	}
	rate := func(r topRow, x float64) string {
		if !r.rated {
			return "-"
		}
		return human(x)
	}
	cells := func(name string, r topRow) string {
		return format(name, r.state, r.weight, rate(r, r.pps), rate(r, r.bps), rate(r, r.nps), strconv.FormatUint(r.active, 10))
	}
	out = append(out, topLine{lineBlank, ""}, topLine{lineHeader, format("SERVICE / BACKEND", "STATE", "WEIGHT", "PPS", "BITS/S", "NEW/S", "ACTIVE")})
	if len(groups) == 0 {
		out = append(out, topLine{lineBackend, "No services."})
	}
	for _, g := range groups {
		out = append(out, topLine{lineService, cells(g.svc.service, g.svc)})
		for _, b := range g.backends {
			kind := lineBackend
			if b.state != api.StateUp {
				kind = lineBackendDown
			}
			out = append(out, topLine{kind, cells("  "+b.backend, b)})
		}
	}
	return out
}

// oneLine joins the lines of an error message.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), " ")
}

// top is the command "top".
func top(fs *flag.FlagSet) func(context.Context, *call) error {
	batch := fs.Bool("batch", false, "print plain text frames instead of the live view (also when stdout is not a terminal)")
	fs.BoolVar(batch, "b", false, "short for --batch")
	iterations := fs.String("iterations", "", "stop after `N` frames (default: until q or Ctrl-C)")
	fs.StringVar(iterations, "n", "", "short for --iterations")
	delay := fs.String("delay", topDefaultDelay.String(), "time between frames: a `DURATION` (2s, 500ms) or seconds (2.5)")
	fs.StringVar(delay, "d", topDefaultDelay.String(), "short for --delay")
	return func(ctx context.Context, c *call) error {
		d, err := parseDelay(*delay)
		if err != nil {
			return err
		}
		n := 0
		if *iterations != "" {
			n, err = strconv.Atoi(*iterations)
			if err != nil || n < 1 {
				return usagef("--iterations %q: want a number of frames, 1 or more", *iterations)
			}
		}
		t := &topRun{call: c, delay: d, frames: n}
		if !*batch {
			if scr, err := c.env.screen(); err != nil {
				return fmt.Errorf("open the terminal: %w (use --batch)", err)
			} else if scr != nil {
				return t.interactive(ctx, scr)
			}
		}
		return t.batch(ctx)
	}
}

// parseDelay reads --delay: a Go duration or a number of seconds, as in
// top -d.
func parseDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != f { // NaN
			return 0, usagef("--delay %q: want a duration such as 1s or 500ms, or seconds such as 2.5", s)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < topMinDelay || d > topMaxDelay {
		return 0, usagef("--delay %q: out of range %s-%s", s, topMinDelay, topMaxDelay)
	}
	return d, nil
}

// screen opens the terminal for top's live view: env.Screen when set,
// else the real terminal when stdout is one; nil, nil for batch mode.
func (e env) screen() (tcell.Screen, error) {
	if e.Screen != nil {
		return e.Screen()
	}
	f, ok := e.Stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, nil
	}
	return tcell.NewScreen()
}

// topRun is one run of top.
type topRun struct {
	call  *call
	delay time.Duration
	// frames to show before exiting; 0: until quit.
	frames int
}

// sample asks xlbd for its status, giving up after the delay (at least
// a second) so that a hung xlbd shows as unreachable.
func (t *topRun) sample(ctx context.Context) *topSample {
	ctx, cancel := context.WithTimeout(ctx, max(t.delay, time.Second))
	defer cancel()
	st, err := t.call.client.Status(ctx)
	return &topSample{at: t.call.env.Now(), st: st, err: err}
}

// sleep waits for the delay; false when ctx ended.
func (t *topRun) sleep(ctx context.Context) bool {
	tm := time.NewTimer(t.delay)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// batch prints a frame per delay: the first after one delay, so that
// every frame has rates. The first sample failing is an error (exit 1);
// later failures are shown in their frame and top goes on.
func (t *topRun) batch(ctx context.Context) error {
	v := &topView{delay: t.delay}
	first := t.sample(ctx)
	if first.err != nil {
		return first.err
	}
	v.add(first)
	for i := 0; t.frames == 0 || i < t.frames; i++ {
		if !t.sleep(ctx) {
			return nil // Ctrl-C: the frames so far are the output
		}
		smp := t.sample(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C during the request: not xlbd's failure
		}
		v.add(smp)
		if err := writeFrame(t.call.env.Stdout, v); err != nil {
			return err
		}
	}
	return nil
}

func writeFrame(w io.Writer, v *topView) error {
	var b strings.Builder
	for _, l := range v.lines() {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// topKeys is the key line at the foot of the live view.
const topKeys = "q quit  p pps  b bits/s  n new/s  a active  s name  r reverse"

// handleKey applies a key press to the view; false: quit.
func (v *topView) handleKey(ev *tcell.EventKey) bool {
	switch ev.Key() {
	case tcell.KeyCtrlC, tcell.KeyEscape:
		return false
	case tcell.KeyRune:
	default:
		return true
	}
	r := ev.Rune()
	if r == 'q' || r == 'Q' {
		return false
	}
	if r == 'r' || r == 'R' {
		v.reverse = !v.reverse
		return true
	}
	for _, s := range sortKeys {
		if s.r == r {
			if v.key != s.key {
				v.key, v.reverse = s.key, false
			}
		}
	}
	return true
}

// draw paints the view on the screen, cut to its size.
func (v *topView) draw(s tcell.Screen) {
	s.Clear()
	w, h := s.Size()
	base := tcell.StyleDefault
	styles := map[lineKind]tcell.Style{
		lineTitle: base,
		// Reverse video as well as colour, for readers who cannot tell
		// red from the rest.
		lineError:       base.Reverse(true).Bold(true).Foreground(tcell.ColorRed),
		lineHeader:      base.Reverse(true),
		lineService:     base.Bold(true),
		lineBackend:     base,
		lineBackendDown: base.Foreground(tcell.ColorOlive),
	}
	var lines []topLine
	for _, l := range v.lines() {
		// The error line wraps: its end says what to check.
		for l.kind == lineError && len(l.text) > w && w > 0 {
			lines = append(lines, topLine{l.kind, l.text[:w]})
			l.text = l.text[w:]
		}
		lines = append(lines, l)
	}
	room := h - 1 // the key line takes the last row
	if len(lines) > room && room > 0 {
		more := len(lines) - room + 1
		lines = append(lines[:room-1], topLine{lineTitle, fmt.Sprintf("... %d more rows (make the window taller)", more)})
	}
	for y, l := range lines {
		if y >= room {
			break
		}
		text := l.text
		if l.kind == lineHeader || l.kind == lineError {
			text += strings.Repeat(" ", max(0, w-len(text)))
		}
		s.PutStrStyled(0, y, clip(text, w), styles[l.kind])
	}
	if h > 0 {
		s.PutStrStyled(0, h-1, clip(topKeys, w), base.Dim(true))
	}
	s.Show()
}

// clip cuts s to w columns (the text is ASCII).
func clip(s string, w int) string {
	if len(s) > w {
		return s[:max(w, 0)]
	}
	return s
}

// interactive runs the live view until q, Ctrl-C or the frames are shown.
func (t *topRun) interactive(ctx context.Context, s tcell.Screen) error {
	if err := s.Init(); err != nil {
		return fmt.Errorf("open the terminal: %w (use --batch)", err)
	}
	defer s.Fini()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	samples := make(chan *topSample)
	go func() {
		for {
			smp := t.sample(ctx)
			select {
			case samples <- smp:
			case <-ctx.Done():
				return
			}
			if !t.sleep(ctx) {
				return
			}
		}
	}()
	events := make(chan tcell.Event)
	stopEvents := make(chan struct{})
	defer close(stopEvents)
	go s.ChannelEvents(events, stopEvents)
	v := &topView{delay: t.delay}
	v.draw(s)
	shown := -1 // the first sample only sets the baseline of the rates
	for {
		select {
		case <-ctx.Done():
			return nil
		case smp := <-samples:
			v.add(smp)
			v.draw(s)
			if shown++; t.frames > 0 && shown >= t.frames {
				return nil
			}
		case ev := <-events:
			switch ev := ev.(type) {
			case *tcell.EventResize:
				s.Sync()
			case *tcell.EventKey:
				if !v.handleKey(ev) {
					return nil
				}
			case *tcell.EventError:
				return errors.New(ev.Error())
			}
			v.draw(s)
		}
	}
}
