package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Decapsulator is what the backend role drives: the loader's decap.Decap
// in xlbd, a fake in tests. Its methods are safe for concurrent use.
type Decapsulator interface {
	// Set makes the settings exactly c, all or nothing.
	Set(c lb.DecapConfig) error
	// Config reads the settings in force.
	Config() (lb.DecapConfig, error)
	// Counters reads the counters.
	Counters() (lb.DecapCounters, error)
}

// BackendOptions configure a Backend.
type BackendOptions struct {
	// Log receives the events; nil discards them.
	Log *slog.Logger
	// ConfigPath is the config file that Reload reads.
	ConfigPath string
	// Interface and XDPMode are what status reports.
	Interface, XDPMode string
	// Version is what status and xlb_build_info report.
	Version string
	// Decap is the decapsulator driven.
	Decap Decapsulator
	// Adopted: the decapsulator was re-adopted from a previous xlbd.
	Adopted bool
	// InterfaceAddrs reads the interface's addresses: the outer
	// destinations accepted when the decap section names none. Read at
	// Apply, so a reload picks up addresses added since.
	InterfaceAddrs func() ([]netip.Addr, error)
}

// Backend is xlbd's core in the backend role: the config file's decap
// section reconciled into the decapsulator, status and metrics. It runs
// no services, health checks or BGP.
type Backend struct {
	o        BackendOptions
	mu       sync.Mutex
	registry *prometheus.Registry // what MetricsHandler serves
}

// NewBackend returns the backend role's core; nothing is applied before
// Apply.
func NewBackend(o BackendOptions) *Backend {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{o: o}
	b.registry = newRegistry(decapCollector{b})
	return b
}

// ErrBackendRole means a request the backend role does not serve.
var ErrBackendRole = errors.New("xlbd runs in the backend role (decapsulator only): it has no services, flows, tables or BGP")

// CheckBackendConfig makes the checks of Apply that need no data plane
// (xlbd --check-config --role backend).
func CheckBackendConfig(cfg *config.Config) error {
	if len(cfg.Services) > 0 {
		return fmt.Errorf("services: %d services in the config: %w; remove them or run --role balancer", len(cfg.Services), ErrBackendRole)
	}
	if cfg.BGP != nil {
		return fmt.Errorf("bgp: %w", ErrBackendRole)
	}
	return nil
}

// Apply checks cfg for the backend role and makes the decapsulator's
// settings its decap section's: all or nothing. A config with services
// or a bgp section is refused: they would silently do nothing here.
func (b *Backend) Apply(cfg *config.Config) error {
	if err := CheckBackendConfig(cfg); err != nil {
		return err
	}
	var addrs []netip.Addr
	if cfg.Decap == nil || len(cfg.Decap.Addresses) == 0 {
		var err error
		if addrs, err = b.o.InterfaceAddrs(); err != nil {
			return fmt.Errorf("decap.addresses: the interface's addresses: %w", err)
		}
	}
	dc := cfg.Decap.DataPlane(addrs)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.o.Decap.Set(dc); err != nil {
		return fmt.Errorf("apply the decap section: %w", err)
	}
	if len(dc.VIPs) == 0 {
		b.o.Log.Warn("no decap.vips in the config: nothing is decapsulated")
	}
	b.o.Log.Info("decap settings applied", "vips", len(dc.VIPs), "addresses", len(dc.Addresses), "gue_port", dc.GUEPort)
	return nil
}

// Reload applies the config file again (SIGHUP): its decap section
// whole, or nothing and the previous settings keep serving.
func (b *Backend) Reload() error {
	cfg, _, err := config.Load(b.o.ConfigPath)
	if err != nil {
		return err
	}
	if cfg.Interface != "" && cfg.Interface != b.o.Interface {
		return fmt.Errorf("config %s: interface %q differs from the running %q (restart to change it)", b.o.ConfigPath, cfg.Interface, b.o.Interface)
	}
	return b.Apply(cfg)
}

// Status is the role, the decapsulator's settings and its counters.
func (b *Backend) Status() (api.Status, error) {
	st := api.Status{Role: string(lb.RoleBackend), Interface: b.o.Interface, XDPMode: b.o.XDPMode, Version: b.o.Version, Services: []api.ServiceStatus{}}
	c, err := b.o.Decap.Config()
	if err != nil {
		return st, err
	}
	n, err := b.o.Decap.Counters()
	if err != nil {
		return st, err
	}
	ds := &api.DecapStatus{VIPs: []string{}, Addresses: []string{}, GUEPort: c.GUEPort, Adopted: b.o.Adopted,
		RxPackets: n.RxPackets, Decapsulated: map[string]uint64{}, Passed: n.Pass, ECNCE: n.ECNCE}
	for _, a := range c.VIPs {
		ds.VIPs = append(ds.VIPs, a.String())
	}
	for _, a := range c.Addresses {
		ds.Addresses = append(ds.Addresses, a.String())
	}
	for k, v := range n.Decap {
		ds.Decapsulated[DecapKindName(k)] = v
	}
	st.Decap = ds
	return st, nil
}

// DecapKindName is a kind's name in status: "ipip 4in6" is IPv4 in IPv6.
func DecapKindName(k lb.DecapKind) string {
	fam := func(f string) string { return f[len(f)-1:] }
	return k.Mode + " " + fam(k.Inner) + "in" + fam(k.Outer)
}

// Handler is the backend role's API: GET /v1/status; every other path of
// the balancer's API answers 409 with ErrBackendRole.
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.Status()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, conflict("%w", ErrBackendRole))
	})
	return mux
}

// MetricsHandler serves the backend role's metrics on GET /metrics:
// xlb_build_info, the xlb_decap_* counters, the Go runtime's and the
// process'.
func (b *Backend) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promHandler(b.registry, b.o.Log))
	return mux
}

var (
	backendBuildInfoDesc = desc("xlb_build_info", "Build information of xlbd.", "version", "goversion", "role")
	decapReceivedDesc    = desc("xlb_decap_received_packets_total", "Frames the decapsulator saw.")
	decapPacketsDesc     = desc("xlb_decap_packets_total", "Packets decapsulated and passed to the stack, by mode and outer and inner family.", "mode", "outer", "inner")
	decapPassedDesc      = desc("xlb_decap_passed_packets_total", "Frames passed to the stack untouched, by reason.", "reason")
	decapECNDesc         = desc("xlb_decap_ecn_ce_packets_total", "Inner packets marked CE because their outer header was.")
)

// decapCollector reads the decapsulator's counters at scrape time.
type decapCollector struct{ b *Backend }

// Describe sends every family's description.
func (decapCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backendBuildInfoDesc, decapReceivedDesc, decapPacketsDesc, decapPassedDesc, decapECNDesc} {
		ch <- d
	}
}

// Collect reads the counters once; if it cannot, only xlb_build_info is
// served and the handler logs the error.
func (c decapCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- gauge(backendBuildInfoDesc, 1, c.b.o.Version, runtime.Version(), string(lb.RoleBackend))
	n, err := c.b.o.Decap.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(decapReceivedDesc, fmt.Errorf("read the decapsulator: %w", err))
		return
	}
	ch <- counter(decapReceivedDesc, n.RxPackets)
	for k, v := range n.Decap {
		ch <- counter(decapPacketsDesc, v, k.Mode, k.Outer, k.Inner)
	}
	for _, r := range lb.DecapPassReasons {
		ch <- counter(decapPassedDesc, n.Pass[r], r)
	}
	ch <- counter(decapECNDesc, n.ECNCE)
}
