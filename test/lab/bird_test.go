package lab

import (
	"bufio"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBirdConfig(t *testing.T) {
	good := BirdConfig{
		RouterID:   RouterAddr4,
		LocalAddr4: RouterAddr4,
		LocalAddr6: RouterAddr6,
		HoldTime:   3 * time.Second,
		Neighbors: []BirdNeighbor{
			{Name: "lb1", Addr: BalancerAddr4, ASN: 65001},
			{Name: "lb2", Addr: BalancerAddr6, ASN: 65002, Passive: true, Password: "s3cret", HoldTime: 6 * time.Second},
		},
		Debug: true,
	}
	c, err := good.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.ASN != DefaultRouterASN || c.Neighbors[0].HoldTime != 3*time.Second || good.Neighbors[0].HoldTime != 0 {
		t.Errorf("defaults: %+v (input changed: %+v)", c, good)
	}
	conf := birdConf(c, "/tmp/x/bird.log")
	for _, want := range []string{
		"router id 198.18.0.1;",
		`log "/tmp/x/bird.log" all;`,
		"protocol kernel kernel4 {\n\tipv4 { import none; export all; };\n\tmerge paths on;\n}",
		"protocol kernel kernel6 {\n\tipv6 { import none; export all; };\n\tmerge paths on;\n}",
		"protocol bgp lb1 {\n\tlocal 198.18.0.1 as 65000;\n\tneighbor 198.18.0.3 as 65001;\n\thold time 3;\n\tgraceful restart on;\n\terror wait time 1, 4;\n\tconnect delay time 1;\n\tconnect retry time 2;\n\tdebug all;\n\tipv4 { import all; export none; };\n\tipv6 { import all; export none; };\n}",
		"protocol bgp lb2 {\n\tlocal 2001:2::1 as 65000;\n\tneighbor 2001:2::3 as 65002;\n\thold time 6;",
		"\tpassive on;\n\tpassword \"s3cret\";\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	// BIRD itself accepts it (parse only: no root needed).
	if bin, err := BirdPath(); err == nil {
		f := t.TempDir() + "/bird.conf"
		if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-p", "-c", f).CombinedOutput(); err != nil {
			t.Errorf("bird -p: %v: %s\n%s", err, out, conf)
		}
	} else {
		t.Logf("bird not installed: configuration not checked by bird -p")
	}

	for i, mutate := range []func(*BirdConfig){
		func(c *BirdConfig) { c.Neighbors = nil },
		func(c *BirdConfig) { c.RouterID = RouterAddr6 },
		func(c *BirdConfig) { c.Neighbors[1].Name = "lb1" },
		func(c *BirdConfig) { c.Neighbors[0].Name = "kernel4" },
		func(c *BirdConfig) { c.Neighbors[0].Name = "1lb" },
		func(c *BirdConfig) { c.Neighbors[0].ASN = 0 },
		func(c *BirdConfig) { c.Neighbors[0].Addr = netip.Addr{} },
		func(c *BirdConfig) { c.Neighbors[0].Password = `a"b` },
		func(c *BirdConfig) { c.Neighbors[0].HoldTime = 2 * time.Second },
		func(c *BirdConfig) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond },
		func(c *BirdConfig) { c.LocalAddr6 = netip.Addr{} },
	} {
		bad := good
		bad.Neighbors = slices.Clone(good.Neighbors)
		mutate(&bad)
		if _, err := bad.normalize(); err == nil {
			t.Errorf("case %d: no error for %+v", i, bad)
		}
	}
}

func TestReadBirdReply(t *testing.T) {
	in := "+async\n1002-lb1        BGP        ---        up     10:00:00.000  Established   \n" +
		"1006-  BGP state:          Established\n    Neighbor address: 198.18.0.3\n0000 \n" +
		"8003 No protocols match\n"
	r := bufio.NewReader(strings.NewReader(in))
	text, code, err := readBirdReply(r)
	if err != nil || code != 0 || !strings.Contains(text, "  BGP state:          Established\n   Neighbor address: 198.18.0.3") || strings.Contains(text, "async") {
		t.Errorf("first reply: %q %d %v", text, code, err)
	}
	text, code, err = readBirdReply(r)
	if err != nil || code != 8003 || text != "No protocols match" {
		t.Errorf("second reply: %q %d %v", text, code, err)
	}
	if _, _, err := readBirdReply(bufio.NewReader(strings.NewReader("garbage\n"))); err == nil {
		t.Error("garbage: no error")
	}
}

func TestHABirdRunner(t *testing.T) {
	t.Parallel()
	RequireBird(t)
	topo := NewHAT(t, HAConfig{Balancers: 2, Backends: -1, ClientAddrs: -1})
	// No speaker runs on the nodes: the sessions stay down.
	b, err := topo.StartBird(BirdConfig{HoldTime: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(b.PIDFile)
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(b.PID()) {
		t.Errorf("pid file %q (%v), started pid %d", pid, err, b.PID())
	}
	// BIRD runs in the router's namespace.
	self, _ := os.Readlink("/proc/" + strconv.Itoa(b.PID()) + "/ns/net")
	if want := "net:[" + strconv.FormatUint(nsInode(t, topo.Router.NS.Path), 10) + "]"; self != want {
		t.Errorf("bird in %s, want %s", self, want)
	}
	out, err := b.Command("show status")
	if err != nil || !strings.Contains(out, "Router ID is 198.18.0.1") {
		t.Errorf("show status: %q %v", out, err)
	}
	if _, err := b.Command("show protocols nosuch"); err == nil {
		t.Error("unknown protocol: no error")
	}
	all, err := b.ShowProtocolsAll("lb2")
	if err != nil || !strings.Contains(all, "Neighbor address: 198.18.0.4") {
		t.Errorf("show protocols all lb2: %q %v", all, err)
	}
	state, err := b.BGPState("lb1")
	if err != nil || state == "Established" {
		t.Errorf("BGP state of lb1 with no speaker: %q %v", state, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.WaitEstablished(ctx); err == nil {
		t.Error("WaitEstablished with no speaker: no error")
	}
	t.Logf("lb2 with no speaker:\n%s", all)

	// Close stops it by its pid and removes its files.
	proc := b.cmd.Process
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("bird after Close: %v", err)
	}
	if _, err := os.Stat(b.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Close: %v", b.Dir, err)
	}
	if _, err := topo.StartBird(BirdConfig{}); !errors.Is(err, ErrClosed) {
		t.Errorf("StartBird after Close: %v", err)
	}
}
