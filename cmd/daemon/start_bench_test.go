package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/test/priv"
)

// BenchmarkStart measures xlbd's first start with the bench's large
// config (BENCH_START_SERVICES services, default 100, of 100 backends
// each, the same backends behind every service) on the real loader
// (loaded, not attached): parsing the config, the health specs, the
// services for the data plane, Sync and the state file. Program load is
// outside the timer.
//
// Run: go test ./cmd/daemon -run '^$' -bench Start -benchtime 3x
func BenchmarkStart(b *testing.B) {
	priv.Require(b)
	n := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_START_SERVICES")); err == nil && v > 0 {
		n = v
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "limits:\n  max_services: %d\n  max_backends: %d\nservices:\n", 1024, 131072)
	for s := 0; s < n; s++ {
		fmt.Fprintf(&cfg, "  - vip: 198.18.%d.%d\n    port: 80\n    backends:\n", 4+s/250, 1+s%250)
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&cfg, "      - address: 198.18.0.%d\n", 11+i)
		}
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			bal, err := loader.Open(loader.Options{MaxServices: 1024, MaxBackends: 131072, ConntrackSize: 1024})
			if err != nil {
				b.Fatal(err)
			}
			state := filepath.Join(dir, "state.json")
			_ = os.Remove(state) // a first start: no state file
			b.StartTimer()
			c, data, err := config.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			d := New(Options{StatePath: state, Interface: "test0", DataPlane: bal})
			if err := d.Start(daemontest.NewMACs(), c, data); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			d.Close()
			if err := bal.Close(); err != nil {
				b.Errorf("close balancer: %v", err)
			}
			b.StartTimer()
		}
	})
}
