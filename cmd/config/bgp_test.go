package config

import (
	"strings"
	"testing"
	"time"
)

const bgpBase = `
interface: eth0
bgp:
  asn: 65010
  router_id: 198.18.0.3
  next_hop: 198.18.0.3
  graceful_restart: {restart_time: 120s}
  communities: ["65010:100"]
  peers:
    - {address: 198.18.0.1, asn: 65000, hold_time: 9s, password: ""}
`

func TestBGPDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`
bgp:
  asn: 4200000000
  communities: [NO-EXPORT, "65010:00100"]
  vip_policy: ALL
  vips: [{vip: "::ffff:198.18.1.1", policy: any}, {vip: "2001:2::1"}]
  peers:
    - {address: "2001:2::ff", asn: 65000}
    - {address: 198.18.0.1, asn: 4200000000, port: 1179, hold_time: 3s}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	if b.GracefulRestart.RestartTime != Duration(120*time.Second) || *b.DrainTime != Duration(5*time.Second) || b.VIPPolicy != "all" {
		t.Errorf("defaults: %+v", b)
	}
	if got := strings.Join(b.Communities, " "); got != "no-export 65010:100" {
		t.Errorf("communities: %s", got)
	}
	if b.VIPs[0].VIP != "198.18.1.1" || b.VIPs[0].Policy != "any" || b.VIPs[1].Policy != "all" {
		t.Errorf("vips: %+v", b.VIPs)
	}
	p := b.Peers
	if p[0].Port != 179 || *p[0].HoldTime != Duration(90*time.Second) || p[1].Port != 1179 || *p[1].HoldTime != Duration(3*time.Second) {
		t.Errorf("peers: %+v %+v", p[0], p[1])
	}
	if _, err := ParseConfig([]byte(bgpBase)); err != nil {
		t.Errorf("the documented example: %v", err)
	}
}

// Bad bgp settings are refused with the field and the value, and nothing
// of the file is taken.
func TestBGPErrors(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"asn: 65010", "asn: 0", `line 4: bgp.asn 0: not an AS number (1-4294967295, not 23456)`},
		{"asn: 65010", "asn: 23456", `bgp.asn 23456: not an AS number`},
		{"asn: 65010", "asn: 4294967296", `bgp.asn`},
		{"router_id: 198.18.0.3", "router_id: 2001:2::3", `line 5: bgp.router_id "2001:2::3": want an IPv4 address (the BGP identifier is 32 bits)`},
		{"next_hop: 198.18.0.3", "next_hop: 2001:2::3", `line 6: bgp.next_hop "2001:2::3": wrong address family`},
		{"restart_time: 120s", "restart_time: 5000s", `bgp.graceful_restart.restart_time 1h23m20s: out of range 1s-1h8m15s`},
		{`["65010:100"]`, `["65010:100000"]`, `line 8: bgp.communities[0] "65010:100000": want ASN:VALUE`},
		{"address: 198.18.0.1", "address: 198.18.0.300", `line 10: bgp.peers[0].address "198.18.0.300": not an IP address`},
		{"address: 198.18.0.1", "address: 198.18.0.0/24", `bgp.peers[0].address "198.18.0.0/24": not an IP address (give a single address, without /prefix)`},
		{"asn: 65000", "asn: 0", `bgp.peers[0].asn 0: not an AS number`},
		{"hold_time: 9s", "hold_time: 2s", `line 10: bgp.peers[0].hold_time 2s: out of range 3s-18h12m15s (BGP allows no hold time below 3s)`},
		{"hold_time: 9s", "hold_time: 0s", `bgp.peers[0].hold_time 0s: out of range`},
		{"hold_time: 9s", "hold_time: 9500ms", `bgp.peers[0].hold_time 9.5s: must be whole seconds`},
		{"hold_time: 9s", "hold_tme: 9s", `field "hold_tme" not found in bgp.peers[0] (did you mean "hold_time"?)`},
		{`password: ""`, `password: "` + strings.Repeat("k", 81) + `"`, `bgp.peers[0].password: 81 bytes, at most 80`},
		{"    - {address: 198.18.0.1", "    - {address: 198.18.0.1, asn: 65001}\n    - {address: 198.18.0.1", `bgp.peers[1]: duplicate peer 198.18.0.1 (also peers[0])`},
		{"  peers:\n    - {address: 198.18.0.1, asn: 65000, hold_time: 9s, password: \"\"}\n", "  peers: []\n", `bgp.peers: required: at least one peer`},
		{"asn: 65010", "asn: 65010\n  vip_policy: most", `bgp.vip_policy "most": want one of any, all`},
	} {
		in := strings.Replace(bgpBase, tc.from, tc.to, 1)
		if in == bgpBase {
			t.Fatalf("%q not in the base config", tc.from)
		}
		c, err := ParseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s:\n  got  %v\n  want %s", tc.from, tc.to, err, tc.want)
		}
		if c != nil {
			t.Errorf("%s: a config came back with the error", tc.to)
		}
	}
}

// Every example config parses.
func TestExamplesParse(t *testing.T) {
	for _, f := range []string{"xlb.yaml", "demo.yaml", "ha.yaml"} {
		if _, _, err := Load("../../examples/" + f); err != nil {
			t.Errorf("examples/%s: %v", f, err)
		}
	}
}
