package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Options configure a Daemon.
type Options struct {
	// Log receives the daemon's events; nil discards them.
	Log *slog.Logger
	// ConfigPath is the config file that Reload reads.
	ConfigPath string
	// StatePath is the state file: the desired state with the API's
	// changes, written before a change is acknowledged.
	StatePath string
	// Interface and XDPMode are what status reports.
	Interface, XDPMode string
	// Version is what status and xlb_build_info report.
	Version string
	// DataPlane is what the daemon drives.
	DataPlane DataPlane
	// Adopted says the data plane was re-adopted from a previous xlbd: the
	// backends usable in it start up, so a restart takes none out while
	// their checks run again.
	Adopted bool
	// Probe replaces the health checks' real probes (tests); nil: real.
	Probe func(health.Config) health.Prober
	// HealthClock replaces the health checks' clock (tests); nil: real.
	HealthClock health.Clock
	// BGP is the speaker that announces the VIPs; nil: a config with a
	// bgp section is refused.
	BGP Announcer
	// InterfaceAddrs are the interface's addresses, the defaults of the
	// BGP router ID and next hops.
	InterfaceAddrs []netip.Addr
	// OpenTunnel opens the health checks' tunnel, on the first check with
	// via tunnel; nil: such checks fail.
	OpenTunnel func() (Tunnel, error)
	// DNSLookup replaces the lookups of backends named by DNS (tests);
	// nil: miekg/dns against the resolvers section's nameservers.
	DNSLookup func(context.Context, config.NameKey, config.Resolvers) DNSAnswer
	// DNSClock replaces the resolver's clock (tests); nil: time.Now.
	DNSClock func() time.Time
}

// Daemon holds the desired state and reconciles it into the data plane.
// Its methods are safe for concurrent use.
type Daemon struct {
	log       *slog.Logger
	cfgPath   string
	statePath string
	iface     string
	xdpMode   string
	version   string

	dp     DataPlane
	neigh  Neighbors
	health *healthState
	tunnel *checkTunnel
	dns    *dnsState

	bgp        Announcer
	ifaceAddrs []netip.Addr

	// registry holds the metrics MetricsHandler serves.
	registry *prometheus.Registry

	mu      sync.Mutex
	desired []config.Service // normalised, in file/API order
	// running is desired with every named backend replaced by its
	// addresses: what the data plane and the health checks get.
	running    expansion
	bgpCfg     *config.BGP // normalised; nil: no BGP
	configHash string
	started    bool
	// withdrawn: a planned stop took the VIPs out of BGP; reconciles no
	// longer announce them.
	withdrawn bool

	kick chan struct{}    // coalesced "reconcile now"
	now  func() time.Time // the status's reading time (tests fix it)
}

// New returns a daemon with no desired state. Its health checks start
// with the first Start.
func New(o Options) *Daemon {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{
		log: o.Log, cfgPath: o.ConfigPath, statePath: o.StatePath,
		iface: o.Interface, xdpMode: o.XDPMode, version: o.Version,
		dp: o.DataPlane, kick: make(chan struct{}, 1),
		bgp: o.BGP, ifaceAddrs: o.InterfaceAddrs, now: time.Now,
	}
	d.tunnel = &checkTunnel{open: o.OpenTunnel}
	d.dns = newDNSState(o.DNSLookup, o.DNSClock)
	d.health = newHealthState(d.log, d.Kick, o.Probe, o.HealthClock, d.tunnel.dial)
	d.registry = newRegistry(coreCollector{d}, d.health.metrics, dnsCollector{d})
	if o.Adopted {
		if snap, err := d.dp.Snapshot(); err != nil {
			d.log.Warn("could not read the re-adopted data plane: backends start down", "err", err)
		} else {
			for key, s := range snap.Services {
				for addr, b := range s.Backends {
					if b.Usable {
						d.health.adopted[checkID(key, addr)] = true
					}
				}
			}
		}
	}
	return d
}

