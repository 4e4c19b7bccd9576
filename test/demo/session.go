package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// session is what every demo shares: the story's UI, the host's
// preparation, the build of xlbd and xlbctl, the run's temporary
// directory, and the frame that runs the steps and always tears down.
type session struct {
	opts Options
	ui   *ui
	// command is how the user started the demo ("make demo"), for
	// messages.
	command string
	// tempPrefix names the run's temporary directory and kept logs
	// ("xlb-demo").
	tempPrefix string

	root         string
	dir          string // temporary directory: binaries, xlbd's files
	bins         *xlbdproc.Binaries
	mountedBPFFS bool
}

// stage is one demo on a session: its own tear-down, what of it may be
// left behind, and its logs to show on failure.
type stage interface {
	// teardown removes what the demo built (before the session removes
	// its directory).
	teardown() []error
	// leftovers lists what of the demo's own still exists.
	leftovers() []string
	// logs are the daemons' logs worth showing when the demo fails.
	logs() []logFile
}

// logFile is a daemon's log.
type logFile struct {
	// Whose is the possessive of its owner: "xlbd's", "lb1's xlbd".
	Whose string
	// Slug names a kept copy ("xlbd", "lb1-xlbd").
	Slug string
	Path string
	// Lines is how many of its last lines to print.
	Lines int
}

// ending is how a session ended.
type ending struct {
	// err is the first step's error (or the interruption), joined with
	// tear-down errors, or what was left behind.
	err error
	// failure is the step's error alone ("" if none failed).
	failure   string
	leftovers []string
	elapsed   time.Duration
}

func newSession(opts Options, command, tempPrefix string, steps int) *session {
	return &session{
		opts:       opts,
		ui:         &ui{w: opts.Out, interactive: opts.Interactive, color: opts.Color, steps: steps},
		command:    command,
		tempPrefix: tempPrefix,
	}
}

// execute prints the intro, runs the steps in order until one fails or
// ctx ends, and then always tears down: st's part, then the session's. It
// tells the user how it ended: the failure with the logs, the
// interruption, or "Done" with what was removed.
func (s *session) execute(ctx context.Context, st stage, intro []string, removed string, steps []func(context.Context) error) ending {
	start := time.Now()
	var o ending
	for i, l := range intro {
		if i == 0 {
			l = s.ui.bold(l)
		}
		fmt.Fprintln(s.opts.Out, l)
	}
	var err error
	for i, step := range steps {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = step(ctx); err != nil {
			break
		}
		if s.opts.AfterStep != nil {
			s.opts.AfterStep(i + 1)
		}
	}
	if err != nil {
		o.failure = err.Error()
		s.fail(ctx, st, err)
	}
	terrs := st.teardown()
	terrs = append(terrs, s.teardown()...)
	if len(terrs) > 0 {
		err = errors.Join(append([]error{err}, terrs...)...)
	}
	o.leftovers = append(st.leftovers(), s.leftovers()...)
	o.elapsed = time.Since(start)
	if err == nil && len(o.leftovers) > 0 {
		err = fmt.Errorf("left behind: %v", o.leftovers)
	}
	if err == nil {
		fmt.Fprintf(s.opts.Out, "\n%s\n", s.ui.bold(fmt.Sprintf("Done in %.1fs. Everything is removed: %s.", o.elapsed.Seconds(), removed)))
	}
	o.err = err
	return o
}

// fail prints the failure and the end of the daemons' logs (kept in a
// file unless Options.DropLog).
func (s *session) fail(ctx context.Context, st stage, err error) {
	fmt.Fprintln(s.opts.Out)
	if ctx.Err() != nil {
		fmt.Fprintln(s.opts.Out, s.ui.bold("Interrupted: removing everything the demo created."))
		return
	}
	fmt.Fprintf(s.opts.Out, "%s %v\n", s.ui.bold("Demo failed:"), err)
	for _, l := range st.logs() {
		path, last := s.keepLog(l, !s.opts.DropLog)
		switch {
		case path != "":
			fmt.Fprintf(s.opts.Out, "%s log is kept in %s; its last lines:\n", l.Whose, path)
			s.ui.block(last)
		case last != "":
			fmt.Fprintf(s.opts.Out, "%s last log lines:\n", l.Whose)
			s.ui.block(last)
		}
	}
}

