package daemon

import (
	"slices"
	"strconv"
)

// writeDNSMetrics adds the families of backends named by DNS: lookups by
// result, each name's backends per service, the time of each name's last
// answer, and whether its latest lookup failed.
func (d *Daemon) writeDNSMetrics(p *promWriter) {
	type nameRow struct {
		name, family   string
		lastSuccess    int64
		failing, addrs uint64
	}
	d.mu.Lock()
	results := []string{"success", "nxdomain", "nodata", "error"}
	counts := make([]uint64, len(results))
	for i, r := range results {
		counts[i] = d.dns.counts[r]
	}
	var rows []nameRow
	for k, st := range d.dns.names {
		r := nameRow{name: k.Name, family: k.Family, addrs: uint64(len(st.Addrs))}
		if !st.LastSuccess.IsZero() {
			r.lastSuccess = st.LastSuccess.Unix()
		}
		if st.Failing {
			r.failing = 1
		}
		rows = append(rows, r)
	}
	type svcRow struct {
		service, name string
		n             uint64
	}
	var svcRows []svcRow
	for key, origin := range d.running.Origin {
		per := map[string]uint64{}
		for _, nk := range origin {
			per[nk.Name]++
		}
		for _, s := range d.desired {
			if k, err := s.Key(); err == nil && k == key {
				for _, b := range s.Backends {
					if b.Named() {
						svcRows = append(svcRows, svcRow{key.String(), b.Name, per[b.Name]})
					}
				}
			}
		}
	}
	d.mu.Unlock()
	for i, r := range results {
		p.metric("xlb_dns_resolutions_total", "counter", "Lookups of backend names, by result (success, nxdomain, nodata, error).", []string{"result", r}, counts[i])
	}
	slices.SortFunc(rows, func(a, b nameRow) int { return cmpString(a.name+"/"+a.family, b.name+"/"+b.family) })
	for _, r := range rows {
		l := []string{"name", r.name, "family", r.family}
		p.metric("xlb_dns_name_addresses", "gauge", "Addresses in a backend name's last good set.", l, r.addrs)
		p.metric("xlb_dns_name_failing", "gauge", "1 while a backend name's latest lookup failed (its last good set is kept).", l, r.failing)
		if r.lastSuccess > 0 {
			p.sample("xlb_dns_last_success_timestamp_seconds", "xlb_dns_last_success_timestamp_seconds", "gauge",
				"Unix time of a backend name's latest answer.", l, strconv.FormatInt(r.lastSuccess, 10))
		}
	}
	slices.SortFunc(svcRows, func(a, b svcRow) int { return cmpString(a.service+" "+a.name, b.service+" "+b.name) })
	for _, r := range svcRows {
		p.metric("xlb_dns_backends", "gauge", "Backends of a service resolved from a DNS name (leaving ones included).", []string{"service", r.service, "name", r.name}, r.n)
	}
}
