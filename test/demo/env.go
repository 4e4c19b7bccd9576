package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

const bpffsRoot = xlbdproc.BPFFSRoot

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
	out, err := exec.CommandContext(ctx, xlbdproc.GoTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the demo from the xlb repository (sudo make demo)")
	}
	return filepath.Dir(mod), nil
}

// build compiles xlbd and xlbctl into dir/bin.
func (d *run) build(ctx context.Context) error {
	if d.opts.BinDir != "" {
		d.bins = xlbdproc.Prebuilt(d.opts.BinDir)
		d.ui.line("using prebuilt xlbd and xlbctl from %s", d.bins.Dir)
		return nil
	}
	w := d.ui.wait("building xlbd and xlbctl")
	bins, err := xlbdproc.Build(ctx, d.root, filepath.Join(d.dir, "bin"))
	took := w.end("")
	if err != nil {
		return err
	}
	d.bins = bins
	d.ui.line("built xlbd and xlbctl with go build in %s (no clang needed: the BPF object is committed)", seconds(took))
	return nil
}

// pinDir is the bpffs directory of this run's xlbd (one per lab, so demos
// and tests never share pins).
func (d *run) pinDir() string { return xlbdproc.BPFFS(d.topo) }

// startXlbd runs xlbd in the balancer's namespace, its log in a file, and
// waits until its API answers.
func (d *run) startXlbd(ctx context.Context) error {
	x, err := xlbdproc.New(xlbdproc.Options{Bins: d.bins, Lab: d.topo, ConfigFile: d.config,
		Metrics: xlbdproc.DefaultMetrics, TempDir: d.dir})
	if err != nil {
		return err
	}
	d.xlbd = x
	// On Ctrl-C xlbd gets SIGTERM and --detach in the tear-down: ctx
	// bounds the wait only.
	err = x.Start(ctx)
	d.res.XlbdPID = x.PID()
	return err
}

// ctl runs xlbctl against this run's xlbd and returns its output.
func (d *run) ctl(args ...string) (string, error) { return d.xlbd.Ctl(args...) }

// status is xlbd's status.
func (d *run) status(ctx context.Context) (api.Status, error) { return d.xlbd.Client().Status(ctx) }

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
	// Client sockets of this process, closed with a reset: close(2)
	// frees them whatever it returns, so nothing is left behind.
	for _, c := range d.held {
		_ = c.Close()
	}
	if d.xlbd != nil {
		// SIGTERM, then --detach: it removes the program, its link
		// and the pins.
		if err := d.xlbd.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.topo != nil {
		if err := d.topo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("remove the lab: %w", err))
		}
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
	if d.xlbd == nil {
		return "", ""
	}
	data, err := os.ReadFile(d.xlbd.LogPath())
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
