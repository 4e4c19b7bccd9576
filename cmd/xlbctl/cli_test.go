package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
)

// Every command has --help (and -h) with its usage line and an example,
// on stdout, exit 0, without asking xlbd.
func TestHelp(t *testing.T) {
	for i := range commands {
		c := &commands[i]
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(c.name), h)
			r := xlbctl(t, &fakeClient{}, args...)
			if r.code != 0 || r.stderr != "" || len(r.calls) != 0 {
				t.Errorf("%q: exit %d, stderr %q, calls %q", args, r.code, r.stderr, r.calls)
			}
			if !strings.HasPrefix(r.stdout, "Usage: "+c.usageLine()+"\n") {
				t.Errorf("%q: does not start with the usage line:\n%s", args, r.stdout)
			}
			if ex := "\nExamples:\n  xlbctl " + c.name; !strings.Contains(r.stdout, ex+" ") && !strings.Contains(r.stdout, ex+"\n") {
				t.Errorf("%q: no example:\n%s", args, r.stdout)
			}
			if !strings.Contains(r.stdout, "--api SOCKET") {
				t.Errorf("%q: global flags missing:\n%s", args, r.stdout)
			}
		}
		// --help anywhere among the arguments, and "help COMMAND".
		for _, args := range [][]string{
			append(strings.Fields(c.name), "198.18.1.1:80/tcp", "--help"),
			append([]string{"help"}, strings.Fields(c.name)...),
		} {
			r := xlbctl(t, &fakeClient{}, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: "+c.usageLine()+"\n") {
				t.Errorf("%q: exit %d, stdout %q", args, r.code, r.stdout)
			}
		}
		// Every flag of the command is documented.
		if c.flags != "" {
			r := xlbctl(t, &fakeClient{}, append(strings.Fields(c.name), "--help")...)
			for _, f := range strings.Fields(c.flags) {
				if name, ok := strings.CutPrefix(strings.Trim(f, "[]."), "--"); ok && !strings.Contains(r.stdout, "  --"+name+" ") {
					t.Errorf("%s --help does not explain --%s", c.name, name)
				}
			}
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := xlbctl(t, &fakeClient{}, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: xlbctl [--api SOCKET] COMMAND") || !strings.Contains(r.stdout, "\nExamples:\n  xlbctl ") {
			t.Errorf("%q: exit %d, stdout:\n%s", args, r.code, r.stdout)
		}
		for i := range commands {
			if !strings.Contains(r.stdout, "\n  "+commands[i].shortUsage()+" ") {
				t.Errorf("%q: overview lacks %s", args, commands[i].name)
			}
		}
	}
	for _, group := range []string{"service", "backend"} {
		for _, args := range [][]string{{group, "--help"}, {"help", group}} {
			r := xlbctl(t, &fakeClient{}, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: xlbctl "+group+" COMMAND") || !strings.Contains(r.stdout, "\nExamples:\n  xlbctl "+group+" ") {
				t.Errorf("%q: exit %d, stdout:\n%s", args, r.code, r.stdout)
			}
		}
	}
}