// Start makes the first desired state: the persisted one while the config
// file (cfg, read from data) is unchanged since it was saved, else the
// file's. neigh resolves the backends' MACs from now on.
func (d *Daemon) Start(neigh Neighbors, cfg *config.Config, data []byte) error {
	hash := hashBytes(data)
	st, err := loadState(d.statePath)
	if err != nil {
		return err
	}
	initial, why := initialState(desiredState{cfg.Services, cfg.BGP}, hash, st)
	d.log.Info("desired state", "source", why, "services", len(initial.Services), "bgp", initial.BGP != nil)
	if err := d.setEncap(cfg.Encap); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.neigh = neigh
	d.started = true
	d.dns.opts = resolversOf(cfg.Resolvers)
	if st != nil {
		d.dns.restore(st.DNS)
	}
	return d.commit(initial, hash)
}

// encapSettings are the encapsulated modes' settings of the config, an
// unset outer source taking the interface's first global address of its
// family.
func (d *Daemon) encapSettings(e *config.Encap) lb.Encap {
	s := e.Settings()
	for _, a := range d.ifaceAddrs {
		a = a.Unmap()
		if !a.IsGlobalUnicast() {
			continue
		}
		if a.Is4() && !s.Source4.IsValid() {
			s.Source4 = netip.PrefixFrom(a, 32)
		}
		if a.Is6() && !s.Source6.IsValid() {
			s.Source6 = netip.PrefixFrom(a, 128)
		}
	}
	return s
}

// setEncap gives the data plane, and the checks' tunnel, the settings of
// the encapsulated modes.
func (d *Daemon) setEncap(e *config.Encap) error {
	s := d.encapSettings(e)
	if err := d.dp.SetEncap(s); err != nil {
		return err
	}
	d.tunnel.setEncap(s)
	return nil
}

// Close stops the health checks and unloads their tunnel.
func (d *Daemon) Close() {
	d.health.checker.Close()
	if err := d.tunnel.close(); err != nil {
		d.log.Warn("health check tunnel: close", "err", err)
	}
}

// Run reconciles on every kick (a health transition, a neighbour change),
// sweeps the connection table every sweep, and resolves the backends
// named by DNS, until ctx ends. It returns once the resolver loop has
// stopped too (its lookups in flight ended, nothing applied from them).
func (d *Daemon) Run(ctx context.Context, sweep time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.runDNS(ctx) })
	t := time.NewTicker(sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			d.reconcile()
		case <-t.C:
			d.sweep()
		}
	}
}

// desiredState is what the daemon is asked to run: services and BGP.
type desiredState struct {
	Services []config.Service
	BGP      *config.BGP
}

// initialState picks the desired state at start: the persisted one while
// the config file is unchanged since it was saved (it holds the API's
// changes), else the file's. The second result says why.
func initialState(file desiredState, fileHash string, st *persisted) (desiredState, string) {
	switch {
	case st == nil:
		return file, "no state file: the config file's"
	case st.ConfigHash == fileHash:
		return desiredState{st.Services, st.BGP}, "config file unchanged: the saved state, with API changes"
	default:
		return file, "config file changed since the state was saved: the file's (API changes not in it dropped)"
	}
}

// reqError carries the HTTP status a rejected change maps to.
type reqError struct {
	code int
	err  error
}

func (e *reqError) Error() string { return e.err.Error() }
func (e *reqError) Unwrap() error { return e.err }

func badRequest(format string, a ...any) error {
	return &reqError{http.StatusBadRequest, fmt.Errorf(format, a...)}
}
func notFound(format string, a ...any) error {
	return &reqError{http.StatusNotFound, fmt.Errorf(format, a...)}
}
func conflict(format string, a ...any) error {
	return &reqError{http.StatusConflict, fmt.Errorf(format, a...)}
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var re *reqError
	if errors.As(err, &re) {
		return re.code
	}
	return http.StatusInternalServerError
}

