package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/maps/lb"
)

// flowExplainer is the client's part that explain uses (kept out of
// Client so the command table's fakes need not grow).
type flowExplainer interface {
	Explain(ctx context.Context, key, client string) (api.Explain, error)
}

var _ flowExplainer = (*api.Client)(nil)

// parseClient checks a CLIENT:PORT argument against the service's family.
func parseClient(s string, key lb.ServiceKey) (string, error) {
	c, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || c.Addr().Zone() != "":
		return "", usagef("client %q: want CLIENT:PORT, an IP address and a port, e.g. 198.18.2.10:40000 or '[2001:2::10]:40000'", s)
	case c.Port() == 0:
		return "", usagef("client %q: port 0: out of range 1-65535", s)
	case c.Addr().Unmap().Is4() != key.VIP.Unmap().Is4():
		return "", usagef("client %q: not of the family of vip %s: a flow stays within one address family", s, key.VIP)
	}
	return netip.AddrPortFrom(c.Addr().Unmap(), c.Port()).String(), nil
}

func explainFlow(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) (api.Explain, error) {
			key, err := parseKey(c.args[0])
			if err != nil {
				return api.Explain{}, err
			}
			client, err := parseClient(c.args[1], key)
			if err != nil {
				return api.Explain{}, err
			}
			ex, ok := c.client.(flowExplainer)
			if !ok {
				return api.Explain{}, errors.New("this client cannot ask xlbd to explain a flow")
			}
			return ex.Explain(ctx, key.String(), client)
		},
		func(c *call, e api.Explain) error {
			writeExplain(c, e)
			return nil
		})
}

// writeExplain prints the verdicts first, then the entries and the
// scheduler they come from, then the backends they name.
func writeExplain(c *call, e api.Explain) {
	w := c.env.Stdout
	vip, proto, ok := strings.Cut(e.Service, "/")
	if !ok { // not a key as xlbd writes them: show it as it came
		proto = "?"
	}
	pers := "no persistence"
	if e.Persistence != 0 {
		pers = "persistence " + e.Persistence.String()
	}
	fmt.Fprintf(w, "flow %s %s -> %s (%s, %s)\n\n", proto, e.Client, vip, e.Scheduler, pers)
	t := newTable(w, "", "", "BACKEND", "BECAUSE")
	place := func(what string, p api.ExplainPlacement) {
		to := p.Backend
		switch {
		case p.Drop:
			to = "drop"
		case to == "" && len(p.Choices) > 0:
			to = strings.Join(p.Choices, " | ")
		case to == "":
			to = "?"
		}
		t.row(what, to, p.By+": "+p.Why)
	}
	place("next packet", e.NextPacket)
	place("new flow", e.NewFlow)
	place("other port", e.OtherPort)
	_ = t.flush() // output for a person, as fmt.Fprint* (see .golangci.yaml)

	fmt.Fprintln(w)
	t = newTable(w, "", "ENTRY", "BACKEND", "STATE", "IDLE", "TIMEOUT", "VERDICT")
	entry := func(what string, x *api.ExplainEntry) {
		if x == nil {
			t.row(what, "none", "", "", "", "")
			return
		}
		to := "never"
		if x.Timeout != 0 {
			to = x.Timeout.String()
		}
		verdict := "used"
		if !x.Used {
			verdict = "ignored: " + x.Ignored
		}
		t.row(what, x.Backend, x.State, age(time.Duration(x.AgeSeconds*float64(time.Second))), to, verdict)
	}
	entry("conntrack", e.Conntrack)
	if proto == "tcp" {
		entry("half-open", e.HalfOpen)
	}
	entry("persistence", e.PersistenceEntry)
	_ = t.flush()

	s := e.Slot
	fmt.Fprintf(w, "\nscheduler %s: %s\n", e.Scheduler, s.How)
	if s.Slot != nil {
		fmt.Fprintf(w, "  %s hash %s, slot %d of %d -> %s\n", s.HashOf, s.Hash, *s.Slot, s.Size, orDash(s.Backend))
	}
	for _, cu := range s.Cursors {
		fmt.Fprintf(w, "  cpu %d: cursor at slot %d -> %s\n", cu.CPU, cu.Slot, orDash(cu.Backend))
	}
	if len(s.Candidates) > 0 {
		fmt.Fprintf(w, "  scan from the %s hash %s: pick %s\n", s.HashOf, s.Hash, orDash(s.Backend))
		t = newTable(w, "  ", "CANDIDATE", "ACTIVE", "WEIGHT", "ELIGIBLE")
		for _, ca := range s.Candidates {
			t.row(ca.Backend, ca.Active, ca.Weight, ca.Eligible)
		}
		_ = t.flush()
	}
	if len(e.Backends) == 0 {
		return
	}
	fmt.Fprintln(w)
	t = newTable(w, "", "BACKEND", "STATE", "WEIGHT", "REASON")
	for _, b := range e.Backends {
		t.row(b.Address, b.State, b.Weight, b.Reason)
	}
	_ = t.flush()
}
