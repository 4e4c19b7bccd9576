package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// backendSyncer is the client's part that backend sync uses (kept out of
// Client so the command table's fakes need not grow).
type backendSyncer interface {
	SyncBackends(ctx context.Context, key string, set []config.Backend, o api.SyncOptions) (api.BackendSync, error)
}

var _ backendSyncer = (*api.Client)(nil)

func backendSync(fs *flag.FlagSet) func(context.Context, *call) error {
	file := fs.String("file", "", "`FILE` holding the whole backend set (- for stdin); required")
	fs.StringVar(file, "f", "", "short for --file")
	allowEmpty := fs.Bool("allow-empty", false, "accept an empty set: the service is left with no backend")
	dryRun := fs.Bool("dry-run", false, "only show what the sync would change (validated by xlbd; nothing applied)")
	out := outputFlag(fs)
	return func(ctx context.Context, c *call) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		k, err := parseKey(c.args[0])
		if err != nil {
			return err
		}
		if *file == "" {
			return usagef("missing -f FILE (usage: %s)", c.cmd.usageLine())
		}
		var data []byte
		if *file == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(*file)
		}
		if err != nil {
			return fmt.Errorf("read the backend set: %w", err)
		}
		set, err := parseBackendSet(data)
		if err != nil {
			return fmt.Errorf("%s: %w", fileName(*file), err)
		}
		if len(set) == 0 && !*allowEmpty {
			return fmt.Errorf("%s: no backends: the sync would leave %s with none (give --allow-empty to mean it)", fileName(*file), k)
		}
		s, ok := c.client.(backendSyncer)
		if !ok {
			return errors.New("this client cannot sync a backend set")
		}
		res, err := s.SyncBackends(ctx, k.String(), set, api.SyncOptions{AllowEmpty: *allowEmpty, DryRun: *dryRun})
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return writeJSON(c.env.Stdout, res)
		}
		writeSync(c.env.Stdout, res)
		return nil
	}
}

func fileName(f string) string {
	if f == "-" {
		return "stdin"
	}
	return f
}

// writeSync writes a sync's answer: a summary line, then one line per
// backend added (+), removed (-), reweighted (~) and kept (=).
func writeSync(w io.Writer, r api.BackendSync) {
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	verb := "synced"
	switch {
	case r.DryRun:
		verb = "dry run (nothing applied) for"
	case r.Unchanged():
		verb = "no change to"
	}
	p("%s %s: %d added, %d removed, %d reweighted, %d kept", verb, r.Service, len(r.Added), len(r.Removed), len(r.Changed), len(r.Kept))
	backendLines(p, "", "", r.Added, r.Removed, r.Changed)
	for _, b := range r.Kept {
		p("= %s weight %d", b.Address, b.Weight)
	}
}

// parseBackendSet reads a backend set file. YAML or JSON (a list of
// backends as the config file writes them, or backends: [...]) when its
// first line that is not blank or a comment starts with "-", "{",
// "backends:", or "[" followed by "{", "]" or the end of the line;
// otherwise plain text, one backend per line: ADDR, ADDR WEIGHT or
// ADDR=WEIGHT, the address plain or in brackets ([2001:2::11] 3), "#"
// starting a comment.
func parseBackendSet(data []byte) ([]config.Backend, error) {
	if structured(data) {
		return config.ParseBackendList(data)
	}
	set := []config.Backend{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		b, err := parseBackendLine(line)
		if err != nil {
			// The file is wrong, not the command line: exit status 1.
			return nil, fmt.Errorf("line %d %q: %s", n, line, err.Error())
		}
		set = append(set, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return set, nil
}

// parseBackendLine parses ADDR, ADDR WEIGHT or ADDR=WEIGHT.
func parseBackendLine(line string) (config.Backend, error) {
	f := strings.Fields(line)
	addr, weight, hasWeight := "", "", false
	switch {
	case len(f) == 1:
		addr, weight, hasWeight = strings.Cut(f[0], "=")
	case len(f) == 2 && !strings.Contains(f[0], "="):
		addr, weight, hasWeight = f[0], f[1], true
	default:
		return config.Backend{}, errors.New("want ADDR, ADDR WEIGHT or ADDR=WEIGHT")
	}
	a, err := parseAddr("address", addr)
	if err != nil && strings.Count(addr, ":") == 1 {
		// IPv4:WEIGHT; the same with IPv6 would be another address.
		return config.Backend{}, fmt.Errorf("address %q: not an IP address (a weight goes after a space or =, not :)", addr)
	}
	if err != nil {
		return config.Backend{}, err
	}
	b := config.Backend{Address: a}
	if hasWeight {
		w, err := parseWeight(weight)
		if err != nil {
			return config.Backend{}, err
		}
		b.Weight = &w
	}
	return b, nil
}

// structured reports whether a backend set file is YAML or JSON rather
// than plain text (see parseBackendSet).
func structured(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(line, "-"), strings.HasPrefix(line, "{"), strings.HasPrefix(line, "backends:"):
			return true
		case strings.HasPrefix(line, "["):
			rest := strings.TrimSpace(line[1:])
			return rest == "" || rest[0] == '{' || rest[0] == ']'
		}
		return false
	}
	return false
}
