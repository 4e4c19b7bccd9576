//go:build integration

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/demo"
	"github.com/xlb-lb/xlb/test/lab"
)

// TestDemoHA runs `make demo-ha` non-interactively (the package function,
// with the prebuilt xlbd and xlbctl) and checks its outcomes from the
// structured result: one ECMP route over the three nodes, new connections
// spread over every node and backend with the client's address seen, the
// lost node's streams kept on their backends, the route and every
// connection kept through a kill -9 and restart, and nothing left behind.
func TestDemoHA(t *testing.T) {
	lab.RequirePrivileged(t)
	lab.RequireBird(t)
	var out bytes.Buffer
	res, err := demo.RunHA(context.Background(), demo.Options{Out: &out, Root: "..", BinDir: bins.Dir, DropLog: true})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	checkNothingLeftHA(t, res)
	if strings.Contains(out.String(), "level=") || strings.Contains(out.String(), "\033[") {
		t.Errorf("the demo's output carries log lines or escape codes")
	}
	t.Logf("the demo took %v", res.Elapsed)

	if len(res.Nodes) != 3 || len(res.Route) != 3 {
		t.Errorf("nodes %v, route %v: want three next hops", res.Nodes, res.Route)
	}
	for _, hop := range res.Route {
		if !strings.Contains(res.BirdRoute, "via "+hop.String()) {
			t.Errorf("birdc show route lacks next hop %s:\n%s", hop, res.BirdRoute)
		}
	}
	first := ""
	for name, sum := range res.Tables {
		if first == "" {
			first = sum
		}
		if sum != first || sum == "" {
			t.Errorf("node %s's Maglev table %q differs: %v", name, sum, res.Tables)
		}
	}

	// Spread: every connection answered, on every node and backend,
	// each backend seeing the client's own address.
	sp := res.Spread
	if sp == nil {
		t.Fatal("no spread result")
	}
	total := 0
	for name := range res.Nodes {
		if sp.NewFlows[name] == 0 {
			t.Errorf("node %s counted no new flow: %v", name, sp.NewFlows)
		}
		total += sp.NewFlows[name]
	}
	if total != sp.Connections || sp.Connections < 200 || sp.Failed != 0 {
		t.Errorf("spread: %d connections, %d failed, new flows per node %v", sp.Connections, sp.Failed, sp.NewFlows)
	}
	for name := range res.Backends {
		if sp.Backends[name] == 0 {
			t.Errorf("backend %s got no connection: %v", name, sp.Backends)
		}
	}
	if sp.SeenMismatches != 0 || len(sp.Requests) == 0 {
		t.Errorf("%d answers saw another client address (%d shown)", sp.SeenMismatches, len(sp.Requests))
	}
	for _, r := range sp.Requests {
		if r.Seen != r.Client {
			t.Errorf("connection from %s: the backend saw %s", r.Client, r.Seen)
		}
	}

	// Node loss: dropped within about the hold time; the lost node's
	// streams went on through other nodes to the same backends.
	nl := res.NodeLoss
	if nl == nil {
		t.Fatal("no node loss result")
	}
	t.Logf("node loss: %s dropped after %v, its streams resumed after %v, back after %v", nl.Node, nl.Detection, nl.Resumed, nl.Rejoin)
	if nl.Detection <= 0 || nl.Detection > nl.HoldTime+2*time.Second {
		t.Errorf("the router dropped %s after %v (hold time %v)", nl.Node, nl.Detection, nl.HoldTime)
	}
	if nl.OnLost == 0 || nl.Broken != 0 || nl.KeptBackend != nl.OnLost {
		t.Errorf("node loss: %d streams on %s, %d kept their backend, %d broken", nl.OnLost, nl.Node, nl.KeptBackend, nl.Broken)
	}
	onLost := 0
	for _, s := range nl.Streams {
		if s.NodeBefore != nl.Node {
			continue
		}
		onLost++
		if s.Broken || s.BackendAfter != s.BackendBefore || s.NodeAfter == nl.Node || s.NodeAfter == "" {
			t.Errorf("stream of the lost node: %+v", s)
		}
	}
	if onLost != nl.OnLost {
		t.Errorf("%d streams listed on %s, %d counted", onLost, nl.Node, nl.OnLost)
	}

	// Restart: the route kept every next hop, nothing broke.
	rs := res.Restart
	if rs == nil {
		t.Fatal("no restart result")
	}
	if rs.RouteSamples < 100 || rs.RouteMissing != 0 {
		t.Errorf("restart: the route lacked a next hop in %d of %d readings", rs.RouteMissing, rs.RouteSamples)
	}
	if rs.Streams == 0 || rs.Broken != 0 || rs.NewConns == 0 || rs.NewFailed != 0 {
		t.Errorf("restart: %d streams, %d broken; %d new connections, %d failed", rs.Streams, rs.Broken, rs.NewConns, rs.NewFailed)
	}
	if !rs.Readopted || rs.NewPID == 0 || rs.NewPID == rs.OldPID || !strings.Contains(rs.BirdSaid, "graceful restart active") {
		t.Errorf("restart: %+v", rs)
	}
	for _, want := range []string{"birdc show route", "nexthop via", "xlbctl bgp", "kill -9", "Done in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDemoHAInterrupted runs the HA demo program as a user does and
// presses Ctrl-C (SIGINT) while a node is lost under streams: it exits 130
// and removes everything it created.
func TestDemoHAInterrupted(t *testing.T) {
	lab.RequirePrivileged(t)
	lab.RequireBird(t)
	// The node is lost, the router still routes to it.
	data, out := interruptDemo(t, "xlb-demo-ha", func(line string) bool { return strings.Contains(line, "cable (its link is down)") }, 300*time.Millisecond)
	var res demo.HAResult
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Prefix == "" || len(res.XlbdPIDs) != 3 || res.BirdPID == 0 || res.NodeLoss == nil {
		t.Fatalf("the demo was interrupted before it lost a node: %+v\n%s", res, out)
	}
	checkNothingLeftHA(t, &res)
}

// checkNothingLeftHA: no namespace of the run, no pins, no temporary
// directory (the run's, BIRD's), no xlbd or BIRD process.
func checkNothingLeftHA(t *testing.T, res *demo.HAResult) {
	t.Helper()
	if len(res.Leftovers) > 0 {
		t.Errorf("the demo reports leftovers: %v", res.Leftovers)
	}
	ents, _ := os.ReadDir(lab.NetnsDir)
	for _, e := range ents {
		if res.Prefix != "" && strings.HasPrefix(e.Name(), res.Prefix+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	for _, p := range append([]string{res.Dir, res.BirdDir}, res.Pins...) {
		if _, err := os.Stat(p); p != "" && err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	for _, pid := range res.XlbdPIDs {
		if runs(pid, "xlbd") {
			t.Errorf("xlbd (pid %d) still runs", pid)
		}
	}
	if runs(res.BirdPID, "bird") {
		t.Errorf("BIRD (pid %d) still runs", res.BirdPID)
	}
}

// runs reports whether pid runs the program name (a reused pid does not
// count).
func runs(pid int, name string) bool {
	if pid <= 0 {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && strings.HasSuffix(strings.TrimSuffix(exe, " (deleted)"), "/"+name)
}
