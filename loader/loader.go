package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader/pinning"
)

// ErrAttached means the interface already runs another XDP program.
var ErrAttached = pinning.ErrAttached

// pinnedMaps are the maps pinned (and re-adopted) by name.
var pinnedMaps = []string{
	bpf.MapServices, bpf.MapBackends, bpf.MapMaglevTables, bpf.MapConntrack,
	bpf.MapStats, bpf.MapSvcStats, bpf.MapBackendStats,
	bpf.MapPersist, bpf.MapActive, bpf.MapRRCursor, bpf.MapConfig,
	bpf.MapHalfOpen,
}

const linkPin = pinning.LinkPin

// pins is the pin directory of opts.
func pins(opts Options) pinning.Dir {
	return pinning.Dir{Path: opts.PinDir, Hint: "pins of an older xlb? xlbd --detach, then start again; flows are lost", Logger: opts.Logger}
}

// Open loads the data plane, or re-adopts the one pinned in opts.PinDir,
// and attaches it to opts.Interface. On re-adoption the pinned maps are
// kept (flows, counters, tables) and the pinned link is switched to the
// freshly loaded program in one atomic update.
func Open(opts Options) (*Balancer, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	var iface *net.Interface
	if opts.Interface != "" {
		var err error
		iface, err = net.InterfaceByName(opts.Interface)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", opts.Interface, err)
		}
	}

	spec, err := bpf.LoadSpec()
	if err != nil {
		return nil, fmt.Errorf("load collection spec: %w", err)
	}
	if err := sizeSpec(spec, opts, iface); err != nil {
		return nil, err
	}

	adopt := opts.PinDir != "" && pinning.Exists(filepath.Join(opts.PinDir, bpf.MapServices))
	var replacements map[string]*ebpf.Map
	var fresh []string // counter maps of another layout, started afresh
	if adopt {
		replacements, fresh, err = pins(opts).LoadMaps(pinnedMaps, freshMaps, spec)
		if err != nil {
			return nil, err
		}
		for _, name := range fresh {
			opts.Logger.Warn("pinned map has the layout of another version: it starts afresh (counters from zero, settings rewritten; flows, services and tables are kept)", "map", name)
		}
		defer func() {
			for _, m := range replacements {
				m.Close()
			}
		}()
	}

	var objs bpf.Objects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replacements}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			opts.Logger.Error("verifier rejected the program", "log", fmt.Sprintf("%+v", ve))
		}
		if adopt {
			return nil, fmt.Errorf("load program with the maps pinned in %s (a version with other map layouts? detach first): %w", opts.PinDir, err)
		}
		return nil, fmt.Errorf("load program: %w", err)
	}

	b := &Balancer{
		opts:    opts,
		objs:    &objs,
		inner:   spec.Maps[bpf.MapMaglevTables].InnerMap,
		adopted: adopt,
	}
	b.initViews()
	// Every setting of the config map is written here, so a config map
	// started afresh (freshMaps) loses nothing.
	if err := b.cfgMap.SetTimeouts(opts.Timeouts); err != nil {
		return nil, errors.Join(err, b.objs.Close())
	}
	if err := b.cfgMap.SetEncap(opts.Encap); err != nil {
		return nil, errors.Join(err, b.objs.Close())
	}
	if err := b.cfgMap.SetICMP(opts.ICMP); err != nil {
		return nil, errors.Join(err, b.objs.Close())
	}

	if adopt {
		if err := b.repin(fresh); err != nil {
			return nil, errors.Join(err, b.objs.Close())
		}
		if err := b.checkAdoptedTables(); err != nil {
			return nil, errors.Join(err, b.objs.Close())
		}
		// Before the pinned link runs this program: its unpinned maps
		// derived from the services (vips, vip_filter, backend_svc) are
		// filled, so not one frame of a VIP goes to the kernel.
		if err := b.recoverState(); err != nil {
			return nil, errors.Join(err, b.objs.Close())
		}
		if err := b.readopt(iface); err != nil {
			return nil, errors.Join(err, b.objs.Close())
		}
		if b.link == nil && iface != nil {
			if err := b.attach(iface); err != nil {
				return nil, errors.Join(err, b.objs.Close())
			}
			if err := b.link.Pin(filepath.Join(opts.PinDir, linkPin)); err != nil {
				return nil, errors.Join(fmt.Errorf("pin link: %w", err), b.Close())
			}
		}
		opts.Logger.Info("re-adopted pinned data plane", "pins", opts.PinDir, "services", len(b.services))
		return b, nil
	}

	if iface != nil {
		if err := b.attach(iface); err != nil {
			return nil, errors.Join(err, b.objs.Close())
		}
	}
	if opts.PinDir != "" {
		if err := b.pin(); err != nil {
			return nil, errors.Join(err, b.Close())
		}
	}
	return b, nil
}

