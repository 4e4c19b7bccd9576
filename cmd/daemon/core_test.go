package daemon

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/maps/lb"
)

// startFromFile starts a daemon on the model data plane from the config
// file text cfg, as xlbd does.
func startFromFile(t *testing.T, cfg string, o Options) (*Daemon, *daemontest.DataPlane, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dp := daemontest.NewDataPlane(16)
	o.ConfigPath, o.StatePath, o.Interface, o.DataPlane = path, filepath.Join(dir, "state.json"), "eth0", dp
	d := New(o)
	t.Cleanup(d.Close)
	c, data, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(daemontest.NewMACs(), c, data); err != nil {
		t.Fatal(err)
	}
	return d, dp, path
}

func serviceKeys(d *Daemon) []string {
	var out []string
	for _, s := range d.status().Services {
		out = append(out, s.Service)
	}
	return out
}

const oneService = `
interface: eth0
services:
  - vip: 198.18.1.1
    port: 80
    backends: [{address: 198.18.0.11}]
`

// Reload (SIGHUP) applies the whole new file or nothing.
func TestReload(t *testing.T) {
	d, dp, path := startFromFile(t, oneService, Options{})
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(`
interface: eth0
conntrack: {tcp_timeout: 60s}
icmp_echo: false
icmp_forward: false
services:
  - {vip: 198.18.1.2, port: 53, protocol: udp, backends: [{address: 198.18.0.12}]}
  - {vip: 198.18.1.3, port: 80, backends: [{address: 198.18.0.13}]}
`)
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(serviceKeys(d), " "); got != "198.18.1.2:53/udp 198.18.1.3:80/tcp" {
		t.Errorf("after reload: %s", got)
	}
	if snap, _ := dp.Snapshot(); snap.Timeouts.TCP != time.Minute || len(snap.Services) != 2 {
		t.Errorf("data plane after reload: %d services, timeouts %+v", len(snap.Services), snap.Timeouts)
	}
	if got := dp.ICMP(); got != (lb.ICMP{NoEcho: true, NoForward: true}) {
		t.Errorf("icmp_echo and icmp_forward false not applied by the reload: %+v", got)
	}
	syncs := dp.Syncs()

	for _, bad := range []struct{ file, want string }{
		{"services:\n  - vip: 198.18.1.4\n    port: 80\n    sheduler: sh\n", `line 4: field "sheduler" not found in services[0]`},
		{"interface: eth1\n", `interface "eth1" differs from the running "eth0"`},
		{"services:\n  - {vip: 198.18.1.4, port: 80, backends: [{address: '2001:2::14'}]}\n", "a backend must be of the vip's address family"},
	} {
		write(bad.file)
		err := d.Reload()
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("reload of %q: %v, want %q", bad.file, err, bad.want)
		}
	}
	if got := strings.Join(serviceKeys(d), " "); got != "198.18.1.2:53/udp 198.18.1.3:80/tcp" || dp.Syncs() != syncs {
		t.Errorf("a rejected reload changed something: %s, %d syncs (was %d)", got, dp.Syncs(), syncs)
	}
}

// A change the data plane refuses is not acknowledged, not persisted and
// not the desired state.
func TestDataPlaneRefusalAppliesNothing(t *testing.T) {
	d, dp, _ := startFromFile(t, oneService, Options{})
	before, _ := os.ReadFile(d.statePath)
	dp.FailSync(errFull)
	s := config.Service{VIP: "198.18.1.9", Port: 80}
	if err := d.addService(s); err == nil || !strings.Contains(err.Error(), errFull.Error()) || statusOf(err) != 400 {
		t.Fatalf("add with the data plane refusing: %v (status %d)", err, statusOf(err))
	}
	after, _ := os.ReadFile(d.statePath)
	if string(before) != string(after) {
		t.Error("state file changed")
	}
	if got := strings.Join(serviceKeys(d), " "); got != "198.18.1.1:80/tcp" {
		t.Errorf("desired state: %s", got)
	}
}

var errFull = &reqError{code: 500, err: os.ErrDeadlineExceeded}

