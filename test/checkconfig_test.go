//go:build integration

package test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
