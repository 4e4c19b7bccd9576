package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

const bpffsRoot = "/sys/fs/bpf"

// bpffsMagic is BPF_FS_MAGIC from <linux/magic.h>.
const bpffsMagic = 0xcafe4a11

// prepareHost makes sure the host can run the demo: root, bpffs mounted
// (mounting it if needed; teardown unmounts it again), nsenter present
// (installing util-linux if apt-get can), and a lab can be built.
func (d *run) prepareHost(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root (network namespaces and XDP): run sudo make demo")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsRoot, &st); err != nil || st.Type != bpffsMagic {
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, ""); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", bpffsRoot, err)
		}
		d.mountedBPFFS = true
		d.ui.line("mounted bpffs at %s (it is unmounted again at the end)", bpffsRoot)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		if _, aerr := exec.LookPath("apt-get"); aerr != nil {
			return errors.New("nsenter (util-linux) is needed to run xlbd in the balancer's namespace: install util-linux")
		}
		w := d.ui.wait("installing util-linux (for nsenter)")
		out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "util-linux").CombinedOutput()
		w.end("")
		if err != nil {
			return fmt.Errorf("apt-get install util-linux: %w\n%s", err, out)
		}
		d.ui.line("installed util-linux (for nsenter)")
	}
	// Namespaces of earlier runs that were killed outright; live labs of
	// other processes are left alone.
	_, _ = lab.RemoveStale()
	if err := lab.CheckPrivileged(); err != nil {
		return fmt.Errorf("this host cannot run the lab: %w", err)
	}
	return nil
}

// findRoot returns the module root: Options.Root, else the directory of
// the go.mod governing the working directory.
func findRoot(ctx context.Context, root string) (string, error) {
	if root != "" {
		return root, nil
	}
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the demo from the xlb repository (sudo make demo)")
	}
	return filepath.Dir(mod), nil
}

// goTool returns the go command: the one on PATH, else the one of the
// toolchain that built this program (sudo may reset PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// build compiles xlbd and xlbctl into dir/bin.
func (d *run) build(ctx context.Context) error {
	if d.opts.BinDir != "" {
		d.bin = d.opts.BinDir
		d.ui.line("using prebuilt xlbd and xlbctl from %s", d.bin)
		return nil
	}
	d.bin = filepath.Join(d.dir, "bin")
	w := d.ui.wait("building xlbd and xlbctl")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", d.bin+"/", "./cmd/xlbd", "./cmd/xlbctl")
	cmd.Dir = d.root
	out, err := cmd.CombinedOutput()
	took := w.end("")
	if err != nil {
		return fmt.Errorf("go build ./cmd/xlbd ./cmd/xlbctl: %w\n%s", err, out)
	}
	d.ui.line("built xlbd and xlbctl with go build in %s (no clang needed: the BPF object is committed)", seconds(took))
	return nil
}

// pinDir is the bpffs directory of this run's xlbd (one per lab, so demos
// and tests never share pins).
func (d *run) pinDir() string { return filepath.Join(bpffsRoot, d.topo.Prefix) }

func (d *run) sock() string { return filepath.Join(d.dir, "xlb.sock") }

func (d *run) xlbdArgs(extra ...string) []string {
	return append([]string{
		"--interface", lab.LinkName, "--config", d.config, "--bpffs", d.pinDir(),
		"--api", d.sock(), "--state", filepath.Join(d.dir, "state.json"),
		"--run-dir", d.dir, "--metrics", "127.0.0.1:9641",
	}, extra...)
}

// startXlbd runs xlbd in the balancer's namespace, its log in a file, and
// waits until its API answers.
func (d *run) startXlbd(ctx context.Context) error {
	log, err := os.Create(filepath.Join(d.dir, "xlbd.log"))
	if err != nil {
		return err
	}
	d.log = log
	// Not ctx: on Ctrl-C xlbd must get SIGTERM and --detach, not SIGKILL.
	cmd := d.topo.Balancer.NS.Command(context.Background(), filepath.Join(d.bin, "xlbd"), d.xlbdArgs()...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start xlbd: %w", err)
	}
	d.xlbd = cmd
	d.res.XlbdPID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	d.xlbdExited = exited
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := d.status(ctx); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			d.xlbdExited = nil
			d.xlbd = nil
			return fmt.Errorf("xlbd exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("xlbd's API did not answer within 20s")
		}
	}
}