// sizeSpec applies the options to the spec before load.
func sizeSpec(spec *ebpf.CollectionSpec, opts Options, iface *net.Interface) error {
	for _, name := range append(pinnedMaps, bpf.MapVips, bpf.MapFrags, bpf.MapVipFilter, bpf.MapBackendSvc) {
		if spec.Maps[name] == nil {
			return fmt.Errorf("collection has no map %q", name)
		}
	}
	spec.Maps[bpf.MapServices].MaxEntries = opts.MaxServices
	spec.Maps[bpf.MapMaglevTables].MaxEntries = opts.MaxServices
	spec.Maps[bpf.MapSvcStats].MaxEntries = opts.MaxServices
	spec.Maps[bpf.MapBackends].MaxEntries = opts.MaxBackends
	spec.Maps[bpf.MapBackendStats].MaxEntries = opts.MaxBackends
	spec.Maps[bpf.MapBackendSvc].MaxEntries = opts.MaxBackends
	spec.Maps[bpf.MapConntrack].MaxEntries = opts.ConntrackSize
	spec.Maps[bpf.MapRRCursor].MaxEntries = opts.MaxServices
	spec.Maps[bpf.MapActive].MaxEntries = opts.MaxBackends
	spec.Maps[bpf.MapPersist].MaxEntries = opts.PersistSize
	spec.Maps[bpf.MapHalfOpen].MaxEntries = opts.HalfOpenSize
	// At most one VIP per service. Not pinned: rebuilt from the services
	// on every start (syncVIPs).
	spec.Maps[bpf.MapVips].MaxEntries = opts.MaxServices
	if opts.ConntrackPerCPU {
		spec.Maps[bpf.MapConntrack].Type = ebpf.LRUCPUHash
	}
	if opts.ConntrackNoCommonLRU {
		spec.Maps[bpf.MapConntrack].Flags |= bpfFNoCommonLRU
	}
	inner := spec.Maps[bpf.MapMaglevTables].InnerMap
	if inner == nil {
		return fmt.Errorf("map %q has no inner map spec", bpf.MapMaglevTables)
	}
	inner.MaxEntries = opts.TableSize
	// Tables are filled through a memory mapping (maps.SchedTables); a
	// re-adopted data plane keeps the layout it was pinned with
	// (checkAdoptedTables).
	if !opts.batchTables {
		inner.Flags |= unix.BPF_F_MMAPABLE
	}
	if err := spec.Variables[bpf.VarMaglevSize].Set(opts.TableSize); err != nil {
		return fmt.Errorf("set maglev size: %w", err)
	}
	mac := opts.MAC
	if len(mac) == 0 && iface != nil {
		mac = iface.HardwareAddr
	}
	if len(mac) == 6 {
		if err := spec.Variables[bpf.VarIfaceMAC].Set([6]byte(mac)); err != nil {
			return fmt.Errorf("set interface mac: %w", err)
		}
	}
	return nil
}

// bpfFNoCommonLRU is BPF_F_NO_COMMON_LRU.
const bpfFNoCommonLRU = 1 << 1

// freshMaps may start afresh when an upgrade changes their layout (or
// brings them: an older version did not pin them) instead of blocking the
// upgrade: the counter maps (a counter added: they restart from zero), the
// config map (a setting added: Open rewrites every setting of it anyway)
// and the half-open table (its entries live seconds; a resize or an
// upgrade loses the handshakes in flight, whose next packet is scheduled
// as a new flow). Every other map must match, or flows and tables would be
// misread.
var freshMaps = map[string]bool{bpf.MapStats: true, bpf.MapSvcStats: true, bpf.MapBackendStats: true, bpf.MapConfig: true, bpf.MapHalfOpen: true}

func (b *Balancer) attach(iface *net.Interface) error {
	l, err := pinning.AttachXDP(b.objs.Xlb, iface, b.opts.XDPMode, "")
	if err != nil {
		return err
	}
	b.link = l
	b.opts.Logger.Info("attached", "interface", iface.Name, "mode", string(b.opts.XDPMode))
	return nil
}

// readopt takes over the pinned link, if any, and points it at the new
// program.
func (b *Balancer) readopt(iface *net.Interface) error {
	l, err := pins(b.opts).Readopt(b.objs.Xlb, iface)
	if err != nil {
		return err
	}
	if l != nil {
		b.link = l
	}
	return nil
}

