// Command xlbd is the xlb daemon: it loads and attaches the XDP data plane
// on one interface (or re-adopts the pinned one, so a restart drops no
// flow), reconciles the services of its config file and of its local API
// into the maps, follows backend MACs, and serves metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/loader"
)

// sweepInterval is how often the connection table is swept (expired flows
// deleted, active-flow counts corrected).
const sweepInterval = 5 * time.Second

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

type flags struct {
	iface, config, xdpMode, bpffs, apiSock, metrics, state string
	apiGroup, runDir                                       string
	detach                                                 bool
	logLevel                                               string
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
	fs.StringVar(&f.iface, "interface", "", "interface to attach to (default: the config file's)")
	fs.StringVar(&f.config, "config", "/etc/xlb/xlb.yaml", "config file")
	fs.StringVar(&f.xdpMode, "xdp-mode", "", "native or generic (default: the config file's, else native)")
	fs.StringVar(&f.bpffs, "bpffs", "/sys/fs/bpf/xlb", "bpffs directory for pins (one subdirectory per interface)")
	fs.StringVar(&f.apiSock, "api", "/run/xlb/xlb.sock", "API unix socket")
	fs.StringVar(&f.apiGroup, "api-group", "", "group allowed to use the API socket (mode 0660); default root only (0600)")
	fs.StringVar(&f.metrics, "metrics", "127.0.0.1:9641", "Prometheus metrics listen address (empty: off)")
	fs.StringVar(&f.state, "state", "/var/lib/xlb/state.json", "state file (API changes survive restarts)")
	fs.BoolVar(&f.detach, "detach", false, "detach the pinned data plane from the interface, remove its pins and exit (forwarding stops)")
	fs.StringVar(&f.runDir, "run-dir", "/run/xlb", "directory of the per-interface lock files")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: xlbd [flags]\n\nRuns the xlb data plane on one interface. Stopping xlbd (SIGTERM) keeps\nforwarding; a restarted xlbd re-adopts it. SIGHUP reloads the config file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

func main() {
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlbd:", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "xlbd: --log-level %q: want debug, info, warn or error\n", f.logLevel)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f, log); err != nil {
		log.Error("xlbd failed", "err", err)
		os.Exit(1)
	}
}

// readConfig loads the config file and returns its bytes for hashing.
func readConfig(path string) (*api.Config, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := api.ParseConfig(data)
	if err != nil {
		return nil, nil, badRequest("config %s: %w", path, err)
	}
	return cfg, data, nil
}

