package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/health"
	"github.com/xlb-lb/xlb/maps/lb"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden scrapes in testdata from the current /metrics")

// goldenMetrics is the scrape of metricsDaemon recorded from the
// hand-written exposition writer that client_golang replaced: every name,
// type, HELP text, label and value must stay as it was.
const goldenMetrics = "testdata/metrics.golden"

// goVersionMark stands for runtime.Version() in the golden file, so a new
// toolchain does not change it.
const goVersionMark = "GOVERSION"

// metricsDaemon is a daemon in a fixed state that touches every metric
// family: services of both families with counters, a drained backend, one
// whose MAC is unknown, health checks with results of each kind, a service
// whose every backend is down, and BGP with a peer.
func metricsDaemon(t *testing.T) *Daemon {
	t.Helper()
	dir := t.TempDir()
	cfgText := `
interface: eth0
services:
  - vip: 198.18.1.1
    port: 80
    health: {type: tcp, start_up: true}
    backends: [{address: 198.18.0.11, weight: 2}, {address: 198.18.0.12, weight: 0}, {address: 198.18.0.13}]
  - vip: 198.18.1.2
    port: 53
    protocol: udp
    health: {type: tcp, port: 53}
    backends: [{address: 198.18.0.21}]
  - vip: "2001:2:0:1::1"
    port: 443
    backends: [{address: "2001:2::11"}, {address: "2001:2::12"}]
bgp:
  asn: 65010
  peers: [{address: 198.18.0.1, asn: 65000}, {address: "2001:2::1", asn: 65000}]
`
	path := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	dp := daemontest.NewDataPlane(16)
	d := New(Options{
		ConfigPath: path, StatePath: filepath.Join(dir, "state.json"), Interface: "eth0", DataPlane: dp,
		Version: "v1.2.3-test", HealthClock: frozenClock{}, BGP: &daemontest.Announcer{},
		InterfaceAddrs: addrs("198.18.0.3", "2001:2::3"),
	})
	t.Cleanup(d.Close)
	c, data, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(daemontest.NewMACs(netip.MustParseAddr("198.18.0.13")), c, data); err != nil {
		t.Fatal(err)
	}

	// Every global counter a value of its own, so a family reading the
	// wrong field shows.
	var g lb.GlobalCounters
	gv := reflect.ValueOf(&g).Elem()
	for i := range gv.NumField() {
		gv.Field(i).SetUint(uint64(1000 + 11*i))
	}
	dp.SetGlobal(g)
	web := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	dns := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.2"), Port: 53, Proto: lb.UDP}
	v6 := lb.ServiceKey{VIP: netip.MustParseAddr("2001:2:0:1::1"), Port: 443, Proto: lb.TCP}
	ip := netip.MustParseAddr
	dp.SetCounters(web, lb.ServiceCounters{Packets: 500, Bytes: 64000, NewFlows: 40, DropNoBackend: 3},
		map[netip.Addr]lb.BackendCounters{ip("198.18.0.11"): {Packets: 420, Bytes: 53000, NewFlows: 35}, ip("198.18.0.12"): {Packets: 77, Bytes: 9000, NewFlows: 5}})
	dp.SetCounters(dns, lb.ServiceCounters{Packets: 9, Bytes: 700, NewFlows: 9, DropNoBackend: 9}, nil)
	dp.SetCounters(v6, lb.ServiceCounters{Packets: 300, Bytes: 41000, NewFlows: 12},
		map[netip.Addr]lb.BackendCounters{ip("2001:2::11"): {Packets: 160, Bytes: 21000, NewFlows: 7}, ip("2001:2::12"): {Packets: 140, Bytes: 20000, NewFlows: 5}})
	dp.SetActive(web, ip("198.18.0.11"), 6)
	dp.SetActive(web, ip("198.18.0.12"), 1)
	dp.SetActive(v6, ip("2001:2::11"), 4)
	dp.SetActive(v6, ip("2001:2::12"), 2)
	dp.SetFlows(make([]lb.FlowEntry, 13))
	dp.SetHalfOpen(5)

	// Probe results as the checker reports them (its clock is frozen, so
	// these are the only ones).
	for _, r := range []struct {
		key     lb.ServiceKey
		backend string
		res     health.Result
		n       int
	}{
		{web, "198.18.0.11", health.Result{OK: true, Duration: 300 * time.Microsecond}, 4},
		{web, "198.18.0.11", health.Result{OK: true, Duration: 3 * time.Millisecond}, 2},
		{web, "198.18.0.12", health.Result{OK: true, Duration: 40 * time.Millisecond}, 1},
		{web, "198.18.0.13", health.Result{Timeout: true, Duration: 2 * time.Second}, 3},
		{dns, "198.18.0.21", health.Result{Duration: 700 * time.Millisecond}, 5},
		{dns, "198.18.0.21", health.Result{Duration: 20 * time.Second}, 1},
	} {
		for range r.n {
			d.health.metrics.observe(checkID(r.key, ip(r.backend)), r.res)
		}
	}
	return d
}

