package xlbdproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

// BPFFSRoot is where bpffs is mounted.
const BPFFSRoot = "/sys/fs/bpf"

// DefaultMetrics is xlbd's own default metrics address; each lab
// namespace has its own loopback, so every lab can use it.
const DefaultMetrics = "127.0.0.1:9641"

// DefaultStartTimeout is how long Start waits for the API unless
// Options.StartTimeout says otherwise.
const DefaultStartTimeout = 20 * time.Second

// ctlTimeout bounds one xlbctl run; stopGrace is how long Close waits
// after SIGTERM before SIGKILL.
const (
	ctlTimeout = 20 * time.Second
	stopGrace  = 5 * time.Second
)

// ErrNotRunning is returned when xlbd is signalled while it does not run.
var ErrNotRunning = errors.New("xlbd is not running")

// BPFFS returns the bpffs directory of an xlbd in lab topo
// (/sys/fs/bpf/PREFIX): one per lab, so runs never share pins.
func BPFFS(topo *lab.Topology) string { return filepath.Join(BPFFSRoot, topo.Prefix) }

// Options configure a Daemon.
type Options struct {
	// Bins holds the xlbd and xlbctl to run.
	Bins *Binaries
	// Lab is where xlbd runs: in its balancer's namespace, on
	// lab.LinkName, with its pins under BPFFS(Lab).
	Lab *lab.Topology
	// Host, instead of Lab, runs xlbd on that lab host (one balancer node
	// of several), with its pins under HostBPFFS(Host).
	Host *lab.Host
	// Config is the content of xlbd's config file, written to its own
	// directory. ConfigFile, when set, names a file to use instead
	// (WriteConfig then refuses, not to overwrite the caller's file).
	Config     string
	ConfigFile string
	// Metrics is the metrics address inside the namespace; empty turns
	// metrics off.
	Metrics string
	// Args are more flags for every run of xlbd ("--log-level", "warn").
	Args []string
	// TempDir is where xlbd's own directory (config, socket, state, run
	// directory, log) is created; empty: the default temporary directory.
	TempDir string
	// StartTimeout bounds Start's wait for the API; 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// Daemon is one xlbd in a lab: its files, its pins and, while it runs, its
// process. Ctl, Client, Request, Metrics and Log may be called
// concurrently with anything; the others are for one goroutine.
type Daemon struct {
	opts   Options
	dir    string
	client *api.Client
	http   *http.Client

	mu      sync.Mutex
	proc    *proc     // the last process started; nil before the first
	logFrom int64     // where the last process's log starts
	started time.Time // when the last process was started
}

// proc is one xlbd process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
	err  error         // its exit status, once done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// New prepares an xlbd in o.Lab: it creates its directory and config file
// but starts nothing. Close removes what New and the runs created.
func New(o Options) (*Daemon, error) {
	if o.Bins == nil || (o.Lab == nil) == (o.Host == nil) {
		return nil, errors.New("xlbdproc: Options.Bins and one of Options.Lab and Options.Host are required")
	}
	dir, err := os.MkdirTemp(o.TempDir, "xlbd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{opts: o, dir: dir, client: api.NewClient(filepath.Join(dir, "xlb.sock"))}
	d.http = &http.Client{Timeout: api.ClientTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket())
		}}}
	if o.ConfigFile == "" {
		if err := d.WriteConfig(o.Config); err != nil {
			_ = os.RemoveAll(dir) // the write's failure is the one to report
			return nil, err
		}
	}
	return d, nil
}

// Dir is xlbd's own directory: config, socket, state, run directory, log.
func (d *Daemon) Dir() string { return d.dir }

// Socket is the API socket.
func (d *Daemon) Socket() string { return filepath.Join(d.dir, "xlb.sock") }

// ConfigPath is the config file xlbd runs with.
func (d *Daemon) ConfigPath() string {
	if d.opts.ConfigFile != "" {
		return d.opts.ConfigFile
	}
	return filepath.Join(d.dir, "xlb.yaml")
}

