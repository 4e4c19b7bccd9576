package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	stdmaps "maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

func status(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) (api.Status, error) { return c.client.Status(ctx) },
		func(c *call, st api.Status) error { return writeStatus(c.env.Stdout, st, c.env.Now) })
}

func writeStatus(w io.Writer, st api.Status, now func() time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if st.Role != "" {
		fmt.Fprintf(tw, "Role:\t%s\n", st.Role)
	}
	fmt.Fprintf(tw, "Interface:\t%s\n", orDash(st.Interface))
	fmt.Fprintf(tw, "XDP mode:\t%s\n", orDash(st.XDPMode))
	fmt.Fprintf(tw, "Version:\t%s\n", orDash(st.Version))
	fmt.Fprintf(tw, "Flows:\t%d\n", st.Flows)
	if t := st.Timeouts; t != (config.Conntrack{}) {
		fmt.Fprintf(tw, "Idle timeouts:\ttcp %s, tcp-fin %s, udp %s\n", t.TCPTimeout, t.TCPFinTimeout, t.UDPTimeout)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Decap != nil {
		return writeDecap(w, st.Decap)
	}
	if len(st.Services) == 0 {
		_, err := fmt.Fprintf(w, "\nNo services.\n")
		return err
	}
	for _, s := range st.Services {
		fmt.Fprintf(w, "\nService %s, scheduler %s, persistence %s, forward %s\n", s.Service, orDash(s.Scheduler), persistenceText(s.Persistence), orDash(s.Forward))
		fmt.Fprintf(w, "  check: %s\n", describeCheck(s.Health))
		if st.BGP {
			switch {
			case s.Announced && len(s.AnnouncedTo) > 0:
				fmt.Fprintf(w, "  bgp: vip announced to %s\n", strings.Join(s.AnnouncedTo, ", "))
			case s.Announced:
				fmt.Fprintf(w, "  bgp: vip announced (no session established)\n")
			default:
				fmt.Fprintf(w, "  bgp: vip NOT announced (no usable backend under its policy)\n")
			}
		}
		switch s.AllDown {
		case string(lb.AllDownDrop):
			fmt.Fprintf(w, "  ALL BACKENDS DOWN: traffic is dropped (all_down drop)\n")
		case string(lb.AllDownKeepLast):
			fmt.Fprintf(w, "  ALL BACKENDS DOWN: traffic still goes to the last healthy backends (all_down keep-last)\n")
		}
		writeNames(w, s.Names, now)
		if len(s.Backends) == 0 {
			fmt.Fprintf(w, "  no backends: its traffic is dropped\n")
			continue
		}
		if err := writeBackends(w, s.Backends, now, "  "); err != nil {
			return err
		}
	}
	return nil
}

// writeDecap prints the backend role's decapsulator: settings, then the
// counters that are not zero (every kind and reason with -o json).
func writeDecap(w io.Writer, d *api.DecapStatus) error {
	fmt.Fprintf(w, "\nDecapsulator (ipip, gue on udp port %d)%s\n", d.GUEPort, map[bool]string{true: ", re-adopted", false: ""}[d.Adopted])
	fmt.Fprintf(w, "  vips: %s\n", orDash(strings.Join(d.VIPs, ", ")))
	fmt.Fprintf(w, "  outer addresses: %s\n", orDash(strings.Join(d.Addresses, ", ")))
	fmt.Fprintf(w, "  received: %d\n", d.RxPackets)
	t := newTable(w, "  ", "DECAPSULATED", "PACKETS")
	for _, k := range slices.Sorted(stdmaps.Keys(d.Decapsulated)) {
		if d.Decapsulated[k] > 0 {
			t.row(k, d.Decapsulated[k])
		}
	}
	if d.ECNCE > 0 {
		t.row("(ecn ce marked)", d.ECNCE)
	}
	if err := t.flush(); err != nil {
		return err
	}
	t = newTable(w, "  ", "PASSED", "PACKETS")
	for _, k := range slices.Sorted(stdmaps.Keys(d.Passed)) {
		if d.Passed[k] > 0 {
			t.row(k, d.Passed[k])
		}
	}
	return t.flush()
}

// writeBackends prints a table of backends, each line after indent.
func writeBackends(w io.Writer, bs []api.BackendStatus, now func() time.Time, indent string) error {
	t := newTable(w, indent, "ADDRESS", "WEIGHT", "STATE", "LAST-CHECK", "MAC", "ACTIVE", "PACKETS", "NEW-FLOWS", "REASON", "SINCE")
	for _, b := range bs {
		t.row(b.Address, b.Weight, b.State, lastCheck(b.Check), b.MAC, b.ActiveFlows, b.Packets, b.NewFlows, b.Reason, ageOf(now, b.Since))
	}
	return t.flush()
}

// lastCheck is a health check result in a few words: "ok http 200",
// "fail connect refused".
func lastCheck(c *api.CheckResult) string {
	switch {
	case c == nil:
		return ""
	case c.OK:
		return "ok " + c.Reason
	default:
		return "fail " + c.Reason
	}
}

// describeCheck summarises a health check on one line.
func describeCheck(h *config.Health) string {
	if h == nil {
		return "none (backends count as up)"
	}
	t := checkType(*h)
	if t == string(lb.CheckNone) {
		return "none (backends count as up)"
	}
	first := t
	var parts []string
	if t == string(lb.CheckHTTP) {
		hc := config.HTTPCheck{}
		if h.HTTP != nil {
			hc = *h.HTTP
		}
		if hc.HTTPS {
			first = "https"
		}
		first += " " + cmp.Or(hc.Method, config.DefaultHTTPMethod) + " " + cmp.Or(hc.Path, config.DefaultHTTPPath)
		parts = append(parts, "expect "+cmp.Or(hc.ExpectStatus, config.DefaultExpectStatus))
		if hc.ExpectBody != "" {
			parts = append(parts, fmt.Sprintf("body %q", hc.ExpectBody))
		}
	}
	if h.Port != 0 {
		first += " port " + strconv.Itoa(h.Port)
	}
	if h.Via == string(lb.CheckViaTunnel) {
		first += " via tunnel"
	}
	parts = append([]string{first}, parts...)
	if h.Interval != 0 {
		parts = append(parts, "every "+h.Interval.String())
	}
	if h.Timeout != 0 {
		parts = append(parts, "timeout "+h.Timeout.String())
	}
	if h.Rise != 0 {
		parts = append(parts, "rise "+strconv.Itoa(h.Rise))
	}
	if h.Fall != 0 {
		parts = append(parts, "fall "+strconv.Itoa(h.Fall))
	}
	if h.AllDown == string(lb.AllDownKeepLast) {
		parts = append(parts, "all down: keep-last")
	}
	return strings.Join(parts, ", ")
}

func stats(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) (api.Status, error) { return c.client.Status(ctx) },
		func(c *call, st api.Status) error {
			t := newTable(c.env.Stdout, "", "SERVICE/BACKEND", "PACKETS", "BYTES", "NEW-FLOWS", "DROPS")
			for _, s := range st.Services {
				t.row(s.Service, s.Packets, humanBytes(s.Bytes), s.NewFlows, s.DropNoBackend)
				for _, b := range s.Backends {
					t.row("  "+b.Address, b.Packets, humanBytes(b.Bytes), b.NewFlows, "")
				}
			}
			return t.flush()
		})
}

