package health

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock fires After channels only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	added   chan struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), added: make(chan struct{}, 1000)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiters = append(f.waiters, fakeWaiter{f.now.Add(d), ch})
	f.added <- struct{}{}
	return ch
}

// waitSleeping blocks until a goroutine waits on the clock.
func (f *fakeClock) waitSleeping(t *testing.T) {
	t.Helper()
	select {
	case <-f.added:
	case <-time.After(10 * time.Second):
		t.Fatal("no probe loop waited on the clock")
	}
}

// advance moves time on to the next waiter's deadline and wakes it.
func (f *fakeClock) advance() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := 0
	for i, w := range f.waiters {
		if w.at.Before(f.waiters[next].at) {
			next = i
		}
	}
	w := f.waiters[next]
	f.waiters = append(f.waiters[:next], f.waiters[next+1:]...)
	if w.at.After(f.now) {
		f.now = w.at
	}
	w.ch <- f.now
	return f.now
}

func TestStateMachine(t *testing.T) {
	ok, bad := Result{OK: true}, Result{}
	for _, tc := range []struct {
		name       string
		up         bool
		rise, fall int
		results    []Result
		// transitions: the index of each result that flips the state
		want []int
	}{
		{"starts down, rises after rise successes", false, 2, 3, []Result{ok, ok, ok}, []int{1}},
		{"a failure resets the rise count", false, 2, 3, []Result{ok, bad, ok, ok}, []int{3}},
		{"falls after fall failures", true, 2, 3, []Result{bad, bad, bad, bad}, []int{2}},
		{"a success resets the fall count", true, 2, 3, []Result{bad, bad, ok, bad, bad, bad}, []int{5}},
		{"flaps with rise=fall=1", true, 1, 1, []Result{bad, ok, bad}, []int{0, 1, 2}},
		{"up stays up on successes", true, 2, 3, []Result{ok, ok, ok, ok}, nil},
		{"down stays down on failures", false, 2, 3, []Result{bad, bad, bad, bad}, nil},
		{"down and back", true, 2, 2, []Result{bad, bad, ok, ok}, []int{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := State{Up: tc.up}
			var got []int
			for i, r := range tc.results {
				r.At = time.Unix(int64(i), 0)
				if s.observe(r, tc.rise, tc.fall) {
					got = append(got, i)
					if !s.Since.Equal(r.At) {
						t.Errorf("transition at %d: since %v, want %v", i, s.Since, r.At)
					}
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("transitions at %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("transitions at %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// scripted is a prober whose results the test sets.
type scripted struct {
	mu   sync.Mutex
	ok   bool
	runs int
}

func (s *scripted) probe(context.Context, Target) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	if s.ok {
		return Result{OK: true, Reason: "fine"}
	}
	return Result{Reason: "connect refused"}
}

func (s *scripted) set(ok bool) {
	s.mu.Lock()
	s.ok = ok
	s.mu.Unlock()
}

// TestCheckerFakeClock drives one check's loop through rise and fall with
// a fake clock: the transition happens on exactly the rise-th and fall-th
// probe, is reported once, and carries the probe's time.
func TestCheckerFakeClock(t *testing.T) {
	clock := newFakeClock()
	events := make(chan Event, 10)
	sc := &scripted{ok: true}
	c := New(Options{
		Clock:    clock,
		OnChange: func(e Event) { events <- e },
		Probe:    func(Config) Prober { return sc.probe },
	})
	defer c.Close()
	cfg := Config{Type: TCP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	spec := Spec{ID: "svc/b1", Target: Target{Addr: netip.MustParseAddr("198.18.0.11"), Port: 80}, Config: cfg}
	if err := c.Set([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State("svc/b1"); st.Up || st.Checked {
		t.Fatalf("new backend: %+v, want down and unchecked", st)
	}
	start := clock.Now()

	// probe runs the loop's next probe and returns its time once the
	// result is observed (the loop waits on the clock again).
	clock.waitSleeping(t)
	probe := func() time.Time {
		at := clock.advance()
		clock.waitSleeping(t)
		return at
	}
	noEvent := func(when string) {
		t.Helper()
		select {
		case e := <-events:
			t.Fatalf("%s: unexpected transition %+v", when, e)
		default:
		}
	}
	expect := func(up bool, at time.Time) {
		t.Helper()
		select {
		case e := <-events:
			if e.State.Up != up || !e.State.Since.Equal(at) || e.ID != "svc/b1" {
				t.Fatalf("event %+v, want up=%v since %v", e, up, at)
			}
		default:
			t.Fatalf("no transition to up=%v", up)
		}
	}

	first := probe()
	if d := first.Sub(start); d < 0 || d >= cfg.Interval {
		t.Errorf("first probe after %v, want within the first interval", d)
	}
	noEvent("after 1 success (rise 2)")
	st, _ := c.State("svc/b1")
	if st.Up || !st.Checked || st.Successes != 1 || st.Last.Reason != "fine" {
		t.Fatalf("after 1 success: %+v", st)
	}
	second := probe()
	if d := second.Sub(first); d > cfg.Interval || d < cfg.Interval*9/10 {
		t.Errorf("probes %v apart, want interval %v less at most a tenth", d, cfg.Interval)
	}
	expect(true, second)

	sc.set(false)
	probe()
	probe()
	noEvent("after 2 failures (fall 3)")
	third := probe()
	expect(false, third)
	st, _ = c.State("svc/b1")
	if st.Up || st.Failures != 3 || st.Last.Reason != "connect refused" || !st.Since.Equal(third) {
		t.Fatalf("after 3 failures: %+v", st)
	}

	// An unchanged Set leaves the running check alone (no restart, state kept).
	if err := c.Set([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	if st2, _ := c.State("svc/b1"); st2 != st {
		t.Fatalf("unchanged Set changed the state: %+v -> %+v", st, st2)
	}
	// A removed check stops.
	if err := c.Set(nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.State("svc/b1"); ok {
		t.Fatal("removed check still has a state")
	}
}

func TestCheckerNoneAndStartUp(t *testing.T) {
	c := New(Options{Probe: func(Config) Prober { return (&scripted{}).probe }})
	defer c.Close()
	base := Config{Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 3}
	none, tcp := base, base
	none.Type, tcp.Type = None, TCP
	a := netip.MustParseAddr("198.18.0.11")
	if err := c.Set([]Spec{
		{ID: "none", Target: Target{Addr: a}, Config: none},
		{ID: "up", Target: Target{Addr: a, Port: 80}, Config: tcp, Up: true},
	}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State("none"); !st.Up || st.Last.Reason != "no check" {
		t.Errorf("type none: %+v, want up", st)
	}
	if st, _ := c.State("up"); !st.Up {
		t.Errorf("spec with Up: %+v, want up", st)
	}
}

func TestCheckerSetValidates(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	a := netip.MustParseAddr("198.18.0.11")
	good := Config{Type: TCP, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 1}
	if err := c.Set([]Spec{{ID: "keep", Target: Target{Addr: a, Port: 1}, Config: good}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"type", func(s *Spec) { s.Config.Type = "smtp" }, `check "x": type "smtp": want tcp, http, icmp or none`},
		{"timeout equals interval", func(s *Spec) { s.Config.Timeout = time.Second }, `check "x": timeout 1s: must be greater than 0 and less than interval 1s`},
		{"zero timeout", func(s *Spec) { s.Config.Timeout = 0 }, `check "x": timeout 0s: must be greater than 0 and less than interval 1s`},
		{"interval", func(s *Spec) { s.Config.Interval = 0 }, `check "x": interval 0s: must be greater than 0`},
		{"rise", func(s *Spec) { s.Config.Rise = 0 }, `check "x": rise 0: must be at least 1`},
		{"fall", func(s *Spec) { s.Config.Fall = -1 }, `check "x": fall -1: must be at least 1`},
		{"status", func(s *Spec) { s.Config.HTTP.ExpectStatus = [][2]int{{200, 99}} }, `check "x": expect status 200-99: want a range within 100-599`},
		{"address", func(s *Spec) { s.Target.Addr = netip.Addr{} }, `check "x": no target address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Spec{ID: "x", Target: Target{Addr: a, Port: 1}, Config: good}
			tc.mod(&s)
			err := c.Set([]Spec{{ID: "keep", Target: Target{Addr: a, Port: 1}, Config: good}, s})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if _, ok := c.State("keep"); !ok {
				t.Fatal("a rejected Set changed the running checks")
			}
		})
	}
	dup := Spec{ID: "keep", Target: Target{Addr: a, Port: 1}, Config: good}
	if err := c.Set([]Spec{dup, dup}); err == nil || err.Error() != `check "keep": listed twice` {
		t.Fatalf("duplicate: %v", err)
	}
}
