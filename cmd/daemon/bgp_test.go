package daemon

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/maps/lb"
)

const bgpSection = `
bgp:
  asn: 65010
  peers: [{address: 198.18.0.1, asn: 65000, hold_time: 3s}]
`

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// startBGP starts a daemon from cfg with a recording speaker; the
// interface has 198.18.0.3 and 2001:2::3.
func startBGP(t *testing.T, cfg string, o Options) (*Daemon, *daemontest.Announcer, string) {
	t.Helper()
	a := &daemontest.Announcer{}
	o.BGP, o.InterfaceAddrs = a, addrs("198.18.0.3", "fe80::1", "2001:2::3")
	d, _, path := startFromFile(t, cfg, o)
	return d, a, path
}

// A VIP is announced while one of its services has a usable backend, with
// the interface's addresses as router ID and next hops by default.
func TestBGPAnnouncesServedVIPs(t *testing.T) {
	d, a, _ := startBGP(t, `
services:
  - {vip: 198.18.1.1, port: 80, backends: [{address: 198.18.0.11}]}
  - {vip: 198.18.1.2, port: 80, backends: []}
  - {vip: "2001:2:0:1::1", port: 80, backends: [{address: "2001:2::11"}]}
`+bgpSection, Options{})
	if got := a.Announced(); !slices.Equal(got, addrs("198.18.1.1", "2001:2:0:1::1")) {
		t.Errorf("announced %v", got)
	}
	c := a.Config()
	if c.RouterID != netip.MustParseAddr("198.18.0.3") || c.NextHop4 != c.RouterID || c.NextHop6 != netip.MustParseAddr("2001:2::3") || !c.GracefulRestart {
		t.Errorf("speaker config: %+v", c)
	}
	st := d.status()
	if !st.BGP || !st.Services[0].Announced || st.Services[1].Announced {
		t.Errorf("status: %+v", st)
	}

	// Drain the only backend: no usable backend, the VIP goes.
	k := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	if err := d.drainBackend(k, netip.MustParseAddr("198.18.0.11")); err != nil {
		t.Fatal(err)
	}
	if got := a.Announced(); !slices.Equal(got, addrs("2001:2:0:1::1")) {
		t.Errorf("after the drain: %v", got)
	}
	// Its last service deleted: still not announced.
	if err := d.delService(k); err != nil {
		t.Fatal(err)
	}
	if got := a.Announced(); !slices.Equal(got, addrs("2001:2:0:1::1")) {
		t.Errorf("after the delete: %v", got)
	}
}

// A backend whose MAC is unknown is no usable backend; a neighbour change
// that resolves it announces the VIP on the next reconcile.
func TestBGPFollowsReconcile(t *testing.T) {
	a := &daemontest.Announcer{}
	d, srv := newDaemonWith(t, Options{BGP: a, InterfaceAddrs: addrs("198.18.0.3")}, "198.18.0.11")
	if code, out := call(t, srv, "PUT", "/v1/bgp", `{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000}]}`); code != 200 {
		t.Fatalf("PUT /v1/bgp: %d %s", code, out)
	}
	if code, out := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	if got := a.Announced(); len(got) != 0 {
		t.Errorf("announced with the only backend's MAC unknown: %v", got)
	}
	d.mu.Lock()
	d.neigh.(*daemontest.MACs).SetKnown(netip.MustParseAddr("198.18.0.11"), true)
	d.mu.Unlock()
	d.Kick()
	waitFor(t, "the VIP announced", func() bool { return slices.Equal(a.Announced(), addrs("198.18.1.1")) })

	// A planned stop withdraws, and a reconcile does not bring it back.
	if err := d.Withdraw(); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	d.reconcile()
	if got := a.Announced(); len(got) != 0 {
		t.Errorf("announced after Withdraw: %v", got)
	}
}

// With vip_policy all, a VIP shared by two services goes out only while
// both have a usable backend; any (the default) while one has.
func TestBGPVIPPolicy(t *testing.T) {
	svcs := `
services:
  - {vip: 198.18.1.1, port: 80, backends: [{address: 198.18.0.11}]}
  - {vip: 198.18.1.1, port: 443, backends: []}
`
	_, a, _ := startBGP(t, svcs+bgpSection, Options{})
	if got := a.Announced(); !slices.Equal(got, addrs("198.18.1.1")) {
		t.Errorf("any: %v", got)
	}
	_, a, _ = startBGP(t, svcs+bgpSection+"  vip_policy: all\n", Options{})
	if got := a.Announced(); len(got) != 0 {
		t.Errorf("all, one service without backends: %v", got)
	}
	_, a, _ = startBGP(t, svcs+bgpSection+"  vip_policy: all\n  vips: [{vip: 198.18.1.1, policy: any}]\n", Options{})
	if got := a.Announced(); !slices.Equal(got, addrs("198.18.1.1")) {
		t.Errorf("all, overridden by the vip's any: %v", got)
	}
}

