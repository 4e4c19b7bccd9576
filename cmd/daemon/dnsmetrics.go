package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The families of backends named by DNS, a collector of their own.
var (
	dnsResolutionsDesc = desc("xlb_dns_resolutions_total", "Lookups of backend names, by result (success, nxdomain, nodata, error).", "result")
	dnsAddressesDesc   = desc("xlb_dns_name_addresses", "Addresses in a backend name's last good set.", "name", "family")
	dnsFailingDesc     = desc("xlb_dns_name_failing", "1 while a backend name's latest lookup failed (its last good set is kept).", "name", "family")
	dnsLastSuccessDesc = desc("xlb_dns_last_success_timestamp_seconds", "Unix time of a backend name's latest answer.", "name", "family")
	dnsBackendsDesc    = desc("xlb_dns_backends", "Backends of a service resolved from a DNS name (leaving ones included).", "service", "name")
)

var dnsResults = []string{"success", "nxdomain", "nodata", "error"}

// dnsCollector reads the daemon's DNS state at each scrape.
type dnsCollector struct{ d *Daemon }

// Describe sends the families' descriptions.
func (dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dnsResolutionsDesc, dnsAddressesDesc, dnsFailingDesc, dnsLastSuccessDesc, dnsBackendsDesc} {
		ch <- d
	}
}

// Collect sends lookups by result, each name's set size, failure and last
// answer time, and each service's backends per name.
func (c dnsCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	d.mu.Lock()
	var out []prometheus.Metric
	for _, r := range dnsResults {
		out = append(out, counter(dnsResolutionsDesc, d.dns.counts[r], r))
	}
	for k, st := range d.dns.names {
		out = append(out, gauge(dnsAddressesDesc, uint64(len(st.Addrs)), k.Name, k.Family),
			gauge(dnsFailingDesc, oneIf(st.Failing), k.Name, k.Family))
		if !st.LastSuccess.IsZero() {
			out = append(out, prometheus.MustNewConstMetric(dnsLastSuccessDesc, prometheus.GaugeValue, float64(st.LastSuccess.Unix()), k.Name, k.Family))
		}
	}
	for _, s := range d.desired {
		key, err := s.Key()
		if err != nil {
			continue
		}
		per := map[string]uint64{}
		for _, nk := range d.running.Origin[key] {
			per[nk.Name]++
		}
		seen := map[string]bool{}
		for _, b := range s.Backends {
			if b.Named() && !seen[b.Name] {
				seen[b.Name] = true
				out = append(out, gauge(dnsBackendsDesc, per[b.Name], key.String(), b.Name))
			}
		}
	}
	d.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}
