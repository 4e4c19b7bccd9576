package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
)

// nameResolver is the client's part that "service resolve" uses (kept out
// of Client so the other commands' fakes need not grow).
type nameResolver interface {
	ResolveService(ctx context.Context, key string) (api.ResolveResult, error)
}

var _ nameResolver = (*api.Client)(nil)

func serviceResolve(fs *flag.FlagSet) func(context.Context, *call) error {
	var got api.ResolveResult
	show := readCommand(fs,
		func(ctx context.Context, c *call) (api.ResolveResult, error) {
			k, err := parseKey(c.args[0])
			if err != nil {
				return api.ResolveResult{}, err
			}
			r, ok := c.client.(nameResolver)
			if !ok {
				return api.ResolveResult{}, errors.New("this client cannot ask xlbd to resolve")
			}
			got, err = r.ResolveService(ctx, k.String())
			return got, err
		},
		func(c *call, r api.ResolveResult) error {
			w := c.env.Stdout
			if len(r.Names) == 0 {
				fmt.Fprintf(w, "service %s has no backends named by DNS\n", r.Service)
				return nil
			}
			for _, n := range r.Names {
				fmt.Fprintf(w, "%s (%s): ", n.Name, n.Family)
				var parts []string
				if len(n.Added) > 0 {
					parts = append(parts, "added "+strings.Join(n.Added, " "))
				}
				if len(n.Removed) > 0 {
					parts = append(parts, "removed "+strings.Join(n.Removed, " ")+" (drained until their flows end)")
				}
				if len(n.Added)+len(n.Removed) == 0 {
					parts = append(parts, "unchanged")
				}
				parts = append(parts, fmt.Sprintf("%d kept", len(n.Kept)))
				fmt.Fprintln(w, strings.Join(parts, "; "))
				if n.Error != "" {
					fmt.Fprintf(w, "  last good set kept: %s\n", n.Error)
				}
			}
			return nil
		})
	return func(ctx context.Context, c *call) error {
		if err := show(ctx, c); err != nil {
			return err
		}
		// A name whose lookup failed is a failure (exit 1), whatever the
		// output format: its last good set is kept, but it was not resolved.
		var bad []string
		for _, n := range got.Names {
			if n.Error != "" {
				bad = append(bad, n.Name+" ("+n.Family+")")
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("not resolved: %s", strings.Join(bad, ", "))
		}
		return nil
	}
}

// writeNames prints a service's backend names: one line each with its
// state, addresses and refresh, and the latest error while it matters.
func writeNames(w io.Writer, names []api.NameStatus, now func() time.Time) {
	for _, n := range names {
		fmt.Fprintf(w, "  dns: %s (%s, weight %d): %s, %d %s", n.Name, n.Family, n.Weight, n.State,
			len(n.Addresses), plural(uint64(len(n.Addresses)), "address", "addresses"))
		if len(n.Leaving) > 0 {
			fmt.Fprintf(w, ", %d leaving", len(n.Leaving))
		}
		if !n.LastSuccess.IsZero() {
			fmt.Fprintf(w, ", answered %s ago", ageOf(now, n.LastSuccess))
		}
		if !n.NextRefresh.IsZero() {
			if d := n.NextRefresh.Sub(now()); d > 0 {
				fmt.Fprintf(w, ", next lookup in %s", age(d))
			} else {
				fmt.Fprintf(w, ", next lookup now")
			}
		}
		fmt.Fprintln(w)
		switch n.State {
		case api.NameFailing:
			fmt.Fprintf(w, "    lookup failing, last good set kept: %s\n", n.LastError)
		case api.NameHeld:
			fmt.Fprintf(w, "    %s; set kept until %s\n", n.LastError, n.HeldUntil.Format(time.RFC3339))
		}
		for _, sk := range n.Skipped {
			fmt.Fprintf(w, "    not used: %s\n", sk)
		}
	}
}
