package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/test/lab"
)

var labBackends = []netip.Addr{
	netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13"),
}

// TestBundledConfig: examples/demo.yaml parses and fits the demo's lab.
func TestBundledConfig(t *testing.T) {
	data, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseConfig(data)
	if err != nil {
		t.Fatalf("examples/demo.yaml: %v", err)
	}
	svc, err := fitsLab(cfg, labBackends)
	if err != nil {
		t.Fatalf("examples/demo.yaml does not fit the lab: %v", err)
	}
	if h := svc.Health; h.Rise < 1 || h.Fall < 1 || h.Interval == 0 {
		t.Errorf("health check %+v", h)
	}
}

// TestFitsLabRejects: a config that does not fit the lab is refused with
// a reason naming what is wrong.
func TestFitsLabRejects(t *testing.T) {
	good, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"198.18.1.1 ", "198.18.1.9 ", "198.18.1.9"},
		{"      - address: 198.18.0.13", "", "2 backends"},
		{"198.18.0.12 ", "198.18.0.22 ", "198.18.0.22"},
		{"type: http", "type: tcp", "http health check"},
		{"protocol: tcp", "protocol: udp", "TCP"},
	} {
		text := strings.Replace(string(good), tc.from, tc.to, 1)
		if text == string(good) {
			t.Fatalf("%q not found in examples/demo.yaml", tc.from)
		}
		if tc.to == "type: tcp" {
			text = text[:strings.Index(text, "      http:")] + text[strings.Index(text, "    backends:"):]
		}
		cfg, err := config.ParseConfig([]byte(text))
		if err != nil {
			t.Fatalf("%q → %q: %v", tc.from, tc.to, err)
		}
		if _, err := fitsLab(cfg, labBackends); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q → %q: %v, want an error naming %q", tc.from, tc.to, err, tc.want)
		}
	}
}

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		share float64
		want  int
	}{{0, 0}, {0.5, 15}, {1, 30}, {0.334, 10}} {
		if got := len([]rune(bar(tc.share, 30))); got != tc.want {
			t.Errorf("bar(%v) has %d cells, want %d", tc.share, got, tc.want)
		}
	}
}

// TestHANoBird: without BIRD the HA demo says how to install it, fails and
// leaves nothing behind.
func TestHANoBird(t *testing.T) {
	defer func(f func() (string, error)) { findBird = f }(findBird)
	findBird = func() (string, error) { return "", lab.ErrNoBird }
	var out strings.Builder
	res, err := RunHA(context.Background(), Options{Out: &out, DropLog: true})
	if !errors.Is(err, ErrNoBird) {
		t.Fatalf("RunHA without bird: %v", err)
	}
	if !strings.Contains(out.String(), "apt-get install bird2") || res.Error == "" || len(res.Leftovers) > 0 || res.Dir != "" {
		t.Errorf("result %+v, output:\n%s", res, out.String())
	}
}

// TestHAConfig: every node's generated config parses, has the lab's
// backends and BGP to the router with the demo's hold time.
func TestHAConfig(t *testing.T) {
	topo := &lab.HATopology{Router: &lab.Router{Host: &lab.Host{Name: "router", Addr4: lab.RouterAddr4}}, VIP4: lab.VIP4}
	for i := range 3 {
		topo.Balancers = append(topo.Balancers, &lab.Host{Name: fmt.Sprintf("lb%d", i+1), Addr4: netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 3+i))})
		topo.Backends = append(topo.Backends, &lab.Host{Name: fmt.Sprintf("be%d", i+1), Addr4: labBackends[i]})
	}
	d := &haRun{topo: topo, vip: netip.AddrPortFrom(lab.VIP4, 80)}
	for i, b := range topo.Balancers {
		cfg, err := config.ParseConfig([]byte(d.haConfig(i)))
		if err != nil {
			t.Fatalf("%s: %v\n%s", b.Name, err, d.haConfig(i))
		}
		if len(cfg.Services) != 1 || cfg.BGP == nil || len(cfg.BGP.Peers) != 1 {
			t.Fatalf("%s: %+v", b.Name, cfg)
		}
		var got []netip.Addr
		for _, be := range cfg.Services[0].Backends {
			a, _ := be.Addr()
			got = append(got, a)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		if !slices.Equal(got, labBackends) || cfg.Services[0].Scheduler != "maglev" {
			t.Errorf("%s: backends %v, scheduler %s", b.Name, got, cfg.Services[0].Scheduler)
		}
		p := cfg.BGP.Peers[0]
		if p.Address != lab.RouterAddr4.String() || p.HoldTime == nil || time.Duration(*p.HoldTime) != haHold || cfg.BGP.RouterID != b.Addr4.String() {
			t.Errorf("%s: bgp %+v, peer %+v", b.Name, cfg.BGP, p)
		}
	}
}
