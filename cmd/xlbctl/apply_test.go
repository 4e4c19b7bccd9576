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

// TestApplyDryRun: xlbctl apply --dry-run against xlbd's real handlers
// shows the reload's diff, sorted, in text and JSON, and changes nothing;
// a bad file gets xlbd's error; without --dry-run apply refuses.
func TestApplyDryRun(t *testing.T) {
	sock, dp, _ := startXlbd(t)
	xlbctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut}, append([]string{"--api", sock}, args...))
		return code, out.String(), errOut.String()
	}
	for _, args := range [][]string{
		{"service", "add", "198.18.1.1:80/tcp", "--backend", "198.18.0.11", "--backend", "198.18.0.12=3"},
		{"service", "add", "198.18.1.2:53/udp", "--backend", "198.18.0.21"},
	} {
		if code, _, errOut := xlbctl(args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	syncs := dp.Syncs()
	dir := t.TempDir()
	file := filepath.Join(dir, "new.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`services:
  - vip: 198.18.1.1
    port: 80
    persistence: 300s
    backends: [{address: 198.18.0.12, weight: 1}, {address: 198.18.0.13}]
  - vip: 198.18.1.3
    port: 80
    backends: [{address: 198.18.0.31}]
`)
	code, out, errOut := xlbctl("apply", "--dry-run", "-f", file)
	want := `+ service 198.18.1.3:80/tcp
- service 198.18.1.2:53/udp
~ service 198.18.1.1:80/tcp
    persistence: 0s -> 5m
    + backend 198.18.0.13 weight 1
    - backend 198.18.0.11 weight 1
    ~ backend 198.18.0.12 weight 3 -> 1
1 added, 1 removed, 1 changed, 0 unchanged (nothing applied)
`
	if code != 0 || out != want {
		t.Errorf("apply --dry-run: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	code, out, _ = xlbctl("apply", "--dry-run", "-f", file, "-o", "json")
	t.Logf("-o json:\n%s", out)
	var diff api.ConfigDiff
	if err := json.Unmarshal([]byte(out), &diff); code != 0 || err != nil || len(diff.Changed) != 1 || diff.Changed[0].BackendsChanged[0].To != 1 {
		t.Errorf("-o json: exit %d, %v:\n%s", code, err, out)
	}

	write("services:\n  - vip: 198.18.1.1\n    port: 80\n    scheduler: fastest\n    backends: []\n")
	code, out, errOut = xlbctl("apply", "--dry-run", "-f", file)
	t.Logf("bad file: %s", errOut)
	if code != 1 || out != "" || !strings.Contains(errOut, `services[0].scheduler "fastest"`) || !strings.Contains(errOut, "line 4") {
		t.Errorf("bad file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = xlbctl("apply", "-f", file)
	if code != 2 || !strings.Contains(errOut, "only --dry-run is supported") || !strings.Contains(errOut, "systemctl reload xlbd") {
		t.Errorf("apply without --dry-run: exit %d, %q", code, errOut)
	}
	if dp.Syncs() != syncs {
		t.Errorf("apply changed the data plane")
	}
	if code, out, _ := xlbctl("--help"); code != 0 || !strings.Contains(out, "\n  apply  ") {
		t.Errorf("the overview lacks apply:\n%s", out)
	}
	if code, out, _ := xlbctl("service", "list"); code != 0 || !strings.Contains(out, "198.18.1.2:53/udp") || strings.Contains(out, "198.18.1.3") {
		t.Errorf("apply changed the services:\n%s", out)
	}
}