// LogPath is the file holding the log of every run, one after another.
func (d *Daemon) LogPath() string { return filepath.Join(d.dir, "xlbd.log") }

// BPFFS is xlbd's --bpffs directory, BPFFS(Options.Lab) or
// HostBPFFS(Options.Host).
func (d *Daemon) BPFFS() string {
	if d.opts.Host != nil {
		return HostBPFFS(d.opts.Host)
	}
	return BPFFS(d.opts.Lab)
}

// HostBPFFS returns the bpffs directory of an xlbd on lab host h
// (/sys/fs/bpf/NAMESPACE): one per host, so nodes never share pins.
func HostBPFFS(h *lab.Host) string { return filepath.Join(BPFFSRoot, h.NS.Name) }

// host is the lab host xlbd runs on.
func (d *Daemon) host() *lab.Host {
	if d.opts.Host != nil {
		return d.opts.Host
	}
	return d.opts.Lab.Balancer
}

// PinDir holds the pins of xlbd's data plane: BPFFS/eth0.
func (d *Daemon) PinDir() string { return filepath.Join(d.BPFFS(), lab.LinkName) }

// Client is an API client for this xlbd.
func (d *Daemon) Client() *api.Client { return d.client }

// WriteConfig replaces the config file's content (SIGHUP makes a running
// xlbd read it: Reload).
func (d *Daemon) WriteConfig(config string) error {
	if d.opts.ConfigFile != "" {
		return fmt.Errorf("xlbdproc: config file %s is the caller's: not overwriting it", d.opts.ConfigFile)
	}
	return os.WriteFile(d.ConfigPath(), []byte(config), 0o600)
}

func (d *Daemon) args(extra ...string) []string {
	a := []string{"--interface", lab.LinkName, "--config", d.ConfigPath(), "--bpffs", d.BPFFS(),
		"--api", d.Socket(), "--state", filepath.Join(d.dir, "state.json"), "--run-dir", d.dir,
		"--metrics", d.opts.Metrics}
	a = append(a, d.opts.Args...)
	return append(a, extra...)
}

func (d *Daemon) current() *proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// Running reports whether xlbd runs.
func (d *Daemon) Running() bool {
	p := d.current()
	return p != nil && !p.exited()
}

// PID is the pid of the last xlbd started (0 before the first): nsenter
// execs xlbd, so it is xlbd's own.
func (d *Daemon) PID() int {
	if p := d.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Started is when the last xlbd was started.
func (d *Daemon) Started() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started
}

// Launch starts xlbd in the balancer's namespace, its output appended to
// LogPath, and returns at once (Start also waits for the API). The process
// is not tied to any context: it stops only when told (Stop, Kill, Close).
func (d *Daemon) Launch() error {
	if d.Running() {
		return fmt.Errorf("xlbd already runs (pid %d)", d.PID())
	}
	log, err := os.OpenFile(d.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }() // nothing written through it: xlbd has its own descriptor
	from, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	cmd := d.host().NS.Command(context.Background(), d.opts.Bins.Xlbd(), d.args()...)
	cmd.Stdout, cmd.Stderr = log, log
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start xlbd: %w", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	d.mu.Lock()
	d.proc, d.logFrom, d.started = p, from, started
	d.mu.Unlock()
	return nil
}

// Start launches xlbd and waits until its API answers: at most
// Options.StartTimeout, less if ctx ends or xlbd exits first. On error xlbd
// may still run; Close ends it.
func (d *Daemon) Start(ctx context.Context) error {
	if err := d.Launch(); err != nil {
		return err
	}
	return d.WaitAPI(ctx)
}

