package daemon

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

// healthState is the daemon's side of the health checks: the checker, the
// initial states a restart inherits, and each service's all-down policy
// state. Fields other than checker and metrics are guarded by daemon.mu.
type healthState struct {
	checker *health.Checker
	metrics *healthMetrics
	// adopted holds the checks whose backend was usable in a re-adopted
	// data plane: they start up, so a restart drops no flow. Used by the
	// first commit only.
	adopted map[string]bool
	// carried holds the checks of the change being committed whose
	// backend carried traffic before it: they start up (see specs).
	carried map[string]bool
	// lastUp is each service's latest non-empty set of healthy weighted
	// backends (the keep-last set).
	lastUp map[lb.ServiceKey][]netip.Addr
	// allDown holds the policy of the services whose every weighted
	// backend is down.
	allDown map[lb.ServiceKey]string
}

// newHealthState starts a checker whose transitions are logged and kick
// the reconcile loop. probe and clock replace the real ones (tests).
func newHealthState(log *slog.Logger, kick func(), probe func(health.Config) health.Prober, clock health.Clock, tunnel health.TunnelDialer) *healthState {
	h := &healthState{
		metrics: newHealthMetrics(),
		adopted: map[string]bool{},
		lastUp:  map[lb.ServiceKey][]netip.Addr{},
		allDown: map[lb.ServiceKey]string{},
	}
	h.checker = health.New(health.Options{
		Probe:    probe,
		Clock:    clock,
		Tunnel:   tunnel,
		OnResult: h.metrics.observe,
		OnChange: func(e health.Event) {
			svc, backend := splitCheckID(e.ID)
			attrs := []any{"service", svc, "backend", backend, "check", e.State.Last.Reason}
			if e.State.Up {
				log.Info("backend up: passed its health checks", attrs...)
			} else {
				log.Warn("backend down: failed its health checks", attrs...)
			}
			kick()
		},
	})
	return h
}

// checkID names the check of one backend of one service.
func checkID(key lb.ServiceKey, addr netip.Addr) string { return key.String() + " " + addr.String() }

func splitCheckID(id string) (svc, backend string) {
	svc, backend, _ = strings.Cut(id, " ")
	return svc, backend
}

// checkedHealthConfig is s's health check as the prober takes it,
// validated; false: s has no probing check.
func checkedHealthConfig(s config.Service) (health.Config, bool, error) {
	cfg, ok := healthConfig(s.Health)
	if !ok {
		return cfg, false, nil
	}
	key, err := s.Key()
	if err != nil {
		return cfg, false, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, badRequest("service %s: health: %w", key, err)
	}
	return cfg, true, nil
}

// healthConfig is a service's check in the checker's terms; false: the
// service has no probing check (none, or no health block).
func healthConfig(h *config.Health) (health.Config, bool) {
	if !h.Probes() {
		return health.Config{}, false
	}
	c := health.Config{
		Type:     health.Type(h.Type),
		Interval: time.Duration(h.Interval),
		Timeout:  time.Duration(h.Timeout),
		Rise:     h.Rise,
		Fall:     h.Fall,
	}
	if hc := h.HTTP; hc != nil {
		c.HTTP = health.HTTPConfig{
			Method: hc.Method, Path: hc.Path, Host: hc.Host,
			HTTPS: hc.HTTPS, InsecureSkipVerify: hc.InsecureSkipVerify,
			ExpectStatus: hc.StatusRanges(), ExpectBody: hc.ExpectBody,
		}
	}
	return c, true
}

// specs lists the checks that svcs (normalised) need. prev is the desired
// state they replace: a backend that was carrying traffic there keeps
// carrying it when its service gains a check (or a new kind of check),
// until that check says otherwise.
func (h *healthState) specs(svcs, prev []config.Service) ([]health.Spec, error) {
	wasUp := map[string]bool{}
	h.carried = wasUp
	for _, s := range prev {
		key, err := s.Key()
		if err != nil {
			continue
		}
		for _, b := range s.Backends {
			if addr, err := b.Addr(); err == nil && h.up(key, addr, s.Health) {
				wasUp[checkID(key, addr)] = true
			}
		}
	}
	var out []health.Spec
	for _, s := range svcs {
		cfg, ok, err := checkedHealthConfig(s)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		key, err := s.Key()
		if err != nil {
			return nil, err
		}
		port := uint16(s.Port)
		if s.Health.Port != 0 {
			port = uint16(s.Health.Port)
		}
		for _, b := range s.Backends {
			addr, err := b.Addr()
			if err != nil {
				return nil, err
			}
			id := checkID(key, addr)
			t := health.Target{Addr: addr, Port: port}
			if cfg.Type == health.ICMP {
				t.Port = 0
			}
			if s.Health.Via == string(lb.CheckViaTunnel) {
				// The VIP, on this backend, through its tunnel.
				t = health.Target{Addr: key.VIP, Port: port, Via: addr, Tunnel: s.Forward}
			}
			out = append(out, health.Spec{ID: id, Target: t, Config: cfg, Up: h.startsUp(id, s.Health)})
		}
	}
	return out, nil
}

