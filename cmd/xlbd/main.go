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
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/bgp"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon"
	"github.com/xlb-lb/xlb/cmd/doctor"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/loader/probe"
	"github.com/xlb-lb/xlb/maps/lb"
)

// sweepInterval is how often the connection table is swept (expired flows
// deleted, active-flow counts corrected).
const sweepInterval = 5 * time.Second

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

type flags struct {
	iface, config, xdpMode, bpffs, apiSock, metrics, state string
	apiGroup, runDir, role                                 string
	checkConfig                                            string
	detach                                                 bool
	logLevel                                               string
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("xlbd", flag.ContinueOnError)
	fs.StringVar(&f.iface, "interface", "", "interface to attach to (default: the config file's)")
	fs.StringVar(&f.config, "config", config.DefaultPath, "config file")
	fs.StringVar(&f.xdpMode, "xdp-mode", "", "native or generic (default: the config file's, else native)")
	fs.StringVar(&f.bpffs, "bpffs", "/sys/fs/bpf/xlb", "bpffs directory for pins (one subdirectory per interface)")
	fs.StringVar(&f.apiSock, "api", api.DefaultSocket, "API unix socket")
	fs.StringVar(&f.apiGroup, "api-group", "", "group allowed to use the API socket (mode 0660); default root only (0600)")
	fs.StringVar(&f.metrics, "metrics", "127.0.0.1:9641", "Prometheus metrics listen address (empty: off)")
	fs.StringVar(&f.state, "state", "/var/lib/xlb/state.json", "state file (API changes survive restarts)")
	fs.BoolVar(&f.detach, "detach", false, "detach the pinned data plane from the interface, remove its pins and exit (forwarding stops)")
	fs.StringVar(&f.runDir, "run-dir", "/run/xlb", "directory of the per-interface lock files")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.role, "role", string(lb.RoleBalancer), "balancer (the load balancer) or backend (the decapsulator of a backend host: the config's decap section)")
	fs.StringVar(&f.checkConfig, "check-config", "", "check the config file `FILE` as a start or reload would (no data plane, no root), print a summary and exit: 0 valid, 1 not")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: xlbd [flags]\n       xlbd doctor [flags]\n\nRuns the xlb data plane on one interface. Stopping xlbd (SIGTERM) keeps\nforwarding; a restarted xlbd re-adopts it. SIGHUP reloads the config file.\n--role backend runs the decapsulator of a backend host instead (the\nconfig's decap section).\n\nxlbd doctor [flags] checks this host for what xlb needs (xlbd doctor --help).\n\nFlags:\n")
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
	if len(os.Args) > 1 && os.Args[1] == "doctor" {
		os.Exit(doctor.Main(os.Args[2:], doctor.Env{Stdout: os.Stdout, Stderr: os.Stderr, ProgInfo: loader.ProgramInfo}))
	}
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlbd:", err)
		os.Exit(2)
	}
	if f.checkConfig != "" {
		if err := checkConfig(os.Stdout, f); err != nil {
			fmt.Fprintln(os.Stderr, "xlbd: check-config:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "xlbd: --log-level %q: want debug, info, warn or error\n", f.logLevel)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(context.Background(), f, log); err != nil {
		log.Error("xlbd failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f *flags, log *slog.Logger) error {
	cfg, data, err := config.Load(f.config)
	if err != nil && f.detach && f.iface != "" {
		// Detaching needs only the interface: a broken config file must
		// not keep an operator from removing the data plane.
		log.Warn("config file ignored for --detach", "err", err)
		cfg, err = &config.Config{XDPMode: string(lb.Native)}, nil
	}
	if err != nil {
		return err
	}
	var role lb.Role
	if err := role.UnmarshalText([]byte(f.role)); err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	iface := cfg.Interface
	if f.iface != "" {
		iface = f.iface
	}
	if iface == "" {
		return errors.New("no interface: set interface in the config file or pass --interface")
	}
	if err := config.ValidateInterface(iface); err != nil {
		return fmt.Errorf("--interface: %w", err)
	}
	mode := cfg.XDPMode
	if f.xdpMode != "" {
		mode = f.xdpMode
	}
	var xdpMode lb.XDPMode
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
		if err := detach(pinDir, log); err != nil {
			return err
		}
		// Nothing left to guard: the lock file goes while it is still
		// held, so no other xlbd locks a file about to vanish.
		if err := os.Remove(lockPath(f.runDir, pinDir)); err != nil {
			log.Warn("remove the lock file", "err", err)
		}
		return nil
	}

	ln, err := listenAPI(f.apiSock, f.apiGroup)
	if err != nil {
		return err
	}
	defer closeLogged(log, "the API socket", ln)
	var metricsLn net.Listener
	if f.metrics != "" {
		metricsLn, err = net.Listen("tcp", f.metrics)
		if err != nil {
			return fmt.Errorf("--metrics %s: %w", f.metrics, err)
		}
		defer closeLogged(log, "the metrics socket", metricsLn)
	}

	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, err)
	}
	if role == lb.RoleBackend {
		return runBackend(ctx, f, log, cfg, ifc, xdpMode, pinDir, ln, metricsLn)
	}
	if cfg.Decap != nil {
		log.Warn("the config's decap section is for xlbd --role backend: ignored by the balancer")
	}
	l := cfg.Limits
	bal, err := loader.Open(loader.Options{
		Interface: iface, XDPMode: xdpMode, PinDir: pinDir,
		TableSize: l.MaglevSize, MaxServices: l.MaxServices, MaxBackends: l.MaxBackends, ConntrackSize: l.ConntrackSize, HalfOpenSize: l.HalfOpenSize,
		Timeouts: cfg.Conntrack.Timeouts(), ICMP: cfg.ICMP(), Logger: log,
	})
	if err != nil {
		return err
	}
	defer closeLogged(log, "the data plane (it keeps forwarding)", bal)
	if bal.Adopted() {
		log.Info("re-adopted the running data plane: flows kept", "pins", pinDir)
	} else {
		log.Info("attached a fresh data plane", "interface", iface, "mode", string(xdpMode), "pins", pinDir)
	}

	addrs, err := interfaceAddrs(ifc)
	if err != nil {
		return err
	}
	// A restart over a forwarding data plane is a BGP graceful restart:
	// the routers keep this node's routes meanwhile.
	speaker := bgp.New(log, bal.Adopted())
	d := daemon.New(daemon.Options{
		Log: log, ConfigPath: f.config, StatePath: f.state,
		Interface: iface, XDPMode: string(xdpMode), Version: version,
		DataPlane: bal, Adopted: bal.Adopted(),
		BGP: speaker, InterfaceAddrs: addrs,
		OpenTunnel: func() (daemon.Tunnel, error) {
			t, err := probe.Open(iface)
			if err != nil {
				return nil, err
			}
			log.Info("health check tunnel attached", "interface", iface)
			return checkTunnel{t}, nil
		},
	})
	defer d.Close()
	neigh, err := loader.WatchNeighbors(ifc.Index, d.Kick)
	if err != nil {
		return err
	}
	defer closeLogged(log, "the neighbour watch", neigh)
	if err := d.Start(neigh, cfg, data); err != nil {
		return err
	}
	// Parsing the config and the first sync leave garbage some times the
	// size of what stays (a config of 1000 services x 100 backends: about
	// 100 MiB, 25 MiB live); the runtime would hand it back to the kernel
	// only slowly.
	debug.FreeOSMemory()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go d.Run(runCtx, sweepInterval)

	defer serveAPI(log, d.Handler(), ln, d.MetricsHandler(), metricsLn)()
	sigs := notifySignals()
	defer signal.Stop(sigs)
	log.Info("xlbd ready", "api", f.apiSock, "metrics", f.metrics, "version", version)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if err := d.Reload(); err != nil {
					log.Error("reload rejected, previous config keeps serving", "err", err)
				} else {
					log.Info("reloaded config", "file", f.config)
				}
			case syscall.SIGUSR2:
				// An upgrade or restart in place: leave without a word
				// to the routers. The sessions close without a
				// NOTIFICATION, so routers with graceful restart keep
				// this node's routes until the next xlbd is back.
				log.Info("stopping for a restart: VIPs stay announced by graceful restart; the data plane keeps forwarding")
				return nil
			default:
				plannedStop(d, sigs, log)
				return nil
			}
		}
	}
}