// dataPlaneServices turns desired services into the data plane's form, with each
// backend's MAC as the kernel currently knows it (nil: not usable yet) and
// its health. A drained backend (weight 0) is never marked down: it keeps
// its existing flows whatever its health, as a graceful shutdown that
// fails its check while finishing its connections expects. Callers hold
// d.mu.
func (d *Daemon) dataPlaneServices(svcs []config.Service) ([]lb.Service, error) {
	out := make([]lb.Service, 0, len(svcs))
	for i, s := range svcs {
		key, err := s.Key()
		if err != nil {
			return nil, badRequest("services[%d]: %w", i, err)
		}
		ls := lb.Service{Key: key, Persistence: time.Duration(s.Persistence)}
		if ls.Scheduler, err = lb.Schedulers.Parse(s.Scheduler); err != nil {
			return nil, badRequest("service %s: %w", key, err)
		}
		if ls.Forward, err = lb.ForwardModes.Parse(s.Forward); err != nil {
			return nil, badRequest("service %s: %w", key, err)
		}
		for _, b := range s.Backends {
			addr, err := b.Addr()
			if err != nil {
				return nil, badRequest("service %s: %w", key, err)
			}
			w := weightOf(b)
			up := d.health.up(key, addr, s.Health)
			var mac net.HardwareAddr
			if !ls.Forward.Encapsulated() {
				// Encapsulated backends are reached by address
				// through the FIB: no MAC to follow.
				mac = d.neigh.Lookup(addr)
			}
			ls.Backends = append(ls.Backends, lb.Backend{
				Addr:   addr,
				MAC:    mac,
				Weight: w,
				Down:   w > 0 && !up,
				// Drained and failing: its flows stay, its
				// persistent clients move.
				Failing: w == 0 && !up,
			})
		}
		d.health.applyAllDown(d.log, s, &ls)
		out = append(out, ls)
	}
	return out, nil
}

func weightOf(b config.Backend) uint32 {
	if b.Weight == nil {
		return 1
	}
	return *b.Weight
}

