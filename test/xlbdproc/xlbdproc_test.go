//go:build integration

package xlbdproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/test/lab"
)

var bins *Binaries

func TestMain(m *testing.M) { os.Exit(RunTests(m, &bins)) }

func labConfig(topo *lab.Topology) string {
	return fmt.Sprintf("services:\n  - vip: %s\n    port: 80\n    backends:\n      - address: %s\n", topo.VIP4, topo.Backends[0].Addr4)
}

// isXlbd reports whether pid is a live xlbd.
func isXlbd(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && strings.HasSuffix(exe, "/xlbd")
}

func gone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

// TestLifecycle: start, xlbctl, reload, kill, restart, stop, and a Close
// that leaves no process, pin, socket or directory behind.
func TestLifecycle(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 1, ClientAddrs: -1})
	d, err := New(Options{Bins: bins, Lab: topo, Config: labConfig(topo), Metrics: DefaultMetrics})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }() // for an early failure; the end of the test checks Close
	if err := d.Reload(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("reload before start: %v, want ErrNotRunning", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := d.PID()
	if !d.Running() || !isXlbd(first) {
		t.Fatalf("pid %d is no running xlbd", first)
	}
	if err := d.Start(context.Background()); err == nil {
		t.Errorf("a second Start while xlbd runs did not fail")
	}
	if st, err := d.Client().Status(context.Background()); err != nil || len(st.Services) != 1 {
		t.Errorf("status: %+v, %v", st, err)
	}
	if out, err := d.Ctl("status"); err != nil || !strings.Contains(out, topo.VIP4.String()) {
		t.Errorf("xlbctl status: %v\n%s", err, out)
	}
	if _, err := d.Ctl("service", "del", "198.18.1.9:1/tcp"); err == nil || !strings.Contains(err.Error(), "198.18.1.9:1/tcp") {
		t.Errorf("failing xlbctl: %v, want an error carrying its output", err)
	}
	if m, err := d.Metrics(); err != nil || !strings.Contains(m, "xlb_build_info") {
		t.Errorf("metrics: %v\n%s", err, m)
	}
	if err := d.Reload(); err != nil {
		t.Errorf("reload: %v", err)
	}

	// SIGKILL leaves the pins; a restart re-adopts them and has a log of
	// its own.
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if d.Running() || isXlbd(first) {
		t.Fatalf("xlbd (pid %d) still runs after Kill", first)
	}
	if _, err := os.Stat(d.PinDir()); err != nil {
		t.Fatalf("pins gone after SIGKILL: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.PID() == first || !strings.Contains(d.Log(), "re-adopted") {
		t.Errorf("restart: pid %d (was %d), log:\n%s", d.PID(), first, d.Log())
	}
	if all, _ := os.ReadFile(d.LogPath()); len(all) <= len(d.Log()) {
		t.Errorf("Log is not the last run's alone")
	}
	if err := d.Stop(stopGrace); err != nil {
		t.Fatal(err)
	}

	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := d.PID()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if isXlbd(pid) {
		t.Errorf("xlbd (pid %d) still runs after Close", pid)
	}
	gone(t, d.BPFFS(), d.Socket(), d.Dir())
}

// TestStartFails: an xlbd that exits (here, with a bad config) fails
// Start at once, with its last log line, and Close still cleans up.
func TestStartFails(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 1, ClientAddrs: -1})
	d := NewT(t, Options{Bins: bins, Lab: topo, Config: labConfig(topo) + "    sheduler: maglev\n"})
	err := d.Daemon.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "sheduler") {
		t.Fatalf("start with a bad config: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	gone(t, d.BPFFS(), d.Dir())
}
