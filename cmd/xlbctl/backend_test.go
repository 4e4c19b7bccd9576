package main

import (
	"reflect"
	"testing"
)

func TestBackendCommands(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		calls []string
		out   string
	}{
		{[]string{"backend", "add", "198.18.1.1:80/tcp", "198.18.0.13"},
			[]string{`AddBackend 198.18.1.1:80/tcp {"address":"198.18.0.13"}`},
			"added backend 198.18.0.13 to 198.18.1.1:80/tcp with weight 2\n"}, // as the returned status says
		{[]string{"backend", "add", "--weight", "0", "198.18.1.1:80/tcp", "198.18.0.14"},
			[]string{`AddBackend 198.18.1.1:80/tcp {"address":"198.18.0.14","weight":0}`},
			"added backend 198.18.0.14 to 198.18.1.1:80/tcp\n"},
		{[]string{"backend", "add", "[2001:2::1]:443/tcp", "[2001:2:0::13]", "--weight", "65535"},
			[]string{`AddBackend [2001:2::1]:443/tcp {"address":"2001:2::13","weight":65535}`},
			"added backend 2001:2::13 to [2001:2::1]:443/tcp\n"},
		{[]string{"backend", "set", "198.18.1.1:80/tcp", "198.18.0.12", "--weight", "3"},
			[]string{`SetBackend 198.18.1.1:80/tcp 198.18.0.12 {"address":"198.18.0.12","weight":3}`},
			"set backend 198.18.0.12 of 198.18.1.1:80/tcp to weight 3\n"},
		{[]string{"backend", "del", "198.18.1.1:80/tcp", "::ffff:198.18.0.12"},
			[]string{`DeleteBackend 198.18.1.1:80/tcp 198.18.0.12`},
			"deleted backend 198.18.0.12 from 198.18.1.1:80/tcp\n"},
		{[]string{"backend", "drain", "198.18.1.1:80/tcp", "198.18.0.11"},
			[]string{`DrainBackend 198.18.1.1:80/tcp 198.18.0.11`},
			"draining backend 198.18.0.11 of 198.18.1.1:80/tcp: weight 0, its flows continue, new flows go to the others\n"},
		{[]string{"backend", "drain", "--", "198.18.1.1:80/tcp", "198.18.0.11"},
			[]string{`DrainBackend 198.18.1.1:80/tcp 198.18.0.11`},
			"draining backend 198.18.0.11 of 198.18.1.1:80/tcp: weight 0, its flows continue, new flows go to the others\n"},
	} {
		r := mustRun(t, &fakeClient{status: sampleStatus()}, tc.args...)
		if !reflect.DeepEqual(r.calls, tc.calls) {
			t.Errorf("%q:\n  calls %q\n  want  %q", tc.args, r.calls, tc.calls)
		}
		if r.stdout != tc.out {
			t.Errorf("%q: stdout %q, want %q", tc.args, r.stdout, tc.out)
		}
	}
}
