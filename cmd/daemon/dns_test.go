package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
)

// fakeDNS answers lookups from a table the test changes, on a clock the
// test moves.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[config.NameKey]DNSAnswer
	asked   []config.NameKey
	now     time.Time
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{answers: map[config.NameKey]DNSAnswer{}, now: t0}
}

func (f *fakeDNS) set(name, family string, a DNSAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[config.NameKey{Name: name, Family: family}] = a
}

func (f *fakeDNS) lookup(_ context.Context, k config.NameKey, _ config.Resolvers) DNSAnswer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, k)
	a, ok := f.answers[k]
	if !ok {
		return DNSAnswer{NoAddrs: true, Rcode: "NXDOMAIN"}
	}
	return a
}

func (f *fakeDNS) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeDNS) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

const namedConfig = `
interface: eth0
resolvers:
  nameservers: [198.18.0.53]
  min_refresh: 1s
  max_refresh: 1m
services:
  - vip: 198.18.1.1
    port: 80
    health: {type: tcp, interval: 100ms, rise: 1, fall: 1}
    backends:
      - address: 198.18.0.10
      - name: web.pool.example
        weight: 2
  - vip: 2001:2::1
    port: 80
    backends:
      - name: web.pool.example
`

// resolveReq runs POST /v1/services/KEY/resolve through the real handler.
func resolveReq(t *testing.T, d *Daemon, key string) (int, api.ResolveResult, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/services/"+url.PathEscape(key)+"/resolve", nil)
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, req)
	var r api.ResolveResult
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, r, rec.Body.String()
}

// backendWeights is the installed backends of service key as ADDR=WEIGHT.
func backendWeights(t *testing.T, d *Daemon, key string) []string {
	t.Helper()
	s, ok := installed(t, d, key)
	if !ok {
		t.Fatalf("service %s not installed", key)
	}
	var out []string
	for _, b := range s.Service.Backends {
		out = append(out, b.Addr.String()+"="+strconv.FormatUint(uint64(b.Weight), 10))
	}
	slices.Sort(out)
	return out
}

