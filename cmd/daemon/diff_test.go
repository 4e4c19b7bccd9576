package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
)

const twoServices = `
interface: eth0
services:
  - vip: 198.18.1.1
    port: 80
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12, weight: 3}, {address: 198.18.0.13}]
  - vip: 198.18.1.2
    port: 53
    protocol: udp
    backends: [{address: 198.18.0.21}]
`

func postDiff(t *testing.T, d *Daemon, text string) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(api.ConfigFile{Config: text})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	d.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/config/diff", strings.NewReader(string(body))))
	return w.Code, w.Body.Bytes()
}

// TestConfigDiff: POST /v1/config/diff answers what a reload would change,
// sorted, and changes nothing.
func TestConfigDiff(t *testing.T) {
	d, dp, _ := startFromFile(t, twoServices, Options{})
	before := dp.Syncs()
	code, body := postDiff(t, d, `
interface: eth0
services:
  - vip: 198.18.1.1
    port: 80
    scheduler: round-robin
    backends: [{address: 198.18.0.13, weight: 2}, {address: 198.18.0.12, weight: 3}, {address: 198.18.0.10}, {address: 198.18.0.9, weight: 0}]
  - vip: 198.18.1.3
    port: 443
    backends: [{address: 198.18.0.31}]
  - vip: 2001:2:0:1::1
    port: 443
    backends: [{address: 2001:2::31}]
`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var got api.ConfigDiff
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := api.ConfigDiff{
		Added:   []string{"198.18.1.3:443/tcp", "[2001:2:0:1::1]:443/tcp"},
		Removed: []string{"198.18.1.2:53/udp"},
		Changed: []api.ServiceDiff{{
			Service:         "198.18.1.1:80/tcp",
			Settings:        []api.Change{{Field: "scheduler", From: "maglev", To: "round-robin"}},
			BackendsAdded:   []api.BackendWeight{{Address: "198.18.0.9", Weight: 0}, {Address: "198.18.0.10", Weight: 1}},
			BackendsRemoved: []api.BackendWeight{{Address: "198.18.0.11", Weight: 1}},
			BackendsChanged: []api.BackendChange{{Address: "198.18.0.13", From: 1, To: 2}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diff\n%+v\nwant\n%+v", got, want)
	}
	if after := dp.Syncs(); after != before {
		t.Errorf("a diff synced the data plane (%d syncs, %d before)", after, before)
	}
	if keys := serviceKeys(d); len(keys) != 2 {
		t.Errorf("a diff changed the desired state: %v", keys)
	}

	// The same file: nothing to do.
	code, body = postDiff(t, d, twoServices)
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil || !got.Empty() || got.Unchanged != 2 {
		t.Errorf("same file: %d %s", code, body)
	}
}

// TestConfigDiffBad: a bad file gets the reload's error, naming the field
// and the value, with 400, and changes nothing.
func TestConfigDiffBad(t *testing.T) {
	d, dp, _ := startFromFile(t, twoServices, Options{})
	before := dp.Syncs()
	for _, c := range []struct{ name, text, want string }{
		{"weight", "services: [{vip: 198.18.1.1, port: 80, backends: [{address: 198.18.0.11, weight: 70000}]}]", "services[0].backends[0].weight 70000"},
		{"health", "services: [{vip: 198.18.1.1, port: 80, health: {type: tcp, interval: 1s, timeout: 5s}, backends: []}]",
			"services[0].health.timeout 5s: must be less than interval 1s"},
		{"interface", "interface: eth9", `interface "eth9" differs from the running "eth0"`},
		{"bgp without speaker", "bgp: {asn: 65000, router_id: 198.18.0.3, next_hop: 198.18.0.3, peers: [{address: 198.18.0.1, asn: 65001}]}", "no BGP speaker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := postDiff(t, d, c.text)
			var e api.Error
			if err := json.Unmarshal(body, &e); code != http.StatusBadRequest || err != nil || !strings.Contains(e.Error, c.want) {
				t.Errorf("%d %s, want 400 and %q", code, body, c.want)
			}
		})
	}
	if after := dp.Syncs(); after != before {
		t.Errorf("a bad diff changed the data plane")
	}
	w := httptest.NewRecorder()
	d.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/config/diff", strings.NewReader(`{"cfg": ""}`)))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "cfg") {
		t.Errorf("unknown request field: %d %s", w.Code, w.Body)
	}
}

// TestConfigDiffBGP: a bgp change is shown with passwords hidden, and a
// password-only change is named as one.
func TestConfigDiffBGP(t *testing.T) {
	d, _, _ := startBGP(t, twoServices+`
bgp:
  asn: 65010
  peers: [{address: 198.18.0.1, asn: 65000, password: secret1}]
`, Options{})
	for _, c := range []struct{ bgp, field, notFrom, notTo string }{
		{"  asn: 65011\n  peers: [{address: 198.18.0.1, asn: 65000, password: secret1}]\n", "bgp", `"asn":65011`, `"asn":65010`},
		{"  asn: 65010\n  peers: [{address: 198.18.0.1, asn: 65000, password: secret2}]\n", "bgp (a peer password)", "", ""},
	} {
		code, body := postDiff(t, d, twoServices+"bgp:\n"+c.bgp)
		var got api.ConfigDiff
		if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil || got.BGP == nil {
			t.Fatalf("%d %s", code, body)
		}
		if got.BGP.Field != c.field || strings.Contains(string(body), "secret") || !strings.Contains(got.BGP.From, `"password":"(set)"`) ||
			(c.notFrom != "" && (strings.Contains(got.BGP.From, c.notFrom) || strings.Contains(got.BGP.To, c.notTo))) {
			t.Errorf("bgp diff %+v", got.BGP)
		}
		if len(got.Added)+len(got.Removed)+len(got.Changed) != 0 {
			t.Errorf("services changed: %s", body)
		}
	}
	code, body := postDiff(t, d, twoServices)
	var got api.ConfigDiff
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil || got.BGP == nil || got.BGP.To != "none" {
		t.Errorf("bgp removed: %d %s", code, body)
	}
}
