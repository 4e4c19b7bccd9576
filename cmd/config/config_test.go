package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/maps/lb"
)

func u32(v uint32) *uint32 { return &v }

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../../examples/xlb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := &Config{
		Interface: "eth1",
		XDPMode:   "native",
		Limits: Limits{
			ConntrackSize: 1048576,
			MaglevSize:    65537,
			MaxServices:   4096,
			MaxBackends:   65536,
			HalfOpenSize:  262144,
		},
		Conntrack:   Conntrack{TCPTimeout: Duration(lb.TCPTimeout.Default), TCPFinTimeout: Duration(lb.TCPFinTimeout.Default), UDPTimeout: Duration(lb.UDPTimeout.Default)},
		ICMPEcho:    &yes,
		ICMPForward: &yes,
		Services: []Service{
			{
				VIP: "198.18.1.1", Port: 80, Protocol: "tcp", Scheduler: "maglev", Forward: "dsr-l2",
				Health: &Health{
					Type: "http", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second),
					Rise: 2, Fall: 3, Port: 8080, AllDown: "drop",
					HTTP: &HTTPCheck{
						Method: "GET", Path: "/healthz", Host: "www.example.com",
						ExpectStatus: "200-299,304", ExpectBody: "ok",
					},
				},
				Backends: []Backend{
					{Address: "198.18.0.11", Weight: u32(100)},
					{Address: "198.18.0.12", Weight: u32(100)},
					{Address: "198.18.0.13", Weight: u32(0)},
				},
			},
			{
				VIP: "198.18.1.2", Port: 53, Protocol: "udp", Scheduler: "source-hash", Forward: "dsr-l2",
				Health: &Health{
					Type: "tcp", Interval: Duration(5 * time.Second), Timeout: Duration(2 * time.Second),
					Rise: 2, Fall: 3, StartUp: true, AllDown: "keep-last",
				},
				Backends: []Backend{
					{Address: "198.18.0.21", Weight: u32(1)},
					{Address: "198.18.0.22", Weight: u32(1)},
				},
			},
			{
				VIP: "2001:2:0:1::1", Port: 443, Protocol: "tcp", Scheduler: "maglev", Forward: "dsr-l2",
				Backends: []Backend{
					{Address: "2001:2::11", Weight: u32(1)},
					{Address: "2001:2::12", Weight: u32(1)},
				},
			},
		},
	}
	assertEqual(t, got, want)
}