func nameStatusOf(t *testing.T, d *Daemon, key, name string) api.NameStatus {
	t.Helper()
	for _, n := range serviceStatus(d, key).Names {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("service %s: no name %s in status", key, name)
	return api.NameStatus{}
}

// A service's named backends through the daemon: resolved on demand
// through the real handler, joined (health-checked), left (drained until
// their flows end), unchanged ones keeping their state, a failure keeping
// the set, both families, and the state file carrying names and the last
// good sets across a restart during a DNS outage.
func TestDNSBackendsThroughDaemon(t *testing.T) {
	dns := newFakeDNS()
	p := &probes{ok: map[netip.Addr]bool{}}
	for _, a := range []string{"198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"} {
		p.set(a, true)
	}
	o := Options{DNSLookup: dns.lookup, DNSClock: dns.clock, Probe: p.prober}
	d, _, cfgPath := startFromFile(t, namedConfig, o)
	const v4, v6 = "198.18.1.1:80/tcp", "[2001:2::1]:80/tcp"

	// Before any answer: the static backend alone; the name is pending.
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1"}) {
		t.Fatalf("before resolving: %v", got)
	}
	if n := nameStatusOf(t, d, v4, "web.pool.example"); n.State != api.NamePending || n.Family != "ipv4" || n.Weight != 2 {
		t.Fatalf("pending name: %+v", n)
	}

	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.12", "198.18.0.11"), TTL: 2 * time.Second})
	dns.set("web.pool.example", "ipv6", DNSAnswer{Addrs: ips("2001:2::11"), TTL: 10 * time.Second})
	code, r, body := resolveReq(t, d, v4)
	if code != http.StatusOK || len(r.Names) != 1 || !slices.Equal(r.Names[0].Added, []string{"198.18.0.11", "198.18.0.12"}) || r.Names[0].Error != "" {
		t.Fatalf("resolve: %d %s", code, body)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.12=2"}) {
		t.Fatalf("after the first answer: %v", got)
	}
	if _, r, _ = resolveReq(t, d, v6); len(r.Names) != 1 || r.Names[0].Family != "ipv6" || !slices.Equal(r.Names[0].Added, []string{"2001:2::11"}) {
		t.Fatalf("resolve v6: %+v", r)
	}
	if got := backendWeights(t, d, v6); !slices.Equal(got, []string{"2001:2::11=1"}) {
		t.Fatalf("v6 service: %v", got)
	}
	n := nameStatusOf(t, d, v4, "web.pool.example")
	if n.State != api.NameOK || !n.NextRefresh.Equal(t0.Add(2*time.Second)) || n.TTL != config.Duration(2*time.Second) || !n.LastSuccess.Equal(t0) {
		t.Fatalf("name status: %+v", n)
	}
	if b := backendStatus(d, "198.18.0.11"); b.Name != "web.pool.example" || b.Weight != 2 {
		t.Fatalf("backend status: %+v", b)
	}

	// The new backends are health-checked as usual: wait for .11 to pass.
	key := mustKey(t, v4)
	var since time.Time
	waitFor(t, "198.18.0.11 up", func() bool {
		st, ok := d.health.checker.State(checkID(key, netip.MustParseAddr("198.18.0.11")))
		since = st.Since
		return ok && st.Up
	})

	// Join .13, leave .12; .11 keeps its check state.
	dns.advance(2 * time.Second)
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.13"), TTL: 2 * time.Second})
	_, r, _ = resolveReq(t, d, v4)
	if c := r.Names[0]; !slices.Equal(c.Added, []string{"198.18.0.13"}) || !slices.Equal(c.Removed, []string{"198.18.0.12"}) || !slices.Equal(c.Kept, []string{"198.18.0.11"}) {
		t.Fatalf("join and leave: %+v", c)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.12=0", "198.18.0.13=2"}) {
		t.Fatalf("after join and leave: %v", got)
	}
	if st, _ := d.health.checker.State(checkID(key, netip.MustParseAddr("198.18.0.11"))); !st.Up || !st.Since.Equal(since) {
		t.Errorf(".11 lost its health state: %+v (since %s)", st, since)
	}
	if b := backendStatus(d, "198.18.0.12"); b.State != api.StateDrain || !strings.Contains(b.Reason, "gone from web.pool.example") {
		t.Errorf("leaving backend: %+v", b)
	}
	// .12 drains while it has a flow, and goes once it has none.
	d.dp.(*daemontest.DataPlane).SetActive(key, netip.MustParseAddr("198.18.0.12"), 1)
	d.pruneLeaving()
	if got := backendWeights(t, d, v4); !slices.Contains(got, "198.18.0.12=0") {
		t.Fatalf("a leaving backend with a flow went: %v", got)
	}
	d.dp.(*daemontest.DataPlane).SetActive(key, netip.MustParseAddr("198.18.0.12"), 0)
	d.pruneLeaving()
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.13=2"}) {
		t.Fatalf("a leaving backend without flows stayed: %v", got)
	}

	// DNS fails: the set stays, status and metrics say so.
	dns.advance(2 * time.Second)
	dns.set("web.pool.example", "ipv4", DNSAnswer{Err: errors.New("198.18.0.53:53: timeout after 2s")})
	_, r, _ = resolveReq(t, d, v4)
	if c := r.Names[0]; len(c.Added)+len(c.Removed) != 0 || len(c.Kept) != 2 || !strings.Contains(c.Error, "timeout") {
		t.Fatalf("failed lookup: %+v", c)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.13=2"}) {
		t.Fatalf("after a failed lookup: %v", got)
	}
	n = nameStatusOf(t, d, v4, "web.pool.example")
	if n.State != api.NameFailing || !strings.Contains(n.LastError, "timeout") || !n.LastSuccess.Equal(t0.Add(2*time.Second)) || !n.NextRefresh.Equal(dns.clock().Add(5*time.Second)) {
		t.Fatalf("failing name status: %+v", n)
	}
	m := scrape(t, d.MetricsHandler())
	for _, want := range []string{
		`xlb_dns_resolutions_total{result="error"} 1`,
		`xlb_dns_resolutions_total{result="success"} 3`,
		`xlb_dns_name_failing{family="ipv4",name="web.pool.example"} 1`,
		`xlb_dns_name_addresses{family="ipv4",name="web.pool.example"} 2`,
		`xlb_dns_backends{name="web.pool.example",service="198.18.1.1:80/tcp"} 2`,
		`xlb_dns_last_success_timestamp_seconds{family="ipv4",name="web.pool.example"} ` + strconv.FormatFloat(float64(t0.Add(2*time.Second).Unix()), 'g', -1, 64),
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Restart while DNS is down: the state file keeps the names and their
	// last good sets, which serve until the first answer.
	data, err := os.ReadFile(filepath.Join(filepath.Dir(cfgPath), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"name": "web.pool.example"`) || strings.Contains(string(data), `"address": "198.18.0.13"`) {
		t.Fatalf("state file keeps resolved addresses as backends, or no name:\n%s", data)
	}
	d.Close()
	d2 := New(Options{ConfigPath: cfgPath, StatePath: filepath.Join(filepath.Dir(cfgPath), "state.json"), Interface: "eth0",
		DataPlane: daemontest.NewDataPlane(16), DNSLookup: dns.lookup, DNSClock: dns.clock, Probe: p.prober})
	t.Cleanup(d2.Close)
	c, raw, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(daemontest.NewMACs(), c, raw); err != nil {
		t.Fatal(err)
	}
	if got := backendWeights(t, d2, v4); !slices.Equal(got, []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.13=2"}) {
		t.Fatalf("after the restart: %v", got)
	}
	if n := nameStatusOf(t, d2, v4, "web.pool.example"); n.State != api.NameRestored {
		t.Errorf("restored name: %+v", n)
	}
	if _, r, _ = resolveReq(t, d2, v4); r.Names[0].Error == "" {
		t.Errorf("resolve after the restart: %+v", r)
	}
	if got := backendWeights(t, d2, v4); len(got) != 3 {
		t.Fatalf("a failed lookup after the restart emptied the name: %v", got)
	}
}

// The resolver loop resolves new names at once and again when their
// refresh is due; a service with no names gets none asked.
func TestDNSLoop(t *testing.T) {
	dns := newFakeDNS()
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11"), TTL: time.Second})
	dns.set("web.pool.example", "ipv6", DNSAnswer{Addrs: ips("2001:2::11"), TTL: time.Second})
	d, _, _ := startFromFile(t, namedConfig, Options{DNSLookup: dns.lookup, DNSClock: dns.clock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.runDNS(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the first answers installed", func() bool {
		s4, ok4 := installed(t, d, "198.18.1.1:80/tcp")
		s6, ok6 := installed(t, d, "[2001:2::1]:80/tcp")
		return ok4 && ok6 && len(s4.Service.Backends) == 2 && len(s6.Service.Backends) == 1
	})
	// The refresh is due a second later on the test's clock: move it and
	// wake the loop; the new answer is installed.
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12"), TTL: time.Second})
	dns.advance(time.Second)
	d.dns.kick()
	waitFor(t, "the refreshed answer installed", func() bool {
		s, _ := installed(t, d, "198.18.1.1:80/tcp")
		return len(s.Service.Backends) == 3
	})
}

// Named backends through the API: added to a service, refused when
// duplicated or of the wrong family, with the field and value named.
func TestDNSBackendAPI(t *testing.T) {
	d, srv := newDaemonWith(t, Options{DNSLookup: newFakeDNS().lookup})
	svc := url.PathEscape("198.18.1.1:80/tcp")
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/services", `{"vip": "198.18.1.1", "port": 80, "backends": [{"name": "web.pool.example", "weight": 3}]}`, 200, ""},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "more.pool.example"}`, 200, ""},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "MORE.pool.example."}`, 400, `backends[2].name "more.pool.example": duplicate backend name (also backends[1])`},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "v6.pool.example", "family": "ipv6"}`, 400, `backends[2].family "ipv6": vip 198.18.1.1 is ipv4`},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "bad_name.example"}`, 400, `name "bad_name.example": not a host name: '_'`},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "a.example", "address": "198.18.0.11"}`, 400, `name "a.example": give address or name, not both`},
		{"POST", "/v1/services/" + svc + "/backends", `{"name": "198.18.0.11"}`, 400, `name "198.18.0.11": an IP address, not a name: use address`},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s %s %s: %d %q\nwant %d %q", tc.method, tc.path, tc.body, resp.StatusCode, e.Error, tc.code, tc.want)
		}
	}
	st := serviceStatus(d, "198.18.1.1:80/tcp")
	if len(st.Names) != 2 || st.Names[0].Weight != 3 || st.Names[1].Name != "more.pool.example" {
		t.Errorf("names: %+v", st.Names)
	}
	// No such service.
	if code, _, body := resolveReq(t, d, "198.18.1.9:80/tcp"); code != 404 || !strings.Contains(body, "no such service") {
		t.Errorf("resolve of no service: %d %s", code, body)
	}
}

// A reload keeps the names' sets (no lookup needed to serve them); a name
// dropped from the file goes with its addresses, like removed backends.
func TestDNSReloadKeepsSets(t *testing.T) {
	dns := newFakeDNS()
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12"), TTL: time.Minute})
	d, _, path := startFromFile(t, namedConfig, Options{DNSLookup: dns.lookup, DNSClock: dns.clock})
	const v4 = "198.18.1.1:80/tcp"
	resolveReq(t, d, v4)
	want := []string{"198.18.0.10=1", "198.18.0.11=2", "198.18.0.12=2"}
	if got := backendWeights(t, d, v4); !slices.Equal(got, want) {
		t.Fatalf("resolved: %v", got)
	}
	dns.set("web.pool.example", "ipv4", DNSAnswer{Err: errors.New("timeout")})
	if err := os.WriteFile(path, []byte(namedConfig+"\n# touched\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, want) {
		t.Fatalf("after a reload: %v", got)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(namedConfig, "      - name: web.pool.example\n        weight: 2\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1"}) {
		t.Fatalf("after dropping the name: %v", got)
	}
	if n := serviceStatus(d, v4).Names; len(n) != 0 {
		t.Errorf("names after dropping it: %+v", n)
	}
}
