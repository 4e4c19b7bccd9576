package main

import (
	"bytes"
	"strings"
	"testing"
)

// --check-config lists a service's backend names; it looks nothing up.
func TestCheckConfigNames(t *testing.T) {
	file := writeConfig(t, `interface: lo
resolvers: {nameservers: [198.18.0.53]}
services:
  - vip: 2001:2::1
    port: 80
    backends: [{address: 2001:2::10}, {name: Web.Pool.Example., weight: 2}]
`)
	f, err := parseFlags([]string{"--check-config", file, "--metrics", ""})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := checkConfig(&out, f); err != nil {
		t.Fatal(err)
	}
	if want := "  [2001:2::1]:80/tcp scheduler maglev forward dsr-l2 backends 2 health none\n" +
		"    backend name web.pool.example (ipv6) weight 2: looked up by the running xlbd, not here\n"; !strings.Contains(out.String(), want) {
		t.Errorf("summary:\n%s\nwant it to contain\n%s", out.String(), want)
	}
}