// scrape GETs /metrics from h as Prometheus does and returns the body.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read whole or failed: nothing more to learn
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
	}
	return string(body)
}

func parseMetrics(t *testing.T, what, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse %s: %v", what, err)
	}
	return fams
}

// seriesKey names a series by its labels, sorted.
func seriesKey(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		kv = append(kv, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	slices.Sort(kv)
	return "{" + strings.Join(kv, ",") + "}"
}

// seriesValue is a series' value(s) as text: a counter's or gauge's
// value, a histogram's buckets, sum and count.
func seriesValue(typ dto.MetricType, m *dto.Metric) string {
	switch typ {
	case dto.MetricType_COUNTER:
		return fmt.Sprint(m.GetCounter().GetValue())
	case dto.MetricType_GAUGE:
		return fmt.Sprint(m.GetGauge().GetValue())
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		var b []string
		for _, bk := range h.GetBucket() {
			if !math.IsInf(bk.GetUpperBound(), 1) { // the text format's +Inf bucket is the count
				b = append(b, fmt.Sprintf("le=%g:%d", bk.GetUpperBound(), bk.GetCumulativeCount()))
			}
		}
		return fmt.Sprintf("buckets %s sum %g count %d", strings.Join(b, " "), h.GetSampleSum(), h.GetSampleCount())
	case dto.MetricType_UNTYPED:
		return fmt.Sprint(m.GetUntyped().GetValue())
	}
	return "unsupported type " + typ.String()
}

// compareScrapes lists how got differs from want: a family missing,
// added (other than the Go runtime's, the process' and promhttp's), or of
// another type or help; a series missing, added or of another value. It
// returns the differences and how many families and series it compared.
func compareScrapes(want, got map[string]*dto.MetricFamily) (diffs []string, families, series int) {
	for name, wf := range want {
		gf, ok := got[name]
		if !ok {
			diffs = append(diffs, "family "+name+" missing")
			continue
		}
		families++
		if gf.GetType() != wf.GetType() {
			diffs = append(diffs, fmt.Sprintf("family %s: type %s, was %s", name, gf.GetType(), wf.GetType()))
		}
		if gf.GetHelp() != wf.GetHelp() {
			diffs = append(diffs, fmt.Sprintf("family %s: help %q, was %q", name, gf.GetHelp(), wf.GetHelp()))
		}
		gs := map[string]string{}
		for _, m := range gf.GetMetric() {
			gs[seriesKey(m)] = seriesValue(gf.GetType(), m)
		}
		for _, m := range wf.GetMetric() {
			k := seriesKey(m)
			v, ok := gs[k]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("%s%s missing", name, k))
			case v != seriesValue(wf.GetType(), m):
				diffs = append(diffs, fmt.Sprintf("%s%s = %s, was %s", name, k, v, seriesValue(wf.GetType(), m)))
			default:
				series++
			}
			delete(gs, k)
		}
		for k, v := range gs {
			diffs = append(diffs, fmt.Sprintf("%s%s = %s added", name, k, v))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			diffs = append(diffs, "family "+name+" added")
		}
	}
	slices.Sort(diffs)
	return diffs, families, series
}

