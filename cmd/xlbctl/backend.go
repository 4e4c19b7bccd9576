package main

import (
	"context"
	"flag"
	"fmt"
	"time"

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

// drainPoll is how often "backend drain --wait" reads the active flows;
// tests shorten it.
var drainPoll = time.Second

// defaultDrainTimeout is how long "backend drain --wait" waits by default.
const defaultDrainTimeout = 5 * time.Minute

func backendDrain(fs *flag.FlagSet) func(context.Context, *call) error {
	wait := fs.Bool("wait", false, "wait until the backend has no active flows left")
	timeout := fs.String("timeout", defaultDrainTimeout.String(), "with --wait: give up after `DURATION`")
	return func(ctx context.Context, c *call) error {
		k, addr, err := backendArgs(c)
		if err != nil {
			return err
		}
		d := defaultDrainTimeout
		if c.given["timeout"] {
			if !*wait {
				return usageErr("--timeout needs --wait")
			}
			d, err = time.ParseDuration(*timeout)
			if err != nil || d <= 0 {
				return usagef("--timeout %q: want a positive duration such as 30s or 5m", *timeout)
			}
		}
		if _, err := c.client.DrainBackend(ctx, k.String(), addr); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "draining backend %s of %s: weight 0, its flows continue, new flows go to the others\n", addr, k)
		if !*wait {
			return nil
		}
		return waitDrained(ctx, c, k, addr, d)
	}
}

// waitDrained polls the active flows of backend addr of service k until
// there are none, printing the count whenever it changes. It fails when
// timeout passes or ctx ends (Ctrl-C); the backend stays drained.
func waitDrained(ctx context.Context, c *call, k lb.ServiceKey, addr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	last := int64(-1)
	for {
		n, err := activeFlows(ctx, c, k, addr)
		if err != nil {
			if ctx.Err() != nil {
				return stopped(c, k, addr, last)
			}
			return err
		}
		if n == 0 {
			fmt.Fprintf(c.env.Stdout, "backend %s of %s: drained, no active flows left\n", addr, k)
			return nil
		}
		if int64(n) != last {
			fmt.Fprintf(c.env.Stdout, "backend %s of %s: %d active %s\n", addr, k, n, plural(n, "flow", "flows"))
			last = int64(n)
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("backend %s of %s: %d active %s left after %s (it stays drained)", addr, k, n, plural(n, "flow", "flows"), timeout)
		case <-ctx.Done():
			return stopped(c, k, addr, last)
		}
	}
}

// stopped is the error of a wait cut short by Ctrl-C.
func stopped(c *call, k lb.ServiceKey, addr string, last int64) error {
	if last < 0 {
		return fmt.Errorf("backend %s of %s: stopped waiting (it stays drained)", addr, k)
	}
	return fmt.Errorf("backend %s of %s: stopped waiting with %d active flow(s) left (it stays drained)", addr, k, last)
}

// activeFlows reads the active flows of backend addr of service k.
func activeFlows(ctx context.Context, c *call, k lb.ServiceKey, addr string) (uint64, error) {
	svcs, err := c.client.Services(ctx)
	if err != nil {
		return 0, err
	}
	ss, ok := findService(svcs, k)
	if !ok {
		return 0, noService(k)
	}
	for _, b := range ss.Backends {
		if b.Address == addr {
			return b.ActiveFlows, nil
		}
	}
	return 0, fmt.Errorf("backend %s of %s: gone while waiting for its flows", addr, k)
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
