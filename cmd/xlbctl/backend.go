package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// backendArgs checks the VIP:PORT/PROTO ADDR arguments.
func backendArgs(c *call) (lb.ServiceKey, string, error) {
	k, err := parseKey(c.args[0])
	if err != nil {
		return k, "", err
	}
	addr, err := parseAddr("address", c.args[1])
	return k, addr, err
}

// weightOf returns the weight backend addr of service k has in st.
func weightOf(st api.Status, k lb.ServiceKey, addr string) (uint32, bool) {
	ss, ok := findService(st.Services, k)
	if !ok {
		return 0, false
	}
	for _, b := range ss.Backends {
		if b.Address == addr {
			return b.Weight, true
		}
	}
	return 0, false
}

func weightFlag(fs *flag.FlagSet, usage string) *string {
	return fs.String("weight", "", usage)
}

func backendAdd(fs *flag.FlagSet) func(context.Context, *call) error {
	weight := weightFlag(fs, "relative share of new flows, `N` from 0 to 65535 (default 1; 0 takes no new flows)")
	return func(ctx context.Context, c *call) error {
		k, addr, err := backendArgs(c)
		if err != nil {
			return err
		}
		b := config.Backend{Address: addr}
		if c.given["weight"] {
			w, err := parseWeight(*weight)
			if err != nil {
				return err
			}
			b.Weight = &w
		}
		st, err := c.client.AddBackend(ctx, k.String(), b)
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("added backend %s to %s", addr, k)
		if w, ok := weightOf(st, k, addr); ok {
			msg += fmt.Sprintf(" with weight %d", w)
		}
		fmt.Fprintln(c.env.Stdout, msg)
		return nil
	}
}

func backendSet(fs *flag.FlagSet) func(context.Context, *call) error {
	weight := weightFlag(fs, "relative share of new flows, `N` from 0 to 65535 (0 drains); required")
	return func(ctx context.Context, c *call) error {
		k, addr, err := backendArgs(c)
		if err != nil {
			return err
		}
		if !c.given["weight"] {
			return usagef("missing --weight (usage: %s)", c.cmd.usageLine())
		}
		w, err := parseWeight(*weight)
		if err != nil {
			return err
		}
		if _, err := c.client.SetBackend(ctx, k.String(), addr, config.Backend{Address: addr, Weight: &w}); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "set backend %s of %s to weight %d\n", addr, k, w)
		return nil
	}
}

func backendDel(fs *flag.FlagSet) func(context.Context, *call) error {
	return func(ctx context.Context, c *call) error {
		k, addr, err := backendArgs(c)
		if err != nil {
			return err
		}
		if _, err := c.client.DeleteBackend(ctx, k.String(), addr); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "deleted backend %s from %s\n", addr, k)
		return nil
	}
}

func backendDrain(fs *flag.FlagSet) func(context.Context, *call) error {
	return func(ctx context.Context, c *call) error {
		k, addr, err := backendArgs(c)
		if err != nil {
			return err
		}
		if _, err := c.client.DrainBackend(ctx, k.String(), addr); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "draining backend %s of %s: weight 0, its flows continue, new flows go to the others\n", addr, k)
		return nil
	}
}

func backendList(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) ([]api.BackendStatus, error) {
			k, err := parseKey(c.args[0])
			if err != nil {
				return nil, err
			}
			svcs, err := c.client.Services(ctx)
			if err != nil {
				return nil, err
			}
			ss, ok := findService(svcs, k)
			if !ok {
				return nil, noService(k)
			}
			if ss.Backends == nil {
				ss.Backends = []api.BackendStatus{}
			}
			return ss.Backends, nil
		},
		func(c *call, bes []api.BackendStatus) error {
			return writeBackends(c.env.Stdout, bes, c.env.Now, "")
		})
}
