//go:build integration

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/demo"
	"github.com/xlb-lb/xlb/test/lab"
)

// TestDemo runs `make demo` non-interactively (the package function, with
// its own build of xlbd and xlbctl) and checks its outcomes from the
// structured result: distribution over the three backends, the backends
// seeing the real client addresses, the failover (taken out, then no failed
// request, then back in), the drain, and nothing left behind.
func TestDemo(t *testing.T) {
	lab.RequirePrivileged(t)
	var out bytes.Buffer
	res, err := demo.Run(context.Background(), demo.Options{Out: &out, Root: "..", DropLog: true})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	checkNothingLeft(t, res)
	if strings.Contains(out.String(), "level=") || strings.Contains(out.String(), "\033[") {
		t.Errorf("the demo's output carries log lines or escape codes")
	}

	// Distribution: every request answered, by all three backends, each
	// seeing the client's own address.
	total := 0
	for name, n := range res.Distribution {
		if n == 0 {
			t.Errorf("backend %s got no request", name)
		}
		total += n
	}
	if len(res.Distribution) != 3 || total != 600 {
		t.Errorf("distribution %v: want 600 requests over 3 backends", res.Distribution)
	}
	if res.SeenMismatches != 0 {
		t.Errorf("%d answers saw another client address", res.SeenMismatches)
	}
	clients := map[string]bool{}
	for _, r := range res.Requests {
		ok := false
		for _, c := range res.Clients {
			ok = ok || r.Seen.Addr() == c
		}
		if !ok || r.Seen != r.Client {
			t.Errorf("request %+v: the backend saw %s, not the client's own address and port (clients %v)", r, r.Seen, res.Clients)
		}
		clients[r.Seen.Addr().String()] = true
	}
	if len(res.Requests) == 0 || len(clients) != 2 {
		t.Errorf("requests shown %d from %d client addresses, want both", len(res.Requests), len(clients))
	}

	// Failover, in order: killed, marked down, no failure while down and
	// nothing to the dead backend, restarted, up, traffic to it again.
	f := res.Failover
	if f == nil {
		t.Fatal("no failover result")
	}
	if !f.Killed.Before(f.Seen) || f.Down.Before(f.Killed) || f.Down.After(f.Seen) || !f.Seen.Before(f.Restarted) || f.Up.Before(f.Restarted) {
		t.Errorf("failover events out of order: killed %v, down %v (seen %v), restarted %v, up %v", f.Killed, f.Down, f.Seen, f.Restarted, f.Up)
	}
	if f.Detection <= 0 || !strings.Contains(out.String(), fmt.Sprintf("down %.2fs after the kill", f.Detection.Seconds())) {
		t.Errorf("detection time %v not printed", f.Detection)
	}
	t.Logf("detection %v (fall × interval + timeout = %v), rejoin %v", f.Detection, f.Bound, f.Rejoin)
	phase := map[string]demo.Phase{}
	for _, p := range f.Phases {
		phase[p.Name] = p
	}
	if p := phase[demo.PhaseBefore]; p.OK == 0 || p.Failed != 0 {
		t.Errorf("before the kill: %+v", p)
	}
	if p := phase[demo.PhaseDown]; p.OK == 0 || p.Failed != 0 || p.ByBackend[f.Backend] != 0 {
		t.Errorf("while %s was down: %+v, want answers, none failed, none from it", f.Backend, p)
	}
	if p := phase[demo.PhaseRejoined]; p.Failed != 0 || p.ByBackend[f.Backend] == 0 {
		t.Errorf("after %s rejoined: %+v, want answers from it and no failure", f.Backend, p)
	}

	// Drain: the kept-alive connections stay on the drained backend, new
	// ones avoid it.
	dr := res.Drain
	if dr == nil {
		t.Fatal("no drain result")
	}
	if len(dr.Held) == 0 || dr.State != "drain" {
		t.Errorf("drain: %d held connections, state %q", len(dr.Held), dr.State)
	}
	for _, h := range dr.Held {
		if h.Before != dr.Backend || len(h.After) == 0 {
			t.Errorf("held connection %+v", h)
		}
		for _, a := range h.After {
			if a != dr.Backend {
				t.Errorf("held connection %s answered by %q after the drain, want %s", h.Local, a, dr.Backend)
			}
		}
	}
	if dr.New[dr.Backend] != 0 || dr.NewFailed != 0 || len(dr.New) != 2 {
		t.Errorf("new connections after the drain: %v, %d failed; want the two others only", dr.New, dr.NewFailed)
	}
	for _, want := range []string{"xlbctl status", "xlbctl stats", "Done in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDemoInterrupted runs the demo program as a user does and presses
// Ctrl-C (SIGINT) in the middle of the requests: it exits 130 and removes
// everything it created.
func TestDemoInterrupted(t *testing.T) {
	lab.RequirePrivileged(t)
	data, out := interruptDemo(t, "xlb-demo", func(line string) bool { return strings.HasPrefix(line, "4/7") }, 100*time.Millisecond)
	var res demo.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Prefix == "" || res.XlbdPID == 0 {
		t.Fatalf("the demo was interrupted before it built the lab and started xlbd: %+v\n%s", res, out)
	}
	checkNothingLeft(t, &res)
}

// interruptDemo builds and runs the demo program name (./demo/NAME) as a
// user does, presses Ctrl-C (SIGINT) pause after the first line of its
// output that at accepts, and checks that it exits 130 saying it was
// interrupted. It returns the demo's result file and its output.
func interruptDemo(t *testing.T, name string, at func(line string) bool, pause time.Duration) ([]byte, string) {
	t.Helper()
	exe := filepath.Join(bins.Dir, name)
	if out, err := exec.Command("go", "build", "-o", exe, "./demo/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	result := filepath.Join(t.TempDir(), "result.json")
	cmd := exec.Command(exe, "--bin", bins.Dir, "--result", result)
	cmd.Dir = ".."
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Best effort: on the normal path the demo has exited and been waited
	// for, and Kill only says so.
	defer func() { _ = cmd.Process.Kill() }()
	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if at(sc.Text()) {
			time.Sleep(pause)
			// A demo already gone shows in its exit status below.
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Logf("interrupt the demo: %v", err)
			}
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("interrupted demo: %v, want exit status 130\n%s%s", err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "Interrupted") {
		t.Errorf("no word of the interruption:\n%s", out.String())
	}
	data, err := os.ReadFile(result)
	if err != nil {
		t.Fatalf("no result: %v\n%s", err, out.String())
	}
	return data, out.String()
}

// TestDemoFailure: a run that fails with xlbd running (a health check no
// backend can pass) says why, shows the end of xlbd's log, and still
// removes everything.
func TestDemoFailure(t *testing.T) {
	lab.RequirePrivileged(t)
	good, err := os.ReadFile("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Backends start up, then fail: the greeting has no "wrong" in it.
	bad := strings.Replace(string(good), "path: /healthz", "path: /", 1)
	bad = strings.Replace(bad, "expect_body: ok", "expect_body: wrong", 1)
	bad = strings.Replace(bad, "fall: 2", "fall: 2\n      start_up: true", 1)
	if bad == string(good) {
		t.Fatal("examples/demo.yaml changed: cannot break it")
	}
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := demo.Run(context.Background(), demo.Options{Out: &out, Root: "..", BinDir: bins.Dir, Config: cfg, DropLog: true})
	if err == nil {
		t.Fatalf("the demo passed with a health check no backend passes:\n%s", out.String())
	}
	t.Logf("failed as it should: %v", err)
	if !strings.Contains(out.String(), "Demo failed:") || !strings.Contains(out.String(), "xlbd's last log lines") {
		t.Errorf("the failure is not reported with xlbd's log:\n%s", out.String())
	}
	if res.XlbdPID == 0 {
		t.Errorf("the demo failed before starting xlbd: %v\n%s", err, out.String())
	}
	checkNothingLeft(t, res)
}

// checkNothingLeft: no namespace of the run, no pins, no temporary
// directory, no xlbd process.
func checkNothingLeft(t *testing.T, res *demo.Result) {
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
	for _, p := range []string{res.Pins, res.Dir} {
		if _, err := os.Stat(p); p != "" && err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if res.XlbdPID != 0 {
		if err := syscall.Kill(res.XlbdPID, 0); err == nil {
			// The pid may have been reused: only a live xlbd counts.
			if exe, _ := os.Readlink("/proc/" + strconv.Itoa(res.XlbdPID) + "/exe"); strings.HasSuffix(exe, "/xlbd") {
				t.Errorf("xlbd (pid %d) still runs", res.XlbdPID)
			}
		}
	}
}