// ctl runs xlbctl against this run's xlbd and returns its standard output.
// It is bounded by its own timeout, not ctx, so tear-down can use it.
func (d *run) ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "xlbctl"), append([]string{"--api", d.sock()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("xlbctl %s: %s", strings.Join(args, " "), msg)
	}
	return stdout.String(), nil
}

// status reads `xlbctl status -o json`.
func (d *run) status(ctx context.Context) (api.Status, error) {
	var st api.Status
	if err := ctx.Err(); err != nil {
		return st, err
	}
	out, err := d.ctl("status", "-o", "json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("xlbctl status -o json: %w", err)
	}
	return st, nil
}

// backendStatus returns the status of one backend of the demo's service.
func (d *run) backendStatus(ctx context.Context, addr string) (api.BackendStatus, error) {
	st, err := d.status(ctx)
	if err != nil {
		return api.BackendStatus{}, err
	}
	for _, s := range st.Services {
		if s.Service != d.service {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == addr {
				return b, nil
			}
		}
	}
	return api.BackendStatus{}, fmt.Errorf("xlbd shows no backend %s in %s", addr, d.service)
}

// teardown removes everything the run created, in reverse order, and
// reports what (if anything) is left.
func (d *run) teardown() (errs []error) {
	for _, c := range d.held {
		c.Close()
	}
	if d.xlbd != nil {
		d.xlbd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.xlbdExited:
		case <-time.After(5 * time.Second):
			d.xlbd.Process.Kill()
			<-d.xlbdExited
		}
	}
	if d.topo != nil {
		if _, err := os.Stat(d.pinDir()); err == nil {
			// --detach removes the program, its link and the pins.
			cmd := d.topo.Balancer.NS.Command(context.Background(), filepath.Join(d.bin, "xlbd"), d.xlbdArgs("--detach")...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("xlbd --detach: %v: %s", err, strings.TrimSpace(string(out))))
			}
			if err := os.RemoveAll(d.pinDir()); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.topo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("remove the lab: %w", err))
		}
	}
	if d.log != nil {
		d.log.Close()
	}
	if d.dir != "" {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if d.mountedBPFFS && bpffsUnused() {
		// Only when nothing else pinned there meanwhile: unmounting
		// would unpin it.
		if err := unix.Unmount(bpffsRoot, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", bpffsRoot, err))
		}
	}
	return errs
}

// bpffsUnused reports whether bpffs holds nothing but the kernel's own
// maps.debug and progs.debug.
func bpffsUnused() bool {
	ents, err := os.ReadDir(bpffsRoot)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n := e.Name(); n != "maps.debug" && n != "progs.debug" {
			return false
		}
	}
	return true
}

// leftovers lists what of this run still exists: lab namespaces, pins, the
// temporary directory.
func (d *run) leftovers() []string {
	var left []string
	if d.topo != nil {
		ents, _ := os.ReadDir(lab.NetnsDir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), d.topo.Prefix+"-") {
				left = append(left, "namespace "+e.Name())
			}
		}
		if _, err := os.Stat(d.pinDir()); err == nil {
			left = append(left, "pins "+d.pinDir())
		}
	}
	if d.dir != "" {
		if _, err := os.Stat(d.dir); err == nil {
			left = append(left, "directory "+d.dir)
		}
	}
	return left
}

// keepLog returns the last lines of xlbd's log and, with keep, copies the
// log out of the temporary directory (which the tear-down removes) and
// returns the copy's path too.
func (d *run) keepLog(keep bool) (string, string) {
	if d.log == nil {
		return "", ""
	}
	data, err := os.ReadFile(d.log.Name())
	if err != nil {
		return "", ""
	}
	if !keep {
		return "", tail(data, 15)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("xlb-demo-xlbd-%d.log", os.Getpid()))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", ""
	}
	return path, tail(data, 15)
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
