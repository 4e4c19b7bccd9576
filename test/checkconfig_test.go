//go:build integration

package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// TestCheckConfig runs the built xlbd --check-config on a good and a bad
// file: exit 0 and a summary, exit 1 and the error naming the field and
// the value. Run as root, it drops to nobody first (it needs no
// privilege); either way it must create no pin, socket, lock or state.
func TestCheckConfig(t *testing.T) {
	dir, err := os.MkdirTemp("", "xlb-check-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// Readable and runnable by nobody: the binary and files are copied in.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	xlbd := filepath.Join(dir, "xlbd")
	copyFile(t, bins.Xlbd(), xlbd, 0o755)
	good := filepath.Join(dir, "good.yaml")
	copyFile(t, "../examples/xlb.yaml", good, 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("interface: lo\nservices:\n  - vip: 198.18.1.1\n    port: 80\n    scheduler: fastest\n    backends: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir() // nobody could write here: nothing may appear
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	bpffs, sock, stateFile, runDir := filepath.Join(state, "bpf"), filepath.Join(state, "xlb.sock"), filepath.Join(state, "state.json"), filepath.Join(state, "run")

	run := func(file string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(xlbd, "--check-config", file, "--bpffs", bpffs, "--api", sock, "--state", stateFile, "--run-dir", runDir)
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run xlbd: %v", err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}

	code, out, errOut := run(good)
	if code != 0 || !strings.HasPrefix(out, "config "+good+": ok (role balancer)\n") ||
		!strings.Contains(out, "  198.18.1.2:53/udp scheduler source-hash forward dsr-l2 backends 2 health tcp") {
		t.Errorf("good file: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = run(bad)
	if want := `services[0].scheduler "fastest"`; code != 1 || out != "" || !strings.Contains(errOut, want) {
		t.Errorf("bad file: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
	for _, p := range []string{bpffs, sock, stateFile, runDir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--check-config created %s (%v)", p, err)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestApplyDryRun runs the built xlbctl apply --dry-run against a running
// xlbd: the diff includes an API change a reload would drop, a bad file
// gets xlbd's error with exit 1, and nothing changes.
func TestApplyDryRun(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2, ClientAddrs: -1})
	svc := fmt.Sprintf("%s:80/tcp", topo.VIP4)
	b0, b1 := topo.Backends[0].Addr4, topo.Backends[1].Addr4
	file := fmt.Sprintf("services:\n  - vip: %s\n    port: 80\n    backends:\n      - address: %s\n", topo.VIP4, b0)
	d := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Lab: topo, Config: file})
	d.Start()
	if _, err := d.Ctl("backend", "add", svc, b1.String(), "--weight", "2"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	next := filepath.Join(dir, "next.yaml")
	write := func(s string) {
		if err := os.WriteFile(next, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(file + "    scheduler: round-robin\n")
	out, err := d.Ctl("apply", "--dry-run", "-f", next)
	want := fmt.Sprintf("~ service %s\n    scheduler: maglev -> round-robin\n    - backend %s weight 2\n0 added, 0 removed, 1 changed, 0 unchanged (nothing applied)\n", svc, b1)
	if err != nil || out != want {
		t.Errorf("apply --dry-run: %v\n%s\nwant\n%s", err, out, want)
	}
	write(file + "    scheduler: fastest\n")
	out, err = d.Ctl("apply", "--dry-run", "-f", next)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, `services[0].scheduler "fastest"`) {
		t.Errorf("bad file: %v\n%s", err, out)
	}
	st, err := d.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || st.Services[0].Scheduler != "maglev" || len(st.Services[0].Backends) != 2 {
		t.Errorf("the running state changed: %+v", st.Services)
	}
}
