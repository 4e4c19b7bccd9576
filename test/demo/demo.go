// Package demo is `sudo make demo`: on a fresh Linux host it builds xlbd
// and xlbctl, builds a lab in network namespaces (a client, a balancer and
// three web servers holding the VIP on lo), starts the real xlbd with
// examples/demo.yaml and shows xlb's main job end to end: balancing while
// the backends see the real client address, a health check taking a killed
// backend out and back in, a drain that keeps open connections. Everything
// it creates is removed at the end, on Ctrl-C and on failure.
//
// RunHA is `sudo make demo-ha`, the same for high availability: three
// xlbd nodes behind a BGP router (see RunHA).
//
// Run and RunHA return what happened (Result, HAResult), so a test can
// assert the outcomes without parsing the printed story. Both run on a
// session: the host's preparation, the build, the steps and the tear-down
// they share; Main is both commands' main function.
package demo

import (
	"context"
	"io"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// Options configure Run and RunHA.
type Options struct {
	// Out receives the story.
	Out io.Writer
	// Interactive shows spinners (Out is a terminal).
	Interactive bool
	// Color uses bold step titles.
	Color bool
	// Root is the repository root; empty: found with `go env GOMOD`.
	Root string
	// BinDir holds prebuilt xlbd and xlbctl; empty: build them.
	BinDir string
	// Config is xlbd's config file; empty: Root/examples/demo.yaml.
	// Run only: RunHA writes each node's config itself.
	Config string
	// Requests is the number of requests of the distribution step; 0
	// means 600 (RunHA: the new connections of its spread step; 0 means
	// 300).
	Requests int
	// DropLog: on failure print the end of xlbd's log but keep no copy
	// of it (tests, which must leave nothing behind).
	DropLog bool
	// AfterStep, when set, is called after each numbered step (tests
	// interrupt the demo there).
	AfterStep func(step int)
}

// Result is what the demo observed. Times are wall-clock.
type Result struct {
	// Prefix names the lab's namespaces ("xlbab12c-lb", ...).
	Prefix string `json:"prefix"`
	// Pins is xlbd's bpffs directory; Dir the run's temporary directory.
	Pins    string `json:"pins"`
	Dir     string `json:"dir"`
	XlbdPID int    `json:"xlbd_pid"`
	// Service is the demo's service key, VIP:PORT/PROTO.
	Service string `json:"service"`
	// Backends maps backend names (be1...) to addresses.
	Backends map[string]netip.Addr `json:"backends"`
	// Clients are the client source addresses used.
	Clients []netip.Addr `json:"clients"`

	// Requests are the first requests of the distribution step, one by one.
	Requests []Request `json:"requests"`
	// Distribution counts all requests of that step per backend.
	Distribution map[string]int `json:"distribution"`
	// SeenMismatches counts answers in which the backend saw another
	// address or port than the client's own.
	SeenMismatches int `json:"seen_mismatches"`

	Failover *Failover `json:"failover,omitempty"`
	Drain    *Drain    `json:"drain,omitempty"`

	// Leftovers lists what of the run still existed after the tear-down.
	Leftovers []string `json:"leftovers"`
	// Elapsed is the whole run, build included.
	Elapsed time.Duration `json:"elapsed"`
	// Error is the failure, if the run failed.
	Error string `json:"error,omitempty"`
}

// Request is one request through the VIP.
type Request struct {
	Client  netip.AddrPort `json:"client"`
	Backend string         `json:"backend"`
	Seen    netip.AddrPort `json:"seen"`
}

// Failover is the health-check step.
type Failover struct {
	Backend string `json:"backend"`
	// Killed is when its web server was stopped; Down when xlbd marked it
	// down (its status's since, else when first seen down); Seen when the
	// demo first saw it down.
	Killed time.Time `json:"killed"`
	Down   time.Time `json:"down"`
	Seen   time.Time `json:"seen"`
	// Detection is Down - Killed; Bound is fall × interval + timeout.
	Detection time.Duration `json:"detection"`
	Bound     time.Duration `json:"bound"`
	Reason    string        `json:"reason"`
	// Restarted is when its server came back; Up when xlbd marked it up
	// again; Rejoin is Up - Restarted.
	Restarted time.Time     `json:"restarted"`
	Up        time.Time     `json:"up"`
	Rejoin    time.Duration `json:"rejoin"`
	// Phases count the requests by when they started.
	Phases []Phase `json:"phases"`
}

// Phase counts the requests that started in one phase of the failover.
type Phase struct {
	Name      string         `json:"name"`
	OK        int            `json:"ok"`
	Failed    int            `json:"failed"`
	ByBackend map[string]int `json:"by_backend"`
}

// Phase names.
const (
	PhaseBefore   = "before the kill"
	PhaseDetect   = "kill → marked down"
	PhaseDown     = "while down"
	PhaseRestart  = "restart → marked up"
	PhaseRejoined = "after it rejoined"
)

// Drain is the drain step.
type Drain struct {
	Backend string `json:"backend"`
	// Held are the kept-alive connections opened to Backend before the
	// drain: who answered on each before and after it.
	Held []HeldConn `json:"held"`
	// New counts new connections after the drain per backend; NewFailed
	// those that failed.
	New       map[string]int `json:"new"`
	NewFailed int            `json:"new_failed"`
	// State is the backend's state in xlbctl status after the drain.
	State string `json:"state"`
}

// HeldConn is one kept-alive connection of the drain step.
type HeldConn struct {
	Local  netip.AddrPort `json:"local"`
	Before string         `json:"before"`
	After  []string       `json:"after"`
	Error  string         `json:"error,omitempty"`
}

// run is one demo run's state.
type run struct {
	*session
	res    *Result
	config string
	topo   *lab.Topology

	servers map[string]*lab.HTTPServer
	service string
	vip     netip.AddrPort
	health  config.Health
	xlbd    *xlbdproc.Daemon
	held    []*lab.HTTPConn
	srcs    atomic.Int64 // source addresses and ports handed out
}

// steps is the number of numbered steps.
const steps = 7

// Run runs the demo. It always tears down what it built, also when ctx is
// cancelled (Ctrl-C) or a step fails, and returns the result so far with
// the first error.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Requests <= 0 {
		opts.Requests = 600
	}
	d := &run{session: newSession(opts, "make demo", "xlb-demo", steps),
		res: &Result{Backends: map[string]netip.Addr{}}, servers: map[string]*lab.HTTPServer{}}
	o := d.execute(ctx, d, []string{
		"xlb demo: an XDP layer-4 load balancer in front of three web servers",
		"Everything runs in network namespaces on 198.18.0.0/15 and is removed at the end (also on Ctrl-C).",
	}, "namespaces, xlbd, pins, temporary files", []func(context.Context) error{
		d.stepBuild, d.stepLab, d.stepXlbd, d.stepBalance, d.stepFailover, d.stepDrain, d.stepShow,
	})
	d.res.Error, d.res.Leftovers, d.res.Elapsed = o.failure, o.leftovers, o.elapsed
	return d.res, o.err
}

func (d *run) stepBuild(ctx context.Context) error {
	d.ui.title("Build")
	if err := d.prepareHost(ctx); err != nil {
		return err
	}
	if err := d.setUp(ctx); err != nil {
		return err
	}
	d.res.Dir = d.dir
	d.config = d.opts.Config
	if d.config == "" {
		d.config = filepath.Join(d.root, "examples", "demo.yaml")
	}
	return d.build(ctx)
}
