package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
)

// previousObject is the data plane as it was before issue 15 ("line
// rate") set to make it faster: bpf/xlb_bpfel.o of commit 66dde02 on main
// (the bench's own branch for issue 15 starts there). The per-packet
// section runs it beside today's object on the same frames, alternating
// round by round, so "before issue 15" and "now" are measured in one run;
// the flood part runs both too.
//
//go:embed testdata/xlb-before-issue15.o
var previousObject []byte

// previousCommit names where previousObject comes from.
const previousCommit = "66dde02 (main before issue 15)"

// previous is previousObject loaded, shadowing a Balancer of today.
type previous struct {
	coll  *ebpf.Collection
	prog  *ebpf.Program
	inner *ebpf.MapSpec
}

func (p *previous) Close() { p.coll.Close() }

// loadPrevious loads previousObject with the services, backends and
// scheduler tables of bal (previous.sync) and a connection table of
// conntrackSize entries (0: the object's default). The config map stays
// zero (no idle timeout), as the measured flows are fresh.
func loadPrevious(bal *loader.Balancer, conntrackSize uint32) (_ *previous, err error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(previousObject))
	if err != nil {
		return nil, fmt.Errorf("previous object: %w", err)
	}
	if conntrackSize != 0 {
		spec.Maps[bpf.MapConntrack].MaxEntries = conntrackSize
	}
	src, err := programMaps(bal.Program())
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range src {
			err = errors.Join(err, m.Close())
		}
	}()
	outer := src[bpf.MapMaglevTables]
	if outer == nil {
		return nil, fmt.Errorf("today's program has no %s map", bpf.MapMaglevTables)
	}
	var size uint32
	var innerSpec *ebpf.MapSpec
	if s := spec.Maps[bpf.MapMaglevTables]; s != nil && s.InnerMap != nil {
		innerSpec = s.InnerMap.Copy()
	} else {
		return nil, errors.New("previous object: no scheduler tables")
	}
	// The inner size of today's tables is the maglev size.
	var id uint32
	var innerID ebpf.MapID
	it := outer.Iterate()
	if it.Next(&id, &innerID) {
		m, err := ebpf.NewMapFromID(innerID)
		if err != nil {
			return nil, fmt.Errorf("open table of service %d: %w", id, err)
		}
		size = m.MaxEntries()
		_ = m.Close() // only its size was read
	}
	if size == 0 {
		return nil, errors.New("today's program has no scheduler table")
	}
	innerSpec.MaxEntries = size
	spec.Maps[bpf.MapMaglevTables].InnerMap = innerSpec
	if v := spec.Variables[bpf.VarMaglevSize]; v != nil {
		if err := v.Set(size); err != nil {
			return nil, err
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load previous object: %w", err)
	}
	p := &previous{coll: coll, prog: coll.Programs["xlb"], inner: innerSpec}
	if p.prog == nil {
		coll.Close()
		return nil, errors.New("previous object has no program xlb")
	}
	if err := p.sync(bal); err != nil {
		coll.Close()
		return nil, err
	}
	return p, nil
}

// sync copies the services, backends and scheduler tables of bal into the
// previous object's maps, map by map: their key and value layouts did not
// change since. Entries are overwritten, none deleted.
func (p *previous) sync(bal *loader.Balancer) (err error) {
	coll, innerSpec := p.coll, p.inner
	src, err := programMaps(bal.Program())
	if err != nil {
		return err
	}
	defer func() {
		for _, m := range src {
			err = errors.Join(err, m.Close())
		}
	}()
	outer := src[bpf.MapMaglevTables]
	var id uint32
	var innerID ebpf.MapID
	for _, name := range []string{bpf.MapServices, bpf.MapBackends} {
		if err := copyMap(src[name], coll.Maps[name]); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	it := outer.Iterate()
	for it.Next(&id, &innerID) {
		m, err := ebpf.NewMapFromID(innerID)
		if err != nil {
			return fmt.Errorf("open table of service %d: %w", id, err)
		}
		inner, err := ebpf.NewMap(innerSpec)
		if err == nil {
			err = copyMap(m, inner)
		}
		if err == nil {
			err = coll.Maps[bpf.MapMaglevTables].Put(id, inner)
		}
		err = errors.Join(err, m.Close())
		if inner != nil {
			err = errors.Join(err, inner.Close())
		}
		if err != nil {
			return fmt.Errorf("copy table of service %d: %w", id, err)
		}
	}
	return it.Err()
}

// programMaps opens the maps prog uses, by name.
func programMaps(prog *ebpf.Program) (map[string]*ebpf.Map, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, err
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, errors.New("program info has no map ids")
	}
	out := make(map[string]*ebpf.Map, len(ids))
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, err
		}
		mi, err := m.Info()
		if err != nil {
			return nil, errors.Join(err, m.Close())
		}
		out[mi.Name] = m
	}
	return out, nil
}

// copyMap copies every entry of from into to, as raw bytes.
func copyMap(from, to *ebpf.Map) error {
	if from == nil || to == nil {
		return errors.New("missing map")
	}
	if from.KeySize() != to.KeySize() || from.ValueSize() != to.ValueSize() {
		return fmt.Errorf("layouts differ: %d/%d and %d/%d bytes", from.KeySize(), from.ValueSize(), to.KeySize(), to.ValueSize())
	}
	k, v := make([]byte, from.KeySize()), make([]byte, from.ValueSize())
	it := from.Iterate()
	for it.Next(&k, &v) {
		if err := to.Put(k, v); err != nil {
			return err
		}
	}
	return it.Err()
}
