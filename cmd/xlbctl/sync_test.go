package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
)

// The three file forms and the line syntax, with what each line means.
func TestParseBackendSet(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"# pool\n\n198.18.0.11\n198.18.0.12 2   # bigger\n198.18.0.13=0\n", "198.18.0.11/- 198.18.0.12/2 198.18.0.13/0"},
		{"2001:2::11\n2001:2::12 3\n[2001:2::13]=4\n[2001:2::14]\n[2001:2::15] 5\n", "2001:2::11/- 2001:2::12/3 2001:2::13/4 2001:2::14/- 2001:2::15/5"},
		{"# yaml\n- address: 198.18.0.11\n- {address: 198.18.0.12, weight: 2}\n", "198.18.0.11/1 198.18.0.12/2"},
		{"backends:\n  - address: 2001:2::11\n", "2001:2::11/1"},
		{`[{"address": "198.18.0.11", "weight": 7}]`, "198.18.0.11/7"},
		{"[\n  {\"address\": \"198.18.0.11\"}\n]\n", "198.18.0.11/1"},
		{`{"backends": []}`, ""},
		{"[]", ""},
		{"# nothing\n\n", ""},
	} {
		set, err := parseBackendSet([]byte(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var got []string
		for _, b := range set {
			w := "-"
			if b.Weight != nil {
				w = itoa(*b.Weight)
			}
			got = append(got, b.Address+"/"+w)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: %v, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"198.18.0.11\n\n198.18.0.300\n", `line 3 "198.18.0.300": address "198.18.0.300": not an IP address`},
		{"198.18.0.11 2 3\n", `line 1 "198.18.0.11 2 3": want ADDR, ADDR WEIGHT or ADDR=WEIGHT`},
		{"198.18.0.11=2 3\n", `line 1 "198.18.0.11=2 3": want ADDR, ADDR WEIGHT or ADDR=WEIGHT`},
		{"# c\n198.18.0.11 heavy\n", `line 2 "198.18.0.11 heavy": weight "heavy": not a number from 0 to 65535`},
		// ADDR:WEIGHT is no syntax here: for IPv6 it would be another
		// address.
		{"198.18.0.11:3\n", `line 1 "198.18.0.11:3": address "198.18.0.11:3": not an IP address (a weight goes after a space or =, not :)`},
		{"- address: 198.18.0.11\n  weight: -1\n", `line 2: backends[0].weight -1: must not be negative`},
	} {
		if _, err := parseBackendSet([]byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n  got  %v\n  want %s", tc.in, err, tc.want)
		}
	}
}

func itoa(w uint32) string {
	b, _ := json.Marshal(w)
	return string(b)
}

// TestBackendSync: xlbctl backend sync against xlbd's real handlers: a
// text file, YAML on stdin, the same set again (no change), a dry run, JSON
// output, an empty set with and without --allow-empty, bad files (nothing
// sent) and a set xlbd refuses (nothing changed).
func TestBackendSync(t *testing.T) {
	sock, dp, rec := startXlbd(t)
	xlbctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut}, append([]string{"--api", sock}, args...))
		return code, out.String(), errOut.String()
	}
	const svc = "198.18.1.1:80/tcp"
	if code, _, errOut := xlbctl("service", "add", svc, "--backend", "198.18.0.11", "--backend", "198.18.0.12", "--backend", "198.18.0.13"); code != 0 {
		t.Fatal(errOut)
	}
	dir := t.TempDir()
	file := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	backends := func() string {
		_, out, _ := xlbctl("backend", "list", svc, "-o", "json")
		var bs []api.BackendStatus
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, b := range bs {
			s = append(s, b.Address+"="+itoa(b.Weight))
		}
		return strings.Join(s, " ")
	}

	pool := file("pool.txt", "# the autoscaler's pool\n198.18.0.14\n\n198.18.0.11   # stays\n198.18.0.12 3\n")
	code, out, errOut := xlbctl("backend", "sync", svc, "-f", pool)
	want := `synced 198.18.1.1:80/tcp: 1 added, 1 removed, 1 reweighted, 1 kept
+ 198.18.0.14 weight 1
- 198.18.0.13 weight 1
~ 198.18.0.12 weight 1 -> 3
= 198.18.0.11 weight 1
`
	if code != 0 || out != want {
		t.Fatalf("sync: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	if got := backends(); got != "198.18.0.14=1 198.18.0.11=1 198.18.0.12=3" {
		t.Errorf("after the sync: %s", got)
	}

	// The same set as YAML on stdin: no change, nothing synced.
	syncs := dp.Syncs()
	yml := file("pool.yaml", "backends:\n  - {address: 198.18.0.12, weight: 3}\n  - address: 198.18.0.11\n  - address: 198.18.0.14\n")
	stdin := os.Stdin
	t.Cleanup(func() { os.Stdin = stdin })
	f, err := os.Open(yml)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	os.Stdin = f
	code, out, errOut = xlbctl("backend", "sync", svc, "-f", "-")
	os.Stdin = stdin
	if code != 0 || !strings.HasPrefix(out, "no change to 198.18.1.1:80/tcp: 0 added, 0 removed, 0 reweighted, 3 kept\n") || dp.Syncs() != syncs {
		t.Errorf("same set again: exit %d, %q %q, %d syncs (was %d)", code, out, errOut, dp.Syncs(), syncs)
	}

	// A dry run, in JSON.
	code, out, _ = xlbctl("backend", "sync", svc, "-f", file("one.txt", "198.18.0.11\n"), "--dry-run", "-o", "json")
	var res api.BackendSync
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.DryRun || res.Applied || len(res.Removed) != 2 || dp.Syncs() != syncs {
		t.Errorf("dry run: exit %d, %v\n%s", code, err, out)
	}

	// Bad files and command lines: nothing sent.
	rec.mu.Lock()
	sent := len(rec.requests)
	rec.mu.Unlock()
	empty := file("empty.txt", "# scaled to zero\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-f", file("bad.txt", "198.18.0.11\n198.18.0.12 x\n")}, 1, `xlbctl: backend sync: ` + filepath.Join(dir, "bad.txt") + `: line 2 "198.18.0.12 x": weight "x": not a number from 0 to 65535`},
		{[]string{"-f", empty}, 1, "no backends: the sync would leave 198.18.1.1:80/tcp with none (give --allow-empty to mean it)"},
		{[]string{"-f", filepath.Join(dir, "missing.txt")}, 1, "read the backend set: open "},
		{nil, 2, "xlbctl: backend sync: missing -f FILE (usage: xlbctl backend sync VIP:PORT/PROTO -f FILE [--allow-empty] [--dry-run] [-o table|json])"},
		{[]string{"-f", pool, "-o", "yaml"}, 2, `output "yaml": want table or json`},
	} {
		code, out, errOut := xlbctl(append([]string{"backend", "sync", svc}, tc.args...)...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if code, _, errOut := xlbctl("backend", "sync", "198.18.1.1:80", "-f", pool); code != 2 || !strings.Contains(errOut, `service "198.18.1.1:80"`) {
		t.Errorf("bad service: exit %d, %q", code, errOut)
	}
	rec.mu.Lock()
	if len(rec.requests) != sent {
		t.Errorf("bad command lines sent requests: %q", rec.requests[sent:])
	}
	rec.mu.Unlock()

	// xlbd refuses a set that does not fit the service: nothing changes.
	code, _, errOut = xlbctl("backend", "sync", svc, "-f", file("v6.txt", "198.18.0.11\n2001:2::11\n"))
	if code != 1 || !strings.Contains(errOut, `backends[1].address "2001:2::11"`) || backends() != "198.18.0.14=1 198.18.0.11=1 198.18.0.12=3" {
		t.Errorf("refused set: exit %d, %q, backends %s", code, errOut, backends())
	}
	// Scale to zero on purpose.
	code, out, errOut = xlbctl("backend", "sync", svc, "-f", empty, "--allow-empty")
	if code != 0 || !strings.HasPrefix(out, "synced 198.18.1.1:80/tcp: 0 added, 3 removed") || backends() != "" {
		t.Errorf("--allow-empty: exit %d, %q %q", code, out, errOut)
	}
}

// The file commands have --help like the table's commands, and "help
// backend sync" and the group's help find backend sync.
func TestFileCommandsHelp(t *testing.T) {
	for i := range fileCommands {
		c := &fileCommands[i]
		for _, args := range [][]string{append(strings.Fields(c.name), "--help"), append([]string{"help"}, strings.Fields(c.name)...)} {
			r := xlbctl(t, &fakeClient{}, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: "+c.usageLine()+"\n") || len(r.calls) != 0 {
				t.Errorf("%q: exit %d, stdout %q", args, r.code, r.stdout)
			}
			for _, f := range strings.Fields(c.flags) {
				if name, ok := strings.CutPrefix(strings.Trim(f, "[]."), "--"); ok && !strings.Contains(r.stdout, "  --"+name+" ") {
					t.Errorf("%s --help does not explain --%s", c.name, name)
				}
			}
		}
	}
	if r := xlbctl(t, &fakeClient{}, "backend", "--help"); !strings.Contains(r.stdout, "\n  backend sync VIP:PORT/PROTO ") {
		t.Errorf("backend --help lacks sync:\n%s", r.stdout)
	}
}