// keepLog returns the last lines of a log and, with keep, copies the log
// out of the temporary directory (which the tear-down removes) and returns
// the copy's path too.
func (s *session) keepLog(l logFile, keep bool) (string, string) {
	data, err := os.ReadFile(l.Path)
	if err != nil || len(data) == 0 {
		return "", ""
	}
	if !keep {
		return "", tail(data, l.Lines)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%s-%d.log", s.tempPrefix, l.Slug, os.Getpid()))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", ""
	}
	return path, tail(data, l.Lines)
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

const bpffsRoot = xlbdproc.BPFFSRoot

// bpffsMagic is BPF_FS_MAGIC from <linux/magic.h>.
const bpffsMagic = 0xcafe4a11

// prepareHost makes sure the host can run the demo: root, bpffs mounted
// (mounting it if needed; teardown unmounts it again), nsenter present
// (installing util-linux if apt-get can), and a lab can be built.
func (s *session) prepareHost(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo needs root (network namespaces and XDP): run sudo %s", s.command)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsRoot, &st); err != nil || st.Type != bpffsMagic {
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, ""); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", bpffsRoot, err)
		}
		s.mountedBPFFS = true
		s.ui.line("mounted bpffs at %s (it is unmounted again at the end)", bpffsRoot)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		if _, aerr := exec.LookPath("apt-get"); aerr != nil {
			return errors.New("nsenter (util-linux) is needed to run xlbd in the balancer's namespace: install util-linux")
		}
		w := s.ui.wait("installing util-linux (for nsenter)")
		out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "util-linux").CombinedOutput()
		w.end("")
		if err != nil {
			return fmt.Errorf("apt-get install util-linux: %w\n%s", err, out)
		}
		s.ui.line("installed util-linux (for nsenter)")
	}
	// Namespaces of earlier runs that were killed outright; live labs of
	// other processes are left alone.
	_, _ = lab.RemoveStale()
	if err := lab.CheckPrivileged(); err != nil {
		return fmt.Errorf("this host cannot run the lab: %w", err)
	}
	return nil
}

// setUp finds the repository and creates the run's temporary directory.
func (s *session) setUp(ctx context.Context) error {
	root, err := findRoot(ctx, s.opts.Root, s.command)
	if err != nil {
		return err
	}
	s.root = root
	s.dir, err = os.MkdirTemp("", s.tempPrefix+"-")
	return err
}

// findRoot returns the module root: root if set, else the directory of
// the go.mod governing the working directory.
func findRoot(ctx context.Context, root, command string) (string, error) {
	if root != "" {
		return root, nil
	}
	out, err := exec.CommandContext(ctx, xlbdproc.GoTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the demo from the xlb repository (sudo %s)", command)
	}
	return filepath.Dir(mod), nil
}

// build compiles xlbd and xlbctl into dir/bin.
func (s *session) build(ctx context.Context) error {
	if s.opts.BinDir != "" {
		s.bins = xlbdproc.Prebuilt(s.opts.BinDir)
		s.ui.line("using prebuilt xlbd and xlbctl from %s", s.bins.Dir)
		return nil
	}
	w := s.ui.wait("building xlbd and xlbctl")
	bins, err := xlbdproc.Build(ctx, s.root, filepath.Join(s.dir, "bin"))
	took := w.end("")
	if err != nil {
		return err
	}
	s.bins = bins
	s.ui.line("built xlbd and xlbctl with go build in %s (no clang needed: the BPF object is committed)", seconds(took))
	return nil
}

// teardown removes the session's own: its directory and bpffs, if it
// mounted it and nothing is pinned there now.
func (s *session) teardown() (errs []error) {
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if s.mountedBPFFS && bpffsUnused() {
		// Only when nothing else pinned there meanwhile: unmounting
		// would unpin it.
		if err := unix.Unmount(bpffsRoot, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", bpffsRoot, err))
		}
	}
	return errs
}

// leftovers lists what of the session still exists: its directory.
func (s *session) leftovers() []string {
	if s.dir != "" {
		if _, err := os.Stat(s.dir); err == nil {
			return []string{"directory " + s.dir}
		}
	}
	return nil
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

// labLeftovers lists the namespaces of the lab with prefix that still
// exist.
func labLeftovers(prefix string) []string {
	var left []string
	ents, _ := os.ReadDir(lab.NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			left = append(left, "namespace "+e.Name())
		}
	}
	return left
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