// Bad command lines: one line naming the problem, exit 2, nothing sent.
func TestUsageErrors(t *testing.T) {
	const svc = "198.18.1.1:80/tcp"
	const commandList = "status, stats, flows, bgp, service, backend"
	const keyHint = ": want VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp or [2001:2::1]:443/udp"
	for _, tc := range []struct {
		args []string
		want string
	}{
		// Commands.
		{nil, "xlbctl: missing command (usage: xlbctl [--api SOCKET] COMMAND [ARGS]; commands: " + commandList + "; see xlbctl --help)"},
		{[]string{"frobnicate"}, `xlbctl: unknown command "frobnicate" (commands: ` + commandList + "; see xlbctl --help)"},
		{[]string{"service"}, "xlbctl: service: missing command (want add, set, del, list or resolve; see xlbctl service --help)"},
		{[]string{"backend", "undrain", svc}, `xlbctl: backend: unknown command "undrain" (want add, set, del, drain, list or sync; see xlbctl backend --help)`},
		{[]string{"help", "frobnicate"}, `xlbctl: help: unknown command "frobnicate" (commands: ` + commandList + "; see xlbctl --help)"},
		{[]string{"help", "status", "now"}, `xlbctl: help: unexpected argument "now" (usage: xlbctl help [COMMAND])`},

		// Flags.
		{[]string{"--bogus", "status"}, "xlbctl: unknown flag --bogus (see xlbctl --help)"},
		{[]string{"status", "--bogus"}, "xlbctl: status: unknown flag --bogus (see xlbctl status --help)"},
		{[]string{"backend", "add", svc, "198.18.0.11", "-w", "2"}, "xlbctl: backend add: unknown flag --w (see xlbctl backend add --help)"},
		{[]string{"backend", "add", svc, "198.18.0.11", "--weight"}, "xlbctl: backend add: flag --weight needs a value (see xlbctl backend add --help)"},
		{[]string{"--api"}, "xlbctl: flag --api needs a value (see xlbctl --help)"},
		{[]string{"status", "--api", ""}, `xlbctl: status: api "": want the path of xlbd's API socket`},
		{[]string{"status", "-o", "yaml"}, `xlbctl: status: output "yaml": want table or json`},
		{[]string{"stats", "--output", "JSON"}, `xlbctl: stats: output "JSON": want table or json`},
		{[]string{"flows", "-o", "wide"}, `xlbctl: flows: output "wide": want table or json`},
		{[]string{"service", "list", "-o", ""}, `xlbctl: service list: output "": want table or json`},
		{[]string{"backend", "list", svc, "-o", "csv"}, `xlbctl: backend list: output "csv": want table or json`},

		// Arguments.
		{[]string{"status", "now"}, `xlbctl: status: unexpected argument "now" (usage: xlbctl status [-o table|json])`},
		{[]string{"service", "add"}, "xlbctl: service add: missing VIP:PORT/PROTO (usage: xlbctl service add VIP:PORT/PROTO [--backend ADDR[=WEIGHT]]... [--scheduler NAME] [--check TYPE] [FLAGS])"},
		{[]string{"service", "del", svc, "198.18.0.11"}, `xlbctl: service del: unexpected argument "198.18.0.11" (usage: xlbctl service del VIP:PORT/PROTO)`},
		{[]string{"backend", "add", svc}, "xlbctl: backend add: missing ADDR (usage: xlbctl backend add VIP:PORT/PROTO ADDR [--weight N])"},
		{[]string{"backend", "drain"}, "xlbctl: backend drain: missing VIP:PORT/PROTO ADDR (usage: xlbctl backend drain VIP:PORT/PROTO ADDR)"},
		{[]string{"backend", "del", svc, "198.18.0.11", "extra"}, `xlbctl: backend del: unexpected argument "extra" (usage: xlbctl backend del VIP:PORT/PROTO ADDR)`},
		{[]string{"backend", "set", svc, "198.18.0.11"}, "xlbctl: backend set: missing --weight (usage: xlbctl backend set VIP:PORT/PROTO ADDR --weight N)"},

		// Service keys.
		{[]string{"service", "del", "198.18.1.1:80"}, `xlbctl: service del: service "198.18.1.1:80"` + keyHint},
		{[]string{"service", "del", "2001:2::1:80/tcp"}, `xlbctl: service del: service "2001:2::1:80/tcp"` + keyHint},
		{[]string{"service", "add", "198.18.1.1:80/sctp"}, `xlbctl: service add: service "198.18.1.1:80/sctp": protocol "sctp": want one of tcp, udp`},
		{[]string{"backend", "add", "198.18.1.1:0/tcp", "198.18.0.11"}, `xlbctl: backend add: service "198.18.1.1:0/tcp": port 0: out of range 1-65535`},
		{[]string{"backend", "list", "224.0.0.1:80/udp"}, `xlbctl: backend list: service "224.0.0.1:80/udp": vip "224.0.0.1": not a unicast address (multicast)`},

		// Addresses and weights.
		{[]string{"backend", "add", svc, "198.18.0.11", "--weight", "x"}, `xlbctl: backend add: weight "x": not a number from 0 to 65535`},
		{[]string{"backend", "add", svc, "198.18.0.11", "--weight", "65536"}, `xlbctl: backend add: weight "65536": not a number from 0 to 65535`},
		{[]string{"backend", "set", svc, "198.18.0.11", "--weight", "-1"}, `xlbctl: backend set: weight "-1": not a number from 0 to 65535`},
		{[]string{"backend", "add", svc, "198.18.0.300"}, `xlbctl: backend add: address "198.18.0.300": not an IP address`},
		{[]string{"backend", "del", svc, "198.18.0.0/24"}, `xlbctl: backend del: address "198.18.0.0/24": not an IP address (give a single address, without /prefix)`},
		{[]string{"backend", "drain", svc, "198.18.0.11:80"}, `xlbctl: backend drain: address "198.18.0.11:80": not an IP address (give the port separately)`},
		{[]string{"backend", "add", svc, "0.0.0.0"}, `xlbctl: backend add: address "0.0.0.0": not a unicast address (unspecified)`},

		// Service settings.
		{[]string{"service", "add", svc, "--backend", "198.18.0.300"}, `xlbctl: service add: backend "198.18.0.300": not an IP address`},
		{[]string{"service", "add", svc, "--backend", "198.18.0.11=x"}, `xlbctl: service add: backend "198.18.0.11=x": weight "x": not a number from 0 to 65535`},
		{[]string{"service", "add", svc, "--backend", "[2001:2::11]:80=1"}, `xlbctl: service add: backend "[2001:2::11]:80=1": address "[2001:2::11]:80": not an IP address (give the port separately)`},
		{[]string{"service", "add", svc, "--backend", "198.18.0.11", "--backend", "198.18.0.11=2"}, `xlbctl: service add: backend "198.18.0.11=2": 198.18.0.11 is given twice`},
		{[]string{"service", "add", svc, "--backend", "198.18.1.1"}, `xlbctl: service add: backend "198.18.1.1": same as the service's vip`},
		{[]string{"service", "add", svc, "--scheduler", "sed"}, `xlbctl: service add: scheduler "sed": want one of maglev, source-hash, round-robin, least-conn (or ipvsadm's mh, sh, rr, wrr, lc, wlc)`},
		{[]string{"service", "add", svc, "--persistence", "5 min"}, `xlbctl: service add: persistence "5 min": not a duration (want e.g. 300s or 5m; 0 turns it off)`},
		{[]string{"service", "add", svc, "--persistence", "-5s"}, `xlbctl: service add: persistence -5s: out of range 0 (off) to 720h`},
		{[]string{"service", "add", svc, "--forward", "nat"}, `xlbctl: service add: forward "nat": want one of dsr-l2, ipip, gue`},
		{[]string{"service", "add", svc, "--check", "udp"}, `xlbctl: service add: check "udp": want one of tcp, http, icmp, none (or ldirectord's connect, negotiate, ping, on)`},
		{[]string{"service", "add", svc, "--all-down", "hold"}, `xlbctl: service add: all-down "hold": want one of drop, keep-last`},
		{[]string{"service", "add", svc, "--check", "icmp", "--https"}, `xlbctl: service add: --https needs --check http (the check is icmp)`},
		{[]string{"service", "add", svc, "--check-interval", "2"}, `xlbctl: service add: check-interval "2": not a duration (want e.g. 2s, 500ms or 1m)`},
		{[]string{"service", "add", svc, "--check-interval", "50ms"}, `xlbctl: service add: check-interval 50ms: out of range 100ms-1h`},
		{[]string{"service", "add", svc, "--check-timeout", "-1s"}, `xlbctl: service add: check-timeout "-1s": must be greater than 0`},
		{[]string{"service", "add", svc, "--check-timeout", "3s"}, `xlbctl: service add: check-timeout 3s: must be less than interval 2s`},
		{[]string{"service", "add", svc, "--rise", "0"}, `xlbctl: service add: rise "0": not a number from 1 to 100`},
		{[]string{"service", "add", svc, "--fall", "many"}, `xlbctl: service add: fall "many": not a number from 1 to 100`},
		{[]string{"service", "add", svc, "--check-port", "65536"}, `xlbctl: service add: check-port "65536": not a number from 0 to 65535`},
		{[]string{"service", "add", svc, "--check", "icmp", "--check-port", "80"}, `xlbctl: service add: check-port 80: not used by type icmp`},
		{[]string{"service", "add", svc, "--check-via", "vip"}, `xlbctl: service add: check-via "vip": want one of backend, tunnel`},
		{[]string{"service", "add", svc, "--check-via", "tunnel"}, `xlbctl: service add: check-via "tunnel": needs forward ipip or gue (forward is dsr-l2)`},
		{[]string{"service", "add", svc, "--check", "tcp", "--http-path", "/x"}, `xlbctl: service add: --http-path needs --check http (the check is tcp)`},
		{[]string{"service", "add", svc, "--http-path", "healthz"}, `xlbctl: service add: http-path "healthz": must start with "/"`},
		{[]string{"service", "add", svc, "--http-expect", "600"}, `xlbctl: service add: http-expect "600": 600: out of range 100-599`},
		{[]string{"service", "set", svc}, "xlbctl: service set: nothing to change: give the settings to change as flags (usage: xlbctl service set VIP:PORT/PROTO [--backend ADDR[=WEIGHT]]... [--scheduler NAME] [--check TYPE] [FLAGS])"},
		{[]string{"service", "set", svc, "--rise", "101"}, `xlbctl: service set: rise "101": not a number from 1 to 100`},
		{[]string{"flows", "--limit", "0"}, `xlbctl: flows: limit "0": not a number from 1 to 1000000`},
	} {
		r := xlbctl(t, &fakeClient{status: sampleStatus()}, tc.args...)
		if r.code != 2 || r.stderr != tc.want+"\n" || r.stdout != "" {
			t.Errorf("%q:\n  exit %d, stderr %q\n  want exit 2, %q", tc.args, r.code, r.stderr, tc.want)
		}
		if len(r.calls) != 0 {
			t.Errorf("%q: sent %q before checking the arguments", tc.args, r.calls)
		}
	}
}

