package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastDrainPoll makes "backend drain --wait" poll every millisecond.
func fastDrainPoll(t *testing.T) {
	old := drainPoll
	drainPoll = time.Millisecond
	t.Cleanup(func() { drainPoll = old })
}

const drainSvc = "198.18.1.1:80/tcp"

// drainLab starts xlbd's real handlers with service drainSvc, backends
// 198.18.0.11 (n active flows) and 198.18.0.12.
func drainLab(t *testing.T, n uint64) (string, *daemontest.DataPlane) {
	t.Helper()
	sock, dp, _ := startXlbd(t)
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out},
		[]string{"--api", sock, "service", "add", drainSvc, "--backend", "198.18.0.11", "--backend", "198.18.0.12"}); code != 0 {
		t.Fatalf("service add: %d %s", code, out.String())
	}
	k, err := parseKey(drainSvc)
	if err != nil {
		t.Fatal(err)
	}
	dp.SetActive(k, netip.MustParseAddr("198.18.0.11"), n)
	return sock, dp
}

// waitFor waits until buf holds want.
func waitFor(t *testing.T, buf *syncBuffer, want string, done <-chan int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(buf.String(), want) {
		select {
		case code := <-done:
			t.Fatalf("xlbctl exited %d before printing %q; stdout %q", code, want, buf.String())
		case <-deadline:
			t.Fatalf("no %q after 10s; stdout %q", want, buf.String())
		case <-time.After(time.Millisecond):
		}
	}
}

// TestDrainWait: the wait prints the count as it falls and returns 0 when
// it reaches 0, against xlbd's real handlers.
func TestDrainWait(t *testing.T) {
	fastDrainPoll(t)
	sock, dp := drainLab(t, 2)
	k, _ := parseKey(drainSvc)
	be := netip.MustParseAddr("198.18.0.11")

	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), env{Stdout: &out, Stderr: &errOut},
			[]string{"--api", sock, "backend", "drain", drainSvc, "198.18.0.11", "--wait", "--timeout", "1m"})
	}()
	waitFor(t, &out, "2 active flows\n", done)
	dp.SetActive(k, be, 1)
	waitFor(t, &out, "1 active flow\n", done)
	dp.SetActive(k, be, 0)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10s after the count reached 0")
	}
	want := `draining backend 198.18.0.11 of 198.18.1.1:80/tcp: weight 0, its flows continue, new flows go to the others
backend 198.18.0.11 of 198.18.1.1:80/tcp: 2 active flows
backend 198.18.0.11 of 198.18.1.1:80/tcp: 1 active flow
backend 198.18.0.11 of 198.18.1.1:80/tcp: drained, no active flows left
`
	if got := out.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}

	// A backend without flows returns at once.
	var out2 bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out2, Stderr: &out2},
		[]string{"--api", sock, "backend", "drain", drainSvc, "198.18.0.12", "--wait"}); code != 0 ||
		!strings.HasSuffix(out2.String(), "backend 198.18.0.12 of 198.18.1.1:80/tcp: drained, no active flows left\n") {
		t.Errorf("drain --wait of an idle backend: exit %d, %q", code, out2.String())
	}
}

// TestDrainWaitTimeout: the wait fails at --timeout with the count left,
// and the backend stays drained.
func TestDrainWaitTimeout(t *testing.T) {
	fastDrainPoll(t)
	sock, _ := drainLab(t, 3)
	var out, errOut bytes.Buffer
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut},
		[]string{"--api", sock, "backend", "drain", drainSvc, "198.18.0.11", "--wait", "--timeout", "50ms"})
	want := "xlbctl: backend drain: backend 198.18.0.11 of 198.18.1.1:80/tcp: 3 active flows left after 50ms (it stays drained)\n"
	if code != 1 || errOut.String() != want {
		t.Errorf("exit %d, stderr %q\nwant exit 1, %q", code, errOut.String(), want)
	}
	if !strings.Contains(out.String(), "backend 198.18.0.11 of 198.18.1.1:80/tcp: 3 active flows\n") {
		t.Errorf("stdout %q: no count", out.String())
	}
	assertWeight0(t, sock)
}

// TestDrainWaitInterrupted: Ctrl-C (the context ending) stops the wait
// with the count left; the backend stays drained.
func TestDrainWaitInterrupted(t *testing.T) {
	fastDrainPoll(t)
	sock, _ := drainLab(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env{Stdout: &out, Stderr: &errOut},
			[]string{"--api", sock, "backend", "drain", drainSvc, "198.18.0.11", "--wait"})
	}()
	waitFor(t, &out, "4 active flows\n", done)
	cancel()
	select {
	case code := <-done:
		want := "xlbctl: backend drain: backend 198.18.0.11 of 198.18.1.1:80/tcp: stopped waiting with 4 active flow(s) left (it stays drained)\n"
		if code != 1 || errOut.String() != want {
			t.Errorf("exit %d, stderr %q\nwant exit 1, %q", code, errOut.String(), want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10s after Ctrl-C")
	}
	assertWeight0(t, sock)
}

func assertWeight0(t *testing.T, sock string) {
	t.Helper()
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out}, []string{"--api", sock, "backend", "list", drainSvc}); code != 0 {
		t.Fatalf("backend list: %d %s", code, out.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "198.18.0.11" && (f[1] != "0" || f[2] != "drain") {
			t.Errorf("backend not drained after the wait: %q", l)
		}
	}
}

// TestDrainWaitFlags: bad flags are usage errors that name the flag and
// value, and nothing is drained.
func TestDrainWaitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--timeout", "30s"}, "xlbctl: backend drain: --timeout needs --wait\n"},
		{[]string{"--wait", "--timeout", "0"}, `xlbctl: backend drain: --timeout "0": want a positive duration such as 30s or 5m` + "\n"},
		{[]string{"--wait", "--timeout", "-5s"}, `xlbctl: backend drain: --timeout "-5s": want a positive duration such as 30s or 5m` + "\n"},
		{[]string{"--wait", "--timeout", "soon"}, `xlbctl: backend drain: --timeout "soon": want a positive duration such as 30s or 5m` + "\n"},
		{[]string{"--wait", "--timeout", "30"}, `xlbctl: backend drain: --timeout "30": want a positive duration such as 30s or 5m` + "\n"},
	} {
		args := append([]string{"backend", "drain", drainSvc, "198.18.0.11"}, tc.args...)
		r := xlbctl(t, &fakeClient{status: sampleStatus()}, args...)
		if r.code != exitUsage || r.stderr != tc.err || len(r.calls) != 0 {
			t.Errorf("%q: exit %d, stderr %q, calls %q\n  want exit %d, %q, no calls", tc.args, r.code, r.stderr, r.calls, exitUsage, tc.err)
		}
	}
}
