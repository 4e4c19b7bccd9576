package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/xlb-lb/xlb/maps/lb"
)

// MetricsHandler serves Prometheus text exposition (format 0.0.4): names
// prefixed xlb_, base units, _total for counters.
func (d *Daemon) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		d.writeMetrics(bw)
		_ = bw.Flush() // the scraper went away: nothing to tell it
	})
	return mux
}

// promWriter groups samples by family (the format wants each family's
// samples together) and writes them in first-seen order.
type promWriter struct {
	order    []string
	families map[string]*family
}

type family struct {
	typ, help string
	lines     []string
}

func (p *promWriter) metric(name, typ, help string, labels []string, value uint64) {
	p.sample(name, name, typ, help, labels, strconv.FormatUint(value, 10))
}

// sample adds one line to family fam: a histogram's family holds its
// _bucket, _sum and _count series.
func (p *promWriter) sample(fam, name, typ, help string, labels []string, value string) {
	f := p.families[fam]
	if f == nil {
		f = &family{typ: typ, help: help}
		p.families[fam] = f
		p.order = append(p.order, fam)
	}
	f.lines = append(f.lines, name+labelText(labels)+" "+value)
}

// histogram writes a histogram with cumulative buckets.
func (p *promWriter) histogram(name, help string, labels []string, bounds []float64, h *histogram) {
	var cum uint64
	for i, b := range bounds {
		cum += h.counts[i]
		p.sample(name, name+"_bucket", "histogram", help, append(slices.Clone(labels), "le", strconv.FormatFloat(b, 'g', -1, 64)), strconv.FormatUint(cum, 10))
	}
	p.sample(name, name+"_bucket", "histogram", help, append(slices.Clone(labels), "le", "+Inf"), strconv.FormatUint(h.count, 10))
	p.sample(name, name+"_sum", "histogram", help, labels, strconv.FormatFloat(h.sum, 'g', -1, 64))
	p.sample(name, name+"_count", "histogram", help, labels, strconv.FormatUint(h.count, 10))
}

func (p *promWriter) flush(w *bufio.Writer) {
	for _, name := range p.order {
		f := p.families[name]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, f.help, name, f.typ)
		for _, l := range f.lines {
			fmt.Fprintln(w, l)
		}
	}
}

