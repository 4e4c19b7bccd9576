package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// fakeEnv is an Env whose Gather copies the healthy host's facts (plus
// change), keeping the inputs doctor worked out (interface, VIPs,
// backends, mode, role), which it records in got as Gather got them.
func fakeEnv(t *testing.T, change func(*Facts), status func(context.Context, string) (api.Status, error)) (Env, *bytes.Buffer, *bytes.Buffer, **Facts) {
	t.Helper()
	var out, errOut bytes.Buffer
	got := new(*Facts)
	if status == nil {
		status = func(context.Context, string) (api.Status, error) {
			return api.Status{}, errors.New("connection refused")
		}
	}
	env := Env{Stdout: &out, Stderr: &errOut, Status: status,
		Gather: func(f *Facts, _ ProgInfo, _ time.Duration) {
			in := *f
			*got = &in
			h := healthy(t, nil)
			h.Iface, h.VIPs, h.Backends, h.Mode, h.Role, h.Tunnel = f.Iface, f.VIPs, f.Backends, f.Mode, f.Role, f.Tunnel
			h.Link.Name = f.Iface
			if change != nil {
				change(h)
			}
			*f = *h
		}}
	return env, &out, &errOut, got
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--iface", "eth0", "--vip", "198.18.1.x"}, `invalid value "198.18.1.x" for flag -vip: "198.18.1.x": not an IP address`},
		{[]string{"--iface", "eth0", "--backend", "a,198.18.0.1"}, `flag -backend: "a": not an IP address`},
		{[]string{"--iface", "eth0", "-o", "yaml"}, `--output "yaml": want text or json`},
		{[]string{"--iface", "eth0", "--role", "router"}, `--role: `},
		{[]string{"--iface", "eth0", "--xdp-mode", "turbo"}, `--xdp-mode: `},
		{[]string{"--iface", "eth0", "--arp-wait", "-1s"}, `--arp-wait -1s: want 0 to 1m`},
		{[]string{"--iface", "this-name-is-too-long"}, `--iface: `},
		{[]string{"--iface", "eth0", "extra"}, `unexpected argument "extra"`},
		{[]string{"--bogus"}, `flag provided but not defined: -bogus`},
		{[]string{"--api", ""}, `no interface: pass --iface NAME or -c FILE`},
		{[]string{"-c", "/nonexistent/xlb.yaml"}, `/nonexistent/xlb.yaml`},
	} {
		env, out, errOut, _ := fakeEnv(t, nil, nil)
		if code := Main(c.args, env); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", c.args, code, ExitUsage)
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%q: stderr %q lacks %q", c.args, errOut.String(), c.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: wrote a report: %q", c.args, out.String())
		}
	}
}

func TestHelp(t *testing.T) {
	env, out, errOut, _ := fakeEnv(t, nil, nil)
	if code := Main([]string{"--help"}, env); code != ExitOK {
		t.Errorf("--help: exit %d, want 0", code)
	}
	if !strings.HasPrefix(errOut.String(), "Usage: xlbd doctor [flags]") || !strings.Contains(errOut.String(), "-arp-wait") || out.Len() > 0 {
		t.Errorf("--help: stdout %q, stderr %q", out, errOut)
	}
}

func TestExitCodes(t *testing.T) {
	env, out, _, _ := fakeEnv(t, nil, nil)
	if code := Main([]string{"--iface", "eth0", "--vip", "198.18.1.1", "--backend", "198.18.0.11,198.18.0.12"}, env); code != ExitOK {
		t.Fatalf("healthy: exit %d, want 0\n%s", code, out)
	}
	env, out, _, _ = fakeEnv(t, func(f *Facts) { f.Link.Features["rx-gro-hw"] = true }, nil)
	if code := Main([]string{"--iface", "eth0"}, env); code != ExitOK {
		t.Errorf("a warning: exit %d, want 0\n%s", code, out)
	}
	env, out, _, _ = fakeEnv(t, func(f *Facts) { f.Link.MTU = 9000 }, nil)
	if code := Main([]string{"--iface", "eth0"}, env); code != ExitFail {
		t.Errorf("a failure: exit %d, want 1\n%s", code, out)
	}
	want := "✗ FAIL mtu         MTU 9000 is above native XDP's single-buffer limit 3506 (4096 page - 256 headroom - 320 skb_shared_info - 14 Ethernet): the driver refuses the attach | fix: ip link set dev eth0 mtu 3506 (or xdp_mode: generic)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("text output lacks\n%s\n%s", want, out)
	}
	if !strings.Contains(out.String(), "✓ ok   kernel      ") || !strings.HasSuffix(out.String(), "1 check(s) failed\n") {
		t.Errorf("text output:\n%s", out)
	}
}