// startsUp is the state of a check that has not run yet: down (it must
// pass rise checks) unless the service says start_up, the backend was
// usable in the data plane this daemon re-adopted, or it carried traffic
// before its service gained this check.
func (h *healthState) startsUp(id string, hc *config.Health) bool {
	return hc.StartUp || h.adopted[id] || h.carried[id]
}

// up reports whether a backend passes its service's health check.
func (h *healthState) up(key lb.ServiceKey, addr netip.Addr, hc *config.Health) bool {
	if _, checked := healthConfig(hc); !checked {
		return true
	}
	id := checkID(key, addr)
	if st, ok := h.checker.State(id); ok {
		return st.Up
	}
	return h.startsUp(id, hc)
}

// applyAllDown enforces the service's policy when every backend with a
// weight is down: drop (its traffic is dropped and counted) or keep-last
// (the last healthy set keeps getting it). Entering and leaving the state
// is logged once each. Callers hold daemon.mu.
func (h *healthState) applyAllDown(log *slog.Logger, s config.Service, ls *lb.Service) {
	if s.Health == nil {
		return
	}
	var up []netip.Addr
	weighted := false
	for _, b := range ls.Backends {
		if b.Weight > 0 {
			weighted = true
			if !b.Down {
				up = append(up, b.Addr)
			}
		}
	}
	key, was := ls.Key, h.allDown[ls.Key]
	if len(up) > 0 || !weighted {
		h.lastUp[key] = up
		if was != "" {
			log.Info("service has healthy backends again", "service", key, "healthy", len(up))
			delete(h.allDown, key)
		}
		return
	}
	policy := s.Health.AllDown
	if policy == string(lb.AllDownKeepLast) {
		for i, b := range ls.Backends {
			if slices.Contains(h.lastUp[key], b.Addr) {
				ls.Backends[i].Down = false
			}
		}
	}
	if was != policy {
		if policy == string(lb.AllDownKeepLast) {
			log.Error("EVERY BACKEND OF THE SERVICE IS DOWN: all_down keep-last, still sending its traffic to the last healthy backends",
				"service", key, "backends", h.lastUp[key])
		} else {
			log.Error("EVERY BACKEND OF THE SERVICE IS DOWN: its traffic is dropped (all_down drop)", "service", key)
		}
	}
	h.allDown[key] = policy
}

// forget drops the state of services and checks that no longer exist.
// Callers hold daemon.mu.
func (h *healthState) forget(svcs []config.Service, specs []health.Spec) {
	live := map[lb.ServiceKey]bool{}
	for _, s := range svcs {
		if k, err := s.Key(); err == nil {
			live[k] = true
		}
	}
	for k := range h.lastUp {
		if !live[k] {
			delete(h.lastUp, k)
			delete(h.allDown, k)
		}
	}
	ids := make(map[string]bool, len(specs))
	for _, s := range specs {
		ids[s.ID] = true
	}
	h.metrics.prune(ids)
	clear(h.adopted) // only a restart's first commit inherits states
}

// healthMetrics counts the probes' results and times them, by check:
// xlb_health_checks_total and xlb_health_check_duration_seconds.
type healthMetrics struct {
	checks    *prometheus.CounterVec
	durations *prometheus.HistogramVec // by service
	mu        sync.Mutex
	ids       map[string]bool // checks with series, for prune
}

// checkBuckets are the upper bounds of the probe duration histogram, in
// seconds.
var checkBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newHealthMetrics() *healthMetrics {
	return &healthMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_health_checks_total",
			Help: "Health check probes, by result (success, failure, timeout).",
		}, []string{"service", "backend", "result"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xlb_health_check_duration_seconds",
			Help:    "Time a health check probe took.",
			Buckets: checkBuckets,
		}, []string{"service"}),
		ids: map[string]bool{},
	}
}

// Describe and Collect make the health check families one collector.
func (m *healthMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.checks.Describe(ch)
	m.durations.Describe(ch)
}

// Collect sends the health check series.
func (m *healthMetrics) Collect(ch chan<- prometheus.Metric) {
	m.checks.Collect(ch)
	m.durations.Collect(ch)
}

// Probe results as the result label of xlb_health_checks_total.
const (
	resultSuccess = "success"
	resultFailure = "failure"
	resultTimeout = "timeout"
)

func (m *healthMetrics) observe(id string, r health.Result) {
	result := resultSuccess
	switch {
	case r.Timeout:
		result = resultTimeout
	case !r.OK:
		result = resultFailure
	}
	svc, backend := splitCheckID(id)
	// Under the lock, so prune cannot miss a series made meanwhile.
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[id] = true
	m.checks.WithLabelValues(svc, backend, result).Inc()
	m.durations.WithLabelValues(svc).Observe(r.Duration.Seconds())
}

// prune forgets the series of checks that are gone, and the duration
// histograms of services left with no check.
func (m *healthMetrics) prune(live map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svcs := map[string]bool{}
	for id := range live {
		s, _ := splitCheckID(id)
		svcs[s] = true
	}
	for id := range m.ids {
		if live[id] {
			continue
		}
		delete(m.ids, id)
		svc, backend := splitCheckID(id)
		m.checks.DeletePartialMatch(prometheus.Labels{"service": svc, "backend": backend})
		if !svcs[svc] {
			m.durations.DeleteLabelValues(svc)
		}
	}
}