func backendAddrs(svcs []config.Service) []netip.Addr {
	n := 0
	for _, s := range svcs {
		n += len(s.Backends)
	}
	out := make([]netip.Addr, 0, n)
	for _, s := range svcs {
		for _, b := range s.Backends {
			if a, err := b.Addr(); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// commit applies next to the data plane and the BGP speaker, persists it,
// and only then makes it the desired state. If a later step fails, the
// earlier ones are put back. Callers hold d.mu.
func (d *Daemon) commit(next desiredState, configHash string) error {
	// Names not tracked yet expand to no addresses: they are tracked
	// (and looked up) only once the change is committed.
	run := expandServices(next.Services, d.dns.names)
	specs, err := d.health.specs(run.Services, d.running.Services)
	if err != nil {
		return err
	}
	ls, err := d.dataPlaneServices(run.Services)
	if err != nil {
		return err
	}
	if next.BGP != nil {
		if _, err := speakerConfig(next.BGP, d.ifaceAddrs); err != nil {
			return err
		}
		if d.bgp == nil {
			return badRequest("bgp: this xlbd has no BGP speaker")
		}
	}
	d.neigh.Want(backendAddrs(run.Services))
	if err := d.dp.Sync(ls); err != nil {
		return badRequest("%w", err)
	}
	restore := func(what string) {
		old, err := d.dataPlaneServices(d.running.Services)
		if err == nil {
			err = d.dp.Sync(old)
		}
		if err == nil {
			err = d.applyBGP(d.bgpCfg, d.announcedNow(old, d.bgpCfg))
		}
		if err != nil {
			d.log.Error("could not restore the previous state after a failed "+what, "err", err)
		}
	}
	var before []netip.Addr
	if d.bgp != nil {
		before = d.bgp.Announced()
	}
	if err := d.applyBGP(next.BGP, d.announcedNow(ls, next.BGP)); err != nil {
		restore("bgp change")
		return err
	}
	if err := saveState(d.statePath, &persisted{ConfigHash: configHash, Services: next.Services, BGP: next.BGP, DNS: d.dns.saved(next.Services)}); err != nil {
		restore("state write")
		return fmt.Errorf("persist state (change not applied): %w", err)
	}
	d.desired, d.bgpCfg, d.configHash = next.Services, next.BGP, configHash
	d.running = run
	d.dns.track(next.Services)
	d.dns.forgetUnused(next.Services)
	if d.bgp != nil {
		d.logAnnouncements(before, d.bgp.Announced())
	}
	if err := d.health.checker.Set(specs); err != nil {
		// specs were validated above: this is a bug, not bad input.
		d.log.Error("health checks not updated", "err", err)
	}
	d.health.forget(run.Services, specs)
	return nil
}

// announcedNow is the VIPs to announce for installed services ls under
// c, none after a planned stop withdrew them. Callers hold d.mu.
func (d *Daemon) announcedNow(ls []lb.Service, c *config.BGP) []netip.Addr {
	if d.withdrawn {
		return nil
	}
	return announcedVIPs(ls, c)
}

// reconcile re-applies the desired state (after a neighbour change or a
// health transition).
func (d *Daemon) reconcile() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return
	}
	ls, err := d.dataPlaneServices(d.running.Services)
	if err == nil {
		err = d.dp.Sync(ls)
	}
	if err != nil {
		d.log.Error("reconcile", "err", err)
		return
	}
	d.announce(ls)
}

// announce updates the VIPs in BGP from the services as just installed.
// Callers hold d.mu.
func (d *Daemon) announce(ls []lb.Service) {
	if d.bgpCfg == nil || d.bgp == nil || d.withdrawn || !d.bgp.Running() {
		return
	}
	before := d.bgp.Announced()
	after := d.announcedNow(ls, d.bgpCfg)
	if err := d.bgp.Announce(after); err != nil {
		d.log.Error("bgp: announce", "err", err)
		return
	}
	d.logAnnouncements(before, after)
}

// Kick asks the reconcile loop to run soon (coalesced): the neighbour
// watcher calls it on every change.
func (d *Daemon) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// mutate copies the desired services, lets fn change the copy, and
// commits the result: all of it or nothing.
func (d *Daemon) mutate(fn func([]config.Service) ([]config.Service, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, err := fn(d.desiredCopy())
	if err != nil {
		return err
	}
	return d.commit(desiredState{next, d.bgpCfg}, d.configHash)
}

// desiredCopy is a deep copy of the desired services, for a change to
// build on. Callers hold d.mu.
func (d *Daemon) desiredCopy() []config.Service {
	next := make([]config.Service, len(d.desired))
	for i, s := range d.desired {
		next[i] = s.Clone()
	}
	return next
}

func findService(svcs []config.Service, key lb.ServiceKey) int {
	for i, s := range svcs {
		if k, err := s.Key(); err == nil && k == key {
			return i
		}
	}
	return -1
}

func findBackend(s config.Service, addr netip.Addr) int {
	for i, b := range s.Backends {
		if a, err := b.Addr(); err == nil && a == addr.Unmap() {
			return i
		}
	}
	return -1
}

// The changes the API offers. Each validates its input whole first.

func (d *Daemon) addService(s config.Service) error {
	if err := s.Normalize(); err != nil {
		return badRequest("%w", err)
	}
	key, _ := s.Key()
	return d.mutate(func(svcs []config.Service) ([]config.Service, error) {
		if findService(svcs, key) >= 0 {
			return nil, conflict("service %s already exists (use set to change it)", key)
		}
		return append(svcs, s), nil
	})
}

func (d *Daemon) setService(key lb.ServiceKey, s config.Service) error {
	if err := s.Normalize(); err != nil {
		return badRequest("%w", err)
	}
	if k, _ := s.Key(); k != key {
		return badRequest("service %s: body names service %s", key, k)
	}
	return d.mutate(func(svcs []config.Service) ([]config.Service, error) {
		i := findService(svcs, key)
		if i < 0 {
			return nil, notFound("service %s: no such service", key)
		}
		svcs[i] = s
		return svcs, nil
	})
}

func (d *Daemon) delService(key lb.ServiceKey) error {
	return d.mutate(func(svcs []config.Service) ([]config.Service, error) {
		i := findService(svcs, key)
		if i < 0 {
			return nil, notFound("service %s: no such service", key)
		}
		return slices.Delete(svcs, i, i+1), nil
	})
}

// changeBackends validates the service after fn changed its backends.
func (d *Daemon) changeBackends(key lb.ServiceKey, fn func(s *config.Service) error) error {
	return d.mutate(func(svcs []config.Service) ([]config.Service, error) {
		i := findService(svcs, key)
		if i < 0 {
			return nil, notFound("service %s: no such service", key)
		}
		if err := fn(&svcs[i]); err != nil {
			return nil, err
		}
		if err := svcs[i].Normalize(); err != nil {
			return nil, badRequest("service %s: %w", key, err)
		}
		return svcs, nil
	})
}

func (d *Daemon) addBackend(key lb.ServiceKey, b config.Backend) error {
	if b.Named() {
		// Normalize sets its family and refuses a second entry of the
		// same name and family.
		return d.changeBackends(key, func(s *config.Service) error {
			s.Backends = append(s.Backends, b)
			return nil
		})
	}
	addr, err := b.Addr()
	if err != nil {
		return badRequest("%w", err)
	}
	return d.changeBackends(key, func(s *config.Service) error {
		if findBackend(*s, addr) >= 0 {
			return conflict("service %s: backend %s already exists (use set to change it)", key, addr)
		}
		s.Backends = append(s.Backends, b)
		return nil
	})
}

func (d *Daemon) setBackend(key lb.ServiceKey, addr netip.Addr, b config.Backend) error {
	if a, err := b.Addr(); b.Address != "" && (err != nil || a != addr.Unmap()) {
		return badRequest("backend %s: body names backend %q", addr, b.Address)
	}
	b.Address = addr.Unmap().String()
	return d.changeBackends(key, func(s *config.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return d.noBackend(key, addr)
		}
		s.Backends[i] = b
		return nil
	})
}

func (d *Daemon) delBackend(key lb.ServiceKey, addr netip.Addr) error {
	return d.changeBackends(key, func(s *config.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return d.noBackend(key, addr)
		}
		s.Backends = slices.Delete(s.Backends, i, i+1)
		return nil
	})
}

