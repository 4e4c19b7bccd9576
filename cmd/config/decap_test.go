package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The backend example parses to its decap section.
func TestParseBackendExample(t *testing.T) {
	c, _, err := Load("../../examples/backend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Decap{VIPs: []string{"198.18.1.1", "2001:2:0:1::1"}, GUEPort: 6080}
	if c.Interface != "eth0" || len(c.Services) != 0 || c.BGP != nil || !reflect.DeepEqual(c.Decap, want) {
		t.Errorf("example: %+v, decap %+v", c, c.Decap)
	}
}

// The decap section: defaults, canonical addresses, and field-named errors
// with their lines.
func TestParseDecap(t *testing.T) {
	c, err := ParseConfig([]byte("decap:\n  vips: [198.18.1.1, '2001:2:0::1', '::ffff:198.18.1.2']\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Decap{VIPs: []string{"198.18.1.1", "2001:2::1", "198.18.1.2"}, GUEPort: 6080}
	if !reflect.DeepEqual(c.Decap, want) {
		t.Fatalf("decap %+v, want %+v", c.Decap, want)
	}
	host := []netip.Addr{netip.MustParseAddr("198.18.0.5")}
	dp := c.Decap.DataPlane(host)
	if dp.GUEPort != 6080 || len(dp.VIPs) != 3 || !reflect.DeepEqual(dp.Addresses, host) {
		t.Errorf("data plane settings %+v", dp)
	}
	c, err = ParseConfig([]byte("decap: {vips: [198.18.1.1], gue_port: 7000, addresses: ['2001:2::5']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if dp := c.Decap.DataPlane(host); dp.GUEPort != 7000 || dp.Addresses[0] != netip.MustParseAddr("2001:2::5") {
		t.Errorf("data plane settings %+v", dp)
	}
	if c, err := ParseConfig([]byte("interface: eth0\n")); err != nil || c.Decap != nil {
		t.Errorf("no decap section: %+v, %v", c, err)
	}

	for _, tc := range []struct{ in, want string }{
		{"decap: {vips: [198.18.1.300]}\n", `line 1: decap.vips[0] "198.18.1.300": `},
		{"decap:\n  vips:\n    - 198.18.1.1\n    - 198.18.1.1\n", `line 4: decap.vips[1] "198.18.1.1": duplicate of vips[0]`},
		{"decap:\n  gue_port: 70000\n", `line 2: decap.gue_port 70000: out of range 1-65535`},
		{"decap:\n  vips: []\n  addresses: [eth0]\n", `line 3: decap.addresses[0] "eth0": `},
		{"decap: {vip: [198.18.1.1]}\n", `field "vip" not found in decap (did you mean "vips"?)`},
		{"decap: {vips: 198.18.1.1}\n", `decap.vips "198.18.1.1": want a list`},
	} {
		_, err := ParseConfig([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}
