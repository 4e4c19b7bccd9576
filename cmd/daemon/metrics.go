package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlb-lb/xlb/maps/lb"
)

// MetricsHandler serves the daemon's Prometheus registry on GET /metrics:
// the xlb_ families (names prefixed xlb_, base units, _total for
// counters), the Go runtime's (go_) and the process' (process_).
func (d *Daemon) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promHandler(d.registry, d.log))
	d.statusPage(mux)
	return mux
}

// newRegistry returns a registry holding cs and the Go runtime and
// process collectors.
func newRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return reg
}

// promHandler serves reg. A collector that fails (the data plane cannot
// be read) costs only its own families: the others are served, the error
// is logged and counted in promhttp_metric_handler_errors_total, so a
// scrape still shows the health checks, BGP and the process while the
// data plane's counters are absent (not zero: a counter that went to zero
// would read as a reset).
func promHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
}

// slogPrinter is promhttp's error log on a slog.Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Error("metrics: scrape incomplete", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}

func oneIf(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// globalMetric is one family or series read from the data plane's
// global counters.
type globalMetric struct {
	desc   *prometheus.Desc
	labels []string
	value  func(*lb.GlobalCounters) uint64
}

var (
	buildInfoDesc = desc("xlb_build_info", "Build information of xlbd.", "version", "goversion")

	passedDesc  = desc("xlb_passed_packets_total", "Frames passed to the kernel untouched, by reason.", "reason")
	droppedDesc = desc("xlb_dropped_packets_total", "Frames dropped, by reason.", "reason")

	globalMetrics = []globalMetric{
		{desc("xlb_received_packets_total", "Frames the XDP program saw."), nil, func(g *lb.GlobalCounters) uint64 { return g.RxPackets }},
		{desc("xlb_forwarded_packets_total", "Frames forwarded to a backend (XDP_TX)."), nil, func(g *lb.GlobalCounters) uint64 { return g.TxPackets }},
		{passedDesc, []string{"not_ip"}, func(g *lb.GlobalCounters) uint64 { return g.PassNotIP }},
		{passedDesc, []string{"not_service"}, func(g *lb.GlobalCounters) uint64 { return g.PassNotVIP }},
		{passedDesc, []string{"malformed"}, func(g *lb.GlobalCounters) uint64 { return g.PassMalformed }},
		{passedDesc, []string{"fragment"}, func(g *lb.GlobalCounters) uint64 { return g.PassFragment }},
		{passedDesc, []string{"ipv6_extension_header"}, func(g *lb.GlobalCounters) uint64 { return g.PassIPv6Ext }},
		{passedDesc, []string{"ttl"}, func(g *lb.GlobalCounters) uint64 { return g.PassTTL }},
		{passedDesc, []string{"other_host"}, func(g *lb.GlobalCounters) uint64 { return g.PassOtherHost }},
		{passedDesc, []string{"icmp_unmatched"}, func(g *lb.GlobalCounters) uint64 { return g.ICMPErrorsUnmatched }},
		{passedDesc, []string{"fragment_unmatched"}, func(g *lb.GlobalCounters) uint64 { return g.FragUnmatched }},
		{passedDesc, []string{"encap_no_route"}, func(g *lb.GlobalCounters) uint64 { return g.EncapFIBMiss }},
		{droppedDesc, []string{"no_backend"}, func(g *lb.GlobalCounters) uint64 { return g.DropNoBackend }},
		{droppedDesc, []string{"internal"}, func(g *lb.GlobalCounters) uint64 { return g.DropInternal }},
		{desc("xlb_conntrack_hits_total", "Packets whose flow was found in the connection table."), nil, func(g *lb.GlobalCounters) uint64 { return g.ConntrackHits }},
		{desc("xlb_new_flows_total", "Flows scheduled to a backend for the first time."), nil, func(g *lb.GlobalCounters) uint64 { return g.NewFlows }},
		{desc("xlb_rescheduled_flows_total", "Flows moved because their backend became unusable."), nil, func(g *lb.GlobalCounters) uint64 { return g.Reschedules }},
		{desc("xlb_conntrack_insert_errors_total", "Connection-table inserts that failed."), nil, func(g *lb.GlobalCounters) uint64 { return g.ConntrackInsertErrors }},
		{desc("xlb_expired_flows_total", "Flows found idle beyond their timeout by the data plane and scheduled afresh."), nil, func(g *lb.GlobalCounters) uint64 { return g.ExpiredFlows }},
		{desc("xlb_closed_flows_total", "TCP flows that saw a FIN or RST from the client."), nil, func(g *lb.GlobalCounters) uint64 { return g.ClosedFlows }},
		{desc("xlb_persistence_hits_total", "New flows sent to their client's persistent backend."), nil, func(g *lb.GlobalCounters) uint64 { return g.PersistHits }},
		{desc("xlb_icmp_echo_replies_total", "ICMP and ICMPv6 echo requests to a VIP answered by the data plane."), nil, func(g *lb.GlobalCounters) uint64 { return g.ICMPEchoReplies }},
		{desc("xlb_fragments_first_total", "First fragments of a datagram to a service, scheduled and remembered for the later ones."), nil, func(g *lb.GlobalCounters) uint64 { return g.FragFirst }},
		{desc("xlb_fragments_forwarded_total", "Later fragments sent to their first fragment's backend (also in xlb_forwarded_packets_total)."), nil, func(g *lb.GlobalCounters) uint64 { return g.FragForwarded }},
		{desc("xlb_fragments_early_total", "Later fragments that came before their first, sent to the client's source-hash backend (also in xlb_fragments_forwarded_total)."), nil, func(g *lb.GlobalCounters) uint64 { return g.FragEarly }},
		{desc("xlb_encap_packets_total", "Frames encapsulated (ipip, gue) and sent to their backend (also in xlb_forwarded_packets_total)."), nil, func(g *lb.GlobalCounters) uint64 { return g.EncapPackets }},
		{desc("xlb_encap_too_big_total", "Frames that encapsulated would exceed the egress MTU (not sent)."), nil, func(g *lb.GlobalCounters) uint64 { return g.EncapTooBig }},
		{desc("xlb_encap_icmp_too_big_total", "Of those, answered with ICMP fragmentation needed or ICMPv6 packet too big (a DF IPv4 or an IPv6 packet; the rest are dropped)."), nil, func(g *lb.GlobalCounters) uint64 { return g.EncapICMPTooBig }},
		{desc("xlb_encap_fib_lookups_total", "FIB lookups for encapsulated frames (each backend's next hop is cached per CPU for a second)."), nil, func(g *lb.GlobalCounters) uint64 { return g.EncapFIBLookups }},
		{desc("xlb_encap_errors_total", "Frames dropped because their encapsulation could not be built."), nil, func(g *lb.GlobalCounters) uint64 { return g.EncapErrors }},
		{desc("xlb_halfopen_flows_total", "New TCP flows whose first packet (a SYN, or a packet of a flow first seen mid-stream) was scheduled into the half-open table (also in xlb_new_flows_total)."), nil, func(g *lb.GlobalCounters) uint64 { return g.HalfOpenNew }},
		{desc("xlb_halfopen_promoted_total", "Half-open TCP flows moved into the connection table by their next packet (the handshake's ACK)."), nil, func(g *lb.GlobalCounters) uint64 { return g.HalfOpenPromoted }},
		{desc("xlb_icmp_errors_forwarded_total", "ICMP errors for a VIP (fragmentation needed, packet too big, destination unreachable) sent to the backend of the flow they quote."), nil, func(g *lb.GlobalCounters) uint64 { return g.ICMPErrorsForwarded }},
	}

	conntrackEntriesDesc = desc("xlb_conntrack_entries", "Entries in the connection table.")
	halfOpenEntriesDesc  = desc("xlb_halfopen_entries", "Entries in the half-open TCP table (flows seen once, awaiting their next packet).")

	servicePacketsDesc  = desc("xlb_service_packets_total", "Packets forwarded or dropped for a service.", "service")
	serviceBytesDesc    = desc("xlb_service_bytes_total", "Bytes (whole frames) of a service's packets.", "service")
	serviceNewFlowsDesc = desc("xlb_service_new_flows_total", "New flows of a service.", "service")
	serviceDroppedDesc  = desc("xlb_service_dropped_packets_total", "Packets of a service dropped for lack of a usable backend.", "service")
	serviceAllDownDesc  = desc("xlb_service_all_backends_down", "1 while every weighted backend of a service fails its health check.", "service")

	backendUpDesc       = desc("xlb_backend_up", "1 if the backend may carry traffic (healthy, MAC known).", "service", "backend")
	backendWeightDesc   = desc("xlb_backend_weight", "Configured weight (0: drained).", "service", "backend")
	backendPacketsDesc  = desc("xlb_backend_packets_total", "Packets forwarded to a backend.", "service", "backend")
	backendBytesDesc    = desc("xlb_backend_bytes_total", "Bytes (whole frames) forwarded to a backend.", "service", "backend")
	backendNewFlowsDesc = desc("xlb_backend_new_flows_total", "New flows scheduled to a backend.", "service", "backend")
	backendActiveDesc   = desc("xlb_backend_active_flows", "Flows of a backend neither closed by the client nor expired.", "service", "backend")

	bgpAnnouncedDesc = desc("xlb_bgp_announced_prefixes", "VIPs announced over BGP (host routes).")
	bgpPeerUpDesc    = desc("xlb_bgp_peer_up", "1 while the BGP session with the peer is established.", "peer")
	bgpSentDesc      = desc("xlb_bgp_updates_sent_total", "BGP UPDATE messages sent to the peer (this session).", "peer")
	bgpReceivedDesc  = desc("xlb_bgp_updates_received_total", "BGP UPDATE messages received from the peer (this session).", "peer")
)

// coreCollector reads the balancer's state at scrape time: one data plane
// snapshot (per-CPU counters summed by the loader) and the status built on
// it, plus the BGP speaker's sessions.
type coreCollector struct{ d *Daemon }

// Describe sends every family's description.
func (coreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- buildInfoDesc
	seen := map[*prometheus.Desc]bool{}
	for _, m := range globalMetrics {
		if !seen[m.desc] {
			seen[m.desc] = true
			ch <- m.desc
		}
	}
	for _, d := range []*prometheus.Desc{
		conntrackEntriesDesc, halfOpenEntriesDesc,
		servicePacketsDesc, serviceBytesDesc, serviceNewFlowsDesc, serviceDroppedDesc, serviceAllDownDesc,
		backendUpDesc, backendWeightDesc, backendPacketsDesc, backendBytesDesc, backendNewFlowsDesc, backendActiveDesc,
		bgpAnnouncedDesc, bgpPeerUpDesc, bgpSentDesc, bgpReceivedDesc,
	} {
		ch <- d
	}
}

// Collect reads the data plane once. If it cannot, the families read from
// it are left out and the error goes to the handler, which logs it; the
// build, weights, all-down, BGP and health check families are still
// served.
func (c coreCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	ch <- gauge(buildInfoDesc, 1, d.version, runtime.Version())
	snap, err := d.dp.Snapshot()
	read := err == nil
	if !read {
		ch <- prometheus.NewInvalidMetric(conntrackEntriesDesc, fmt.Errorf("read the data plane: %w", err))
	} else {
		for _, m := range globalMetrics {
			ch <- counter(m.desc, m.value(&snap.Global), m.labels...)
		}
	}
	st := d.statusOf(snap)
	if read {
		ch <- gauge(conntrackEntriesDesc, uint64(st.Flows))
		ch <- gauge(halfOpenEntriesDesc, uint64(snap.HalfOpen))
	}
	for _, s := range st.Services {
		if read {
			ch <- counter(servicePacketsDesc, s.Packets, s.Service)
			ch <- counter(serviceBytesDesc, s.Bytes, s.Service)
			ch <- counter(serviceNewFlowsDesc, s.NewFlows, s.Service)
			ch <- counter(serviceDroppedDesc, s.DropNoBackend, s.Service)
		}
		if s.Health != nil && s.Health.Type != string(lb.CheckNone) {
			ch <- gauge(serviceAllDownDesc, oneIf(s.AllDown != ""), s.Service)
		}
		for _, b := range s.Backends {
			ch <- gauge(backendWeightDesc, uint64(b.Weight), s.Service, b.Address)
			if read {
				ch <- gauge(backendUpDesc, oneIf(b.Usable), s.Service, b.Address)
				ch <- counter(backendPacketsDesc, b.Packets, s.Service, b.Address)
				ch <- counter(backendBytesDesc, b.Bytes, s.Service, b.Address)
				ch <- counter(backendNewFlowsDesc, b.NewFlows, s.Service, b.Address)
				ch <- gauge(backendActiveDesc, b.ActiveFlows, s.Service, b.Address)
			}
		}
	}
	if b := d.bgpStatus(context.Background()); b.Enabled {
		ch <- gauge(bgpAnnouncedDesc, uint64(len(b.Announced)))
		for _, p := range b.Peers {
			ch <- gauge(bgpPeerUpDesc, oneIf(p.State == "established"), p.Address)
			ch <- counter(bgpSentDesc, p.UpdatesSent, p.Address)
			ch <- counter(bgpReceivedDesc, p.UpdatesReceived, p.Address)
		}
	}
}
