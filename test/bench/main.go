// Command bench is `make bench`: xlb's per-packet cost, veth throughput,
// control-plane timings, disruption and a proxy comparison, each measured
// beside a baseline in the same run. It prints a markdown table and writes
// every figure, with the machine's description, to a JSON file.
//
// It needs root (BPF, network namespaces). BENCH_QUICK=1 runs a shorter
// variant (under 2 minutes). BENCH_JSON names the JSON file (default
// out/bench.json), BENCH_CHART the PNG chart of the per-packet and
// throughput figures (default bench.png beside the JSON file),
// BENCH_GEN_CPUS the numbers of generator CPUs of the throughput runs,
// comma separated (default 1,2), and BENCH_ONLY, comma separated, limits the
// run to sections (packet, throughput, control, disruption, proxy) or
// parts of the control section (maglev, add, health, memory).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

type options struct {
	quick    bool
	jsonPath string
	// only, when not empty, limits the run to these sections (BENCH_ONLY,
	// comma separated: packet, throughput, control, disruption, proxy).
	only map[string]bool
	log  *slog.Logger
}

func (o options) want(section string) bool { return len(o.only) == 0 || o.only[section] }

// wantPart reports whether a part of a section (BENCH_ONLY=memory) runs.
func (o options) wantPart(section, part string) bool { return o.want(section) || o.only[part] }

func main() {
	o := options{
		quick:    os.Getenv("BENCH_QUICK") == "1",
		jsonPath: envOr("BENCH_JSON", "out/bench.json"),
		only:     map[string]bool{},
		log:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, s := range strings.Split(os.Getenv("BENCH_ONLY"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.only[s] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	if err := lab.CheckPrivileged(); err != nil {
		return fmt.Errorf("needs root with bpffs mounted: %w", err)
	}
	start := time.Now()
	r := &Report{Date: start.UTC().Format(time.RFC3339), Quick: o.quick, Machine: describeMachine()}
	r.Command = "sudo make bench"
	if o.quick {
		r.Command = "sudo make bench BENCH_QUICK=1"
	}
	section := func(name, title string, fn func() error) {
		// The control section also runs when only one of its parts is wanted.
		partOnly := name == "control" && (o.only["maglev"] || o.only["add"] || o.only["memory"] || o.only["health"])
		if (!o.want(name) && !partOnly) || ctx.Err() != nil {
			return
		}
		o.log.Info("running", "section", title)
		t0 := time.Now()
		if err := fn(); err != nil {
			o.log.Error("section failed", "section", title, "err", err)
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", title, err))
		}
		o.log.Info("done", "section", title, "took", time.Since(t0).Round(time.Millisecond))
	}
	section("packet", "per-packet cost", func() (err error) {
		r.PerPacket, err = measurePerPacket(o)
		return err
	})
	section("throughput", "veth throughput", func() (err error) {
		r.Throughput, err = measureThroughput(o)
		return err
	})
	section("control", "control plane", func() (err error) {
		// Parts: maglev, add, health, memory (BENCH_ONLY may name them alone).
		c := &Control{NotMeasured: map[string]string{}}
		r.Control = c
		var errs []error
		if o.wantPart("control", "maglev") {
			if c.Maglev, err = measureMaglev(o); err != nil {
				errs = append(errs, fmt.Errorf("maglev: %w", err))
			}
		}
		bins, err := xlbdproc.Build(ctx, "", "")
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		defer func() {
			if err := bins.Remove(); err != nil {
				o.log.Warn("remove xlbd and xlbctl", "err", err)
			}
		}()
		if o.wantPart("control", "add") {
			if c.BackendAdd, err = measureBackendAdd(o, bins); err != nil {
				errs = append(errs, fmt.Errorf("xlbctl backend add: %w", err))
			}
		}
		if o.wantPart("control", "health") {
			if c.HealthRemoval, err = measureHealthRemoval(o, bins); err != nil {
				errs = append(errs, fmt.Errorf("health removal: %w", err))
			}
		}
		if o.wantPart("control", "memory") {
			if c.Memory, err = measureMemory(o, bins); err != nil {
				errs = append(errs, fmt.Errorf("xlbd memory: %w", err))
			}
		}
		return errors.Join(errs...)
	})
	section("disruption", "disruption", func() (err error) {
		r.Disruption, err = measureDisruption(o)
		return err
	})
	section("proxy", "versus HAProxy", func() (err error) {
		r.Proxy, err = measureProxy(o)
		return err
	})
	r.Elapsed = time.Since(start).Round(time.Millisecond).String()
	r.evaluateTargets()
	fmt.Print(r.Markdown())
	if err := r.WriteJSON(o.jsonPath); err != nil {
		return err
	}
	fmt.Printf("\nJSON: %s\n", o.jsonPath)
	if r.PerPacket != nil || r.Throughput != nil {
		path := chartPath(o.jsonPath)
		if err := r.WriteChart(path); err != nil {
			return err
		}
		fmt.Printf("Chart: %s\n", path)
	}
	if len(r.Failures) > 0 {
		return fmt.Errorf("%d section(s) failed", len(r.Failures))
	}
	return nil
}