// WaitAPI waits until the API of the running xlbd answers (see Start).
func (d *Daemon) WaitAPI(ctx context.Context) error {
	p := d.current()
	if p == nil {
		return ErrNotRunning
	}
	limit := d.opts.StartTimeout
	if limit == 0 {
		limit = DefaultStartTimeout
	}
	deadline := time.Now().Add(limit)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.client.Status(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("xlbd exited (%v) before its API answered; its log ends: %s", p.err, lastLine(d.Log()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("xlbd's API did not answer within %v: %w", limit, err)
		}
	}
}

// Signal sends sig to the running xlbd, by its pid (through a pidfd: never
// to a reused pid).
func (d *Daemon) Signal(sig syscall.Signal) error {
	p := d.current()
	if p == nil || p.exited() {
		return ErrNotRunning
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal xlbd (pid %d): %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// Reload sends SIGHUP: xlbd reads its config file again.
func (d *Daemon) Reload() error { return d.Signal(syscall.SIGHUP) }

// Stop sends SIGTERM (xlbd exits, the data plane keeps forwarding) and
// waits for xlbd to exit. After grace it sends SIGKILL and returns an
// error saying so. A stopped xlbd is no error.
func (d *Daemon) Stop(grace time.Duration) error {
	p := d.current()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("xlbd (pid %d) did not exit within %v of SIGTERM: killed", p.cmd.Process.Pid, grace)
}

// Kill sends SIGKILL (no clean-up at all in xlbd) and waits for it to
// exit. A stopped xlbd is no error.
func (d *Daemon) Kill() error {
	p := d.current()
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill xlbd (pid %d): %w", p.cmd.Process.Pid, err)
	}
	<-p.done
	return nil
}

// Run runs xlbd to completion with its usual flags and extra (such as
// "--detach", or to see it refuse) and returns its output.
func (d *Daemon) Run(ctx context.Context, extra ...string) (string, error) {
	out, err := d.host().NS.Command(ctx, d.opts.Bins.Xlbd(), d.args(extra...)...).CombinedOutput()
	return string(out), err
}

// Ctl runs xlbctl against this xlbd and returns its output (standard
// output and error). When xlbctl fails the error carries that output.
func (d *Daemon) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.opts.Bins.Xlbctl(), append([]string{"--api", d.Socket()}, args...)...).CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return string(out), fmt.Errorf("xlbctl %s: %s (%w)", strings.Join(args, " "), msg, err)
		}
		return string(out), fmt.Errorf("xlbctl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Request sends one raw API request (path such as "/v1/status"; body may be
// nil) and returns the status code and the body of the answer. Client is
// the typed way; Request is for what Client cannot send, such as malformed
// input.
func (d *Daemon) Request(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://xlbd"+path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read whole or not at all: nothing to report
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// Metrics scrapes xlbd's /metrics inside the balancer's namespace.
func (d *Daemon) Metrics() (string, error) {
	if d.opts.Metrics == "" {
		return "", errors.New("xlbd runs without metrics (Options.Metrics is empty)")
	}
	var body string
	err := d.host().NS.Do(func() error {
		// Dial here: the socket must be created inside the namespace
		// (http.Get would dial from another goroutine and thread).
		c, err := net.DialTimeout("tcp", d.opts.Metrics, 5*time.Second)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }() // one request: its answer is read whole or not at all
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: xlbd\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }() // the connection's close reports the same
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("scrape xlbd's metrics: %w", err)
	}
	return body, nil
}

// Log returns the log of the last xlbd started (of none: "").
func (d *Daemon) Log() string {
	d.mu.Lock()
	from := d.logFrom
	d.mu.Unlock()
	data, err := os.ReadFile(d.LogPath())
	if err != nil || int64(len(data)) < from {
		return ""
	}
	return string(data[from:])
}

// Close stops xlbd (SIGTERM, then SIGKILL), detaches and unpins its data
// plane (xlbd --detach, then removing BPFFS whatever is left) and removes
// its directory. Call it before closing the lab: --detach runs in the
// lab's namespace. Closing again does no harm.
func (d *Daemon) Close() error {
	var errs []error
	_ = d.Stop(stopGrace) // one that had to be killed is no clean-up failure
	if _, err := os.Stat(d.PinDir()); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := d.Run(ctx, "--detach")
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("xlbd --detach: %v: %s", err, strings.TrimSpace(out)))
		}
	}
	// Removing the pinned link detaches too, should --detach have failed.
	if err := os.RemoveAll(d.BPFFS()); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(nothing)"
	}
	return s
}
