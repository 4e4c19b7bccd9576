package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// RunHA is `sudo make demo-ha`: xlb's high availability (issue 12) end to
// end. Three balancer nodes, each a real xlbd announcing the VIP over BGP,
// behind a router running BIRD 2 that installs one ECMP route; three web
// servers. It shows new connections spread over the nodes, a node lost
// mid-stream (the router drops it after the hold time, and its streams go
// on through the others to the same backends), and a kill -9 and restart
// of one xlbd under load that moves nothing (graceful restart). Like Run,
// it always tears down what it built and returns what it observed.
//
// Of Options it uses Out, Interactive, Color, Root, BinDir, DropLog and
// AfterStep; Requests is the number of new connections of the spread
// step (0: 300).
func RunHA(ctx context.Context, opts Options) (*HAResult, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Requests <= 0 {
		opts.Requests = 300
	}
	d := &haRun{session: newSession(opts, "make demo-ha", "xlb-demo-ha", haSteps),
		res: &HAResult{Backends: map[string]netip.Addr{}, Tables: map[string]string{}}}
	o := d.execute(ctx, d, []string{
		"xlb HA demo: three balancer nodes behind a BGP router, one VIP, and what happens when a node goes",
		"Everything runs in network namespaces on 198.18.0.0/15 and is removed at the end (also on Ctrl-C).",
	}, "namespaces, BIRD, xlbd, pins, temporary files", []func(context.Context) error{
		d.stepBuild, d.stepLab, d.stepNodes, d.stepSpread, d.stepNodeLoss, d.stepRestart,
	})
	d.res.Error, d.res.Leftovers, d.res.Elapsed = o.failure, o.leftovers, o.elapsed
	return d.res, o.err
}

// haSteps is the number of the HA demo's numbered steps.
const haSteps = 6

// HAResult is what the HA demo observed. Times are wall-clock.
type HAResult struct {
	// Prefix names the lab's namespaces ("xlbab12c-lb1", ...).
	Prefix string `json:"prefix"`
	// Dir is the run's temporary directory; BirdDir BIRD's.
	Dir     string `json:"dir"`
	BirdDir string `json:"bird_dir"`
	// Pins are the nodes' bpffs directories.
	Pins []string `json:"pins"`
	// XlbdPIDs are the pids of every xlbd started, the restarted one's
	// too; BirdPID is BIRD's.
	XlbdPIDs []int `json:"xlbd_pids"`
	BirdPID  int   `json:"bird_pid"`
	// Service is the service key, VIP:PORT/PROTO.
	Service string `json:"service"`
	// Nodes maps the balancer nodes (lb1...) to their addresses, Backends
	// the backends (be1...).
	Nodes    map[string]netip.Addr `json:"nodes"`
	Backends map[string]netip.Addr `json:"backends"`
	// Route is the router's next hops to the VIP once every node announces
	// it; BirdRoute is BIRD's "show route" for it then.
	Route     []netip.Addr `json:"route"`
	BirdRoute string       `json:"bird_route"`
	// Tables maps each node to the SHA-256 of its Maglev table.
	Tables map[string]string `json:"tables"`

	Spread   *Spread   `json:"spread,omitempty"`
	NodeLoss *NodeLoss `json:"node_loss,omitempty"`
	Restart  *Restart  `json:"restart,omitempty"`

	// Leftovers lists what of the run still existed after the tear-down.
	Leftovers []string `json:"leftovers"`
	// Elapsed is the whole run, build included.
	Elapsed time.Duration `json:"elapsed"`
	// Error is the failure, if the run failed.
	Error string `json:"error,omitempty"`
}

// Spread is the spread step: new connections from many clients.
type Spread struct {
	Connections int `json:"connections"`
	// Clients is the number of client addresses used.
	Clients int `json:"clients"`
	Failed  int `json:"failed"`
	// NewFlows counts, per node, the new flows its API reported during
	// the step.
	NewFlows map[string]int `json:"new_flows"`
	// Backends counts the answers per backend.
	Backends map[string]int `json:"backends"`
	// SeenMismatches counts answers in which the backend saw another
	// address or port than the client's own.
	SeenMismatches int `json:"seen_mismatches"`
	// Requests are the first connections, one by one.
	Requests []Request `json:"requests"`
}

// NodeLoss is the step in which one node's link goes down under
// long-lived streams.
type NodeLoss struct {
	// Node is the node lost: its link went down at Down.
	Node     string        `json:"node"`
	HoldTime time.Duration `json:"hold_time"`
	Down     time.Time     `json:"down"`
	// Detection is how long the router kept routing to it: link down →
	// the route without it.
	Detection time.Duration `json:"detection"`
	// Streams are the long-lived connections, each with its node and
	// backend before and after.
	Streams []Stream `json:"streams"`
	// OnLost counts the streams the lost node carried; BrokenOnLost those
	// of them that broke, Broken all broken streams. KeptBackend counts
	// the lost node's streams answered again by the same backend.
	OnLost       int `json:"on_lost"`
	BrokenOnLost int `json:"broken_on_lost"`
	Broken       int `json:"broken"`
	KeptBackend  int `json:"kept_backend"`
	// Resumed is link down → the last of the lost node's streams
	// answered again.
	Resumed time.Duration `json:"resumed"`
	// Rejoin is link up again → the route has every node again.
	Rejoin time.Duration `json:"rejoin"`
}