// labelText formats name/value pairs, escaping values.
func labelText(kv []string) string {
	if len(kv) == 0 {
		return ""
	}
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%s="%s"`, kv[i], esc.Replace(kv[i+1]))
	}
	b.WriteByte('}')
	return b.String()
}

func (d *Daemon) writeMetrics(w *bufio.Writer) {
	p := &promWriter{families: map[string]*family{}}
	defer p.flush(w)
	p.metric("xlb_build_info", "gauge", "Build information of xlbd.", []string{"version", d.version, "goversion", runtime.Version()}, 1)
	snap, err := d.dp.Snapshot()
	if err != nil {
		d.log.Error("read the data plane for metrics", "err", err)
	}
	if g := snap.Global; err == nil {
		p.metric("xlb_received_packets_total", "counter", "Frames the XDP program saw.", nil, g.RxPackets)
		p.metric("xlb_forwarded_packets_total", "counter", "Frames forwarded to a backend (XDP_TX).", nil, g.TxPackets)
		for _, r := range []struct {
			reason string
			v      uint64
		}{
			{"not_ip", g.PassNotIP}, {"not_service", g.PassNotVIP}, {"malformed", g.PassMalformed},
			{"fragment", g.PassFragment}, {"ipv6_extension_header", g.PassIPv6Ext}, {"ttl", g.PassTTL},
			{"other_host", g.PassOtherHost}, {"icmp_unmatched", g.ICMPErrorsUnmatched},
			{"fragment_unmatched", g.FragUnmatched}, {"encap_no_route", g.EncapFIBMiss},
		} {
			p.metric("xlb_passed_packets_total", "counter", "Frames passed to the kernel untouched, by reason.", []string{"reason", r.reason}, r.v)
		}
		p.metric("xlb_dropped_packets_total", "counter", "Frames dropped, by reason.", []string{"reason", "no_backend"}, g.DropNoBackend)
		p.metric("xlb_dropped_packets_total", "counter", "Frames dropped, by reason.", []string{"reason", "internal"}, g.DropInternal)
		p.metric("xlb_conntrack_hits_total", "counter", "Packets whose flow was found in the connection table.", nil, g.ConntrackHits)
		p.metric("xlb_new_flows_total", "counter", "Flows scheduled to a backend for the first time.", nil, g.NewFlows)
		p.metric("xlb_rescheduled_flows_total", "counter", "Flows moved because their backend became unusable.", nil, g.Reschedules)
		p.metric("xlb_conntrack_insert_errors_total", "counter", "Connection-table inserts that failed.", nil, g.ConntrackInsertErrors)
		p.metric("xlb_expired_flows_total", "counter", "Flows found idle beyond their timeout by the data plane and scheduled afresh.", nil, g.ExpiredFlows)
		p.metric("xlb_closed_flows_total", "counter", "TCP flows that saw a FIN or RST from the client.", nil, g.ClosedFlows)
		p.metric("xlb_persistence_hits_total", "counter", "New flows sent to their client's persistent backend.", nil, g.PersistHits)
		p.metric("xlb_icmp_echo_replies_total", "counter", "ICMP and ICMPv6 echo requests to a VIP answered by the data plane.", nil, g.ICMPEchoReplies)
		p.metric("xlb_fragments_first_total", "counter", "First fragments of a datagram to a service, scheduled and remembered for the later ones.", nil, g.FragFirst)
		p.metric("xlb_fragments_forwarded_total", "counter", "Later fragments sent to their first fragment's backend (also in xlb_forwarded_packets_total).", nil, g.FragForwarded)
		p.metric("xlb_fragments_early_total", "counter", "Later fragments that came before their first, sent to the client's source-hash backend (also in xlb_fragments_forwarded_total).", nil, g.FragEarly)
		p.metric("xlb_encap_packets_total", "counter", "Frames encapsulated (ipip, gue) and sent to their backend (also in xlb_forwarded_packets_total).", nil, g.EncapPackets)
		p.metric("xlb_encap_too_big_total", "counter", "Frames that encapsulated would exceed the egress MTU (not sent).", nil, g.EncapTooBig)
		p.metric("xlb_encap_icmp_too_big_total", "counter", "Of those, answered with ICMP fragmentation needed or ICMPv6 packet too big (a DF IPv4 or an IPv6 packet; the rest are dropped).", nil, g.EncapICMPTooBig)
		p.metric("xlb_encap_fib_lookups_total", "counter", "FIB lookups for encapsulated frames (each backend's next hop is cached per CPU for a second).", nil, g.EncapFIBLookups)
		p.metric("xlb_encap_errors_total", "counter", "Frames dropped because their encapsulation could not be built.", nil, g.EncapErrors)
		p.metric("xlb_halfopen_flows_total", "counter", "New TCP flows whose first packet (a SYN, or a packet of a flow first seen mid-stream) was scheduled into the half-open table (also in xlb_new_flows_total).", nil, g.HalfOpenNew)
		p.metric("xlb_halfopen_promoted_total", "counter", "Half-open TCP flows moved into the connection table by their next packet (the handshake's ACK).", nil, g.HalfOpenPromoted)
		p.metric("xlb_icmp_errors_forwarded_total", "counter", "ICMP errors for a VIP (fragmentation needed, packet too big, destination unreachable) sent to the backend of the flow they quote.", nil, g.ICMPErrorsForwarded)
	}
	st := d.statusOf(snap)
	p.metric("xlb_conntrack_entries", "gauge", "Entries in the connection table.", nil, uint64(st.Flows))
	p.metric("xlb_halfopen_entries", "gauge", "Entries in the half-open TCP table (flows seen once, awaiting their next packet).", nil, uint64(snap.HalfOpen))
	for _, s := range st.Services {
		sl := []string{"service", s.Service}
		p.metric("xlb_service_packets_total", "counter", "Packets forwarded or dropped for a service.", sl, s.Packets)
		p.metric("xlb_service_bytes_total", "counter", "Bytes (whole frames) of a service's packets.", sl, s.Bytes)
		p.metric("xlb_service_new_flows_total", "counter", "New flows of a service.", sl, s.NewFlows)
		p.metric("xlb_service_dropped_packets_total", "counter", "Packets of a service dropped for lack of a usable backend.", sl, s.DropNoBackend)
	}
	for _, s := range st.Services {
		if s.Health == nil || s.Health.Type == string(lb.CheckNone) {
			continue
		}
		down := uint64(0)
		if s.AllDown != "" {
			down = 1
		}
		p.metric("xlb_service_all_backends_down", "gauge", "1 while every weighted backend of a service fails its health check.", []string{"service", s.Service}, down)
	}
	d.health.metrics.write(p)
	d.writeDNSMetrics(p)
	if b := d.bgpStatus(context.Background()); b.Enabled {
		p.metric("xlb_bgp_announced_prefixes", "gauge", "VIPs announced over BGP (host routes).", nil, uint64(len(b.Announced)))
		for _, peer := range b.Peers {
			pl := []string{"peer", peer.Address}
			up := uint64(0)
			if peer.State == "established" {
				up = 1
			}
			p.metric("xlb_bgp_peer_up", "gauge", "1 while the BGP session with the peer is established.", pl, up)
			p.metric("xlb_bgp_updates_sent_total", "counter", "BGP UPDATE messages sent to the peer (this session).", pl, peer.UpdatesSent)
			p.metric("xlb_bgp_updates_received_total", "counter", "BGP UPDATE messages received from the peer (this session).", pl, peer.UpdatesReceived)
		}
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			bl := []string{"service", s.Service, "backend", b.Address}
			up := uint64(0)
			if b.Usable {
				up = 1
			}
			p.metric("xlb_backend_up", "gauge", "1 if the backend may carry traffic (healthy, MAC known).", bl, up)
			p.metric("xlb_backend_weight", "gauge", "Configured weight (0: drained).", bl, uint64(b.Weight))
			p.metric("xlb_backend_packets_total", "counter", "Packets forwarded to a backend.", bl, b.Packets)
			p.metric("xlb_backend_bytes_total", "counter", "Bytes (whole frames) forwarded to a backend.", bl, b.Bytes)
			p.metric("xlb_backend_new_flows_total", "counter", "New flows scheduled to a backend.", bl, b.NewFlows)
			p.metric("xlb_backend_active_flows", "gauge", "Flows of a backend neither closed by the client nor expired.", bl, b.ActiveFlows)
		}
	}
}

// write adds the health check families, in a stable order.
func (m *healthMetrics) write(p *promWriter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := make([]checkCount, 0, len(m.checks))
	for c := range m.checks {
		counts = append(counts, c)
	}
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].id != counts[j].id {
			return counts[i].id < counts[j].id
		}
		return counts[i].result < counts[j].result
	})
	for _, c := range counts {
		svc, backend := splitCheckID(c.id)
		p.metric("xlb_health_checks_total", "counter", "Health check probes, by result (success, failure, timeout).",
			[]string{"service", svc, "backend", backend, "result", c.result}, m.checks[c])
	}
	svcs := make([]string, 0, len(m.durations))
	for s := range m.durations {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	for _, s := range svcs {
		p.histogram("xlb_health_check_duration_seconds", "Time a health check probe took.", []string{"service", s}, checkBuckets, m.durations[s])
	}
}
