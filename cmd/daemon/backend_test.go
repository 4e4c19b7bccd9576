package daemon

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/maps/lb"
)

// fakeDecap is a Decapsulator in memory; fail makes Set fail.
type fakeDecap struct {
	c    lb.DecapConfig
	n    lb.DecapCounters
	fail bool
}

func (f *fakeDecap) Set(c lb.DecapConfig) error {
	if f.fail {
		return errors.New("map full")
	}
	f.c = c
	return nil
}
func (f *fakeDecap) Config() (lb.DecapConfig, error)     { return f.c, nil }
func (f *fakeDecap) Counters() (lb.DecapCounters, error) { return f.n, nil }

func TestBackendRole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xlb.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host := netip.MustParseAddr("198.18.0.5")
	fd := &fakeDecap{n: lb.DecapCounters{RxPackets: 9,
		Decap: map[lb.DecapKind]uint64{{Mode: "gue", Outer: "ipv4", Inner: "ipv6"}: 4},
		Pass:  map[string]uint64{"not_vip": 5}}}
	b := NewBackend(BackendOptions{ConfigPath: path, Interface: "eth9", XDPMode: "native", Version: "t", Decap: fd,
		InterfaceAddrs: func() ([]netip.Addr, error) { return []netip.Addr{host}, nil }})

	write("decap: {vips: [198.18.1.1, '2001:2::1']}\n")
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if fd.c.GUEPort != 6080 || len(fd.c.VIPs) != 2 || len(fd.c.Addresses) != 1 || fd.c.Addresses[0] != host {
		t.Fatalf("applied %+v", fd.c)
	}
	// Refused whole: the settings stay.
	for _, bad := range []string{
		"decap: {vips: [198.18.1.1], gue_port: 0x1ffff}\n",
		"decap: {vips: [198.18.1.1]}\nservices: [{vip: 198.18.1.1, port: 80}]\n",
		"interface: eth0\ndecap: {vips: [198.18.1.1]}\n",
	} {
		write(bad)
		if err := b.Reload(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	write("decap: {vips: [198.18.1.2], addresses: ['2001:2::9'], gue_port: 7000}\n")
	fd.fail = true
	if err := b.Reload(); err == nil || len(fd.c.VIPs) != 2 {
		t.Errorf("a failed Set: %v, settings %+v", err, fd.c)
	}
	fd.fail = false
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if fd.c.GUEPort != 7000 || fd.c.Addresses[0] != netip.MustParseAddr("2001:2::9") {
		t.Errorf("applied %+v", fd.c)
	}

	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if st.Role != "backend" || st.Decap == nil || st.Decap.RxPackets != 9 || st.Decap.Decapsulated["gue 6in4"] != 4 ||
		st.Decap.Passed["not_vip"] != 5 || st.Decap.VIPs[0] != "198.18.1.2" || st.Decap.GUEPort != 7000 {
		t.Errorf("status %+v decap %+v", st, st.Decap)
	}
	resp, err = http.Get(srv.URL + "/v1/services")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("services in the backend role: %d", resp.StatusCode)
	}

	m := scrape(t, b.MetricsHandler())
	for _, want := range []string{
		`xlb_decap_received_packets_total 9`,
		`xlb_decap_packets_total{inner="ipv6",mode="gue",outer="ipv4"} 4`,
		`xlb_decap_passed_packets_total{reason="not_vip"} 5`,
		`xlb_decap_passed_packets_total{reason="malformed"} 0`,
		`# TYPE xlb_decap_packets_total counter`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}
