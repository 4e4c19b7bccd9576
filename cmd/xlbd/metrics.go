package main

import (
	"bufio"
	"fmt"
	"net/http"
	"runtime"
	"strings"
)

// metricsHandler serves Prometheus text exposition (format 0.0.4): names
// prefixed xlb_, base units, _total for counters.
func (d *daemon) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		d.writeMetrics(bw)
		bw.Flush()
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
	f := p.families[name]
	if f == nil {
		f = &family{typ: typ, help: help}
		p.families[name] = f
		p.order = append(p.order, name)
	}
	f.lines = append(f.lines, fmt.Sprintf("%s%s %d", name, labelText(labels), value))
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

func (d *daemon) writeMetrics(w *bufio.Writer) {
	p := &promWriter{families: map[string]*family{}}
	defer p.flush(w)
	p.metric("xlb_build_info", "gauge", "Build information of xlbd.", []string{"version", version, "goversion", runtime.Version()}, 1)
	if g, err := d.bal.Stats().Global(); err == nil {
		p.metric("xlb_received_packets_total", "counter", "Frames the XDP program saw.", nil, g.RxPackets)
		p.metric("xlb_forwarded_packets_total", "counter", "Frames forwarded to a backend (XDP_TX).", nil, g.TxPackets)
		for _, r := range []struct {
			reason string
			v      uint64
		}{
			{"not_ip", g.PassNotIp}, {"not_service", g.PassNotVip}, {"malformed", g.PassMalformed},
			{"fragment", g.PassFragment}, {"ipv6_extension_header", g.PassIpv6Ext}, {"ttl", g.PassTtl},
			{"other_host", g.PassOtherHost},
		} {
			p.metric("xlb_passed_packets_total", "counter", "Frames passed to the kernel untouched, by reason.", []string{"reason", r.reason}, r.v)
		}
		p.metric("xlb_dropped_packets_total", "counter", "Frames dropped, by reason.", []string{"reason", "no_backend"}, g.DropNoBackend)
		p.metric("xlb_dropped_packets_total", "counter", "Frames dropped, by reason.", []string{"reason", "internal"}, g.DropInternal)
		p.metric("xlb_conntrack_hits_total", "counter", "Packets whose flow was found in the connection table.", nil, g.ConntrackHits)
		p.metric("xlb_new_flows_total", "counter", "Flows scheduled to a backend for the first time.", nil, g.NewFlows)
		p.metric("xlb_rescheduled_flows_total", "counter", "Flows moved because their backend became unusable.", nil, g.Reschedules)
		p.metric("xlb_conntrack_insert_errors_total", "counter", "Connection-table inserts that failed.", nil, g.ConntrackInsertErrors)
	}
	st := d.status()
	p.metric("xlb_conntrack_entries", "gauge", "Entries in the connection table.", nil, uint64(st.Flows))
	for _, s := range st.Services {
		sl := []string{"service", s.Service}
		p.metric("xlb_service_packets_total", "counter", "Packets forwarded or dropped for a service.", sl, s.Packets)
		p.metric("xlb_service_bytes_total", "counter", "Bytes (whole frames) of a service's packets.", sl, s.Bytes)
		p.metric("xlb_service_new_flows_total", "counter", "New flows of a service.", sl, s.NewFlows)
		p.metric("xlb_service_dropped_packets_total", "counter", "Packets of a service dropped for lack of a usable backend.", sl, s.DropNoBackend)
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
		}
	}
}
