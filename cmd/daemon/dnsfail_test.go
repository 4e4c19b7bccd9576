package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
)

// breakStateWrite makes every later commit of d fail (its state cannot be
// written).
func breakStateWrite(t *testing.T, d *Daemon) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "missing"), []byte("a file, not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.statePath = filepath.Join(dir, "missing", "state.json")
	d.mu.Unlock()
}

// A leaving address whose removal cannot be committed stays leaving (as
// the data plane still has it), and goes on a later try.
func TestPruneLeavingFailedCommit(t *testing.T) {
	dns := newFakeDNS()
	d, _, _ := startFromFile(t, namedConfig, Options{DNSLookup: dns.lookup, DNSClock: dns.clock})
	const v4 = "198.18.1.1:80/tcp"
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12"), TTL: 2 * time.Second})
	if code, _, body := resolveReq(t, d, v4); code != http.StatusOK {
		t.Fatalf("resolve: %d %s", code, body)
	}
	dns.advance(2 * time.Second)
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11"), TTL: 2 * time.Second})
	if code, _, body := resolveReq(t, d, v4); code != http.StatusOK {
		t.Fatalf("resolve: %d %s", code, body)
	}
	key := mustKey(t, v4)
	d.dp.(*daemontest.DataPlane).SetActive(key, netip.MustParseAddr("198.18.0.12"), 0)
	good := d.statePath
	breakStateWrite(t, d)
	d.pruneLeaving()
	if got := backendWeights(t, d, v4); !slices.Contains(got, "198.18.0.12=0") {
		t.Fatalf("leaving backend gone from the data plane though the commit failed: %v", got)
	}
	if n := nameStatusOf(t, d, v4, "web.pool.example"); !slices.Contains(n.Leaving, "198.18.0.12") {
		t.Fatalf("leaving address forgotten after a failed commit: %+v", n)
	}
	d.mu.Lock()
	d.statePath = good
	d.mu.Unlock()
	d.pruneLeaving()
	if got := backendWeights(t, d, v4); slices.Contains(got, "198.18.0.12=0") {
		t.Fatalf("leaving backend stayed after a good commit: %v", got)
	}
}

// Answers that cannot be committed: resolve answers 500, the name keeps
// its previous set, says why, and is looked up again after the retry
// interval (not the answer's TTL).
func TestResolveFailedCommit(t *testing.T) {
	dns := newFakeDNS()
	d, _, _ := startFromFile(t, namedConfig, Options{DNSLookup: dns.lookup, DNSClock: dns.clock})
	const v4 = "198.18.1.1:80/tcp"
	dns.set("web.pool.example", "ipv4", DNSAnswer{Addrs: ips("198.18.0.11"), TTL: 30 * time.Second})
	breakStateWrite(t, d)
	code, _, body := resolveReq(t, d, v4)
	if code != http.StatusInternalServerError || !strings.Contains(body, "not applied") {
		t.Fatalf("resolve with a failing commit: %d %s, want 500 saying it was not applied", code, body)
	}
	if got := backendWeights(t, d, v4); !slices.Equal(got, []string{"198.18.0.10=1"}) {
		t.Fatalf("backends after a failed commit: %v", got)
	}
	n := nameStatusOf(t, d, v4, "web.pool.example")
	d.mu.Lock()
	retry := d.dns.policy().retry
	d.mu.Unlock()
	if len(n.Addresses) != 0 || !strings.Contains(n.LastError, "not applied") || !n.NextRefresh.Equal(dns.clock().Add(retry)) {
		t.Fatalf("name after a failed commit: %+v, want next refresh %s", n, dns.clock().Add(retry))
	}
}

// Run returns only once the resolver loop has stopped, and lookups cut
// short by the shutdown are not recorded as failures.
func TestRunJoinsResolver(t *testing.T) {
	started := make(chan struct{}, 8)
	var inFlight atomic.Int32
	lookup := func(ctx context.Context, _ config.NameKey, _ config.Resolvers) DNSAnswer {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		started <- struct{}{}
		<-ctx.Done()
		return DNSAnswer{Err: ctx.Err()}
	}
	d, _, _ := startFromFile(t, namedConfig, Options{DNSLookup: lookup})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx, time.Hour)
		close(done)
	}()
	<-started
	cancel()
	<-done
	if n := inFlight.Load(); n != 0 {
		t.Errorf("Run returned with %d lookups in flight", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.dns.counts["error"]; n != 0 {
		t.Errorf("%d lookups cut short by the shutdown counted as failures", n)
	}
	for k, st := range d.dns.names {
		if st.LastError != "" || st.Failing {
			t.Errorf("%s after the shutdown: %+v", k, st)
		}
	}
}

// A resolve request whose client went away still completes its lookups:
// the client's leaving is no DNS failure of the names.
func TestResolveOutlivesClient(t *testing.T) {
	lookup := func(ctx context.Context, _ config.NameKey, _ config.Resolvers) DNSAnswer {
		if err := ctx.Err(); err != nil {
			return DNSAnswer{Err: err}
		}
		return DNSAnswer{Addrs: ips("198.18.0.11"), TTL: time.Minute}
	}
	d, _, _ := startFromFile(t, namedConfig, Options{DNSLookup: lookup})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/services/"+url.PathEscape("198.18.1.1:80/tcp")+"/resolve", nil)
	d.Handler().ServeHTTP(httptest.NewRecorder(), req)
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.dns.counts["error"]; n != 0 {
		t.Errorf("%d lookups of a resolve whose client left counted as failures", n)
	}
}
