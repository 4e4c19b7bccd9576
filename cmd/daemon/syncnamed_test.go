package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
)

// A bulk sync of a service with backends named by DNS: a name is an entry
// of the set like an address, kept, added or removed as a whole
// (NAME/FAMILY, as apply --dry-run shows it).
func TestBulkSyncNamed(t *testing.T) {
	_, srv := newDaemonWith(t, Options{DNSLookup: newFakeDNS().lookup})
	do := func(method, path, body string) (int, string) { return call(t, srv, method, path, body) }
	const key = "198.18.1.1:80/tcp"
	if code, out := do("POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"name":"web.pool.example"},{"address":"198.18.0.11"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	for _, tc := range []struct {
		set  string
		want api.BackendSync
	}{
		{`[{"address":"198.18.0.11"},{"name":"web.pool.example"}]`, api.BackendSync{Service: key, Added: []api.BackendWeight{}, Removed: []api.BackendWeight{}, Changed: []api.BackendChange{},
			Kept: []api.BackendWeight{bw("198.18.0.11", 1), bw("web.pool.example/ipv4", 1)}}},
		{`[{"name":"web.pool.example"},{"name":"b.pool.example","weight":2},{"address":"198.18.0.12"}]`, api.BackendSync{Service: key,
			Added:   []api.BackendWeight{bw("198.18.0.12", 1), bw("b.pool.example/ipv4", 2)},
			Removed: []api.BackendWeight{bw("198.18.0.11", 1)}, Changed: []api.BackendChange{},
			Kept: []api.BackendWeight{bw("web.pool.example/ipv4", 1)}, Applied: true}},
		{`[{"address":"198.18.0.12"}]`, api.BackendSync{Service: key, Added: []api.BackendWeight{},
			Removed: []api.BackendWeight{bw("b.pool.example/ipv4", 2), bw("web.pool.example/ipv4", 1)}, Changed: []api.BackendChange{},
			Kept: []api.BackendWeight{bw("198.18.0.12", 1)}, Applied: true}},
	} {
		code, res, out := putBackends(t, do, key, "", `{"backends":`+tc.set+`}`)
		if code != 200 || !reflect.DeepEqual(res, tc.want) {
			t.Errorf("sync %s: %d %s\n got %+v\nwant %+v", tc.set, code, out, res, tc.want)
		}
	}
}

// A change that is not committed leaves its names untracked: they are not
// looked up or shown.
func TestFailedChangeTracksNoName(t *testing.T) {
	d, srv := newDaemonWith(t, Options{DNSLookup: newFakeDNS().lookup})
	dir := filepath.Dir(d.statePath)
	d.statePath = filepath.Join(dir, "missing", "state.json")
	if err := os.WriteFile(filepath.Join(dir, "missing"), []byte("a file, not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"name":"web.pool.example"}]}`)
	if code != 500 {
		t.Fatalf("add: got %d %s, want 500 (state write fails)", code, body)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dns.names) != 0 {
		t.Errorf("names tracked after a failed change: %v", d.dns.names)
	}
}

// A set whose names give no address yet would leave the service with no
// backend: refused as an empty set is, naming the names, unless
// allow_empty.
func TestBulkSyncUnresolvedNames(t *testing.T) {
	_, srv := newDaemonWith(t, Options{DNSLookup: newFakeDNS().lookup})
	do := func(method, path, body string) (int, string) { return call(t, srv, method, path, body) }
	const key = "198.18.1.1:80/tcp"
	if code, out := do("POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	for _, q := range []string{"", "?dry_run=true"} {
		code, _, out := putBackends(t, do, key, q, `{"backends":[{"name":"notyet.example"}]}`)
		if code != 400 || !strings.Contains(out, "allow_empty") || !strings.Contains(out, "notyet.example (ipv4)") {
			t.Errorf("sync%s of an unresolved name alone: %d %s, want 400 naming it and allow_empty", q, code, out)
		}
	}
	if code, out := do("GET", "/v1/services", ""); code != 200 || !strings.Contains(out, "198.18.0.11") || strings.Contains(out, "notyet") {
		t.Fatalf("services after the refused sync: %d %s", code, out)
	}
	if code, res, out := putBackends(t, do, key, "?allow_empty=true", `{"backends":[{"name":"notyet.example"}]}`); code != 200 || !res.Applied {
		t.Errorf("sync with allow_empty: %d %s", code, out)
	}
	if code, res, out := putBackends(t, do, key, "", `{"backends":[{"name":"notyet.example"},{"address":"198.18.0.12"}]}`); code != 200 || !res.Applied {
		t.Errorf("sync of a name and an address: %d %s", code, out)
	}
}
