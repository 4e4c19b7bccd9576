//go:build integration

package test

import (
	"bufio"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
)

// TestDrainWait runs "xlbctl backend drain --wait" against a real xlbd
// while a TCP connection through the VIP stays open on the backend: the
// command keeps waiting with a count of 1, the connection still works, and
// once the client closes it the command returns 0 (issue 16).
func TestDrainWait(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2})
	serveAll(t, topo, 8080)
	e := newDaemonEnv(t, topo, labConfig(topo, 8080))
	e.Start()

	// A long-lived connection; its greeting names the backend.
	c, err := topo.Client.Dial(netip.AddrPort{}, netip.AddrPortFrom(topo.VIP4, 8080), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }() // closed below; this is for early failures
	rd := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	greeting, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	var be *lab.Host
	for _, h := range topo.Backends {
		if strings.HasPrefix(greeting, "server="+h.Name+" ") {
			be = h
		}
	}
	if be == nil {
		t.Fatalf("greeting %q names no backend", greeting)
	}
	svc := fmt.Sprintf("%s:8080/tcp", topo.VIP4)

	// xlbctl runs in the host namespace (the API is a unix socket), in its
	// own process group, stopped by its pid if the test ends early.
	out := &syncWriter{}
	cmd := exec.Command(bins.Xlbctl(), "--api", e.Socket(), "backend", "drain", svc, be.Addr4.String(), "--wait", "--timeout", "30s")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // by its pid: it is still running
			<-exited
		}
	})

	counted := fmt.Sprintf("backend %s of %s: 1 active flow\n", be.Addr4, svc)
	deadline := time.After(15 * time.Second)
	for !strings.Contains(out.String(), counted) {
		select {
		case err := <-done:
			t.Fatalf("xlbctl exited (%v) with the connection open; output:\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("no %q after 15s; output:\n%s", counted, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Still waiting, and the drained backend still serves the connection.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, "still here"); err != nil {
		t.Fatalf("write on the drained backend's connection: %v", err)
	}
	if got, err := rd.ReadString('\n'); err != nil || got != "echo still here\n" {
		t.Fatalf("echo on the drained backend's connection: %q, %v", got, err)
	}
	select {
	case err := <-done:
		t.Fatalf("xlbctl exited (%v) with the connection open; output:\n%s", err, out.String())
	default:
	}

	// The client closes (FIN): the command returns 0.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("xlbctl after the close: %v; output:\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("xlbctl still waiting 20s after the connection closed; output:\n%s", out.String())
	}
	want := fmt.Sprintf("backend %s of %s: drained, no active flows left\n", be.Addr4, svc)
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("output does not end with %q:\n%s", want, out.String())
	}
	t.Logf("xlbctl output:\n%s", out.String())

	st, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if b.Address == be.Addr4.String() && b.Weight != 0 {
				t.Errorf("backend %s has weight %d after the drain", b.Address, b.Weight)
			}
		}
	}
}

// syncWriter collects a process's output while the test reads it.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