// The scrape is the one the hand-written writer gave (recorded in
// testdata/metrics.golden): same families, types, help, series and
// values.
func TestMetricsUnchanged(t *testing.T) {
	d := metricsDaemon(t)
	text := scrape(t, d.MetricsHandler())
	compareGolden(t, goldenMetrics, text)
	// The Go runtime and process collectors are there too.
	fams := parseMetrics(t, "the scrape", text)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

// countingDataPlane counts the snapshots taken.
type countingDataPlane struct {
	DataPlane
	n atomic.Int32
}

func (c *countingDataPlane) Snapshot() (lb.Snapshot, error) {
	c.n.Add(1)
	return c.DataPlane.Snapshot()
}

// A scrape reads the data plane once, whatever the number of families.
func TestMetricsOneSnapshotPerScrape(t *testing.T) {
	d := metricsDaemon(t)
	c := &countingDataPlane{DataPlane: d.dp}
	d.dp = c
	scrape(t, d.MetricsHandler())
	if n := c.n.Load(); n != 1 {
		t.Errorf("%d snapshots for one scrape, want 1", n)
	}
}

// brokenDataPlane cannot be read.
type brokenDataPlane struct{ DataPlane }

func (brokenDataPlane) Snapshot() (lb.Snapshot, error) {
	return lb.Snapshot{}, errors.New("map lookup: operation not permitted")
}

// A data plane that cannot be read leaves its families out of the scrape
// (not zeros: a counter at zero reads as a reset), logs why, counts it in
// promhttp_metric_handler_errors_total, and serves the rest.
func TestMetricsDataPlaneUnreadable(t *testing.T) {
	d := metricsDaemon(t)
	var logged strings.Builder
	d.log = slog.New(slog.NewTextHandler(&logged, nil))
	d.dp = brokenDataPlane{d.dp}
	fams := parseMetrics(t, "the scrape", scrape(t, d.MetricsHandler()))
	for _, gone := range []string{"xlb_received_packets_total", "xlb_passed_packets_total", "xlb_conntrack_entries", "xlb_service_packets_total", "xlb_backend_up", "xlb_backend_packets_total"} {
		if fams[gone] != nil {
			t.Errorf("%s served from an unreadable data plane: %v", gone, fams[gone])
		}
	}
	for _, kept := range []string{"xlb_build_info", "xlb_backend_weight", "xlb_service_all_backends_down", "xlb_health_checks_total", "xlb_health_check_duration_seconds", "xlb_bgp_peer_up", "go_goroutines"} {
		if fams[kept] == nil {
			t.Errorf("%s left out with the data plane's families", kept)
		}
	}
	if !strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), "map lookup: operation not permitted") {
		t.Errorf("log: %q, want the data plane's error", logged.String())
	}
	// The failed scrape is counted after it was gathered: the next one
	// shows it.
	fams = parseMetrics(t, "the second scrape", scrape(t, d.MetricsHandler()))
	var errs float64
	for _, m := range fams["promhttp_metric_handler_errors_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "cause" && l.GetValue() == "gathering" {
				errs = m.GetCounter().GetValue()
			}
		}
	}
	if errs < 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=\"gathering\"} = %v, want the failed scrape counted", errs)
	}
}

// The backend role's scrape is the one the hand-written writer gave.
func TestBackendMetricsUnchanged(t *testing.T) {
	n := lb.DecapCounters{RxPackets: 900, ECNCE: 7, Pass: map[string]uint64{}, Decap: map[lb.DecapKind]uint64{
		{Mode: "ipip", Outer: "ipv4", Inner: "ipv4"}: 31, {Mode: "gue", Outer: "ipv4", Inner: "ipv6"}: 32,
		{Mode: "gue", Outer: "ipv6", Inner: "ipv6"}: 33, {Mode: "ipip", Outer: "ipv6", Inner: "ipv4"}: 34,
	}}
	for i, r := range lb.DecapPassReasons {
		n.Pass[r] = uint64(100 + i)
	}
	b := NewBackend(BackendOptions{Interface: "eth9", XDPMode: "native", Version: "v1.2.3-test", Decap: &fakeDecap{n: n}})
	compareGolden(t, "testdata/backend-metrics.golden", scrape(t, b.MetricsHandler()))
}

// compareGolden compares the scrape text with the golden file (rewritten
// first with -update).
func compareGolden(t *testing.T, file, text string) {
	t.Helper()
	goVersion := func(v string) string { return fmt.Sprintf("goversion=%q", v) }
	if *updateGolden {
		rec := strings.ReplaceAll(text, goVersion(runtime.Version()), goVersion(goVersionMark))
		if err := os.WriteFile(file, []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := parseMetrics(t, file, strings.ReplaceAll(string(golden), goVersion(goVersionMark), goVersion(runtime.Version())))
	got := parseMetrics(t, "the scrape", text)
	diffs, families, series := compareScrapes(want, got)
	for _, d := range diffs {
		t.Error(d)
	}
	t.Logf("compared %d families, %d series with %s", families, series, file)
}
