package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"
)

// State is a backend's health as its rise/fall machine sees it.
type State struct {
	Up bool
	// Checked: at least one probe has finished.
	Checked bool
	// Successes and Failures count the latest run of equal results.
	Successes, Failures int
	// Since is the time of the last transition, or when the check began.
	Since time.Time
	// Last is the latest probe's result.
	Last Result
}

// observe folds one result into the machine and reports a transition: up
// after rise successes in a row, down after fall failures in a row.
func (s *State) observe(r Result, rise, fall int) bool {
	s.Last, s.Checked = r, true
	if r.OK {
		s.Failures = 0
		s.Successes = min(s.Successes+1, rise)
		if !s.Up && s.Successes >= rise {
			s.Up, s.Since = true, r.At
			return true
		}
		return false
	}
	s.Successes = 0
	s.Failures = min(s.Failures+1, fall)
	if s.Up && s.Failures >= fall {
		s.Up, s.Since = false, r.At
		return true
	}
	return false
}

// Spec is one check to run: a backend of a service, probed independently
// of every other.
type Spec struct {
	// ID is the caller's unique name for the check.
	ID     string
	Target Target
	Config Config
	// Up is the state a new check starts in: new backends start down (they
	// must pass rise checks) unless the caller knows better.
	Up bool
}

// Event reports a transition.
type Event struct {
	ID     string
	Target Target
	State  State
}

// Clock is the time source of the probe loops (a fake one in tests).
type Clock interface {
	Now() time.Time
	After(time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Checker. Every field is optional.
type Options struct {
	Clock Clock
	// OnChange is called once per transition, from the check's goroutine;
	// it must not block for long.
	OnChange func(Event)
	// OnResult is called with every probe's result (for metrics).
	OnResult func(id string, r Result)
	// Probe replaces the real probes (tests).
	Probe func(Config) Prober
	// Tunnel dials the targets that have a Via; nil: such checks fail.
	Tunnel TunnelDialer
}

// Checker runs checks, each in its own goroutine: a hung server or a
// black-holed address costs its own check one timeout and nothing else.
type Checker struct {
	opts    Options
	probers probers

	mu     sync.Mutex
	checks map[string]*check
	closed bool
}

type check struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state State
}

// New returns a Checker with no checks.
func New(opts Options) *Checker {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return &Checker{opts: opts, probers: probers{ping: newPinger(), tunnel: opts.Tunnel}, checks: map[string]*check{}}
}

// Set makes the running checks exactly specs. A check whose target and
// config are unchanged keeps running undisturbed; a changed one restarts
// its loop but keeps its state; new ones start in their Spec's state. All
// specs are validated before anything changes.
func (c *Checker) Set(specs []Spec) error {
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if seen[s.ID] {
			return fmt.Errorf("check %q: listed twice", s.ID)
		}
		seen[s.ID] = true
		if !s.Target.Addr.IsValid() {
			return fmt.Errorf("check %q: no target address", s.ID)
		}
		if s.Target.Via.IsValid() && s.Config.Type != TCP && s.Config.Type != HTTP {
			return fmt.Errorf("check %q: type %s cannot go through a tunnel (tcp and http can)", s.ID, s.Config.Type)
		}
		if err := s.Config.Validate(); err != nil {
			return fmt.Errorf("check %q: %w", s.ID, err)
		}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("health checker closed")
	}
	var stopped []*check
	for id, k := range c.checks {
		if !seen[id] {
			stopped = append(stopped, k)
			delete(c.checks, id)
		}
	}
	now := c.opts.Clock.Now()
	for _, s := range specs {
		old := c.checks[s.ID]
		if old != nil && old.spec.Target == s.Target && reflect.DeepEqual(old.spec.Config, s.Config) {
			continue
		}
		k := &check{spec: s, state: State{Up: s.Up, Since: now}}
		if old != nil {
			stopped = append(stopped, old)
			k.state = old.snapshot()
		}
		c.checks[s.ID] = k
		c.start(k)
	}
	c.mu.Unlock()
	for _, k := range stopped {
		k.stop()
	}
	return nil
}

// State returns a check's current state.
func (c *Checker) State(id string) (State, bool) {
	c.mu.Lock()
	k := c.checks[id]
	c.mu.Unlock()
	if k == nil {
		return State{}, false
	}
	return k.snapshot(), true
}

// Close stops every check and waits for them.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	checks := c.checks
	c.checks = nil
	c.mu.Unlock()
	for _, k := range checks {
		k.stop()
	}
	c.probers.ping.close()
}

func (k *check) snapshot() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

func (k *check) stop() {
	k.cancel()
	<-k.done
}

func (c *Checker) start(k *check) {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel, k.done = cancel, make(chan struct{})
	if k.spec.Config.Type == None {
		// Nothing to probe: up from the start, no goroutine.
		k.state = State{Up: true, Checked: true, Since: k.state.Since, Last: Result{OK: true, Reason: "no check", At: k.state.Since}}
		close(k.done)
		return
	}
	probe := c.probers.forConfig(k.spec.Config)
	if c.opts.Probe != nil {
		probe = c.opts.Probe(k.spec.Config)
	}
	go func() {
		defer close(k.done)
		c.loop(ctx, k, probe)
	}()
}

// loop probes at a fixed rate: every interval, less up to a tenth at
// random, measured from the start of the previous probe. A dead backend is
// therefore taken down within fall*interval + timeout of its death.
func (c *Checker) loop(ctx context.Context, k *check, probe Prober) {
	cfg, clock := k.spec.Config, c.opts.Clock
	// The first probe comes at a random point of the first interval, so a
	// thousand checks started together do not fire together.
	wait := time.Duration(rand.Int64N(int64(cfg.Interval)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(wait):
		}
		start := clock.Now()
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		r := probe(pctx, k.spec.Target)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-probe: the result may be the cancellation
		}
		r.At, r.Duration = start, clock.Now().Sub(start)
		k.mu.Lock()
		changed := k.state.observe(r, cfg.Rise, cfg.Fall)
		st := k.state
		k.mu.Unlock()
		if c.opts.OnResult != nil {
			c.opts.OnResult(k.spec.ID, r)
		}
		if changed && c.opts.OnChange != nil {
			c.opts.OnChange(Event{ID: k.spec.ID, Target: k.spec.Target, State: st})
		}
		wait = cfg.Interval - time.Duration(rand.Int64N(int64(cfg.Interval/10)+1)) - r.Duration
		wait = max(wait, 0)
	}
}