func TestJSON(t *testing.T) {
	env, out, _, _ := fakeEnv(t, func(f *Facts) { f.Link.Features["rx-lro"] = true }, nil)
	if code := Main([]string{"--iface", "eth0", "--vip", "198.18.1.1", "-o", "json", "--api", ""}, env); code != ExitFail {
		t.Fatalf("exit %d, want 1", code)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Source != "flags" || rep.Interface != "eth0" || rep.Failed != 1 || len(rep.Checks) != len(Checks) || rep.VIPs[0] != "198.18.1.1" {
		t.Errorf("report %+v", rep)
	}
	var lro Result
	for _, c := range rep.Checks {
		if c.Check == "offloads" {
			lro = c
		}
	}
	if lro.Status != Fail || lro.Fix != "ethtool -K eth0 lro off" {
		t.Errorf("offloads %+v", lro)
	}
	if !strings.Contains(out.String(), `"status": "fail"`) || !strings.Contains(out.String(), `"status": "ok"`) {
		t.Errorf("status words:\n%s", out)
	}
}

func TestSourceDaemon(t *testing.T) {
	st := api.Status{Role: "balancer", Interface: "eth1", XDPMode: "generic", Services: []api.ServiceStatus{
		{Service: "198.18.1.1:80/tcp", Forward: "dsr-l2", Backends: []api.BackendStatus{{Address: "198.18.0.11"}, {Address: "198.18.0.12"}}},
		{Service: "[2001:2:0:1::1]:80/tcp", Forward: "dsr-l2", Backends: []api.BackendStatus{{Address: "2001:2::11"}}},
		{Service: "198.18.1.2:53/udp", Forward: "ipip", Health: &config.Health{Via: "tunnel"}, Backends: []api.BackendStatus{{Address: "198.18.200.1"}}},
	}}
	var asked string
	env, out, _, got := fakeEnv(t, nil, func(_ context.Context, socket string) (api.Status, error) { asked = socket; return st, nil })
	Main([]string{"--api", "/run/test.sock", "--backend", "198.18.0.13"}, env)
	f := *got
	if asked != "/run/test.sock" || f.Iface != "eth1" || f.Mode != "generic" || !f.Tunnel {
		t.Fatalf("asked %q, facts %+v", asked, f)
	}
	if !strings.HasPrefix(out.String(), "xlb doctor: interface eth1 (from daemon /run/test.sock)\n") {
		t.Errorf("header: %s", out)
	}
	var backends []string
	for _, b := range f.Backends {
		backends = append(backends, b.Addr.String()+map[bool]string{true: " l2", false: " tunnel"}[b.L2])
	}
	if got, want := strings.Join(backends, ","), "198.18.0.11 l2,198.18.0.12 l2,2001:2::11 l2,198.18.200.1 tunnel,198.18.0.13 l2"; got != want {
		t.Errorf("backends %s, want %s", got, want)
	}
	if len(f.VIPs) != 3 {
		t.Errorf("VIPs %v", f.VIPs)
	}
}

func TestSourceConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xlb.yaml")
	yaml := "interface: eth2\nxdp_mode: generic\nservices:\n  - vip: 198.18.1.1\n    port: 80\n    backends: [{address: 198.18.0.11}]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env, out, _, got := fakeEnv(t, nil, nil)
	Main([]string{"-c", file, "--vip", "198.18.1.9"}, env)
	f := *got
	if f.Iface != "eth2" || f.Mode != "generic" || len(f.VIPs) != 2 || len(f.Backends) != 1 || !f.Backends[0].L2 {
		t.Fatalf("facts %+v", f)
	}
	if !strings.Contains(out.String(), "(from config "+file+" (xlbd's API at /run/xlb/xlb.sock did not answer))") {
		t.Errorf("header: %s", out)
	}
	// --iface overrides the file's.
	env, _, _, got = fakeEnv(t, nil, nil)
	Main([]string{"-c", file, "--iface", "eth3", "--xdp-mode", "native"}, env)
	if (*got).Iface != "eth3" || (*got).Mode != "native" || (*got).PinDir != "/sys/fs/bpf/xlb/eth3" {
		t.Errorf("facts %+v", *got)
	}
}

func TestStatusText(t *testing.T) {
	for _, s := range []Status{OK, Skip, Warn, Fail} {
		b, _ := s.MarshalText()
		var back Status
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%s: %q -> %v, %v", s, b, back, err)
		}
	}
	var s Status
	if err := s.UnmarshalText([]byte("meh")); err == nil {
		t.Error("meh: no error")
	}
}

func TestSourceDaemonBackendRole(t *testing.T) {
	st := api.Status{Role: "backend", Interface: "eth0", XDPMode: "native", Services: []api.ServiceStatus{},
		Decap: &api.DecapStatus{VIPs: []string{"198.18.1.1", "2001:2:0:1::1"}}}
	env, _, _, got := fakeEnv(t, nil, func(context.Context, string) (api.Status, error) { return st, nil })
	Main(nil, env)
	f := *got
	if f.Role != "backend" || len(f.VIPs) != 2 || len(f.Backends) != 0 {
		t.Errorf("facts %+v", f)
	}
}
