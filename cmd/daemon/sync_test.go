package daemon

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
)

// putBackends PUTs body to the service's backend set (query q appended)
// and returns the status and, for a 200, the decoded answer.
func putBackends(t *testing.T, call func(method, path, body string) (int, string), key, q, body string) (int, api.BackendSync, string) {
	t.Helper()
	code, out := call("PUT", svcURL(key)+"/backends"+q, body)
	var res api.BackendSync
	if code == 200 {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("answer %s: %v", out, err)
		}
	}
	return code, res, out
}

func bw(addr string, w uint32) api.BackendWeight { return api.BackendWeight{Address: addr, Weight: w} }

// A bulk sync adds, removes, reweights and keeps in one commit; the
// backends that stay keep their health state (their checks are not
// restarted), new ones start down until they pass their checks; the same
// sync again changes nothing; a bad set changes nothing.
func TestBulkSync(t *testing.T) {
	p := &probes{ok: map[netip.Addr]bool{}}
	d, srv := newProbedDaemon(t, p.prober)
	do := func(method, path, body string) (int, string) { return call(t, srv, method, path, body) }
	const key = "198.18.1.1:80/tcp"
	for _, a := range []string{"198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"} {
		p.set(a, true)
	}
	body := `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12"},{"address":"198.18.0.13"}],
		"health":{"type":"tcp","interval":"100ms","timeout":"50ms","rise":3,"fall":2}}`
	if code, out := call(t, srv, "POST", "/v1/services", body); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	upAll := func(addrs ...string) func() bool {
		return func() bool {
			for _, a := range addrs {
				if b := backendStatus(d, a); b.State != api.StateUp || !b.InTable {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "three backends up", upAll("198.18.0.11", "198.18.0.12", "198.18.0.13"))
	since11, since12 := backendStatus(d, "198.18.0.11").Since, backendStatus(d, "198.18.0.12").Since

	// Keep .11, reweight .12, remove .13, add .14 (a plain address).
	set := `{"backends":[{"address":"198.18.0.14"},{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":3}]}`
	code, res, out := putBackends(t, do, key, "", set)
	if code != 200 {
		t.Fatalf("sync: %d %s", code, out)
	}
	want := api.BackendSync{Service: key, Added: []api.BackendWeight{bw("198.18.0.14", 1)}, Removed: []api.BackendWeight{bw("198.18.0.13", 1)},
		Changed: []api.BackendChange{{Address: "198.18.0.12", From: 1, To: 3}}, Kept: []api.BackendWeight{bw("198.18.0.11", 1)}, Applied: true}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("sync answer:\n got %+v\nwant %+v", res, want)
	}
	// Read at once, before any new check result: the kept ones are up with
	// their old since, the new one waits for its checks.
	for _, a := range []struct {
		addr  string
		since time.Time
	}{{"198.18.0.11", since11}, {"198.18.0.12", since12}} {
		if b := backendStatus(d, a.addr); b.State != api.StateUp || !b.InTable || !b.Since.Equal(a.since) {
			t.Errorf("kept backend %s after the sync: %+v, want up since %v (its state kept)", a.addr, b, a.since)
		}
	}
	if b := backendStatus(d, "198.18.0.14"); b.State != api.StateDown || b.InTable {
		t.Errorf("added backend: %+v, want down until it passes its checks", b)
	}
	if b := backendStatus(d, "198.18.0.13"); b.Address != "" {
		t.Errorf("removed backend still listed: %+v", b)
	}
	if b := backendStatus(d, "198.18.0.12"); b.Weight != 3 {
		t.Errorf("reweighted backend: %+v", b)
	}
	inst, _ := installed(t, d, key)
	var got []string
	for _, b := range inst.Backends {
		got = append(got, b.Addr.String())
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "198.18.0.11 198.18.0.12 198.18.0.14" {
		t.Errorf("data plane holds %v", got)
	}
	waitFor(t, "the added backend up", upAll("198.18.0.14"))
	since14 := backendStatus(d, "198.18.0.14").Since

	// The same set again (in another order, weights spelled out): nothing
	// to change, nothing committed, no state reset.
	stateBefore, _ := os.ReadFile(d.statePath)
	syncsBefore := -1
	if dp, ok := d.dp.(*daemontest.DataPlane); ok {
		syncsBefore = dp.Syncs()
	}
	again := `{"backends":[{"address":"198.18.0.11","weight":1},{"address":"198.18.0.12","weight":3},{"address":"198.18.0.14"}]}`
	code, res, out = putBackends(t, do, key, "", again)
	want = api.BackendSync{Service: key, Added: []api.BackendWeight{}, Removed: []api.BackendWeight{}, Changed: []api.BackendChange{},
		Kept: []api.BackendWeight{bw("198.18.0.11", 1), bw("198.18.0.12", 3), bw("198.18.0.14", 1)}}
	if code != 200 || !reflect.DeepEqual(res, want) {
		t.Fatalf("repeated sync: %d %s, want %+v", code, out, want)
	}
	if dp, ok := d.dp.(*daemontest.DataPlane); ok && dp.Syncs() != syncsBefore {
		t.Errorf("repeated sync synced the data plane: %d syncs, was %d", dp.Syncs(), syncsBefore)
	}
	if after, _ := os.ReadFile(d.statePath); string(after) != string(stateBefore) {
		t.Error("repeated sync rewrote the state file")
	}
	for addr, since := range map[string]time.Time{"198.18.0.11": since11, "198.18.0.12": since12, "198.18.0.14": since14} {
		if b := backendStatus(d, addr); b.State != api.StateUp || !b.Since.Equal(since) {
			t.Errorf("after the repeated sync %s: %+v, want up since %v", addr, b, since)
		}
	}

	// Bad sets: refused whole, the error names the field and the value.
	weights := func() string {
		var out []string
		for _, b := range serviceStatus(d, key).Backends {
			out = append(out, fmt.Sprintf("%s=%d", b.Address, b.Weight))
		}
		return strings.Join(out, " ")
	}
	before := weights()
	for _, bad := range []struct{ path, body, want string }{
		{key, `{"backends":[{"address":"198.18.0.15"},{"address":"198.18.0.300"}]}`, `backends[1].address \"198.18.0.300\"`},
		{key, `{"backends":[{"address":"198.18.0.15"},{"address":"198.18.0.15"}]}`, `duplicate backend 198.18.0.15`},
		{key, `{"backends":[{"address":"198.18.0.15","weight":70000}]}`, `backends[0].weight 70000`},
		{key, `{"backends":[{"address":"2001:2::15"}]}`, `backends[0].address \"2001:2::15\"`},
		{key, `{"backends":[{"address":"198.18.0.15","wieght":2}]}`, `unknown field \"wieght\"`},
		{key, `{"backends":[{"address":"198.18.0.15","weight":"x"}]}`, `backends[0].weight`},
		{key, `{}`, `backends: missing`},
		{key, `[{"address":"198.18.0.15"}]`, `want a JSON object`},
		{key, `{"backends":[]}`, `no backend (set allow_empty`},
		{key + "?allow_empty=maybe", `{"backends":[]}`, `query parameter allow_empty \"maybe\"`},
	} {
		code, _, out := putBackends(t, do, strings.SplitN(bad.path, "?", 2)[0], queryOf(bad.path), bad.body)
		if code != 400 || !strings.Contains(out, bad.want) {
			t.Errorf("sync %s: %d %s, want 400 naming %s", bad.body, code, out, bad.want)
		}
	}
	if code, _, out := putBackends(t, do, "198.18.1.9:80/tcp", "", `{"backends":[{"address":"198.18.0.15"}]}`); code != 404 {
		t.Errorf("sync of a missing service: %d %s", code, out)
	}
	if after := weights(); after != before {
		t.Errorf("a refused sync changed the backends: %s, was %s", after, before)
	}

	// A dry run answers the change and applies nothing.
	code, res, out = putBackends(t, do, key, "?dry_run=true", `{"backends":[{"address":"198.18.0.11"}]}`)
	if code != 200 || res.Applied || !res.DryRun || len(res.Removed) != 2 || len(res.Kept) != 1 {
		t.Errorf("dry run: %d %s", code, out)
	}
	if len(serviceStatus(d, key).Backends) != 3 {
		t.Errorf("a dry run changed the backends: %+v", serviceStatus(d, key).Backends)
	}

	// Empty on purpose: the query parameter or the body field.
	code, res, out = putBackends(t, do, key, "?allow_empty=1", `{"backends":[]}`)
	if code != 200 || !res.Applied || len(res.Removed) != 3 || len(serviceStatus(d, key).Backends) != 0 {
		t.Errorf("allow_empty sync: %d %s", code, out)
	}
	if code, _, out := putBackends(t, do, key, "", `{"backends":[{"address":"198.18.0.11"}]}`); code != 200 {
		t.Errorf("refill: %d %s", code, out)
	}
	if code, res, out := putBackends(t, do, key, "", `{"backends":[],"allow_empty":true}`); code != 200 || len(res.Removed) != 1 {
		t.Errorf("allow_empty in the body: %d %s", code, out)
	}
}

func queryOf(path string) string {
	if _, q, ok := strings.Cut(path, "?"); ok {
		return "?" + q
	}
	return ""
}

// A sync is kept in the state file like every API change: a restart with
// the config file unchanged comes back with the synced set.
func TestBulkSyncPersists(t *testing.T) {
	d, _, path := startFromFile(t, oneService, Options{})
	key := mustKey(t, "198.18.1.1:80/tcp")
	set := []config.Backend{{Address: "198.18.0.12"}, {Address: "198.18.0.13"}}
	if _, err := d.syncBackends(key, set, false, false); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d2 := New(Options{ConfigPath: path, StatePath: d.statePath, Interface: "eth0", DataPlane: daemontest.NewDataPlane(16)})
	t.Cleanup(d2.Close)
	c, data, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(daemontest.NewMACs(), c, data); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range d2.status().Services[0].Backends {
		got = append(got, b.Address)
	}
	if strings.Join(got, " ") != "198.18.0.12 198.18.0.13" {
		t.Errorf("after a restart: %v, want the synced set", got)
	}
}
