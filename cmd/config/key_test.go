package config

import (
	"net/netip"
	"testing"

	"github.com/xlb-lb/xlb/maps/lb"
)

func TestServiceKey(t *testing.T) {
	for _, tc := range []struct {
		s    Service
		want lb.ServiceKey
		text string
	}{
		{Service{VIP: "198.18.1.1", Port: 80}, lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}, "198.18.1.1:80/tcp"},
		{Service{VIP: "::ffff:198.18.1.1", Port: 53, Protocol: "UDP"}, lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 53, Proto: lb.UDP}, "198.18.1.1:53/udp"},
		{Service{VIP: "2001:2:0:1::1", Port: 443, Protocol: "tcp"}, lb.ServiceKey{VIP: netip.MustParseAddr("2001:2:0:1::1"), Port: 443, Proto: lb.TCP}, "[2001:2:0:1::1]:443/tcp"},
	} {
		k, err := tc.s.Key()
		if err != nil {
			t.Errorf("%+v: %v", tc.s, err)
			continue
		}
		if k != tc.want || k.String() != tc.text {
			t.Errorf("%+v: got %v, want %v", tc.s, k, tc.text)
		}
		back, err := lb.ParseServiceKey(k.String())
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