// plannedStop takes the node out of service before xlbd exits (SIGTERM,
// Ctrl-C): every VIP is withdrawn from BGP, the data plane forwards what
// still arrives for the drain time while the routers converge, then the
// sessions close. A second signal cuts the drain short.
func plannedStop(d *daemon.Daemon, sigs <-chan os.Signal, log *slog.Logger) {
	if err := d.Withdraw(); err != nil {
		log.Error("withdraw the VIPs", "err", err)
	}
	if drain := d.DrainTime(); drain > 0 {
		log.Info("stopping: VIPs withdrawn, draining before the sessions close", "drain_time", drain)
		select {
		case <-time.After(drain):
		case <-sigs:
			log.Warn("drain cut short by a second signal")
		}
	}
	if err := d.StopBGP(); err != nil {
		log.Error("close the BGP sessions", "err", err)
	}
	log.Info("stopping; the data plane keeps forwarding (xlbd --detach removes it)")
}

// interfaceAddrs are ifc's addresses, the defaults of the BGP router ID
// and next hops.
func interfaceAddrs(ifc *net.Interface) ([]netip.Addr, error) {
	as, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("interface %s: addresses: %w", ifc.Name, err)
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// serve runs srv on ln until it is closed.
// serveAPI serves the API on ln and, if metricsLn is set, the metrics on
// it, for either role; the returned func closes both servers.
func serveAPI(log *slog.Logger, api http.Handler, ln net.Listener, metrics http.Handler, metricsLn net.Listener) func() {
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	go serve(log, "api", srv, ln)
	var msrv *http.Server
	if metricsLn != nil {
		msrv = &http.Server{Handler: metrics, ReadHeaderTimeout: 5 * time.Second}
		go serve(log, "metrics", msrv, metricsLn)
	}
	return func() {
		if msrv != nil {
			closeLogged(log, "the metrics server", msrv)
		}
		closeLogged(log, "the API server", srv)
	}
}

// notifySignals delivers the signals xlbd acts on, in either role: SIGHUP
// (reload), SIGTERM and interrupt (planned stop), SIGUSR2 (exit keeping
// the data plane and routes).
func notifySignals() chan os.Signal {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt, syscall.SIGUSR2)
	return sigs
}

