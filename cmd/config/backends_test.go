package config

import (
	"strconv"
	"strings"
	"testing"
)

// A backend set file: a list or backends: [...], YAML or JSON; each bad
// entry named with its line, path and value.
func TestParseBackendList(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"- address: 198.18.0.11\n- {address: 198.18.0.12, weight: 2}\n", "198.18.0.11/1 198.18.0.12/2"},
		{"# pool\nbackends:\n  - address: 2001:2:0::11\n    weight: 0\n", "2001:2::11/0"},
		{`[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":3}]`, "198.18.0.11/1 198.18.0.12/3"},
		{`{"backends":[{"address":"::ffff:198.18.0.11"}]}`, "198.18.0.11/1"},
		{"[]", ""},
		{"backends: []", ""},
		// Named by DNS: checked without the service (family defaults there).
		{"- address: 198.18.0.11\n- {name: pool.example, weight: 2}\n", "198.18.0.11/1 pool.example()/2"},
		{"backends:\n  - name: pool.example\n    family: ipv6\n", "pool.example(ipv6)/-"},
		{`[{"name":"pool.example","family":"any"}]`, "pool.example(any)/-"},
	} {
		l, err := ParseBackendList([]byte(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var got []string
		for _, b := range l {
			w := "-"
			if b.Weight != nil {
				w = strconv.FormatUint(uint64(*b.Weight), 10)
			}
			if b.Name != "" {
				got = append(got, b.Name+"("+b.Family+")/"+w)
				continue
			}
			got = append(got, b.Address+"/"+w)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: %v, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"backends:\n  - address: 198.18.0.11\n  - address: 198.18.0.300\n", `line 3: backends[1].address "198.18.0.300": not an IP address`},
		{"- address: 198.18.0.11\n- address: 198.18.0.12\n  wieght: 2\n", `line 3: field "wieght" not found in backends[1] (did you mean "weight"?)`},
		{"- address: 198.18.0.11\n- address: 198.18.0.12\n  weight: x\n", `line 3: backends[1].weight "x": not a number`},
		{"- address: 198.18.0.11\n- address: 198.18.0.12\n  weight: 70000\n", `line 3: backends[1].weight 70000: out of range 0-65535`},
		{`{"backends":[{"address":"198.18.0.11"}],"allow_empty":true}`, `line 1: field "allow_empty" not found in the top level`},
		{"", "empty: want a list of backends, or backends: [...]"},
		{"hello", "line 1: want a list of backends, or backends: [...]"},
		{"- 198.18.0.11\n", `line 1: backends[0] "198.18.0.11": want a mapping`},
		{"- address: 198.18.0.11\n- name: pool.example\n  address: 198.18.0.12\n", `line 2: backends[1].name "pool.example": give address or name, not both (address is "198.18.0.12")`},
		{"backends:\n  - family: ipv4\n", `line 2: backends[0].family "ipv4": only with name (a backend named by DNS)`},
	} {
		if _, err := ParseBackendList([]byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n  got  %v\n  want %s", tc.in, err, tc.want)
		}
	}
}
