package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
)

// ProbeRoute is one health check connection carried through the tunnel
// (bpf/probe.c): the check's socket, bound to LocalPort, connects to
// Backend on Port; its packets go to VIP:Port inside an outer header from
// Source to Backend (ipip, or gue to GUEPort when it is not 0), and the
// answers from VIP:Port come back as from Backend.
type ProbeRoute struct {
	Backend, VIP, Source netip.Addr
	Port, LocalPort      uint16
	GUEPort              uint16
}

// marshal returns the route's two entries: the outgoing packets' and the
// answers'.
func (r ProbeRoute) marshal() (outK bpf.ProbeKey, outV bpf.Probe, inK bpf.ProbeKey, inV bpf.Probe, err error) {
	be, fam := addrWords(r.Backend)
	vip, vfam := addrWords(r.VIP)
	src, sfam := addrWords(r.Source)
	if !r.Backend.IsValid() || !r.VIP.IsValid() || !r.Source.IsValid() || vfam != fam || sfam != fam {
		return outK, outV, inK, inV, fmt.Errorf("probe route %s via %s from %s: want addresses of one family", r.VIP, r.Backend, r.Source)
	}
	outK = bpf.ProbeKey{Peer: be, Lport: bePort(r.LocalPort), Rport: bePort(r.Port), Family: fam, Dir: bpf.ProbeOut}
	outV = bpf.Probe{Addr: vip, Src: src}
	if r.GUEPort != 0 {
		outV.GuePort = bePort(r.GUEPort)
	}
	inK = bpf.ProbeKey{Peer: vip, Lport: bePort(r.LocalPort), Rport: bePort(r.Port), Family: fam, Dir: bpf.ProbeIn}
	inV = bpf.Probe{Addr: be}
	return outK, outV, inK, inV, nil
}

// Probes is the tunnel's probes map.
type Probes struct{ m *ebpf.Map }

// NewProbes wraps the probes map.
func NewProbes(m *ebpf.Map) *Probes { return &Probes{m} }

// Add registers both directions of r; on error neither is.
func (p *Probes) Add(r ProbeRoute) error {
	outK, outV, inK, inV, err := r.marshal()
	if err != nil {
		return err
	}
	if err := p.m.Update(&inK, &inV, ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("register probe answers from %s:%d to port %d: %w", r.VIP, r.Port, r.LocalPort, err)
	}
	if err := p.m.Update(&outK, &outV, ebpf.UpdateNoExist); err != nil {
		_ = p.m.Delete(&inK) // ours, just added
		return fmt.Errorf("register probe from port %d to %s:%d: %w", r.LocalPort, r.Backend, r.Port, err)
	}
	return nil
}

// Delete removes both directions of r; entries already gone are not an
// error.
func (p *Probes) Delete(r ProbeRoute) error {
	outK, _, inK, _, err := r.marshal()
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range []*bpf.ProbeKey{&outK, &inK} {
		if err := p.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Len counts the registered entries (two per route).
func (p *Probes) Len() (int, error) {
	var k bpf.ProbeKey
	var v bpf.Probe
	n := 0
	it := p.m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}
