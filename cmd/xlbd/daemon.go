package main

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

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
)

// daemon holds the desired state and reconciles it into the data plane.
type daemon struct {
	log       *slog.Logger
	cfgPath   string
	statePath string
	iface     string
	xdpMode   string

	bal    *loader.Balancer
	neigh  macSource
	health *healthState

	mu         sync.Mutex
	desired    []api.Service // normalised, in file/API order
	configHash string

	kick chan struct{} // coalesced "reconcile now"
}

// macSource resolves backend MACs (loader.Neighbors; a fake in tests).
type macSource interface {
	Lookup(netip.Addr) net.HardwareAddr
	Want([]netip.Addr)
}

// initialServices picks the desired state at start: the persisted one
// while the config file is unchanged since it was saved (it holds the
// API's changes), else the file's. The second result says why.
func initialServices(file []api.Service, fileHash string, st *persisted) ([]api.Service, string) {
	switch {
	case st == nil:
		return file, "no state file: the config file's services"
	case st.ConfigHash == fileHash:
		return st.Services, "config file unchanged: the saved state, with API changes"
	default:
		return file, "config file changed since the state was saved: the file's services (API changes not in it dropped)"
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

// toLoader turns desired services into the loader's form, with each
// backend's MAC as the kernel currently knows it (nil: not usable yet) and
// its health. A drained backend (weight 0) is never marked down: it keeps
// its existing flows whatever its health, as a graceful shutdown that
// fails its check while finishing its connections expects. Callers hold
// d.mu.
func (d *daemon) toLoader(svcs []api.Service) ([]loader.Service, error) {
	out := make([]loader.Service, 0, len(svcs))
	for i, s := range svcs {
		key, err := s.Key()
		if err != nil {
			return nil, badRequest("services[%d]: %w", i, err)
		}
		ls := loader.Service{Key: key, Persistence: time.Duration(s.Persistence)}
		if err := ls.Scheduler.UnmarshalText([]byte(s.Scheduler)); err != nil {
			return nil, badRequest("service %s: %w", key, err)
		}
		if err := ls.Forward.UnmarshalText([]byte(s.Forward)); err != nil {
			return nil, badRequest("service %s: %w", key, err)
		}
		for _, b := range s.Backends {
			addr, err := b.Addr()
			if err != nil {
				return nil, badRequest("service %s: %w", key, err)
			}
			w := weightOf(b)
			up := d.health.up(key, addr, s.Health)
			ls.Backends = append(ls.Backends, loader.Backend{
				Addr:   addr,
				MAC:    d.neigh.Lookup(addr),
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

func weightOf(b api.Backend) uint32 {
	if b.Weight == nil {
		return 1
	}
	return *b.Weight
}

func backendAddrs(svcs []api.Service) []netip.Addr {
	var out []netip.Addr
	for _, s := range svcs {
		for _, b := range s.Backends {
			if a, err := b.Addr(); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// commit applies next to the data plane, persists it, and only then makes
// it the desired state. If persisting fails the data plane is put back.
// Callers hold d.mu.
func (d *daemon) commit(next []api.Service, configHash string) error {
	specs, err := d.health.specs(next)
	if err != nil {
		return err
	}
	ls, err := d.toLoader(next)
	if err != nil {
		return err
	}
	d.neigh.Want(backendAddrs(next))
	if err := d.bal.Sync(ls); err != nil {
		return badRequest("%w", err)
	}
	if err := saveState(d.statePath, &persisted{ConfigHash: configHash, Services: next}); err != nil {
		if old, err2 := d.toLoader(d.desired); err2 == nil {
			if err2 := d.bal.Sync(old); err2 != nil {
				d.log.Error("could not restore the previous services after a failed state write", "err", err2)
			}
		}
		return fmt.Errorf("persist state (change not applied): %w", err)
	}
	d.desired, d.configHash = next, configHash
	if err := d.health.checker.Set(specs); err != nil {
		// specs were validated above: this is a bug, not bad input.
		d.log.Error("health checks not updated", "err", err)
	}
	d.health.forget(next, specs)
	return nil
}

// reconcile re-applies the desired state (after a neighbour change).
func (d *daemon) reconcile() {
	d.mu.Lock()
	defer d.mu.Unlock()
	ls, err := d.toLoader(d.desired)
	if err == nil {
		err = d.bal.Sync(ls)
	}
	if err != nil {
		d.log.Error("reconcile", "err", err)
	}
}

// kickReconcile asks the reconcile loop to run soon (coalesced).
func (d *daemon) kickReconcile() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// mutate copies the desired services, lets fn change the copy, and
// commits the result: all of it or nothing.
func (d *daemon) mutate(fn func([]api.Service) ([]api.Service, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make([]api.Service, len(d.desired))
	for i, s := range d.desired {
		next[i] = s.Clone()
	}
	next, err := fn(next)
	if err != nil {
		return err
	}
	return d.commit(next, d.configHash)
}

func findService(svcs []api.Service, key maps.ServiceKey) int {
	for i, s := range svcs {
		if k, err := s.Key(); err == nil && k == key {
			return i
		}
	}
	return -1
}

func findBackend(s api.Service, addr netip.Addr) int {
	for i, b := range s.Backends {
		if a, err := b.Addr(); err == nil && a == addr.Unmap() {
			return i
		}
	}
	return -1
}

// The changes the API offers. Each validates its input whole first.

func (d *daemon) addService(s api.Service) error {
	if err := s.Normalize(); err != nil {
		return badRequest("%w", err)
	}
	key, _ := s.Key()
	return d.mutate(func(svcs []api.Service) ([]api.Service, error) {
		if findService(svcs, key) >= 0 {
			return nil, conflict("service %s already exists (use set to change it)", key)
		}
		return append(svcs, s), nil
	})
}

func (d *daemon) setService(key maps.ServiceKey, s api.Service) error {
	if err := s.Normalize(); err != nil {
		return badRequest("%w", err)
	}
	if k, _ := s.Key(); k != key {
		return badRequest("service %s: body names service %s", key, k)
	}
	return d.mutate(func(svcs []api.Service) ([]api.Service, error) {
		i := findService(svcs, key)
		if i < 0 {
			return nil, notFound("service %s: no such service", key)
		}
		svcs[i] = s
		return svcs, nil
	})
}

func (d *daemon) delService(key maps.ServiceKey) error {
	return d.mutate(func(svcs []api.Service) ([]api.Service, error) {
		i := findService(svcs, key)
		if i < 0 {
			return nil, notFound("service %s: no such service", key)
		}
		return slices.Delete(svcs, i, i+1), nil
	})
}

// changeBackends validates the service after fn changed its backends.
func (d *daemon) changeBackends(key maps.ServiceKey, fn func(s *api.Service) error) error {
	return d.mutate(func(svcs []api.Service) ([]api.Service, error) {
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

func (d *daemon) addBackend(key maps.ServiceKey, b api.Backend) error {
	addr, err := b.Addr()
	if err != nil {
		return badRequest("%w", err)
	}
	return d.changeBackends(key, func(s *api.Service) error {
		if findBackend(*s, addr) >= 0 {
			return conflict("service %s: backend %s already exists (use set to change it)", key, addr)
		}
		s.Backends = append(s.Backends, b)
		return nil
	})
}

func (d *daemon) setBackend(key maps.ServiceKey, addr netip.Addr, b api.Backend) error {
	if a, err := b.Addr(); b.Address != "" && (err != nil || a != addr.Unmap()) {
		return badRequest("backend %s: body names backend %q", addr, b.Address)
	}
	b.Address = addr.Unmap().String()
	return d.changeBackends(key, func(s *api.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return notFound("service %s: no backend %s", key, addr)
		}
		s.Backends[i] = b
		return nil
	})
}

func (d *daemon) delBackend(key maps.ServiceKey, addr netip.Addr) error {
	return d.changeBackends(key, func(s *api.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return notFound("service %s: no backend %s", key, addr)
		}
		s.Backends = slices.Delete(s.Backends, i, i+1)
		return nil
	})
}

func (d *daemon) drainBackend(key maps.ServiceKey, addr netip.Addr) error {
	return d.changeBackends(key, func(s *api.Service) error {
		i := findBackend(*s, addr)
		if i < 0 {
			return notFound("service %s: no backend %s", key, addr)
		}
		zero := uint32(0)
		s.Backends[i].Weight = &zero
		return nil
	})
}

// reload makes the config file authoritative again (SIGHUP): the whole new
// file applies, or nothing does and the old state keeps serving.
func (d *daemon) reload() error {
	cfg, data, err := readConfig(d.cfgPath)
	if err != nil {
		return err
	}
	if cfg.Interface != "" && cfg.Interface != d.iface {
		return badRequest("config %s: interface %q differs from the running %q (restart to change it)", d.cfgPath, cfg.Interface, d.iface)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.commit(cfg.Services, hashBytes(data)); err != nil {
		return err
	}
	return d.bal.SetTimeouts(timeoutsOf(cfg.Conntrack))
}

// timeoutsOf converts the config's idle timeouts for the loader.
func timeoutsOf(c api.Conntrack) maps.Timeouts {
	return maps.Timeouts{TCP: time.Duration(c.TCPTimeout), TCPFin: time.Duration(c.TCPFinTimeout), UDP: time.Duration(c.UDPTimeout)}
}

// sweepLoop runs the connection-table sweep every interval until ctx
// ends: expired flows and persistence entries go, active-flow counts are
// corrected.
func (d *daemon) sweepLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := d.bal.Sweep(loader.MonotonicNow())
			if err != nil {
				d.log.Error("sweep the connection table", "err", err)
				continue
			}
			if res.Expired > 0 || res.PersistExpired > 0 || res.Corrected > 0 {
				d.log.Debug("swept the connection table", "flows", res.Flows, "expired", res.Expired,
					"persistence_expired", res.PersistExpired, "active_counts_corrected", res.Corrected)
			}
		}
	}
}
