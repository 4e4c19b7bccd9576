package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/xlb-lb/xlb/cmd/api"
)

// configDiffer is the client's part that apply --dry-run uses (kept out of
// Client so the command table's fakes need not grow).
type configDiffer interface {
	DiffConfig(ctx context.Context, text []byte) (api.ConfigDiff, error)
}

var _ configDiffer = (*api.Client)(nil)

// errApplyNeedsDryRun refuses xlbctl apply without --dry-run.
const errApplyNeedsDryRun = usageError("apply changes nothing: only --dry-run is supported. To apply a file, make it xlbd's " +
	"config file (--config, default /etc/xlb/xlb.yaml) and reload: systemctl reload xlbd, or kill -HUP $(pidof xlbd)")

func apply(fs *flag.FlagSet) func(context.Context, *call) error {
	file := fs.String("file", "", "config `FILE` to compare with the running state (- for stdin)")
	fs.StringVar(file, "f", "", "short for --file")
	dryRun := fs.Bool("dry-run", false, "only show what a reload with the file would change (required)")
	out := outputFlag(fs)
	return func(ctx context.Context, c *call) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		if *file == "" {
			return usageErr("apply: -f FILE is required")
		}
		if !*dryRun {
			return errApplyNeedsDryRun
		}
		text, err := readConfigFile(*file)
		if err != nil {
			return err
		}
		cd, ok := c.client.(configDiffer)
		if !ok {
			return errors.New("apply --dry-run: this client cannot ask xlbd for a diff")
		}
		diff, err := cd.DiffConfig(ctx, text)
		if err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
		if *out == outputJSON {
			return writeJSON(c.env.Stdout, diff)
		}
		return writeDiff(c.env.Stdout, diff)
	}
}

func readConfigFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return b, nil
}

// writeDiff writes a diff as text: one line per service added (+),
// removed (-) or changed (~), a changed one's settings and backends
// indented below it.
func writeDiff(w io.Writer, d api.ConfigDiff) error {
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	if d.Empty() {
		p("No changes: a reload with this file keeps the %d services as they are.", d.Unchanged)
		return nil
	}
	for _, s := range d.Added {
		p("+ service %s", s)
	}
	for _, s := range d.Removed {
		p("- service %s", s)
	}
	for _, s := range d.Changed {
		p("~ service %s", s.Service)
		for _, ch := range s.Settings {
			p("    %s: %s -> %s", ch.Field, ch.From, ch.To)
		}
		backendLines(p, "    ", "backend ", s.BackendsAdded, s.BackendsRemoved, s.BackendsChanged)
	}
	if d.BGP != nil {
		p("~ %s: %s -> %s", d.BGP.Field, d.BGP.From, d.BGP.To)
	}
	p("%d added, %d removed, %d changed, %d unchanged (nothing applied)", len(d.Added), len(d.Removed), len(d.Changed), d.Unchanged)
	return nil
}

// backendLines prints backends added (+), removed (-) and reweighted (~),
// each line starting with indent, the mark, then noun ("backend " in a
// config diff).
func backendLines(p func(string, ...any), indent, noun string, added, removed []api.BackendWeight, changed []api.BackendChange) {
	for _, b := range added {
		p("%s+ %s%s weight %d", indent, noun, b.Address, b.Weight)
	}
	for _, b := range removed {
		p("%s- %s%s weight %d", indent, noun, b.Address, b.Weight)
	}
	for _, b := range changed {
		p("%s~ %s%s weight %d -> %d", indent, noun, b.Address, b.From, b.To)
	}
}