func run(ctx context.Context, f *flags, log *slog.Logger) error {
	cfg, data, err := readConfig(f.config)
	if err != nil {
		return err
	}
	iface := cfg.Interface
	if f.iface != "" {
		iface = f.iface
	}
	if iface == "" {
		return errors.New("no interface: set interface in the config file or pass --interface")
	}
	if err := api.ValidateInterface(iface); err != nil {
		return fmt.Errorf("--interface: %w", err)
	}
	mode := cfg.XDPMode
	if f.xdpMode != "" {
		mode = f.xdpMode
	}
	var xdpMode loader.XDPMode
	if err := xdpMode.UnmarshalText([]byte(mode)); err != nil {
		return fmt.Errorf("--xdp-mode: %w", err)
	}
	pinDir := filepath.Join(f.bpffs, iface)

	// Exclusive resources first, before any kernel state is touched: a
	// second xlbd for the same pins fails here, changing nothing.
	unlock, err := lockPins(f.runDir, pinDir)
	if err != nil {
		return err
	}
	defer unlock()

	if f.detach {
		return detach(pinDir, log)
	}

	ln, err := listenAPI(f.apiSock, f.apiGroup)
	if err != nil {
		return err
	}
	defer ln.Close()
	var metricsLn net.Listener
	if f.metrics != "" {
		metricsLn, err = net.Listen("tcp", f.metrics)
		if err != nil {
			return fmt.Errorf("--metrics %s: %w", f.metrics, err)
		}
		defer metricsLn.Close()
	}

	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, err)
	}
	l := cfg.Limits
	bal, err := loader.Open(loader.Options{
		Interface: iface, XDPMode: xdpMode, PinDir: pinDir,
		MaglevSize: l.MaglevSize, MaxServices: l.MaxServices, MaxBackends: l.MaxBackends, ConntrackSize: l.ConntrackSize,
		Timeouts: timeoutsOf(cfg.Conntrack), Logger: log,
	})
	if err != nil {
		return err
	}
	defer bal.Close()
	if bal.Adopted() {
		log.Info("re-adopted the running data plane: flows kept", "pins", pinDir)
	} else {
		log.Info("attached a fresh data plane", "interface", iface, "mode", string(xdpMode), "pins", pinDir)
	}

	d := &daemon{log: log, cfgPath: f.config, statePath: f.state, iface: iface, xdpMode: string(xdpMode), bal: bal, kick: make(chan struct{}, 1)}
	d.health = newHealthState(log, d.kickReconcile, nil)
	defer d.health.checker.Close()
	if bal.Adopted() {
		// Backends the previous daemon had up start up: a restart must not
		// take healthy backends out while their checks run again.
		for _, s := range bal.Services() {
			for _, b := range s.Backends {
				if b.Usable {
					d.health.adopted[checkID(s.Key, b.Addr)] = true
				}
			}
		}
	}
	neigh, err := loader.WatchNeighbors(ifc.Index, d.kickReconcile)
	if err != nil {
		return err
	}
	defer neigh.Close()
	d.neigh = neigh

	// Desired state: the persisted one while the config file is unchanged
	// (it holds the API's changes), else the file's.
	hash := hashBytes(data)
	st, err := loadState(f.state)
	if err != nil {
		return err
	}
	initial, why := initialServices(cfg.Services, hash, st)
	log.Info("desired state", "source", why, "services", len(initial))
	d.mu.Lock()
	err = d.commit(initial, hash)
	d.mu.Unlock()
	if err != nil {
		return err
	}

	go d.sweepLoop(ctx, sweepInterval)

	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	if metricsLn != nil {
		msrv := &http.Server{Handler: d.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go msrv.Serve(metricsLn)
		defer msrv.Close()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log.Info("xlbd ready", "api", f.apiSock, "metrics", f.metrics, "version", version)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the data plane keeps forwarding (xlbd --detach removes it)")
			return nil
		case <-hup:
			if err := d.reload(); err != nil {
				log.Error("reload rejected, previous config keeps serving", "err", err)
			} else {
				log.Info("reloaded config", "file", f.config)
			}
		case <-d.kick:
			d.reconcile()
		}
	}
}

// lockPins takes an exclusive lock for one pin directory, so a second xlbd
// for the same interface refuses to start.
func lockPins(dir, pinDir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	name := strings.NewReplacer("/", "_").Replace(strings.Trim(pinDir, "/"))
	path := filepath.Join(dir, name+".lock")
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(fd.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		fd.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another xlbd already runs the data plane pinned at %s (lock %s)", pinDir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { fd.Close() }, nil
}

// listenAPI binds the API socket (mode 0600, or 0660 for a group). A stale
// socket from a killed xlbd is replaced; a live one means another daemon.
func listenAPI(path, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("--api %s: another xlbd is listening there", path)
	}
	os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("--api %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--api-group %q: %w", group, err)
		}
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--api-group: %w", err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--api-group: %w", err)
		}
	}
	return ln, nil
}

// detach stops forwarding and removes the pins (xlbd --detach).
func detach(pinDir string, log *slog.Logger) error {
	if _, err := os.Stat(pinDir); err != nil {
		return fmt.Errorf("nothing to detach at %s: %w", pinDir, err)
	}
	bal, err := loader.Open(loader.Options{PinDir: pinDir, Logger: log})
	if err != nil {
		// Pins of another layout: remove them anyway, which detaches.
		log.Warn("could not open the pins; removing them", "err", err)
		return os.RemoveAll(pinDir)
	}
	if err := bal.Detach(); err != nil {
		return err
	}
	log.Info("detached and unpinned", "pins", pinDir)
	return nil
}