func serve(log *slog.Logger, what string, srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve "+what, "err", err)
	}
}

// lockPins takes an exclusive lock for one pin directory, so a second xlbd
// for the same interface refuses to start. The returned func releases it.
func lockPins(dir, pinDir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := lockPath(dir, pinDir)
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(fd.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = fd.Close() // never locked: nothing to release
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another xlbd already runs the data plane pinned at %s (lock %s)", pinDir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = fd.Close() }, nil // closing releases the lock
}

func lockPath(dir, pinDir string) string {
	name := strings.NewReplacer("/", "_").Replace(strings.Trim(pinDir, "/"))
	return filepath.Join(dir, name+".lock")
}

// listenAPI binds the API socket (mode 0600, or 0660 for a group). A stale
// socket from a killed xlbd is replaced; a live one means another daemon.
func listenAPI(path, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close() // only a probe
		return nil, fmt.Errorf("--api %s: another xlbd is listening there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--api %s: remove the stale socket: %w", path, err)
	}
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
			return nil, errors.Join(fmt.Errorf("--api-group %q: %w", group, err), ln.Close())
		}
		if err := os.Chown(path, 0, gid); err != nil {
			return nil, errors.Join(fmt.Errorf("--api-group: %w", err), ln.Close())
		}
		if err := os.Chmod(path, 0o660); err != nil {
			return nil, errors.Join(fmt.Errorf("--api-group: %w", err), ln.Close())
		}
	}
	return ln, nil
}

// detach stops forwarding and removes the pins (xlbd --detach), whatever
// limits or version they were made with.
func detach(pinDir string, log *slog.Logger) error {
	if err := loader.Detach(pinDir); err != nil {
		return err
	}
	log.Info("detached and unpinned", "pins", pinDir)
	return nil
}

// closeLogged closes c at shutdown and logs a failure: there is no caller
// left to return it to.
func closeLogged(log *slog.Logger, what string, c io.Closer) {
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("close "+what, "err", err)
	}
}

// checkTunnel is loader/probe's tunnel as the daemon's health checks use
// it.
type checkTunnel struct{ *probe.Tunnel }

func (t checkTunnel) Dial(ctx context.Context, r daemon.TunnelRoute) (net.Conn, error) {
	return t.Tunnel.Dial(ctx, probe.Route{Backend: r.Backend, VIP: r.VIP, GUEPort: r.GUEPort, Source: r.Source})
}
