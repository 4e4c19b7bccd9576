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
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
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

const linkPin = "link"

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
		if exists(filepath.Join(opts.PinDir, bpf.MapDecapStats)) {
			adopt = true
		} else if exists(opts.PinDir) {
			return nil, fmt.Errorf("%s: %w (the balancer's? xlbd --detach --interface %s removes them)", opts.PinDir, ErrOtherRole, opts.Interface)
		}
	}
	var replacements map[string]*ebpf.Map
	var fresh []string
	if adopt {
		replacements, fresh, err = loadPinnedMaps(opts.PinDir, spec)
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
	flags := link.XDPDriverMode
	if d.opts.XDPMode == lb.Generic {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.Decap, Interface: iface.Index, Flags: flags})
	if errors.Is(err, os.ErrExist) || errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("attach decap to %s: %w (another XDP program or another xlbd owns it)", iface.Name, loader.ErrAttached)
	}
	if err != nil {
		return fmt.Errorf("attach decap xdp (%s mode) to %s: %w", d.opts.XDPMode, iface.Name, err)
	}
	d.link = l
	d.opts.Logger.Info("decapsulator attached", "interface", iface.Name, "mode", string(d.opts.XDPMode))
	return nil
}

// readopt takes over the pinned link, if any, and points it at the new
// program.
func (d *Decap) readopt(iface *net.Interface) error {
	path := filepath.Join(d.opts.PinDir, linkPin)
	if !exists(path) {
		return nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return fmt.Errorf("re-adopt pinned decap link in %s: %w", d.opts.PinDir, err)
	}
	if iface != nil {
		info, err := l.Info()
		if err == nil && info.XDP() != nil && int(info.XDP().Ifindex) != iface.Index {
			return errors.Join(fmt.Errorf("pins in %s belong to interface index %d, not %s (%d)", d.opts.PinDir, info.XDP().Ifindex, iface.Name, iface.Index), l.Close())
		}
	}
	if err := l.Update(d.objs.Decap); err != nil {
		return errors.Join(fmt.Errorf("switch pinned decap link to the new program: %w", err), l.Close())
	}
	d.link = l
	return nil
}

// loadPinnedMaps opens the pinned maps for re-adoption; a fresh map of
// another layout (or missing) is left out and returned in fresh.
func loadPinnedMaps(dir string, spec *ebpf.CollectionSpec) (out map[string]*ebpf.Map, fresh []string, err error) {
	out = make(map[string]*ebpf.Map, len(pinnedMaps))
	defer func() {
		if err != nil {
			for _, m := range out {
				m.Close()
			}
			out = nil
		}
	}()
	for _, name := range pinnedMaps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if freshMaps[name] && errors.Is(err, os.ErrNotExist) {
			fresh = append(fresh, name)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("re-adopt pinned decap map %s: %w (xlbd --detach, then start again)", name, err)
		}
		if cerr := spec.Maps[name].Compatible(m); cerr != nil {
			m.Close()
			if freshMaps[name] {
				fresh = append(fresh, name)
				continue
			}
			return nil, nil, fmt.Errorf("re-adopt pinned decap map %s: %w (xlbd --detach, then start again)", name, cerr)
		}
		out[name] = m
	}
	return out, fresh, nil
}

// repin pins the maps started afresh over the old pins.
func (d *Decap) repin(names []string) error {
	for _, name := range names {
		path := filepath.Join(d.opts.PinDir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace pinned %s: %w", name, err)
		}
		if err := d.mapByName(name).Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// pin writes the link and maps into a temporary directory beside PinDir
// and renames it into place, so a crash never leaves a half-pinned set.
func (d *Decap) pin() error {
	parent := filepath.Dir(d.opts.PinDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create pin directory %s: %w (is bpffs mounted? mount -t bpf bpf /sys/fs/bpf)", parent, err)
	}
	// bpffs rejects names with a dot.
	prefix := filepath.Base(d.opts.PinDir) + "-tmp-"
	if stale, err := filepath.Glob(filepath.Join(parent, prefix+"*")); err == nil {
		for _, s := range stale {
			if err := os.RemoveAll(s); err != nil {
				return fmt.Errorf("remove stale pins %s: %w", s, err)
			}
			d.opts.Logger.Warn("removed the pins of an interrupted start", "dir", s)
		}
	}
	tmp, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return fmt.Errorf("create pin directory in %s: %w", parent, err)
	}
	fail := func(err error) error { return errors.Join(err, os.RemoveAll(tmp)) }
	for _, name := range pinnedMaps {
		if err := d.mapByName(name).Pin(filepath.Join(tmp, name)); err != nil {
			return fail(fmt.Errorf("pin map %s: %w", name, err))
		}
	}
	if d.link != nil {
		if err := d.link.Pin(filepath.Join(tmp, linkPin)); err != nil {
			return fail(fmt.Errorf("pin decap link: %w", err))
		}
	}
	if err := os.Rename(tmp, d.opts.PinDir); err != nil {
		return fail(fmt.Errorf("move pins into %s: %w", d.opts.PinDir, err))
	}
	return nil
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

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