// Status and metrics show the data plane's counters.
func TestCountersInStatusAndMetrics(t *testing.T) {
	d, dp, _ := startFromFile(t, oneService, Options{Version: "v9"})
	key := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	be := netip.MustParseAddr("198.18.0.11")
	dp.SetCounters(key, lb.ServiceCounters{Packets: 10, Bytes: 1000, NewFlows: 3, DropNoBackend: 2},
		map[netip.Addr]lb.BackendCounters{be: {Packets: 8, Bytes: 800, NewFlows: 3}})
	dp.SetActive(key, be, 2)
	dp.SetGlobal(lb.GlobalCounters{RxPackets: 50, TxPackets: 8, PassNotVIP: 40, PassIPv6Ext: 1, DropNoBackend: 2})

	st := d.status()
	s := st.Services[0]
	b := s.Backends[0]
	if s.Packets != 10 || s.Bytes != 1000 || s.NewFlows != 3 || s.DropNoBackend != 2 || b.Packets != 8 || b.NewFlows != 3 || b.ActiveFlows != 2 || st.Version != "v9" {
		t.Errorf("status: %+v", st)
	}
	m := metricsText(d)
	for _, want := range []string{
		`xlb_build_info{goversion="` + runtime.Version() + `",version="v9"} 1`,
		"xlb_received_packets_total 50\n",
		"xlb_forwarded_packets_total 8\n",
		`xlb_passed_packets_total{reason="not_service"} 40` + "\n",
		`xlb_passed_packets_total{reason="ipv6_extension_header"} 1` + "\n",
		`xlb_dropped_packets_total{reason="no_backend"} 2` + "\n",
		`xlb_service_packets_total{service="198.18.1.1:80/tcp"} 10` + "\n",
		`xlb_service_dropped_packets_total{service="198.18.1.1:80/tcp"} 2` + "\n",
		`xlb_backend_packets_total{backend="198.18.0.11",service="198.18.1.1:80/tcp"} 8` + "\n",
		`xlb_backend_active_flows{backend="198.18.0.11",service="198.18.1.1:80/tcp"} 2` + "\n",
		`xlb_backend_up{backend="198.18.0.11",service="198.18.1.1:80/tcp"} 1` + "\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// The flows endpoint lists the data plane's entries up to its limit.
func TestFlowsEndpoint(t *testing.T) {
	d, srv := newTestDaemon(t)
	dp := d.dp.(*daemontest.DataPlane)
	var flows []lb.FlowEntry
	for i := range 5 {
		flows = append(flows, lb.FlowEntry{Key: lb.FlowKey{Src: netip.AddrPortFrom(netip.MustParseAddr("198.18.2.10"), uint16(40000+i)),
			Dst: netip.MustParseAddrPort("198.18.1.1:80"), Proto: lb.TCP}, Backend: netip.MustParseAddr("198.18.0.11"), Idle: time.Second})
	}
	dp.SetFlows(flows)
	code, body := call(t, srv, "GET", "/v1/flows?limit=3", "")
	var got []api.Flow
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || len(got) != 3 {
		t.Fatalf("flows: %d %s", code, body)
	}
	if got[0] != (api.Flow{Protocol: "tcp", Client: "198.18.2.10:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.11", IdleSeconds: 1}) {
		t.Errorf("flow: %+v", got[0])
	}
	for _, bad := range []string{"0", "x", "1000001"} {
		if code, body := call(t, srv, "GET", "/v1/flows?limit="+bad, ""); code != 400 || !strings.Contains(body, `limit \"`+bad+`\"`) {
			t.Errorf("limit %s: %d %s", bad, code, body)
		}
	}
}

// A restarted daemon starts the backends the re-adopted data plane had
// usable up, so its restart takes none out while the checks run again.
func TestAdoptedBackendsStartUp(t *testing.T) {
	dp := daemontest.NewDataPlane(16)
	key := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	up, down := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	if err := dp.Sync([]lb.Service{{Key: key, Backends: []lb.Backend{
		{Addr: up, MAC: daemontest.MAC(up), Weight: 1},
		{Addr: down, MAC: daemontest.MAC(down), Weight: 1, Down: true},
	}}}); err != nil {
		t.Fatal(err)
	}
	d := New(Options{StatePath: filepath.Join(t.TempDir(), "s.json"), DataPlane: dp, Adopted: true, HealthClock: frozenClock{}})
	t.Cleanup(d.Close)
	cfg, err := config.ParseConfig([]byte(`
services:
  - vip: 198.18.1.1
    port: 80
    health: {type: tcp}
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(daemontest.NewMACs(), cfg, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b := backendStatus(d, "198.18.0.11"); b.State != api.StateUp {
		t.Errorf("backend usable before the restart: %+v", b)
	}
	if b := backendStatus(d, "198.18.0.12"); b.State != api.StateDown {
		t.Errorf("backend down before the restart: %+v", b)
	}
	// Only the first commit inherits: a backend added later starts down.
	if err := d.addBackend(key, config.Backend{Address: "198.18.0.13"}); err != nil {
		t.Fatal(err)
	}
	if b := backendStatus(d, "198.18.0.13"); b.State != api.StateDown {
		t.Errorf("backend added after the restart: %+v", b)
	}
}
