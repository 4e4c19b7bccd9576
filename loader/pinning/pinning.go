// Package pinning keeps an XDP data plane alive across restarts of its
// daemon: its maps and its XDP link pinned in one bpffs directory, all at
// once, and re-adopted by the next start. The balancer (package loader)
// and the backend decapsulator (loader/decap) share it.
package pinning

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/maps/lb"
)

// ErrAttached means the interface already runs another XDP program.
var ErrAttached = errors.New("interface already has an XDP program attached")

// LinkPin is the name of the XDP link's pin in a directory.
const LinkPin = "link"

// Dir is one data plane's pin directory.
type Dir struct {
	// Path is the directory; its parent must be on a bpffs.
	Path string
	// What names the data plane in messages ("" for the balancer,
	// "decap " for the decapsulator).
	What string
	// Hint ends the error of a pin that cannot be re-adopted (what to
	// do about it).
	Hint string
	// Logger takes the warnings.
	Logger *slog.Logger
}

// Exists reports whether path exists.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// LoadMaps opens the maps names pinned in the directory for re-adoption.
// A map of fresh (its contents may start afresh: counters, settings) whose
// pin is missing or of another layout than spec's is left out and returned
// in freshNames, to be created anew; any other map that is missing or of
// another layout is an error ending with Hint.
func (d Dir) LoadMaps(names []string, fresh map[string]bool, spec *ebpf.CollectionSpec) (out map[string]*ebpf.Map, freshNames []string, err error) {
	out = make(map[string]*ebpf.Map, len(names))
	defer func() {
		if err != nil {
			for _, m := range out {
				_ = m.Close() // not handed out
			}
			out = nil
		}
	}()
	for _, name := range names {
		m, err := ebpf.LoadPinnedMap(filepath.Join(d.Path, name), nil)
		if fresh[name] && errors.Is(err, os.ErrNotExist) {
			freshNames = append(freshNames, name)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("re-adopt pinned %smap %s: %w (%s)", d.What, name, err, d.Hint)
		}
		if cerr := spec.Maps[name].Compatible(m); cerr != nil {
			_ = m.Close() // replaced
			if fresh[name] {
				freshNames = append(freshNames, name)
				continue
			}
			return nil, nil, fmt.Errorf("re-adopt pinned %smap %s: %w (%s)", d.What, name, cerr, d.Hint)
		}
		out[name] = m
	}
	return out, freshNames, nil
}

// Repin pins the maps names, started afresh, over their old pins.
func (d Dir) Repin(names []string, byName func(string) *ebpf.Map) error {
	for _, name := range names {
		path := filepath.Join(d.Path, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace pinned %s: %w", name, err)
		}
		if err := byName(name).Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// Pin writes the maps names and the link (if any) into a temporary
// directory beside Path and renames it into place, so a crash never leaves
// a half-pinned set. A temporary directory a start killed before its
// rename left behind (its pins keep maps in kernel memory) is removed
// first: only one daemon pins into Path at a time (its lock).
func (d Dir) Pin(names []string, byName func(string) *ebpf.Map, l link.Link) error {
	parent := filepath.Dir(d.Path)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create pin directory %s: %w (is bpffs mounted? mount -t bpf bpf /sys/fs/bpf)", parent, err)
	}
	// bpffs rejects names with a dot: no hidden-file style here.
	prefix := filepath.Base(d.Path) + "-tmp-"
	if stale, err := filepath.Glob(filepath.Join(parent, prefix+"*")); err == nil {
		for _, s := range stale {
			if err := os.RemoveAll(s); err != nil {
				return fmt.Errorf("remove stale pins %s: %w", s, err)
			}
			d.Logger.Warn("removed the pins of an interrupted start", "dir", s)
		}
	}
	tmp, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return fmt.Errorf("create pin directory in %s: %w", parent, err)
	}
	fail := func(err error) error { return errors.Join(err, os.RemoveAll(tmp)) }
	for _, name := range names {
		if err := byName(name).Pin(filepath.Join(tmp, name)); err != nil {
			return fail(fmt.Errorf("pin %smap %s: %w (is %s on a bpffs?)", d.What, name, err, parent))
		}
	}
	if l != nil {
		if err := l.Pin(filepath.Join(tmp, LinkPin)); err != nil {
			return fail(fmt.Errorf("pin %slink: %w", d.What, err))
		}
	}
	if err := os.Rename(tmp, d.Path); err != nil {
		return fail(fmt.Errorf("move pins into %s: %w", d.Path, err))
	}
	return nil
}

// Readopt takes over the pinned link, if any (nil, nil if none), checks
// that it is iface's (when iface is set) and points it at prog in one
// atomic update.
func (d Dir) Readopt(prog *ebpf.Program, iface *net.Interface) (link.Link, error) {
	path := filepath.Join(d.Path, LinkPin)
	if !Exists(path) {
		return nil, nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil, fmt.Errorf("re-adopt pinned %slink in %s: %w", d.What, d.Path, err)
	}
	if iface != nil {
		info, err := l.Info()
		if err == nil && info.XDP() != nil && int(info.XDP().Ifindex) != iface.Index {
			return nil, errors.Join(fmt.Errorf("pins in %s belong to interface index %d, not %s (%d)", d.Path, info.XDP().Ifindex, iface.Name, iface.Index), l.Close())
		}
	}
	if err := l.Update(prog); err != nil {
		return nil, errors.Join(fmt.Errorf("switch pinned %slink to the new program: %w", d.What, err), l.Close())
	}
	return l, nil
}

// AttachXDP attaches prog to iface in mode; another program or daemon
// already there is ErrAttached.
func AttachXDP(prog *ebpf.Program, iface *net.Interface, mode lb.XDPMode, what string) (link.Link, error) {
	flags := link.XDPDriverMode
	if mode == lb.Generic {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: flags})
	if errors.Is(err, os.ErrExist) || errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("attach %sto %s: %w (another XDP program or another xlbd owns it)", what, iface.Name, ErrAttached)
	}
	if err != nil {
		hint := ""
		if mode == lb.Native {
			hint = " (if the driver has no native XDP support, try xdp mode generic)"
		}
		return nil, fmt.Errorf("attach %sxdp (%s mode) to %s: %w%s", what, mode, iface.Name, err, hint)
	}
	return l, nil
}
