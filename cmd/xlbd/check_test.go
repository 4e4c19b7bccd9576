package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigExamples: every example config passes --check-config, a
// decap one in the role it is for too.
func TestCheckConfigExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		roles := []string{"balancer"}
		if strings.Contains(string(data), "\ndecap:") {
			roles = append(roles, "backend")
		}
		for _, role := range roles {
			f, err := parseFlags([]string{"--check-config", file, "--role", role})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := checkConfig(&out, f); err != nil {
				t.Errorf("%s (role %s): %v", file, role, err)
				continue
			}
			if want := "config " + file + ": ok (role " + role + ")\n"; !strings.HasPrefix(out.String(), want) {
				t.Errorf("%s: summary starts %q, want %q", file, out.String(), want)
			}
		}
	}
}

func TestCheckConfigSummary(t *testing.T) {
	file := writeConfig(t, `interface: lo
limits: {max_services: 8, max_backends: 16}
services:
  - vip: 198.18.1.1
    port: 80
    scheduler: maglev
    health: {type: tcp, interval: 2s, timeout: 1s}
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12, weight: 2}]
  - vip: 2001:2:0:1::1
    port: 53
    protocol: udp
    backends: [{address: 2001:2::11}]
bgp:
  asn: 65010
  router_id: 198.18.0.3
  next_hop: 198.18.0.3
  peers: [{address: 198.18.0.1, asn: 65000}]
`)
	f, err := parseFlags([]string{"--check-config", file, "--api", "/tmp/x.sock", "--metrics", ""})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := checkConfig(&out, f); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"interface lo, xdp_mode native\n",
		"listeners: api /tmp/x.sock, metrics none\n",
		"limits: max_services 8, max_backends 16,",
		"services: 2\n",
		"  198.18.1.1:80/tcp scheduler maglev forward dsr-l2 backends 2 health tcp every 2s timeout 1s rise 2 fall 3\n",
		"  [2001:2:0:1::1]:53/udp scheduler maglev forward dsr-l2 backends 1 health none\n",
		"bgp: asn 65010, router_id 198.18.0.3, next_hop 198.18.0.3, vip_policy any, peers 1\n",
		"  peer 198.18.0.1 asn 65000\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCheckConfigBad: the error names the field and the value, from the
// config package's checks and from those a start adds (health, BGP).
func TestCheckConfigBad(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"port", "services: [{vip: 198.18.1.1, port: 70000, backends: []}]", "services[0].port 70000: out of range 1-65535"},
		{"limits", "limits: {max_services: 1}\nservices: [{vip: 198.18.1.1, port: 80, backends: []}, {vip: 198.18.1.2, port: 80, backends: []}]",
			"more than limits.max_services 1"},
		{"health", "services: [{vip: 198.18.1.1, port: 80, health: {type: tcp, interval: 1s, timeout: 5s}, backends: []}]",
			"services[0].health.timeout 5s: must be less than interval 1s"},
		{"bgp", "bgp: {asn: 65000, communities: [\"1:99999\"], peers: [{address: 198.18.0.1, asn: 65001}]}", `bgp.communities[0] "1:99999"`},
		{"unknown key", "servics: []", "servics"},
		{"xdp mode", "xdp_mode: turbo", "turbo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := writeConfig(t, "interface: lo\n"+c.yaml+"\n")
			f, err := parseFlags([]string{"--check-config", file})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = checkConfig(&out, f)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
			if out.Len() > 0 {
				t.Errorf("a summary for a bad file: %q", out.String())
			}
		})
	}
	// The backend role refuses what it would ignore, as at start.
	f, _ := parseFlags([]string{"--check-config", "../../examples/xlb.yaml", "--role", "backend"})
	if err := checkConfig(&bytes.Buffer{}, f); err == nil || !strings.Contains(err.Error(), "services: 3 services in the config") {
		t.Errorf("services in the backend role: %v", err)
	}
	f, _ = parseFlags([]string{"--check-config", writeConfig(t, "interface: lo\n"), "--role", "backend"})
	var out bytes.Buffer
	if err := checkConfig(&out, f); err != nil || !strings.Contains(out.String(), "decap: no vips: nothing is decapsulated\n") {
		t.Errorf("no decap section: %v\n%s", err, out.String())
	}
	f, _ = parseFlags([]string{"--check-config", filepath.Join(t.TempDir(), "missing.yaml")})
	if err := checkConfig(&bytes.Buffer{}, f); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func writeConfig(t *testing.T, s string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
