package demo

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/config"
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
