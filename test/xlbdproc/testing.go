package xlbdproc

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// RunTests is a test package's TestMain: it builds xlbd and xlbctl into
// *bins, runs the tests and removes the binaries again. Use it as
// os.Exit(xlbdproc.RunTests(m, &bins)).
func RunTests(m *testing.M, bins **Binaries) int {
	b, err := Build(context.Background(), "", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*bins = b
	code := m.Run()
	if err := b.Remove(); err != nil {
		fmt.Fprintln(os.Stderr, "remove the binaries:", err)
		code = max(code, 1)
	}
	return code
}

// T is a Daemon in a test. Its methods that change the daemon's state fail
// the test where Daemon's return an error; the others are Daemon's.
type T struct {
	*Daemon
	tb testing.TB
}

// NewT is New for a test. tb.Cleanup closes the daemon (a Close error
// fails the test) and, when the test failed, logs xlbd's log.
func NewT(tb testing.TB, o Options) *T {
	tb.Helper()
	d, err := New(o)
	if err != nil {
		tb.Fatalf("prepare xlbd: %v", err)
	}
	tb.Cleanup(func() {
		_ = d.Stop(stopGrace) // first, so the log is complete
		log, _ := os.ReadFile(d.LogPath())
		if err := d.Close(); err != nil {
			tb.Errorf("clean up after xlbd: %v", err)
		}
		if tb.Failed() && len(log) > 0 {
			tb.Logf("xlbd log:\n%s", log)
		}
	})
	return &T{Daemon: d, tb: tb}
}

// Start starts xlbd and waits until its API answers.
func (t *T) Start() {
	t.tb.Helper()
	if err := t.Daemon.Start(context.Background()); err != nil {
		t.tb.Fatalf("start xlbd: %v", err)
	}
}

// Stop stops xlbd with SIGTERM; it fails the test if xlbd does not exit
// within 10s.
func (t *T) Stop() {
	t.tb.Helper()
	if err := t.Daemon.Stop(10 * time.Second); err != nil {
		t.tb.Fatal(err)
	}
}

// Kill kills xlbd with SIGKILL and waits for it.
func (t *T) Kill() {
	t.tb.Helper()
	if err := t.Daemon.Kill(); err != nil {
		t.tb.Fatal(err)
	}
}

// Reload sends SIGHUP.
func (t *T) Reload() {
	t.tb.Helper()
	if err := t.Daemon.Reload(); err != nil {
		t.tb.Fatalf("reload xlbd: %v", err)
	}
}

// WriteConfig replaces the config file's content.
func (t *T) WriteConfig(config string) {
	t.tb.Helper()
	if err := t.Daemon.WriteConfig(config); err != nil {
		t.tb.Fatalf("write xlbd's config: %v", err)
	}
}

// Metrics scrapes xlbd's metrics.
func (t *T) Metrics() string {
	t.tb.Helper()
	m, err := t.Daemon.Metrics()
	if err != nil {
		t.tb.Fatal(err)
	}
	return m
}

// MustCtl runs xlbctl and returns its output; it fails the test if xlbctl
// fails.
func (t *T) MustCtl(args ...string) string {
	t.tb.Helper()
	out, err := t.Ctl(args...)
	if err != nil {
		t.tb.Fatal(err) // it carries the output
	}
	return out
}
