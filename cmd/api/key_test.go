package api

import (
	"net/netip"
	"testing"

	"github.com/xlb-lb/xlb/maps"
)

func TestServiceKey(t *testing.T) {
	for _, tc := range []struct {
		s    Service
		want maps.ServiceKey
		text string
	}{
		{Service{VIP: "198.18.1.1", Port: 80}, maps.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: maps.TCP}, "198.18.1.1:80/tcp"},
		{Service{VIP: "::ffff:198.18.1.1", Port: 53, Protocol: "UDP"}, maps.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 53, Proto: maps.UDP}, "198.18.1.1:53/udp"},
		{Service{VIP: "2001:2:0:1::1", Port: 443, Protocol: "tcp"}, maps.ServiceKey{VIP: netip.MustParseAddr("2001:2:0:1::1"), Port: 443, Proto: maps.TCP}, "[2001:2:0:1::1]:443/tcp"},
	} {
		k, err := tc.s.Key()
		if err != nil {
			t.Errorf("%+v: %v", tc.s, err)
			continue
		}
		if k != tc.want || k.String() != tc.text {
			t.Errorf("%+v: got %v, want %v", tc.s, k, tc.text)
		}
		back, err := ParseServiceKey(k.String())
		if err != nil || back != k {
			t.Errorf("ParseServiceKey(%q) = %v, %v", k, back, err)
		}
	}
	for _, tc := range []struct {
		s    Service
		want string
	}{
		{Service{VIP: "", Port: 80}, "vip: required (an IP address, e.g. 198.18.1.1)"},
		{Service{VIP: "198.18.1.1", Port: -1}, "port -1: out of range 1-65535"},
		{Service{VIP: "198.18.1.1", Port: 80, Protocol: "sctp"}, `protocol "sctp": want one of tcp, udp`},
	} {
		if _, err := tc.s.Key(); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: got %v, want %s", tc.s, err, tc.want)
		}
	}
}

func TestParseServiceKeyErrors(t *testing.T) {
	const hint = ": want VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp or [2001:2::1]:443/udp"
	for in, want := range map[string]string{
		"x":                      `service "x"` + hint,
		"198.18.1.1:80":          `service "198.18.1.1:80"` + hint,
		"198.18.1.1/tcp":         `service "198.18.1.1/tcp"` + hint,
		"198.18.1.1:80/":         `service "198.18.1.1:80/"` + hint,
		"2001:2::1:443/tcp":      `service "2001:2::1:443/tcp"` + hint,
		"198.18.1.1:http/tcp":    `service "198.18.1.1:http/tcp"` + hint,
		"198.18.1.1:80/sctp":     `service "198.18.1.1:80/sctp": protocol "sctp": want one of tcp, udp`,
		"198.18.1.1:0/tcp":       `service "198.18.1.1:0/tcp": port 0: out of range 1-65535`,
		"0.0.0.0:80/tcp":         `service "0.0.0.0:80/tcp": vip "0.0.0.0": not a unicast address (unspecified)`,
		"255.255.255.255:80/udp": `service "255.255.255.255:80/udp": vip "255.255.255.255": not a unicast address (broadcast)`,
		"[fe80::1%eth0]:80/tcp":  `service "[fe80::1%eth0]:80/tcp": vip "fe80::1%eth0": zones are not allowed`,
		"[ff02::1]:80/tcp":       `service "[ff02::1]:80/tcp": vip "ff02::1": not a unicast address (multicast)`,
	} {
		if _, err := ParseServiceKey(in); err == nil || err.Error() != want {
			t.Errorf("ParseServiceKey(%q):\n  got  %v\n  want %s", in, err, want)
		}
	}
	k, err := ParseServiceKey("[2001:2::1]:443/UDP")
	if err != nil || k.String() != "[2001:2::1]:443/udp" {
		t.Errorf("upper-case proto: %v, %v", k, err)
	}
}

func TestBackendAddr(t *testing.T) {
	a, err := Backend{Address: "::ffff:198.18.0.11"}.Addr()
	if err != nil || a != netip.MustParseAddr("198.18.0.11") {
		t.Errorf("Addr = %v, %v", a, err)
	}
	if _, err := (Backend{Address: "::"}).Addr(); err == nil || err.Error() != `address "::": not a unicast address (unspecified)` {
		t.Errorf("unspecified: %v", err)
	}
}

func TestNormalizeLeavesServiceOnError(t *testing.T) {
	s := Service{VIP: "198.18.1.1", Port: 80, Health: &Health{Type: "tcp", HTTP: &HTTPCheck{}},
		Backends: []Backend{{Address: "198.18.0.11"}}}
	err := s.Normalize()
	if err == nil || err.Error() != "health.http: only allowed with type http (type is tcp)" {
		t.Fatalf("Normalize: %v", err)
	}
	if s.Protocol != "" || s.Backends[0].Weight != nil || s.Health.Interval != 0 {
		t.Errorf("service changed on error: %+v", s)
	}
}

func TestExpectsStatus(t *testing.T) {
	h := HTTPCheck{ExpectStatus: "200, 204,300-399"}
	for code, want := range map[int]bool{200: true, 201: false, 204: true, 299: false, 300: true, 399: true, 400: false, 503: false} {
		if got := h.ExpectsStatus(code); got != want {
			t.Errorf("ExpectsStatus(%d) = %v, want %v", code, got, want)
		}
	}
	var def HTTPCheck
	if !def.ExpectsStatus(302) || def.ExpectsStatus(404) {
		t.Error("default 200-399 not applied")
	}
	if (HTTPCheck{ExpectStatus: "bad"}).ExpectsStatus(200) {
		t.Error("invalid list matched")
	}
}
