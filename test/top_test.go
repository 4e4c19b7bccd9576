//go:build integration

package test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
)

// TestTopBatch runs "xlbctl top -b -n 3" against a real xlbd while a
// client opens TCP connections through the VIP in a loop: the backend
// serving them shows packets, bits and new flows per second in every frame
// and the connections held open among its active flows; the drained one
// shows none of these (issue 16).
//
// With XLB_TOP_CAPTURE=FILE it also runs the live view in a tmux window of
// 120x30 under the same load and writes what the window shows to FILE
// (for docs/cli.md).
func TestTopBatch(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2})
	serveAll(t, topo, 8080)
	e := newDaemonEnv(t, topo, labConfig(topo, 8080))
	e.Start()
	svc := fmt.Sprintf("%s:8080/tcp", topo.VIP4)
	serving, drained := topo.Backends[0], topo.Backends[1]
	e.MustCtl("backend", "drain", svc, drained.Addr4.String())

	// Five connections held open: the serving backend's active flows.
	vip := netip.AddrPortFrom(topo.VIP4, 8080)
	const held = 5
	for range held {
		c, err := topo.Client.Dial(netip.AddrPort{}, vip, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}

	// The load: one connection after another until the test ends.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := map[string]int{}
	var loadErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := topo.Client.Query("tcp", netip.AddrPort{}, vip, 3*time.Second)
			mu.Lock()
			if err != nil && loadErr == nil {
				loadErr = err
			}
			if err == nil {
				answered[r.Server]++
			}
			mu.Unlock()
		}
	}()
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	out, err := e.Ctl("top", "-b", "-n", "3", "-d", "1s")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("xlbctl top -b -n 3:\n%s", out)
	frames := strings.Split(out, "\n\nxlbctl top - ")
	if len(frames) != 3 {
		t.Fatalf("%d frames, want 3:\n%s", len(frames), out)
	}
	for i, f := range frames {
		s := topRow(t, f, svc)
		sv := topRow(t, f, "  "+serving.Addr4.String())
		dr := topRow(t, f, "  "+drained.Addr4.String())
		if s.pps <= 0 || s.nps <= 0 {
			t.Errorf("frame %d: service %s: pps %v, new/s %v, want both above 0", i+1, svc, s.pps, s.nps)
		}
		if sv.pps <= 0 || sv.bps <= 0 || sv.nps <= 0 || sv.act < held {
			t.Errorf("frame %d: serving backend %s: pps %v, bits/s %v, new/s %v, active %v, want all above 0 and %d active or more",
				i+1, serving.Addr4, sv.pps, sv.bps, sv.nps, sv.act, held)
		}
		if dr.pps != 0 || dr.bps != 0 || dr.nps != 0 || dr.act != 0 || dr.state != "drain" {
			t.Errorf("frame %d: drained backend %s: state %s, pps %v, bits/s %v, new/s %v, active %v, want drain and 0",
				i+1, drained.Addr4, dr.state, dr.pps, dr.bps, dr.nps, dr.act)
		}
	}

	if path := os.Getenv("XLB_TOP_CAPTURE"); path != "" {
		captureTop(t, e.Socket(), path)
	}

	stopLoad()
	mu.Lock()
	defer mu.Unlock()
	if loadErr != nil {
		t.Errorf("load: %v", loadErr)
	}
	if answered[drained.Name] != 0 || answered[serving.Name] == 0 {
		t.Errorf("answers by backend %v: want all from %s", answered, serving.Name)
	}
	t.Logf("%d connections through the VIP", answered[serving.Name])
}

// topFigures are one row of a top frame.
type topFigures struct {
	state              string
	pps, bps, nps, act float64
}

// topRow finds the row that starts with name in a frame of top's output.
func topRow(t *testing.T, frame, name string) topFigures {
	t.Helper()
	for _, l := range strings.Split(frame, "\n") {
		if !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		// NAME STATE [WEIGHT] PPS BITS/S NEW/S ACTIVE
		n := len(f)
		if n < 6 {
			break
		}
		return topFigures{state: f[1], pps: siValue(t, f[n-4]), bps: siValue(t, f[n-3]), nps: siValue(t, f[n-2]), act: siValue(t, f[n-1])}
	}
	t.Fatalf("no row %q in frame:\n%s", name, frame)
	return topFigures{}
}

// siValue reads a figure of top: 12.5, 3.4k, 1.20M, 2.00G.
func siValue(t *testing.T, s string) float64 {
	t.Helper()
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult = 1e3
	case strings.HasSuffix(s, "M"):
		mult = 1e6
	case strings.HasSuffix(s, "G"):
		mult = 1e9
	}
	v, err := strconv.ParseFloat(strings.TrimRight(s, "kMG"), 64)
	if err != nil {
		t.Fatalf("figure %q: %v", s, err)
	}
	return v * mult
}

// captureTop runs "xlbctl top" in a detached tmux window on its own tmux
// server, waits for a few frames and writes the window's text to path.
func captureTop(t *testing.T, socket, path string) {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatalf("XLB_TOP_CAPTURE needs tmux: %v", err)
	}
	server := fmt.Sprintf("xlbtop-%d", os.Getpid())
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tmux, append([]string{"-L", server}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctl("new-session", "-d", "-x", "120", "-y", "30", "-s", "xlbtop",
		fmt.Sprintf("TERM=xterm-256color %s --api %s top", bins.Xlbctl(), socket))
	// kill-server ends this tmux server only (-L), and xlbctl with it.
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", server, "kill-server").Run() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var screen string
	for ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		screen = ctl("capture-pane", "-p", "-t", "xlbtop")
		if strings.Contains(screen, "PPS") && !strings.Contains(screen, "        -          -") {
			break
		}
	}
	time.Sleep(3 * time.Second) // a few frames under load
	screen = ctl("capture-pane", "-p", "-t", "xlbtop")
	if err := os.WriteFile(path, []byte(screen), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("tmux capture of xlbctl top:\n%s", screen)
}