// Refusals and failures of xlbd: one line, exit 1.
func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		args []string
		want string
	}{
		{&api.APIError{Status: 409, Message: "service 198.18.1.1:80/tcp already exists (use set to change it)"},
			[]string{"service", "add", "198.18.1.1:80/tcp"}, "xlbctl: service add: service 198.18.1.1:80/tcp already exists (use set to change it)"},
		{&api.APIError{Status: 404, Message: "service 198.18.1.1:80/tcp: no backend 198.18.0.99"},
			[]string{"backend", "set", "198.18.1.1:80/tcp", "198.18.0.99", "--weight", "3"}, "xlbctl: backend set: service 198.18.1.1:80/tcp: no backend 198.18.0.99"},
		{&api.APIError{Status: 400, Message: "service 198.18.1.1:80/tcp: backends[1].address \"198.18.1.1\": same as the service's vip"},
			[]string{"backend", "add", "198.18.1.1:80/tcp", "198.18.1.1"}, `xlbctl: backend add: service 198.18.1.1:80/tcp: backends[1].address "198.18.1.1": same as the service's vip`},
		{&api.APIError{Status: 500, Message: "update maps: no space left"},
			[]string{"backend", "drain", "198.18.1.1:80/tcp", "198.18.0.11"}, "xlbctl: backend drain: update maps: no space left"},
		{errors.New("cannot reach xlbd at /run/xlb/xlb.sock: connect: permission denied (is xlbd running? is --api right? are you root?)"),
			[]string{"status"}, "xlbctl: status: cannot reach xlbd at /run/xlb/xlb.sock: connect: permission denied (is xlbd running? is --api right? are you root?)"},
		{errors.New("first line\nsecond line"), []string{"flows"}, "xlbctl: flows: first line second line"},
		{errors.New("timeout"), []string{"service", "set", "198.18.1.1:80/tcp", "--rise", "3"}, "xlbctl: service set: timeout"},
	} {
		r := xlbctl(t, &fakeClient{err: tc.err}, tc.args...)
		if r.code != 1 || r.stderr != tc.want+"\n" || r.stdout != "" || len(r.calls) != 1 {
			t.Errorf("%q:\n  exit %d, stderr %q, calls %q\n  want exit 1, %q", tc.args, r.code, r.stderr, r.calls, tc.want)
		}
	}
	// Every command reports xlbd's errors the same way.
	for i := range commands {
		c := &commands[i]
		args := strings.Fields(c.name)
		switch n := len(strings.Fields(c.args)); n {
		case 1:
			args = append(args, "198.18.1.1:80/tcp")
		case 2:
			args = append(args, "198.18.1.1:80/tcp", "198.18.0.11")
		}
		switch c.name {
		case "backend set":
			args = append(args, "--weight", "1")
		case "service set":
			args = append(args, "--scheduler", "maglev")
		}
		r := xlbctl(t, &fakeClient{err: &api.APIError{Status: 500, Message: "boom"}}, args...)
		if r.code != 1 || r.stderr != "xlbctl: "+c.name+": boom\n" {
			t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}
