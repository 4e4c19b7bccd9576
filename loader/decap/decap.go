// Package decap is the lifecycle of the backend-side decapsulator
// (bpf/decap.c), which xlbd --role backend runs: load, attach (bpf_link),
// pin, re-adopt on restart, and the reconciliation of its settings (the
// VIPs, the accepted outer destinations, the gue port) into its maps. It
// mirrors package loader's Balancer, on its own program and maps.
package decap

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader/pinning"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
)

// ErrOtherRole means the pin directory holds another role's data plane
// (the balancer's): one interface runs one XDP program.
var ErrOtherRole = errors.New("pins belong to another role")

// pinnedMaps are pinned and re-adopted by name. The settings maps are
// pinned too, so a restarted xlbd's new program decapsulates from its
// first packet, before the config is applied again.
var pinnedMaps = []string{bpf.MapDecapVips, bpf.MapDecapAddrs, bpf.MapDecapConfig, bpf.MapDecapStats}

// freshMaps may start afresh when an upgrade changes their layout: the
// counters (from zero) and the settings (rewritten by the next Set).
var freshMaps = map[string]bool{bpf.MapDecapStats: true, bpf.MapDecapConfig: true}

const linkPin = pinning.LinkPin

// pins is the pin directory of opts.
func pins(opts Options) pinning.Dir {
	return pinning.Dir{Path: opts.PinDir, What: "decap ", Hint: "xlbd --detach, then start again", Logger: opts.Logger}
}

// Options configure Open.
type Options struct {
	// Interface to attach to; empty loads without attaching (tests).
	Interface string
	// XDPMode is native (default) or generic.
	XDPMode lb.XDPMode
	// PinDir is where the link and maps are pinned; empty: not pinned.
	PinDir string
	// Logger; nil discards.
	Logger *slog.Logger
}

// Decap is a loaded decapsulator. Its methods are safe for concurrent use.
type Decap struct {
	opts    Options
	objs    bpf.DecapObjects
	link    link.Link
	adopted bool

	mu    sync.Mutex
	vips  *maps.DecapAddrSet
	addrs *maps.DecapAddrSet
	cfg   *maps.DecapConfigMap
	stats *maps.DecapStats
}

// Open loads the decapsulator, or re-adopts the one pinned in
// opts.PinDir, and attaches it to opts.Interface. On re-adoption the
// pinned maps (settings and counters) are kept and the pinned link is
// switched to the new program in one update, so decapsulation never stops.
// A fresh decapsulator decapsulates nothing until Set.
func Open(opts Options) (*Decap, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.XDPMode == "" {
		opts.XDPMode = lb.Native
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	var iface *net.Interface
	if opts.Interface != "" {
		var err error
		if iface, err = net.InterfaceByName(opts.Interface); err != nil {
			return nil, fmt.Errorf("interface %q: %w", opts.Interface, err)
		}
	}
	spec, err := bpf.LoadDecapSpec()
	if err != nil {
		return nil, fmt.Errorf("load decap collection spec: %w", err)
	}
	for _, name := range pinnedMaps {
		if spec.Maps[name] == nil {
			return nil, fmt.Errorf("decap collection has no map %q", name)
		}
	}
	spec.Maps[bpf.MapDecapVips].MaxEntries = uint32(lb.DecapMaxVIPs)
	spec.Maps[bpf.MapDecapAddrs].MaxEntries = uint32(lb.DecapMaxAddrs)

	adopt := false
	if opts.PinDir != "" {
		if pinning.Exists(filepath.Join(opts.PinDir, bpf.MapDecapStats)) {
			adopt = true
		} else if pinning.Exists(opts.PinDir) {
			return nil, fmt.Errorf("%s: %w (the balancer's? xlbd --detach --interface %s removes them)", opts.PinDir, ErrOtherRole, opts.Interface)
		}
	}
	var replacements map[string]*ebpf.Map
	var fresh []string
	if adopt {
		replacements, fresh, err = pins(opts).LoadMaps(pinnedMaps, freshMaps, spec)
		if err != nil {
			return nil, err
		}
		defer func() {
			for _, m := range replacements {
				m.Close()
			}
		}()
		for _, name := range fresh {
			opts.Logger.Warn("pinned decap map has another layout: it starts afresh", "map", name)
		}
	}

	d := &Decap{opts: opts, adopted: adopt}
	if err := spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: replacements}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			opts.Logger.Error("verifier rejected the decapsulator", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, fmt.Errorf("load decap program: %w", err)
	}
	d.vips = maps.NewDecapAddrSet(d.objs.DecapVips)
	d.addrs = maps.NewDecapAddrSet(d.objs.DecapAddrs)
	d.cfg = maps.NewDecapConfigMap(d.objs.DecapConfig)
	d.stats = maps.NewDecapStats(d.objs.DecapStats)
	if !adopt || slices.Contains(fresh, bpf.MapDecapConfig) {
		// Until Set, gue is on its default port (and no VIP matches).
		if err := d.cfg.SetGUEPort(uint16(lb.GUEPort.Default)); err != nil {
			return nil, errors.Join(err, d.objs.Close())
		}
	}

	if adopt {
		if err := d.repin(fresh); err != nil {
			return nil, errors.Join(err, d.objs.Close())
		}
		if err := d.readopt(iface); err != nil {
			return nil, errors.Join(err, d.objs.Close())
		}
		if d.link == nil && iface != nil {
			if err := d.attach(iface); err != nil {
				return nil, errors.Join(err, d.objs.Close())
			}
			if err := d.link.Pin(filepath.Join(opts.PinDir, linkPin)); err != nil {
				return nil, errors.Join(fmt.Errorf("pin decap link: %w", err), d.Close())
			}
		}
		return d, nil
	}
	if iface != nil {
		if err := d.attach(iface); err != nil {
			return nil, errors.Join(err, d.objs.Close())
		}
	}
	if opts.PinDir != "" {
		if err := d.pin(); err != nil {
			return nil, errors.Join(err, d.Close())
		}
	}
	return d, nil
}

