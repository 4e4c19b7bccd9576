package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/xlb-lb/xlb/cmd/api"
)

// nameResolver is the client's part that "service resolve" uses (kept out
// of Client so the other commands' fakes need not grow).
type nameResolver interface {
	ResolveService(ctx context.Context, key string) (api.ResolveResult, error)
}

var _ nameResolver = (*api.Client)(nil)

func serviceResolve(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) (api.ResolveResult, error) {
			k, err := parseKey(c.args[0])
			if err != nil {
				return api.ResolveResult{}, err
			}
			r, ok := c.client.(nameResolver)
			if !ok {
				return api.ResolveResult{}, errors.New("this client cannot ask xlbd to resolve")
			}
			return r.ResolveService(ctx, k.String())
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
}