// pin pins the link and maps all at once (pinning.Dir.Pin).
func (b *Balancer) pin() error {
	return pins(b.opts).Pin(pinnedMaps, b.mapByName, b.link)
}

// repin pins the maps started afresh over the pins of the old layout.
func (b *Balancer) repin(names []string) error {
	return pins(b.opts).Repin(names, b.mapByName)
}

func (b *Balancer) mapByName(name string) *ebpf.Map {
	m := b.objs
	switch name {
	case bpf.MapServices:
		return m.Services
	case bpf.MapBackends:
		return m.Backends
	case bpf.MapMaglevTables:
		return m.MaglevTables
	case bpf.MapConntrack:
		return m.Conntrack
	case bpf.MapStats:
		return m.Stats
	case bpf.MapSvcStats:
		return m.SvcStats
	case bpf.MapBackendStats:
		return m.BackendStats
	case bpf.MapPersist:
		return m.Persist
	case bpf.MapActive:
		return m.BackendActive
	case bpf.MapRRCursor:
		return m.RrCursor
	case bpf.MapConfig:
		return m.Config
	case bpf.MapHalfOpen:
		return m.Halfopen
	}
	panic("unknown map " + name)
}

// checkAdoptedTables verifies that the pinned Maglev tables have the size
// this daemon was configured with (the size is fixed per pinned set), and
// makes new tables of their layout (mapped or not).
func (b *Balancer) checkAdoptedTables() error {
	var (
		key uint32
		id  ebpf.MapID
	)
	it := b.objs.MaglevTables.Iterate()
	if it.Next(&key, &id) {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return fmt.Errorf("open pinned maglev table: %w", err)
		}
		defer m.Close()
		if m.MaxEntries() != b.opts.TableSize {
			return fmt.Errorf("table size %d (limits.maglev_size) differs from the pinned data plane's %d: keep the old size, or detach (flows are lost) and start again", b.opts.TableSize, m.MaxEntries())
		}
		// New tables must have the flags of the pinned ones (the outer
		// map's template): a data plane pinned before tables were
		// mapped keeps batch-filled ones.
		b.setMappedTables(m.Flags()&unix.BPF_F_MMAPABLE != 0)
		return nil
	}
	if err := it.Err(); err != nil {
		return err
	}
	return b.probeTableLayout()
}

// setMappedTables sets whether new tables are created BPF_F_MMAPABLE
// (and filled through a mapping) or not (and filled by a batch update).
func (b *Balancer) setMappedTables(mapped bool) {
	b.inner.Flags &^= unix.BPF_F_MMAPABLE
	if mapped {
		b.inner.Flags |= unix.BPF_F_MMAPABLE
	}
}

// probeTableLayout finds out whether a re-adopted data plane without any
// table takes mapped tables: it installs an empty one at id 0 (no
// service uses it) and removes it again. The outer map refuses an inner
// map whose flags differ from its template's with EINVAL.
func (b *Balancer) probeTableLayout() error {
	b.setMappedTables(true)
	m, err := ebpf.NewMap(b.inner)
	if err != nil {
		return fmt.Errorf("create a maglev table: %w", err)
	}
	defer m.Close()
	key := uint32(0)
	switch err := b.objs.MaglevTables.Put(&key, m); {
	case errors.Is(err, unix.EINVAL):
		b.setMappedTables(false)
		return nil
	case err != nil:
		return fmt.Errorf("probe the pinned maglev tables' layout: %w", err)
	}
	if err := b.objs.MaglevTables.Delete(&key); err != nil {
		return fmt.Errorf("probe the pinned maglev tables' layout: %w", err)
	}
	return nil
}

// Detach stops the data plane pinned in pinDir and removes its pins: the
// link's pin is the last reference to the attachment, so removing it
// detaches the program. It loads nothing and reads no map, so a data plane
// pinned with other limits, or by another version, detaches alike. The
// parent directory goes too when this leaves it empty.
func Detach(pinDir string) error {
	if _, err := os.Stat(pinDir); err != nil {
		return fmt.Errorf("nothing to detach at %s: %w", pinDir, err)
	}
	if l, err := link.LoadPinnedLink(filepath.Join(pinDir, linkPin), nil); err == nil {
		// Held until the pins are gone, then closed: the attachment ends
		// with this last reference.
		defer l.Close()
	}
	if err := os.RemoveAll(pinDir); err != nil {
		return fmt.Errorf("remove pins %s: %w", pinDir, err)
	}
	if err := os.Remove(filepath.Dir(pinDir)); err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Dir(pinDir), err)
	}
	return nil
}