// assertEqual compares whole values and shows both as JSON on a mismatch.
func assertEqual(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("got:\n%s\nwant:\n%s", g, w)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := ParseConfig([]byte(`
services:
  - vip: 198.18.1.1
    port: 80
    health: {}
    backends:
      - address: 198.18.0.11
  - vip: 198.18.1.1
    port: 80
    protocol: UDP
    health:
      type: negotiate
      interval: 500ms
  - vip: ::ffff:198.18.1.3
    port: 80
    scheduler: SH
    health: {type: ping}
    backends:
      - address: ::ffff:198.18.0.31
      - address: ::ffff:198.18.0.32
  - vip: 198.18.1.4
    port: 80
    health: {http: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		XDPMode:   "native",
		Limits:    Limits{ConntrackSize: 1 << 20, MaglevSize: 65537, MaxServices: 4096, MaxBackends: 65536, HalfOpenSize: 1 << 18},
		Conntrack: Conntrack{TCPTimeout: Duration(lb.TCPTimeout.Default), TCPFinTimeout: Duration(lb.TCPFinTimeout.Default), UDPTimeout: Duration(lb.UDPTimeout.Default)},
		Services: []Service{
			{
				VIP: "198.18.1.1", Port: 80, Protocol: "tcp", Scheduler: "maglev", Forward: "dsr-l2",
				Health: &Health{
					Type: "tcp", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second),
					Rise: 2, Fall: 3, AllDown: "drop",
				},
				Backends: []Backend{{Address: "198.18.0.11", Weight: u32(1)}},
			},
			{
				VIP: "198.18.1.1", Port: 80, Protocol: "udp", Scheduler: "maglev", Forward: "dsr-l2",
				Health: &Health{
					Type: "http", Interval: Duration(500 * time.Millisecond), Timeout: Duration(250 * time.Millisecond),
					Rise: 2, Fall: 3, AllDown: "drop",
					HTTP: &HTTPCheck{Method: "GET", Path: "/", ExpectStatus: "200-399"},
				},
				Backends: []Backend{},
			},
			{
				VIP: "198.18.1.3", Port: 80, Protocol: "tcp", Scheduler: "source-hash", Forward: "dsr-l2",
				Health: &Health{
					Type: "icmp", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second),
					Rise: 2, Fall: 3, AllDown: "drop",
				},
				Backends: []Backend{
					{Address: "198.18.0.31", Weight: u32(1)},
					{Address: "198.18.0.32", Weight: u32(1)},
				},
			},
			{
				VIP: "198.18.1.4", Port: 80, Protocol: "tcp", Scheduler: "maglev", Forward: "dsr-l2",
				Health: &Health{
					Type: "http", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second),
					Rise: 2, Fall: 3, AllDown: "drop",
					HTTP: &HTTPCheck{Method: "GET", Path: "/", ExpectStatus: "200-399"},
				},
				Backends: []Backend{},
			},
		},
	}
	assertEqual(t, got, want)
}

var yes = true

// icmp_echo and icmp_forward: absent or true turn the switch on, false
// off, and anything else is an error naming the key.
func TestParseICMP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want lb.ICMP
	}{
		{"", lb.ICMP{}},
		{"icmp_echo: true\nicmp_forward: true\n", lb.ICMP{}},
		{"icmp_echo: false\n", lb.ICMP{NoEcho: true}},
		{"icmp_echo: no\n", lb.ICMP{NoEcho: true}},
		{"icmp_forward: false\n", lb.ICMP{NoForward: true}},
		{"icmp_echo: false\nicmp_forward: false\n", lb.ICMP{NoEcho: true, NoForward: true}},
	} {
		c, err := ParseConfig([]byte(tc.in + svc[1:]))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if c.ICMP() != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, c.ICMP(), tc.want)
		}
	}
	for _, key := range []string{"icmp_echo", "icmp_forward"} {
		if _, err := ParseConfig([]byte(key + ": sometimes\n")); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: sometimes: %v", key, err)
		}
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing yet\n", "---\n", "services: []\n"} {
		c, err := ParseConfig([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if c.XDPMode != "native" || c.Limits.MaglevSize != 65537 || len(c.Services) != 0 {
			t.Errorf("%q: got %+v", in, c)
		}
	}
}

// svc is a valid service to embed in error cases (line 3 is its vip).
const svc = `
services:
  - vip: 198.18.1.1
    port: 80
    backends:
      - address: 198.18.0.11
`

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		// Syntax, strictness and types.
		{"syntax", "services: [\n", `line 1: invalid YAML: did not find expected node content`},
		{"tab", "services:\n\t- vip: 198.18.1.1\n", `invalid YAML: found character that cannot start any token (tabs are not allowed in indentation)`},
		{"unknown top-level key", "interfaces: eth0\n", `line 1: field "interfaces" not found in the top level (did you mean "interface"?)`},
		{"unknown service key", svc + "    sheduler: maglev\n",
			`line 7: field "sheduler" not found in services[0] (did you mean "scheduler"?)`},
		{"unknown key far off", svc + "    colour: blue\n",
			`line 7: field "colour" not found in services[0] (known fields: vip, port, protocol, scheduler, persistence, forward, health, backends)`},
		{"unknown backend key", svc + "        mac: 02:00:00:00:00:01\n",
			`line 7: field "mac" not found in services[0].backends[0] (known fields: address, name, family, weight)`},
		{"unknown health key", svc + "    health: {type: tcp, retries: 3}\n",
			`line 7: field "retries" not found in services[0].health`},
		{"duplicate key", svc + "    port: 81\n", `line 7: mapping key "port" already defined at line 4`},
		{"two documents", svc + "---\ninterface: eth0\n", `line 7: more than one YAML document (only one config per file)`},
		{"not a mapping", "- eth0\n", `line 1: the config must be a mapping`},
		{"services not a list", "services: {vip: 198.18.1.1}\n", `line 1: services: want a list`},
		{"port not a number", "services:\n  - vip: 198.18.1.1\n    port: http\n", `line 3: services[0].port "http": not a number`},
		{"port quoted", "services:\n  - vip: 198.18.1.1\n    port: \"80\"\n", `line 3: services[0].port "80": want a number, not a quoted string`},
		{"port float", "services:\n  - vip: 198.18.1.1\n    port: 80.5\n", `line 3: services[0].port 80.5: not a whole number`},
		{"weight negative", svc + "        weight: -1\n", `line 7: services[0].backends[0].weight -1: must not be negative`},
		{"weight fraction", svc + "        weight: 1.5\n", `line 7: services[0].backends[0].weight 1.5: not a whole number`},
		{"limit exponent", "limits: {conntrack_size: 1e6}\n", `line 1: limits.conntrack_size 1e6: not a whole number`},
		{"weight huge", svc + "        weight: 99999999999\n", `line 7: services[0].backends[0].weight 99999999999: too large`},
		{"vip a list", "services:\n  - vip: [198.18.1.1]\n    port: 80\n", `line 2: services[0].vip: want a string, not a list`},
		{"https not bool", svc + "    health: {http: {https: maybe}}\n", `line 7: services[0].health.http.https "maybe": want true or false`},
		{"interval no unit", svc + "    health: {interval: 2}\n", `line 7: services[0].health.interval 2: not a duration (want e.g. 2s, 500ms or 1m)`},
		{"interval garbage", svc + "    health:\n      interval: soon\n", `line 8: services[0].health.interval "soon": not a duration`},
		{"several type errors", "services:\n  - vip: 198.18.1.1\n    port: x\n    backends: 3\n", `line 3: services[0].port "x": not a number (and 1 more error)`},

		// Top level and limits.
		{"interface too long", "interface: enp0s31f6-uplink0\n", `line 1: interface "enp0s31f6-uplink0": longer than 15 characters`},
		{"interface slash", "interface: eth0/1\n", `line 1: interface "eth0/1": not a valid interface name (no '/' or ':')`},
		{"interface space", "interface: 'eth 0'\n", `line 1: interface "eth 0": not a valid interface name (no spaces or control characters)`},
		{"xdp mode", "xdp_mode: offload\n", `line 1: xdp_mode "offload": want one of native, generic`},
		{"maglev not prime", "limits:\n  maglev_size: 65536\n", `line 2: limits.maglev_size 65536: not prime (e.g. 65537)`},
		{"maglev too small", "limits:\n  maglev_size: 13\n", `line 2: limits.maglev_size 13: out of range 251-16777216`},
		{"conntrack too small", "limits: {conntrack_size: 10}\n", `line 1: limits.conntrack_size 10: out of range 64-268435456`},
		{"max services", "limits: {max_services: 70000}\n", `line 1: limits.max_services 70000: out of range 1-65536`},
		{"max backends", "limits: {max_backends: 1}\n", `line 1: limits.max_backends 1: out of range 2-16777216`},
		{"too many services", "limits: {max_services: 1}\nservices:\n  - {vip: 198.18.1.1, port: 80}\n  - {vip: 198.18.1.1, port: 81}\n",
			`line 2: services: 2 services, more than limits.max_services 1`},
		{"too many backends", "limits: {max_backends: 2}\nservices:\n  - vip: 198.18.1.1\n    port: 80\n    backends: [{address: 198.18.0.1}, {address: 198.18.0.2}]\n",
			`line 2: services: 2 backends in all; limits.max_backends 2 allows at most 1 (one slot is reserved)`},

		// Services.
		{"vip missing", "services:\n  - port: 80\n", `line 2: services[0].vip: required`},
		{"vip bad", "services:\n  - vip: 198.18.1.300\n    port: 80\n", `line 2: services[0].vip "198.18.1.300": not an IP address`},
		{"vip prefix", "services:\n  - vip: 198.18.1.0/24\n    port: 80\n", `services[0].vip "198.18.1.0/24": not an IP address (give a single address, without /prefix)`},
		{"vip with port", "services:\n  - vip: 198.18.1.1:80\n    port: 80\n", `services[0].vip "198.18.1.1:80": not an IP address (give the port separately)`},
		{"vip zone", "services:\n  - vip: fe80::1%eth0\n    port: 80\n", `services[0].vip "fe80::1%eth0": zones are not allowed`},
		{"vip unspecified", "services:\n  - vip: 0.0.0.0\n    port: 80\n", `services[0].vip "0.0.0.0": not a unicast address (unspecified)`},
		{"vip loopback", "services:\n  - vip: ::1\n    port: 80\n", `services[0].vip "::1": not a unicast address (loopback)`},
		{"vip multicast", "services:\n  - vip: 239.1.1.1\n    port: 80\n", `services[0].vip "239.1.1.1": not a unicast address (multicast)`},
		{"vip broadcast", "services:\n  - vip: 255.255.255.255\n    port: 80\n", `services[0].vip "255.255.255.255": not a unicast address (broadcast)`},
		{"port range", "services:\n  - vip: 198.18.1.1\n    port: 70000\n", `line 3: services[0].port 70000: out of range 1-65535`},
		{"port missing", "services:\n  - vip: 198.18.1.1\n", `line 2: services[0].port 0: out of range 1-65535`},
		{"protocol", svc + "    protocol: sctp\n", `line 7: services[0].protocol "sctp": want one of tcp, udp`},
		{"scheduler", svc + "    scheduler: sed\n", `line 7: services[0].scheduler "sed": want one of maglev, source-hash, round-robin, least-conn`},
		{"persistence fraction", svc + "    persistence: 1500ms\n", `line 7: services[0].persistence 1.5s: must be whole seconds (e.g. 300s)`},
		{"persistence negative", svc + "    persistence: -1s\n", `line 7: services[0].persistence -1s: out of range 0 (off) to 720h`},
		{"persistence number", svc + "    persistence: 300\n", `services[0].persistence`},
		{"tcp timeout", "conntrack:\n  tcp_timeout: 500ms\n", `conntrack.tcp_timeout 500ms: out of range 1s-168h`},
		{"udp timeout", "conntrack:\n  udp_timeout: 8d\n", `conntrack.udp_timeout`},
		{"forward", svc + "    forward: nat\n", `line 7: services[0].forward "nat": want one of dsr-l2, ipip, gue`},
		{"duplicate service", svc + "  - {vip: 198.18.1.2, port: 80}\n  - {vip: 198.18.1.1, port: 80, protocol: TCP}\n",
			`line 8: services[2]: duplicate service 198.18.1.1:80/tcp (also services[0])`},
		{"duplicate service mapped", svc + "  - {vip: '::ffff:198.18.1.1', port: 80}\n",
			`line 7: services[1]: duplicate service 198.18.1.1:80/tcp (also services[0])`},

		// Backends.
		{"backend address bad", "services:\n  - vip: 198.18.1.1\n    port: 80\n    backends:\n      - address: 198.18.0.11\n      - address: 198.18.0.300\n",
			`line 6: services[0].backends[1].address "198.18.0.300": not an IP address`},
		{"backend address missing", svc + "      - weight: 2\n", `line 7: services[0].backends[1].address: required`},
		{"backend is vip", svc + "      - address: 198.18.1.1\n", `line 7: services[0].backends[1].address "198.18.1.1": same as the service's vip`},
		// A backend of the other address family (fixed bug: it was accepted,
		// then sat in no-mac forever or showed up on an IPv6 VIP).
		{"backend of the other family", svc + "      - address: 2001:2::11\n",
			`line 7: services[0].backends[1].address "2001:2::11": IPv6, but vip 198.18.1.1 is IPv4: a backend must be of the vip's address family`},
		{"backend v4-mapped of an IPv6 vip", "services:\n  - vip: 2001:2::1\n    port: 80\n    backends:\n      - address: ::ffff:198.18.0.11\n",
			`line 5: services[0].backends[0].address "::ffff:198.18.0.11": IPv4, but vip 2001:2::1 is IPv6: a backend must be of the vip's address family`},
		{"backend multicast", svc + "      - address: ff02::1\n", `services[0].backends[1].address "ff02::1": not a unicast address (multicast)`},
		{"duplicate backend", svc + "      - address: 198.18.0.12\n      - address: ::ffff:198.18.0.11\n",
			`line 8: services[0].backends[2]: duplicate backend 198.18.0.11 (also backends[0])`},
		{"weight range", svc + "      - address: 198.18.0.12\n        weight: 70000\n",
			`line 8: services[0].backends[1].weight 70000: out of range 0-65535`},
		{"more backends than maglev slots", maglevCase(), `services[0].backends: 252 backends with weight above 0, more than limits.maglev_size 251`},

		// Health.
		{"health type", svc + "    health: {type: smtp}\n", `line 7: services[0].health.type "smtp": want one of tcp, http, icmp, none (or ldirectord's connect, negotiate, ping, on)`},
		{"interval short", svc + "    health: {interval: 50ms}\n", `line 7: services[0].health.interval 50ms: out of range 100ms-1h`},
		{"interval long", svc + "    health: {interval: 2h}\n", `services[0].health.interval 2h: out of range 100ms-1h`},
		{"interval negative", svc + "    health: {interval: -1s}\n", `services[0].health.interval -1s: out of range 100ms-1h`},
		{"timeout too long", svc + "    health: {interval: 2s, timeout: 2s}\n", `line 7: services[0].health.timeout 2s: must be less than interval 2s`},
		{"timeout default vs interval", svc + "    health: {interval: 1s, timeout: 3s}\n", `services[0].health.timeout 3s: must be less than interval 1s`},
		{"timeout negative", svc + "    health: {timeout: -5ms}\n", `services[0].health.timeout -5ms: must be greater than 0`},
		{"rise", svc + "    health: {rise: 101}\n", `line 7: services[0].health.rise 101: out of range 1-100`},
		{"fall", svc + "    health: {fall: -1}\n", `line 7: services[0].health.fall -1: out of range 1-100`},
		{"health port", svc + "    health: {port: 65536}\n", `services[0].health.port 65536: out of range 1-65535 (0: the service port)`},
		{"health port icmp", svc + "    health: {type: icmp, port: 80}\n", `services[0].health.port 80: not used by type icmp`},
		{"http with tcp", svc + "    health:\n      type: connect\n      http: {path: /}\n", `line 9: services[0].health.http: only allowed with type http (type is tcp)`},
		{"http method", svc + "    health: {http: {method: 'GE T'}}\n", `services[0].health.http.method "GE T": not an HTTP method (e.g. GET, HEAD, POST)`},
		{"http path", svc + "    health:\n      http:\n        path: healthz\n", `line 9: services[0].health.http.path "healthz": must start with "/"`},
		{"http path space", svc + "    health: {http: {path: '/a b'}}\n", `services[0].health.http.path "/a b": must not contain spaces or control characters`},
		{"http path escape", svc + "    health: {http: {path: '/%zz'}}\n", `services[0].health.http.path "/%zz": not a valid request path`},
		{"http host", svc + "    health: {http: {host: 'a b'}}\n", `services[0].health.http.host "a b": not a valid host name`},
		{"http insecure", svc + "    health: {http: {insecure_skip_verify: true}}\n", `services[0].health.http.insecure_skip_verify true: only with https: true`},
		{"expect status range", svc + "    health: {http: {expect_status: '200-700'}}\n", `services[0].health.http.expect_status "200-700": 700: out of range 100-599`},
		{"expect status backwards", svc + "    health: {http: {expect_status: '200,399-300'}}\n", `services[0].health.http.expect_status "200,399-300": range "399-300" is backwards`},
		{"expect status garbage", svc + "    health: {http: {expect_status: '2xx'}}\n", `services[0].health.http.expect_status "2xx": "2xx" is not a status code or range (e.g. 200,204,300-399)`},
		{"expect status empty entry", svc + "    health: {http: {expect_status: '200,,204'}}\n", `"" is not a status code or range`},
		{"all down", svc + "    health: {all_down: keep}\n", `line 7: services[0].health.all_down "keep": want one of drop, keep-last`},
		{"via unknown", svc + "    health: {via: vip}\n", `line 7: services[0].health.via "vip": want one of backend, tunnel`},
		{"via tunnel dsr-l2", svc + "    health: {via: tunnel}\n", `services[0].health.via "tunnel": needs forward ipip or gue (forward is dsr-l2)`},
		{"via tunnel icmp", "services:\n  - {vip: 198.18.1.1, port: 80, forward: ipip, health: {type: icmp, via: Tunnel}}\n", `services[0].health.via "tunnel": only tcp and http checks go through a tunnel (type is icmp)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; got %+v", c)
			}
			if c != nil {
				t.Errorf("got a config with the error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error\n  %s\nwant it to contain\n  %s", msg, tc.want)
			}
			if strings.Contains(msg, "\n") || msg != strings.ToLower(msg[:1])+msg[1:] {
				t.Errorf("error %q: want one line starting lower case", msg)
			}
			if strings.Contains(msg, "yaml:") || strings.Contains(msg, "config.") {
				t.Errorf("error %q leaks decoder internals", msg)
			}
		})
	}
}

// maglevCase is a service with one more backend than the smallest Maglev
// table has slots.
func maglevCase() string {
	var b strings.Builder
	b.WriteString("limits: {maglev_size: 251}\nservices:\n  - vip: 198.18.1.1\n    port: 80\n    backends:\n")
	for i := range 252 {
		b.WriteString("      - address: 198.18." + strconv.Itoa(2+i/250) + "." + strconv.Itoa(1+i%250) + "\n")
	}
	return b.String()
}

func TestValidateLeavesConfigOnError(t *testing.T) {
	c := &Config{Services: []Service{
		{VIP: "198.18.1.1", Port: 80, Backends: []Backend{{Address: "198.18.0.11"}}},
		{VIP: "198.18.1.2", Port: 0},
	}}
	before := cloneConfig(c)
	err := c.Validate()
	if err == nil || err.Error() != "services[1].port 0: out of range 1-65535" {
		t.Fatalf("Validate: %v", err)
	}
	assertEqual(t, c, before)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "services[1].port" || fe.Value != "0" {
		t.Errorf("FieldError: %+v", fe)
	}

	// Once valid, Validate normalises in place and is idempotent.
	c.Services[1].Port = 80
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Services[0].Protocol != "tcp" || *c.Services[0].Backends[0].Weight != 1 {
		t.Errorf("not normalised: %+v", c.Services[0])
	}
	again := cloneConfig(c)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, c, again)
}

func cloneConfig(c *Config) *Config {
	n := *c
	n.Services = nil
	for _, s := range c.Services {
		n.Services = append(n.Services, s.Clone())
	}
	return &n
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(good, []byte("interface: eth0\n"+svc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(good)
	if err != nil || c.Interface != "eth0" || len(c.Services) != 1 {
		t.Fatalf("Load: %+v, %v", c, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(svc+"    sheduler: sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(bad)
	want := bad + `: line 7: field "sheduler" not found in services[0] (did you mean "scheduler"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	_, _, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateInterface(t *testing.T) {
	for name, want := range map[string]string{
		"eth0":             "",
		"enp0s31f6":        "",
		"br-lan.100":       "",
		"fifteen-chars-x":  "",
		"sixteen-chars-xx": `interface "sixteen-chars-xx": longer than 15 characters`,
		"":                 "interface: required (e.g. eth0)",
		"..":               `interface "..": not a valid interface name`,
		"eth0:1":           `interface "eth0:1": not a valid interface name (no '/' or ':')`,
		"eth\t0":           `interface "eth\t0": not a valid interface name (no spaces or control characters)`,
	} {
		err := ValidateInterface(name)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("ValidateInterface(%q) = %q, want %q", name, got, want)
		}
	}
}

// The encap section: addresses or prefixes of few enough host bits, of the
// right family; errors name the key and the value.
func TestParseEncap(t *testing.T) {
	c, err := ParseConfig([]byte("encap: {source_v4: 198.18.100.7/28, source_v6: '2001:2:100::1'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Encap.Settings()
	if got.Source4.String() != "198.18.100.0/28" || got.Source6.String() != "2001:2:100::1/128" || got.GUEPort != 6080 {
		t.Errorf("settings %+v", got)
	}
	for in, want := range map[string]string{
		"encap: {source_v4: 198.18.0.0/8}\n": `encap.source_v4 "198.18.0.0/8": prefix of 24 host bits, at most 16 take the flow hash`,
		"encap: {source_v6: 198.18.0.1}\n":   `encap.source_v6 "198.18.0.1": not an IPv6 address or prefix`,
		"encap: {source_v4: '2001:2::1'}\n":  `encap.source_v4 "2001:2::1": not an IPv4 address or prefix`,
		"encap: {source_v4: banana}\n":       `encap.source_v4 "banana": not an address or a prefix`,
		"encap: {gue_port: 70000}\n":         `70000`,
	} {
		if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// A check's path: tunnel kept (any case) on an encapsulated service,
// backend (the default) stored empty.
func TestHealthVia(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"services:\n  - {vip: 198.18.1.1, port: 80, forward: gue, health: {via: TUNNEL}}\n", "tunnel"},
		{"services:\n  - {vip: 198.18.1.1, port: 80, forward: ipip, health: {type: http, via: backend}}\n", ""},
		{"services:\n  - {vip: 198.18.1.1, port: 80, health: {via: backend}}\n", ""},
	} {
		cfg, err := ParseConfig([]byte(c.in))
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := cfg.Services[0].Health.Via; got != c.want {
			t.Errorf("%q: via %q, want %q", c.in, got, c.want)
		}
	}
}