// Adopted reports whether Open re-adopted a pinned decapsulator.
func (d *Decap) Adopted() bool { return d.adopted }

// Program is the loaded XDP program (tests run it with BPF_PROG_TEST_RUN).
func (d *Decap) Program() *ebpf.Program { return d.objs.Decap }

// Close releases this process's handles. A pinned decapsulator stays
// attached and keeps decapsulating; loader.Detach removes it.
func (d *Decap) Close() error {
	if d.link != nil {
		d.link.Close()
	}
	return d.objs.Close()
}

// Set makes the decapsulator's settings exactly c. It checks c whole
// first; if a map write fails, the previous settings are put back, so
// nothing is left half applied.
func (d *Decap) Set(c lb.DecapConfig) error {
	c = normalize(c)
	if len(c.VIPs) > lb.DecapMaxVIPs {
		return fmt.Errorf("decap: %d VIPs, more than %d", len(c.VIPs), lb.DecapMaxVIPs)
	}
	if len(c.Addresses) > lb.DecapMaxAddrs {
		return fmt.Errorf("decap: %d addresses, more than %d", len(c.Addresses), lb.DecapMaxAddrs)
	}
	if c.GUEPort == 0 {
		return errors.New("decap: gue port 0")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old, err := d.config()
	if err != nil {
		return err
	}
	if err := d.apply(old, c); err != nil {
		if rerr := d.apply(c, old); rerr != nil {
			return errors.Join(err, fmt.Errorf("restore the previous decap settings: %w", rerr))
		}
		return err
	}
	return nil
}

// apply moves the maps from settings from to settings to: additions
// first, then the port, then removals, so a VIP kept in both is never
// missing in between.
func (d *Decap) apply(from, to lb.DecapConfig) error {
	for _, s := range []struct {
		set      *maps.DecapAddrSet
		from, to []netip.Addr
	}{{d.vips, from.VIPs, to.VIPs}, {d.addrs, from.Addresses, to.Addresses}} {
		for _, a := range s.to {
			if !slices.Contains(s.from, a) {
				if err := s.set.Add(a); err != nil {
					return err
				}
			}
		}
	}
	if from.GUEPort != to.GUEPort {
		if err := d.cfg.SetGUEPort(to.GUEPort); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		set      *maps.DecapAddrSet
		from, to []netip.Addr
	}{{d.vips, from.VIPs, to.VIPs}, {d.addrs, from.Addresses, to.Addresses}} {
		for _, a := range s.from {
			if !slices.Contains(s.to, a) {
				if err := s.set.Remove(a); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Config reads the settings in force back from the maps.
func (d *Decap) Config() (lb.DecapConfig, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.config()
}

func (d *Decap) config() (lb.DecapConfig, error) {
	var c lb.DecapConfig
	var err error
	if c.VIPs, err = d.vips.All(); err != nil {
		return c, err
	}
	if c.Addresses, err = d.addrs.All(); err != nil {
		return c, err
	}
	if c.GUEPort, err = d.cfg.GUEPort(); err != nil {
		return c, err
	}
	return normalize(c), nil
}

// Counters reads the counters, summed over CPUs.
func (d *Decap) Counters() (lb.DecapCounters, error) { return d.stats.Read() }

// normalize unmaps, sorts and de-duplicates the address lists.
func normalize(c lb.DecapConfig) lb.DecapConfig {
	clean := func(in []netip.Addr) []netip.Addr {
		out := make([]netip.Addr, 0, len(in))
		for _, a := range in {
			out = append(out, a.Unmap())
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return slices.Compact(out)
	}
	return lb.DecapConfig{VIPs: clean(c.VIPs), Addresses: clean(c.Addresses), GUEPort: c.GUEPort}
}

func (d *Decap) attach(iface *net.Interface) error {
	l, err := pinning.AttachXDP(d.objs.Decap, iface, d.opts.XDPMode, "decap ")
	if err != nil {
		return err
	}
	d.link = l
	d.opts.Logger.Info("decapsulator attached", "interface", iface.Name, "mode", string(d.opts.XDPMode))
	return nil
}

// readopt takes over the pinned link, if any, and points it at the new
// program.
func (d *Decap) readopt(iface *net.Interface) error {
	l, err := pins(d.opts).Readopt(d.objs.Decap, iface)
	if err != nil {
		return err
	}
	if l != nil {
		d.link = l
	}
	return nil
}

// repin pins the maps started afresh over the old pins.
func (d *Decap) repin(names []string) error {
	return pins(d.opts).Repin(names, d.mapByName)
}

// pin pins the link and maps all at once (pinning.Dir.Pin).
func (d *Decap) pin() error {
	return pins(d.opts).Pin(pinnedMaps, d.mapByName, d.link)
}

func (d *Decap) mapByName(name string) *ebpf.Map {
	switch name {
	case bpf.MapDecapVips:
		return d.objs.DecapVips
	case bpf.MapDecapAddrs:
		return d.objs.DecapAddrs
	case bpf.MapDecapConfig:
		return d.objs.DecapConfig
	case bpf.MapDecapStats:
		return d.objs.DecapStats
	}
	panic("unknown decap map " + name)
}
