package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestDecodeService(t *testing.T) {
	got, err := DecodeService(strings.NewReader(`{
		"vip": "2001:2:0:1:0::1", "port": 443, "protocol": "UDP", "scheduler": "mh",
		"health": {"type": "negotiate", "interval": "1s", "http": {"path": "/ready", "https": true, "expect_status": " 200 , 204 "}},
		"backends": [{"address": "2001:2::11", "weight": 0}, {"address": "2001:2::12"}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Service{
		VIP: "2001:2:0:1::1", Port: 443, Protocol: "udp", Scheduler: "maglev", Forward: "dsr-l2",
		Health: &Health{
			Type: "http", Interval: Duration(time.Second), Timeout: Duration(500 * time.Millisecond),
			Rise: 2, Fall: 3, AllDown: "drop",
			HTTP: &HTTPCheck{Method: "GET", Path: "/ready", HTTPS: true, ExpectStatus: "200,204"},
		},
		Backends: []Backend{
			{Address: "2001:2::11", Weight: u32(0)},
			{Address: "2001:2::12", Weight: u32(1)},
		},
	}
	assertEqual(t, got, want)

	// A normalised service survives a JSON round trip unchanged.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeService(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	assertEqual(t, again, want)

	// Field names match case-insensitively, as encoding/json does.
	if _, err := DecodeService(strings.NewReader(`{"VIP": "198.18.1.1", "Port": 80}`)); err != nil {
		t.Errorf("upper-case keys: %v", err)
	}
}

func TestDecodeServiceErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, `empty body: want a JSON object`},
		{`{"vip": "198.18.1.1",`, `invalid JSON: unexpected end of input`},
		{`{"vip": 198.18.1.1}`, `invalid JSON at byte 15: invalid character '.' after object key:value pair`},
		{`{"vip": "198.18.1.1", "port": 80} {}`, `invalid JSON: more data after the object`},
		{`[]`, `want a JSON object`},
		{`{"vip": "198.18.1.1", "port": 80, "sheduler": "sh"}`, `unknown field "sheduler" (did you mean "scheduler"?)`},
		{`{"vip": "198.18.1.1", "port": 80, "backends": [{"address": "198.18.0.11"}, {"address": "198.18.0.12", "mac": "x"}]}`,
			`unknown field "mac" in backends[1] (known fields: address, name, family, weight)`},
		{`{"vip": "198.18.1.1", "port": 80, "health": {"http": {"expect": "200"}}}`,
			`unknown field "expect" in health.http (known fields: method, path, host, https, insecure_skip_verify, expect_status, expect_body)`},
		{`{"vip": "2001:2::1", "port": 80, "backends": [{"address": "198.18.0.11"}]}`,
			`backends[0].address "198.18.0.11": IPv4, but vip 2001:2::1 is IPv6: a backend must be of the vip's address family`},
		{`{"vip": "198.18.1.1", "port": "80"}`, `port "80": want a number, not a quoted string`},
		{`{"vip": "198.18.1.1", "port": 80.5}`, `port 80.5: not a whole number`},
		{`{"vip": ["198.18.1.1"], "port": 80}`, `vip: want a string, not an array`},
		{`{"vip": "198.18.1.1", "port": 80, "backends": {}}`, `backends: want an array`},
		{`{"vip": "198.18.1.1", "port": 80, "backends": [{"address": "198.18.0.11"}, {"address": "198.18.0.12", "weight": -1}]}`,
			`backends[1].weight -1: must not be negative`},
		{`{"vip": "198.18.1.1", "port": 80, "backends": [{"address": "198.18.0.11", "weight": 70000}]}`,
			`backends[0].weight 70000: out of range 0-65535`},
		{`{"vip": "198.18.1.1", "port": 80, "health": {"interval": 2}}`, `health.interval 2: not a duration (want e.g. 2s, 500ms or 1m)`},
		{`{"vip": "198.18.1.1", "port": 80, "health": {"interval": "2 s"}}`, `health.interval "2 s": not a duration`},
		{`{"vip": "198.18.1.1", "port": 80, "health": {"http": {"https": "yes"}}}`, `health.http.https "yes": want true or false`},
		{`{"port": 80}`, `vip: required`},
		{`{"vip": "198.18.1.300", "port": 80}`, `vip "198.18.1.300": not an IP address`},
		{`{"vip": "198.18.1.1", "port": 70000}`, `port 70000: out of range 1-65535`},
		{`{"vip": "198.18.1.1", "port": 80, "protocol": "icmp"}`, `protocol "icmp": want one of tcp, udp`},
		{`{"vip": "198.18.1.1", "port": 80, "backends": [{"address": "198.18.0.11"}, {"address": "198.18.0.11"}]}`,
			`backends[1]: duplicate backend 198.18.0.11 (also backends[0])`},
		{`{"vip": "198.18.1.1", "port": 80, "health": {"type": "ping", "http": {}}}`, `health.http: only allowed with type http (type is icmp)`},
	} {
		s, err := DecodeService(strings.NewReader(tc.in))
		if err == nil {
			t.Errorf("%s: no error; got %+v", tc.in, s)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %s\n  want  %s", tc.in, err, tc.want)
		}
		if !reflectZero(s) {
			t.Errorf("%s: got a service with the error: %+v", tc.in, s)
		}
	}
}

func reflectZero(s Service) bool {
	return s.VIP == "" && s.Port == 0 && s.Backends == nil && s.Health == nil
}

func TestDecodeBackend(t *testing.T) {
	b, err := DecodeBackend(strings.NewReader(`{"address": "::ffff:198.18.0.11"}`))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, b, Backend{Address: "198.18.0.11", Weight: u32(1)})

	b, err = DecodeBackend(strings.NewReader(`{"address": "2001:2::11", "weight": 0}`))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, b, Backend{Address: "2001:2::11", Weight: u32(0)})

	for _, tc := range []struct{ in, want string }{
		{`{"address": "198.18.0.11", "wieght": 2}`, `unknown field "wieght" (did you mean "weight"?)`},
		{`{"address": "198.18.0.11", "weight": 65536}`, `weight 65536: out of range 0-65535`},
		{`{"address": "198.18.0.11", "weight": 4294967296}`, `weight 4294967296: too large`},
		{`{"address": "198.18.0.11", "weight": "2"}`, `weight "2": want a number, not a quoted string`},
		{`{"address": "localhost"}`, `address "localhost": not an IP address`},
		{`{"address": "127.0.0.1"}`, `address "127.0.0.1": not a unicast address (loopback)`},
		{`{"weight": 1}`, `address: required`},
		{`"198.18.0.11"`, `want a JSON object`},
	} {
		_, err := DecodeBackend(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %v\n  want  %s", tc.in, err, tc.want)
		}
	}

	_, err = DecodeBackend(iotest.ErrReader(errors.New("connection reset")))
	if err == nil || err.Error() != "read body: connection reset" {
		t.Errorf("reader error: %v", err)
	}
}
