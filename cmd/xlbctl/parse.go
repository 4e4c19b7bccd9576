package main

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Argument checks, done before anything is sent to xlbd. Each error names
// the argument and its value and is a usage error.

// parseKey checks a service argument and returns it in canonical form
// ("198.18.1.1:80/tcp", "[2001:2::1]:443/udp").
func parseKey(s string) (lb.ServiceKey, error) {
	k, err := lb.ParseServiceKey(s)
	if err != nil {
		return k, usageErr(err.Error()) // service "x": ...
	}
	return k, nil
}

// parseAddr checks a backend address, plain or in brackets ("2001:2::11",
// "[2001:2::11]"), and returns it in canonical form. name is the
// argument's name in messages.
func parseAddr(name, s string) (string, error) {
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	a, err := lb.ParseAddr(bare)
	if err != nil {
		return "", usagef("%s %q: %v", name, s, err)
	}
	return a.String(), nil
}

// parseWeight checks a weight, 0-65535.
func parseWeight(s string) (uint32, error) {
	n, err := parseInt("weight", s, int(lb.Weight.Min), int(lb.Weight.Max))
	return uint32(n), err
}

// parseInt checks a whole number from lo to hi.
func parseInt(name, s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, usagef("%s %q: not a number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// parseDuration checks a duration such as 2s or 500ms.
func parseDuration(name, s string) (config.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, usagef("%s %q: not a duration (want e.g. 2s, 500ms or 1m)", name, s)
	}
	if d <= 0 {
		return 0, usagef("%s %q: must be greater than 0", name, s)
	}
	return config.Duration(d), nil
}

// parseBackend checks a --backend value: ADDR or ADDR=WEIGHT, the address
// plain or in brackets.
func parseBackend(s string) (config.Backend, error) {
	addr, weight, hasWeight := strings.Cut(s, "=")
	if !hasWeight {
		a, err := parseAddr("backend", s)
		return config.Backend{Address: a}, err
	}
	a, err := parseAddr("address", addr)
	if err != nil {
		return config.Backend{}, usagef("backend %q: %v", s, err)
	}
	w, err := parseWeight(weight)
	if err != nil {
		return config.Backend{}, usagef("backend %q: %v", s, err)
	}
	return config.Backend{Address: a, Weight: &w}, nil
}

// Output formats of read commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// outputFlag registers -o/--output.
func outputFlag(fs *flag.FlagSet) *string {
	o := new(string)
	fs.StringVar(o, "output", outputTable, "output `FORMAT`: table or json (the API's JSON)")
	fs.StringVar(o, "o", outputTable, "short for --output")
	return o
}

// readCommand builds a read-only command: it registers -o, checks it,
// fetches, then writes the API's JSON or the command's table.
func readCommand[T any](fs *flag.FlagSet, fetch func(context.Context, *call) (T, error), table func(*call, T) error) func(context.Context, *call) error {
	out := outputFlag(fs)
	return func(ctx context.Context, c *call) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		v, err := fetch(ctx, c)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return writeJSON(c.env.Stdout, v)
		}
		return table(c, v)
	}
}

// checkOutput checks an -o value.
func checkOutput(o string) error {
	if o != outputTable && o != outputJSON {
		return usagef("output %q: want table or json", o)
	}
	return nil
}

// stringList is a flag that may be repeated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}