func (d *Daemon) drainBackend(key lb.ServiceKey, addr netip.Addr) error {
	return d.changeBackends(key, func(s *config.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return d.noBackend(key, addr)
		}
		zero := uint32(0)
		s.Backends[i].Weight = &zero
		return nil
	})
}

// Reload makes the config file authoritative again (SIGHUP): the whole
// new file applies, or nothing does and the old state keeps serving.
func (d *Daemon) Reload() error {
	cfg, data, err := config.Load(d.cfgPath)
	if err != nil {
		return badRequest("%w", err)
	}
	if cfg.Interface != "" && cfg.Interface != d.iface {
		return badRequest("config %s: interface %q differs from the running %q (restart to change it)", d.cfgPath, cfg.Interface, d.iface)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prevOpts := d.dns.opts
	d.dns.opts = resolversOf(cfg.Resolvers)
	if err := d.commit(desiredState{cfg.Services, cfg.BGP}, hashBytes(data)); err != nil {
		d.dns.opts = prevOpts
		return err
	}
	d.dns.kick() // the resolvers section may have changed
	if err := d.dp.SetTimeouts(cfg.Conntrack.Timeouts()); err != nil {
		return err
	}
	if err := d.setEncap(cfg.Encap); err != nil {
		return err
	}
	return d.dp.SetICMP(cfg.ICMP())
}

// sweep runs one connection-table sweep: expired flows and persistence
// entries go, active-flow counts are corrected.
func (d *Daemon) sweep() {
	res, err := d.dp.Sweep(monotonicNow())
	if err != nil {
		d.log.Error("sweep the connection table", "err", err)
		return
	}
	if res.Expired > 0 || res.PersistExpired > 0 || res.HalfOpenExpired > 0 || res.Corrected > 0 {
		d.log.Debug("swept the connection table", "flows", res.Flows, "expired", res.Expired,
			"persistence_expired", res.PersistExpired, "halfopen_expired", res.HalfOpenExpired, "active_counts_corrected", res.Corrected)
	}
}

// noBackend is the error for an address that is not a static backend of
// the service: it may be one a DNS name gave. Callers hold d.mu.
func (d *Daemon) noBackend(key lb.ServiceKey, addr netip.Addr) error {
	if nk, ok := d.running.Origin[key][addr.Unmap()]; ok {
		return conflict("service %s: backend %s comes from DNS name %s: change or drain the name's entry (weight), or the DNS record", key, addr, nk.Name)
	}
	return notFound("service %s: no backend %s", key, addr)
}