// Stream is one long-lived connection: a keep-alive HTTP connection with a
// request every 200 ms.
type Stream struct {
	Client        netip.AddrPort `json:"client"`
	NodeBefore    string         `json:"node_before"`
	NodeAfter     string         `json:"node_after"`
	BackendBefore string         `json:"backend_before"`
	// BackendAfter is the backend of the last answer.
	BackendAfter string `json:"backend_after"`
	Answers      int    `json:"answers"`
	// LongestPause is the longest time between two answers.
	LongestPause time.Duration `json:"longest_pause"`
	Broken       bool          `json:"broken"`
	Error        string        `json:"error,omitempty"`
}

// Restart is the step in which one node's xlbd is killed with SIGKILL and
// started again under load.
type Restart struct {
	Node   string `json:"node"`
	OldPID int    `json:"old_pid"`
	NewPID int    `json:"new_pid"`
	// Killed is when it was killed; APIBack and Established are the
	// times from the kill to the new xlbd's API answering and to BIRD's
	// session with it being established again.
	Killed      time.Time     `json:"killed"`
	APIBack     time.Duration `json:"api_back"`
	Established time.Duration `json:"established"`
	// Readopted: the new xlbd re-adopted the pinned data plane.
	Readopted bool `json:"readopted"`
	// BirdSaid is what BIRD's "show protocols all" said about graceful
	// restart while the session was down.
	BirdSaid string `json:"bird_said"`
	// RouteSamples counts the readings of the router's route every 10 ms
	// from before the kill to after the restart; RouteMissing those that
	// lacked a next hop.
	RouteSamples int `json:"route_samples"`
	RouteMissing int `json:"route_missing"`
	// Streams and Broken count the long-lived connections; NewConns and
	// NewFailed the new connections made meanwhile.
	Streams   int `json:"streams"`
	Broken    int `json:"broken"`
	NewConns  int `json:"new_conns"`
	NewFailed int `json:"new_failed"`
}

// haRun is one HA demo run's state.
type haRun struct {
	*session
	res   *HAResult
	topo  *lab.HATopology
	bird  *lab.Bird
	nodes []*xlbdproc.Daemon

	service string
	vip     netip.AddrPort
	srcs    atomic.Int64 // source addresses and ports handed out

	streamsMu sync.Mutex
	streams   []*streamSet // running sets, stopped in the tear-down
}

// teardown removes what the run built: the streams, the nodes' xlbd (in
// parallel: each withdraws, drains and detaches), then the lab with BIRD.
func (d *haRun) teardown() (errs []error) {
	d.streamsMu.Lock()
	sets := d.streams
	d.streams = nil
	d.streamsMu.Unlock()
	for _, s := range sets {
		s.stop()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, x := range d.nodes {
		wg.Go(func() {
			if err := x.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if d.topo != nil {
		if err := d.topo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("remove the lab: %w", err))
		}
	}
	return errs
}

// leftovers lists what of the lab still exists: namespaces, pins, BIRD's
// directory, BIRD and xlbd processes.
func (d *haRun) leftovers() []string {
	if d.topo == nil {
		return nil
	}
	left := labLeftovers(d.topo.Prefix)
	for _, p := range d.res.Pins {
		if _, err := os.Stat(p); err == nil {
			left = append(left, "pins "+p)
		}
	}
	if dir := d.res.BirdDir; dir != "" {
		if _, err := os.Stat(dir); err == nil {
			left = append(left, "directory "+dir)
		}
	}
	for _, pid := range d.res.XlbdPIDs {
		if alive(pid, "xlbd") {
			left = append(left, fmt.Sprintf("process xlbd (pid %d)", pid))
		}
	}
	if alive(d.res.BirdPID, "bird") {
		left = append(left, fmt.Sprintf("process bird (pid %d)", d.res.BirdPID))
	}
	return left
}

// alive reports whether pid runs the program name (a reused pid does not
// count).
func alive(pid int, name string) bool {
	if pid <= 0 {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && strings.HasSuffix(strings.TrimSuffix(exe, " (deleted)"), "/"+name)
}

// logs are the nodes' xlbd logs and BIRD's, for a failure.
func (d *haRun) logs() []logFile {
	var out []logFile
	for i, x := range d.nodes {
		name := d.topo.Balancers[i].Name
		out = append(out, logFile{Whose: name + "'s xlbd", Slug: name + "-xlbd", Path: x.LogPath(), Lines: 8})
	}
	if d.bird != nil {
		out = append(out, logFile{Whose: "BIRD's", Slug: "bird", Path: d.bird.LogPath, Lines: 8})
	}
	return out
}

// nextSrc returns the next connection's source: the client's addresses in
// turn, each with a port not used before in this run, so every connection
// is a new flow on whichever node the router picks.
func (d *haRun) nextSrc() netip.AddrPort {
	return sourceN(d.topo.Client.Extra4, int(d.srcs.Add(1))-1)
}