// Bad bgp settings through the API are refused with the field and value,
// and nothing changes: not the speaker, not the state file.
func TestBGPAPIAllOrNothing(t *testing.T) {
	a := &daemontest.Announcer{}
	d, srv := newDaemonWith(t, Options{BGP: a, InterfaceAddrs: addrs("198.18.0.3")})
	for _, c := range []struct{ body, want string }{
		{`{"asn":0,"peers":[{"address":"198.18.0.1","asn":65000}]}`, `bgp: asn 0: not an AS number`},
		{`{"asn":65010,"peers":[{"address":"198.18.0.300","asn":65000}]}`, `bgp: peers[0].address \"198.18.0.300\": not an IP address`},
		{`{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000,"hold_time":"2s"}]}`, `bgp: peers[0].hold_time 2s: out of range 3s-18h12m15s`},
		{`{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000,"hold_tme":"9s"}]}`, `unknown field \"hold_tme\"`},
	} {
		before, _ := os.ReadFile(d.statePath)
		code, out := call(t, srv, "PUT", "/v1/bgp", c.body)
		if code != 400 || !strings.Contains(out, c.want) {
			t.Errorf("PUT %s: %d %s\nwant 400 with %q", c.body, code, out, c.want)
		}
		after, _ := os.ReadFile(d.statePath)
		if string(before) != string(after) || a.Running() {
			t.Errorf("PUT %s: refused, but something changed", c.body)
		}
	}
	// The speaker refusing is refused too, and nothing is kept.
	a.FailApply(os.ErrPermission)
	if code, out := call(t, srv, "PUT", "/v1/bgp", `{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000}]}`); code != 400 || !strings.Contains(out, "permission denied") {
		t.Errorf("speaker refusing: %d %s", code, out)
	}
	if d.bgpStatus(t.Context()).Enabled {
		t.Error("bgp enabled after the speaker refused")
	}
	a.FailApply(nil)
	code, out := call(t, srv, "PUT", "/v1/bgp", `{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000,"password":"s3cret"}]}`)
	if code != 200 || !strings.Contains(out, `"enabled": true`) || strings.Contains(out, "s3cret") {
		t.Errorf("PUT: %d %s", code, out)
	}
	state, _ := os.ReadFile(d.statePath)
	if !strings.Contains(string(state), `"asn": 65010`) {
		t.Errorf("state file lacks the bgp section:\n%s", state)
	}
	if code, out := call(t, srv, "DELETE", "/v1/bgp", ""); code != 200 || !strings.Contains(out, `"enabled": false`) || a.Running() {
		t.Errorf("DELETE: %d %s", code, out)
	}
}

// A reload with a bad bgp section changes nothing, services included.
func TestBGPReloadAllOrNothing(t *testing.T) {
	d, a, path := startBGP(t, oneService+bgpSection, Options{})
	if err := os.WriteFile(path, []byte(oneService+"  - {vip: 198.18.1.9, port: 80}\n"+strings.Replace(bgpSection, "hold_time: 3s", "hold_time: 1s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "bgp.peers[0].hold_time 1s") {
		t.Fatalf("reload: %v", err)
	}
	if got := strings.Join(serviceKeys(d), " "); got != "198.18.1.1:80/tcp" {
		t.Errorf("services after the refused reload: %s", got)
	}
	if c := a.Config(); c.Peers[0].HoldTime.Seconds() != 3 {
		t.Errorf("speaker after the refused reload: %+v", c)
	}
}

// The scheduler table read through the API names backends by address, so
// two nodes compare it directly.
func TestTableEndpoint(t *testing.T) {
	_, srv := newTestDaemon(t)
	if code, out := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":2}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, out)
	}
	code, out := call(t, srv, "GET", svcURL("198.18.1.1:80/tcp")+"/table", "")
	if code != 200 || !strings.Contains(out, `"198.18.0.12": 167`) || !strings.Contains(out, `"198.18.0.11": 84,`) || !strings.Contains(out, `"sha256": "`) || strings.Contains(out, `"slots"`) {
		t.Errorf("table: %d %s", code, out)
	}
	if code, out := call(t, srv, "GET", svcURL("198.18.1.9:80/tcp")+"/table", ""); code != 404 {
		t.Errorf("table of no service: %d %s", code, out)
	}
}