// humanBytes formats a byte count, with binary units from 1 KiB on:
// "512", "1258291 (1.2 MiB)".
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10)
	}
	v, unit := float64(n), -1
	for v >= 1024 && unit < 5 {
		v /= 1024
		unit++
	}
	return fmt.Sprintf("%d (%.1f %ciB)", n, v, "KMGTPE"[unit])
}

func bgpStatus(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) (api.BGPStatus, error) { return c.client.BGP(ctx) },
		func(c *call, st api.BGPStatus) error { return writeBGP(c.env.Stdout, st, c.env.Now) })
}

func writeBGP(w io.Writer, st api.BGPStatus, now func() time.Time) error {
	if !st.Enabled {
		_, err := fmt.Fprintln(w, "BGP is off (no bgp section in the config).")
		return err
	}
	fmt.Fprintf(w, "AS %d, router ID %s\n\n", st.ASN, orDash(st.RouterID))
	t := newTable(w, "", "PEER", "AS", "STATE", "SINCE", "HOLD", "UPDATES-SENT", "UPDATES-RECEIVED", "ADVERTISED")
	for _, p := range st.Peers {
		hold := "-"
		if p.HoldTime > 0 {
			hold = p.HoldTime.String()
		}
		t.row(p.Address, p.ASN, p.State, ageOf(now, p.Since), hold, p.UpdatesSent, p.UpdatesReceived, p.Advertised)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(st.Announced) == 0 {
		_, err := fmt.Fprintln(w, "\nAnnounced: nothing (no VIP has a usable backend)")
		return err
	}
	_, err := fmt.Fprintf(w, "\nAnnounced: %s\n", strings.Join(st.Announced, ", "))
	return err
}

func flows(fs *flag.FlagSet) func(context.Context, *call) error {
	limit := fs.String("limit", "", "show at most `N` flows, 1-1000000 (default xlbd's: 1000)")
	n := 0 // the parsed --limit, 0 for xlbd's default
	return readCommand(fs,
		func(ctx context.Context, c *call) ([]api.Flow, error) {
			n = 0
			if c.given["limit"] {
				var err error
				if n, err = parseInt("limit", *limit, 1, 1_000_000); err != nil {
					return nil, err
				}
			}
			fl, err := c.client.Flows(ctx, n)
			if fl == nil {
				fl = []api.Flow{}
			}
			return fl, err
		},
		func(c *call, fl []api.Flow) error {
			slices.SortStableFunc(fl, func(a, b api.Flow) int {
				return cmp.Or(compareAddrPort(a.VIP, b.VIP), strings.Compare(a.Protocol, b.Protocol), compareAddrPort(a.Client, b.Client))
			})
			t := newTable(c.env.Stdout, "", "PROTO", "CLIENT", "VIP", "BACKEND", "IDLE")
			for _, f := range fl {
				t.row(f.Protocol, f.Client, f.VIP, f.Backend, age(time.Duration(f.IdleSeconds*float64(time.Second))))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if want := cmp.Or(n, 1000); len(fl) >= want {
				fmt.Fprintf(c.env.Stderr, "xlbctl: flows: showing the first %d flows (--limit N for more)\n", len(fl))
			}
			return nil
		})
}

// compareAddrPort orders ADDR:PORT text numerically, falling back to text
// order for anything else.
func compareAddrPort(a, b string) int {
	x, errX := netip.ParseAddrPort(a)
	y, errY := netip.ParseAddrPort(b)
	if errX != nil || errY != nil {
		return strings.Compare(a, b)
	}
	return x.Compare(y)
}

// age formats a duration compactly, to the second: "45s", "3m12s",
// "2h5m", "3d4h".
func age(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s < 0 {
		s = 0
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// ageOf formats how long ago t was; "" if t is zero.
func ageOf(now func() time.Time, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return age(now().Sub(t))
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// table writes aligned columns; empty cells show as "-".
type table struct {
	tw     *tabwriter.Writer
	indent string
}

func newTable(w io.Writer, indent string, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), indent: indent}
	t.line(header)
	return t
}

func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = orDash(fmt.Sprint(c))
	}
	t.line(s)
}

func (t *table) line(cells []string) {
	for i, c := range cells {
		// A tab or newline in a cell (a health check's reason, say) would
		// break the columns.
		cells[i] = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, c)
	}
	fmt.Fprintf(t.tw, "%s%s\n", t.indent, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
