package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// Flood is the flood part of section 1: established connections broken by
// a flood of spoofed TCP packets ten times the connection table's size,
// with backends added mid-flood, on today's object and on the one before
// issue 13, fed the same frames.
type Flood struct {
	PreviousObject string `json:"previous_object"`
	ConntrackSize  int    `json:"conntrack_size"`
	HalfOpenSize   int    `json:"halfopen_size"`
	Established    int    `json:"established_per_service"`
	Flood          int    `json:"flood_packets"`
	Added          int    `json:"backends_added_per_service"`
	// Rows: one per flood kind and scheduler.
	Rows []FloodRow `json:"rows"`
}

// FloodRow is one flood kind against one service.
type FloodRow struct {
	Kind      string `json:"kind"`
	Scheduler string `json:"scheduler"`
	Broken    int    `json:"broken"`
	// BrokenBefore is the same on the previous object.
	BrokenBefore int `json:"broken_before"`
}

// floodDataPlane is one object under test: how to run a frame through it.
type floodDataPlane struct {
	name string
	prog *ebpf.Program
}

// send runs in through d and returns the backend index it went to (by its
// MAC), -1 when it was not forwarded.
func (d floodDataPlane) send(in []byte) (int, error) {
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := d.prog.Run(opts)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", d.name, err)
	}
	if ret != xdpTX {
		return -1, nil
	}
	return int(opts.DataOut[5]) - 0x11, nil
}

// measureFlood floods both objects with spoofed packets of each kind, one
// per tuple (SYN, ACK), ten times the connection table, adding a backend
// to every service twice mid-flood, and counts the established connections
// (made before the flood: SYN, then ACK) whose packets then reach another
// backend.
func measureFlood(o options) (*Flood, error) {
	const conntrackSize, halfOpenSize, established = 4096, 1024, 600
	fl := &Flood{PreviousObject: previousCommit, ConntrackSize: conntrackSize, HalfOpenSize: halfOpenSize,
		Established: established, Flood: 10 * conntrackSize, Added: 2}
	for _, kind := range []string{"SYN", "ACK"} {
		rows, err := floodOnce(kind, fl)
		if err != nil {
			return nil, fmt.Errorf("%s flood: %w", kind, err)
		}
		fl.Rows = append(fl.Rows, rows...)
	}
	return fl, nil
}

func floodOnce(kind string, fl *Flood) (_ []FloodRow, err error) {
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64,
		ConntrackSize: uint32(fl.ConntrackSize), HalfOpenSize: uint32(fl.HalfOpenSize)})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	scheds := []lb.Scheduler{lb.Maglev, lb.RoundRobin, lb.LeastConn}
	svcs := make([]lb.Service, len(scheds))
	for i, sc := range scheds {
		k := lb.ServiceKey{VIP: netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}), Port: 80, Proto: lb.TCP}
		svcs[i] = lb.Service{Key: k, Scheduler: sc, Backends: ppBackends(k.VIP, 3)}
		if err := bal.SetService(svcs[i]); err != nil {
			return nil, err
		}
	}
	prev, err := loadPrevious(bal, uint32(fl.ConntrackSize))
	if err != nil {
		return nil, err
	}
	defer prev.Close()
	planes := []floodDataPlane{{"today", bal.Program()}, {"previous", prev.prog}}

	build := func(s frame.Spec) []byte {
		s.SrcMAC, s.DstMAC = ppClientMAC, ppLBMAC
		return frame.MustBuild(s)
	}
	type conn struct {
		svc int
		ack []byte
		be  [2]int
	}
	var conns []conn
	for si, s := range svcs {
		for i := 0; i < fl.Established; i++ {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(8 + si), byte(1 + i%250)}), uint16(10000+i))
			dst := netip.AddrPortFrom(s.Key.VIP, s.Key.Port)
			c := conn{svc: si, ack: build(frame.Spec{Src: src, Dst: dst})}
			for pi, d := range planes {
				synBE, err := d.send(build(frame.Spec{Src: src, Dst: dst, SYN: true}))
				if err != nil {
					return nil, err
				}
				ackBE, err := d.send(c.ack)
				if err != nil {
					return nil, err
				}
				if synBE < 0 || ackBE != synBE {
					return nil, fmt.Errorf("%s: handshake of %s: SYN to %d, ACK to %d", d.name, src, synBE, ackBE)
				}
				c.be[pi] = synBE
			}
			conns = append(conns, c)
		}
	}
	rng := rand.New(rand.NewPCG(7, 13))
	added := 0
	for i := 0; i < fl.Flood; i++ {
		if i == fl.Flood/3 || i == 2*fl.Flood/3 {
			added++
			for j := range svcs {
				svcs[j].Backends = ppBackends(svcs[j].Key.VIP, 3+added)
				if err := bal.SetService(svcs[j]); err != nil {
					return nil, err
				}
			}
			if err := prev.sync(bal); err != nil {
				return nil, err
			}
		}
		s := svcs[i%len(svcs)]
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(1024+rng.IntN(60000)))
		in := build(frame.Spec{Src: src, Dst: netip.AddrPortFrom(s.Key.VIP, s.Key.Port), SYN: kind == "SYN"})
		for _, d := range planes {
			if be, err := d.send(in); err != nil || be < 0 {
				return nil, fmt.Errorf("%s: spoofed packet %d: backend %d, %v", d.name, i, be, err)
			}
		}
	}
	rows := make([]FloodRow, len(svcs))
	for i, s := range svcs {
		rows[i] = FloodRow{Kind: kind, Scheduler: s.Scheduler.String()}
	}
	for _, c := range conns {
		for pi, d := range planes {
			be, err := d.send(c.ack)
			if err != nil {
				return nil, err
			}
			if be != c.be[pi] {
				if pi == 0 {
					rows[c.svc].Broken++
				} else {
					rows[c.svc].BrokenBefore++
				}
			}
		}
	}
	return rows, nil
}

// Markdown renders the flood part.
func (fl *Flood) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Floods of spoofed TCP packets (one per tuple, %d of them: 10× the connection table of %d; half-open table %d), %d backends added to every service mid-flood: established connections (%d per service, made before the flood) that reach another backend afterwards, today and on %s, fed the same frames.\n\n",
		fl.Flood, fl.ConntrackSize, fl.HalfOpenSize, fl.Added, fl.Established, fl.PreviousObject)
	var rows [][]string
	for _, r := range fl.Rows {
		rows = append(rows, []string{r.Kind, r.Scheduler, fmt.Sprintf("%d of %d", r.Broken, fl.Established), fmt.Sprintf("%d of %d", r.BrokenBefore, fl.Established)})
	}
	b.WriteString(mdTable([]string{"flood", "scheduler", "broken today", "broken before"}, rows))
	b.WriteString("\n")
	return b.String()
}
