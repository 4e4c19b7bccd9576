package config

import (
	"strings"
	"testing"
	"time"
)

// Backends named by DNS and the resolvers section: defaults, canonical
// forms, and each mistake named by field and value (with its line).
func TestNamedBackends(t *testing.T) {
	c, err := ParseConfig([]byte(`
resolvers:
  nameservers: [198.18.0.53, "[2001:2::53]:5353", "198.18.0.54:5353"]
  min_refresh: 2s
services:
  - vip: 198.18.1.1
    port: 80
    backends:
      - address: 198.18.0.11
      - name: Web.Pool.Example.
        weight: 3
      - {name: other.pool.example, family: IPv4}
  - vip: 2001:2::1
    port: 80
    backends: [{name: web.pool.example}]
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Services[0].Backends
	if b[1].Name != "web.pool.example" || b[1].Family != FamilyIPv4 || *b[1].Weight != 3 || b[1].Address != "" || !b[1].Named() || b[0].Named() {
		t.Errorf("named backend: %+v", b[1])
	}
	if b[2].Family != FamilyIPv4 || *b[2].Weight != 1 {
		t.Errorf("explicit family: %+v", b[2])
	}
	if b := c.Services[1].Backends[0]; b.Family != FamilyIPv6 || b.NameKey().String() != "web.pool.example/ipv6" {
		t.Errorf("ipv6 vip's default family: %+v", b)
	}
	if _, err := b[1].Addr(); err == nil {
		t.Errorf("a named backend has an address")
	}
	if got := strings.Join(c.Resolvers.Nameservers, " "); got != "198.18.0.53:53 [2001:2::53]:5353 198.18.0.54:5353" {
		t.Errorf("nameservers %s", got)
	}
	e := c.Resolvers.Effective()
	if e.MinRefresh != Duration(2*time.Second) || e.MaxRefresh != Duration(5*time.Minute) || e.Timeout != Duration(2*time.Second) ||
		e.Attempts != 3 || e.RetryInterval != Duration(5*time.Second) || *e.HoldNXDomain != Duration(30*time.Second) || *e.VanishedDrain != Duration(15*time.Minute) {
		t.Errorf("effective resolvers %+v", e)
	}
	if e := (*Resolvers)(nil).Effective(); e.MinRefresh != Duration(time.Second) || len(e.Nameservers) != 0 {
		t.Errorf("no resolvers section: %+v", e)
	}

	svc := "services:\n  - vip: 198.18.1.1\n    port: 80\n    backends:\n"
	for _, tc := range []struct{ name, in, want string }{
		{"name and address", svc + "      - {name: web.example, address: 198.18.0.11}\n",
			`line 5: services[0].backends[0].name "web.example": give address or name, not both (address is "198.18.0.11")`},
		{"family without name", svc + "      - {address: 198.18.0.11, family: ipv4}\n", `services[0].backends[0].family "ipv4": only with name (a backend named by DNS)`},
		{"same name twice", svc + "      - name: web.example\n      - name: WEB.example.\n",
			`line 6: services[0].backends[1].name "web.example": duplicate backend name (also backends[0])`},
		{"other family", svc + "      - {name: web.example, family: ipv6}\n",
			`services[0].backends[0].family "ipv6": vip 198.18.1.1 is ipv4: a backend must be of the vip's address family`},
		{"any family", svc + "      - {name: web.example, family: any}\n", `services[0].backends[0].family "any": vip 198.18.1.1 is ipv4`},
		{"unknown family", svc + "      - {name: web.example, family: inet7}\n", `services[0].backends[0].family "inet7": want ipv4, ipv6 or any`},
		{"underscore", svc + "      - name: web_1.example\n", `services[0].backends[0].name "web_1.example": not a host name: '_' (letters, digits, hyphens and dots only)`},
		{"empty label", svc + "      - name: web..example\n", `name "web..example": empty label (two dots in a row)`},
		{"hyphen", svc + "      - name: -web.example\n", `name "-web.example": label "-web" starts or ends with a hyphen`},
		{"long label", svc + "      - name: " + strings.Repeat("a", 64) + ".example\n", `longer than 63 characters`},
		{"long name", svc + "      - name: " + strings.Repeat("abcdefghi.", 26) + "example\n", `longer than 253 characters`},
		{"an address as name", svc + "      - name: 198.18.0.11\n", `name "198.18.0.11": an IP address, not a name: use address`},
		{"numeric top label", svc + "      - name: 10.0.0.256\n", `name "10.0.0.256": the last label is all digits: not a host name`},
		{"weight", svc + "      - {name: web.example, weight: 70000}\n", `services[0].backends[0].weight 70000: out of range 0-65535`},
		{"nameserver", "resolvers: {nameservers: [dns.example]}\n", `line 1: resolvers.nameservers[0] "dns.example": not ADDR or ADDR:PORT`},
		{"nameserver port 0", "resolvers: {nameservers: ['198.18.0.53:0']}\n", `resolvers.nameservers[0] "198.18.0.53:0": not ADDR or ADDR:PORT`},
		{"timeout", "resolvers: {timeout: 1m}\n", `resolvers.timeout 1m: out of range 100ms-30s`},
		{"attempts", "resolvers: {attempts: 11}\n", `resolvers.attempts 11: out of range 1-10`},
		{"min above max", "resolvers: {min_refresh: 10m, max_refresh: 1m}\n", `resolvers.min_refresh 10m: more than max_refresh 1m`},
		{"min above default max", "resolvers: {min_refresh: 10m}\n", `resolvers.min_refresh 10m: more than max_refresh 5m`},
		{"hold", "resolvers: {hold_nxdomain: -1s}\n", `resolvers.hold_nxdomain -1s: out of range 0-24h`},
		{"drain", "resolvers: {vanished_drain: 25h}\n", `resolvers.vanished_drain 25h: out of range 0-24h`},
		{"unknown key", "resolvers: {retries: 3}\n", `field "retries" not found in resolvers`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}
