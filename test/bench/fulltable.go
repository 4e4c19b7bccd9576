package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/bench/benchbpf"
	"github.com/xlb-lb/xlb/test/frame"
)

// Names of the rows of this file.
const (
	caseFullTCP   = "TCP new flow, tables full (IPv4 SYN, every insert evicts)"
	caseFullUDP   = "UDP new flow, table full (IPv4, every insert evicts)"
	caseManyTCP   = "TCP established, 1M flows in the table (IPv4)"
	caseManyUDP   = "UDP flow, 1M flows in the table (IPv4)"
	manyFlows     = 1_000_000
	fillChunk     = 1 << 16
	fillerSrcBase = 0xc6128000 // 198.18.128.0: the filler flows' first source address
	fillerPorts   = 32         // filler source ports per address, from fillerSport
	fillerSport   = 2000
	spreadSrcBase = 0xc6130000 // 198.19.0.0: the 1M flows' first source address
	spreadPorts   = 16         // their source ports per address, from spreadSport
	spreadSport   = 3000
)

// TableState is a connection table (or the half-open table) around a
// new-flow measurement on full tables: its entries, the filler flows put
// there before, and the entries of measured flows, before and after.
type TableState struct {
	Map           string `json:"map"`
	Capacity      int    `json:"capacity"`
	Before        int    `json:"entries_before"`
	After         int    `json:"entries_after"`
	FillersBefore int    `json:"fillers_before"`
	FillersAfter  int    `json:"fillers_after"`
	NewBefore     int    `json:"measured_flows_before"`
	NewAfter      int    `json:"measured_flows_after"`
	Inserted      int    `json:"inserted_by_measurement"`
}

// fillerKey is filler flow i of proto to vip.
func fillerKey(i int, vip netip.AddrPort, proto lb.Proto, base uint32, ports, sport int) bpf.FlowKey {
	a := base + uint32(i/ports)
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), uint16(sport+i%ports))
	return maps.MarshalFlowKey(lb.FlowKey{Src: src, Dst: vip, Proto: proto})
}

// fillFlows inserts keys into m (a connection table or the half-open
// table), each with val, by batch updates.
func fillFlows(m *ebpf.Map, keys []bpf.FlowKey, val bpf.Flow) error {
	vals := make([]bpf.Flow, min(len(keys), fillChunk))
	for i := range vals {
		vals[i] = val
	}
	for i := 0; i < len(keys); i += fillChunk {
		k := keys[i:min(i+fillChunk, len(keys))]
		if _, err := m.BatchUpdate(k, vals[:len(k)], nil); err != nil {
			return fmt.Errorf("fill %s: batch update at %d: %w", m, i, err)
		}
	}
	return nil
}

// countFlows reads every entry of m (batch lookups, which do not touch
// the LRU's order) and counts them, those whose source address is in
// fillers and those in measured.
func countFlows(m *ebpf.Map, fillers, measured netip.Prefix) (all, inFillers, inMeasured int, err error) {
	keys := make([]bpf.FlowKey, fillChunk)
	vals := make([]bpf.Flow, fillChunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for _, k := range keys[:n] {
			all++
			src := keySrc4(k)
			if fillers.Contains(src) {
				inFillers++
			} else if measured.Contains(src) {
				inMeasured++
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return all, inFillers, inMeasured, nil
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("read %s: %w", m, err)
		}
	}
}

// keySrc4 is the IPv4 source address of a connection-table key (the
// address's bytes as they are on the wire, read as a native word).
func keySrc4(k bpf.FlowKey) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], k.Src[0])
	return netip.AddrFrom4(b)
}

// coarseNow is CLOCK_MONOTONIC_COARSE, the data plane's clock for
// last_seen.
func coarseNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read the coarse clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// benchDataPlane is a data plane of its own for one group of rows: a TCP
// and a UDP service (maglev, 3 backends) on 198.18.1.1, its maps by name,
// and a connection-table value naming a backend of the TCP service.
type benchDataPlane struct {
	bal      *loader.Balancer
	tcp, udp lb.ServiceKey
	maps     map[string]*ebpf.Map
}

func openBenchDataPlane(opts loader.Options) (_ *benchDataPlane, err error) {
	opts.MaxServices, opts.MaxBackends = 16, 64
	bal, err := loader.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	d := &benchDataPlane{bal: bal,
		tcp: lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP},
		udp: lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 53, Proto: lb.UDP}}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()
	for _, k := range []lb.ServiceKey{d.tcp, d.udp} {
		if err := bal.SetService(lb.Service{Key: k, Backends: ppBackends(k.VIP, 3)}); err != nil {
			return nil, fmt.Errorf("set service %s: %w", k, err)
		}
	}
	if d.maps, err = programMaps(bal.Program()); err != nil {
		return nil, err
	}
	for _, n := range []string{bpf.MapConntrack, bpf.MapHalfOpen} {
		if d.maps[n] == nil {
			return nil, fmt.Errorf("xlb program has no %s map", n)
		}
	}
	return d, nil
}

func (d *benchDataPlane) Close() error {
	for _, m := range d.maps {
		m.Close()
	}
	return d.bal.Close()
}

func (d *benchDataPlane) global() (maps.GlobalCounters, error) { return d.bal.Stats().Global() }

// flowValue is the value every filled flow gets: the backend a real flow
// of service key was placed on, last seen now.
func (d *benchDataPlane) flowValue(key lb.ServiceKey) (bpf.Flow, error) {
	src := netip.MustParseAddrPort("198.18.0.100:40000")
	in := frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: ppLBMAC, Src: src,
		Dst: netip.AddrPortFrom(key.VIP, key.Port), UDP: key.Proto == lb.UDP})
	// TCP: the first packet is half-open, the second has its entry.
	for i := 0; i < 2; i++ {
		if ret, err := d.bal.Program().Run(&ebpf.RunOptions{Data: in}); err != nil || ret != xdpTX {
			return bpf.Flow{}, fmt.Errorf("a flow of %s: %s, %v", key, verdictName(ret), err)
		}
	}
	fk := lb.FlowKey{Src: src, Dst: netip.AddrPortFrom(key.VIP, key.Port), Proto: key.Proto}
	var v bpf.Flow
	k := maps.MarshalFlowKey(fk)
	if err := d.maps[bpf.MapConntrack].Lookup(&k, &v); err != nil {
		return bpf.Flow{}, fmt.Errorf("entry of %s: %w", fk, err)
	}
	now, err := coarseNow()
	if err != nil {
		return bpf.Flow{}, err
	}
	v.LastSeen = now
	return v, nil
}

// measureFullTables times new flows when the tables they are inserted in
// are full: the half-open table for a TCP SYN (and the connection table
// it is looked up in), the connection table for UDP. Both are filled to
// capacity with filler flows by batch updates first, so every insert of
// a measured flow has to evict one. Timed as the other new-flow rows
// (fresh, its cost subtracted); checked per run by the counters (one new
// flow and no insert error per packet) and once around the whole by the
// tables themselves: still full, measured flows in, fillers evicted.
func measureFullTables(o options, objs *benchbpf.Objects, newRepeat, repeat, rounds int) (_ []PacketCase, err error) {
	d, err := openBenchDataPlane(loader.Options{ConntrackSize: lb.ConntrackSize.Default, HalfOpenSize: lb.HalfOpenSize.Default})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	fillers := netip.MustParsePrefix("198.18.128.0/17")
	measured := netip.MustParsePrefix("198.19.0.0/16") // fresh's sources
	var out []PacketCase
	for _, c := range []struct {
		name, path, mapName string
		key                 lb.ServiceKey
	}{
		{caseFullTCP, "conntrack (full) miss, Maglev lookup, insert into the full half-open table (an LRU eviction), MAC rewrite, XDP_TX", bpf.MapHalfOpen, d.tcp},
		{caseFullUDP, "conntrack miss, Maglev lookup, insert into the full connection table (an LRU eviction), MAC rewrite, XDP_TX", bpf.MapConntrack, d.udp},
	} {
		m := d.maps[c.mapName]
		// The connection table is filled (with UDP fillers) for both
		// rows: the SYN looks it up first.
		fill := []string{c.mapName}
		if c.mapName == bpf.MapHalfOpen {
			fill = append(fill, bpf.MapConntrack)
		}
		for _, name := range fill {
			fm := d.maps[name]
			key := c.key
			if name == bpf.MapConntrack {
				key = d.udp
			}
			val, err := d.flowValue(key)
			if err != nil {
				return nil, err
			}
			keys := make([]bpf.FlowKey, fm.MaxEntries())
			for i := range keys {
				keys[i] = fillerKey(i, netip.AddrPortFrom(key.VIP, key.Port), key.Proto, fillerSrcBase, fillerPorts, fillerSport)
			}
			if err := fillFlows(fm, keys, val); err != nil {
				return nil, err
			}
		}
		st := TableState{Map: c.mapName, Capacity: int(m.MaxEntries())}
		if st.Before, st.FillersBefore, st.NewBefore, err = countFlows(m, fillers, measured); err != nil {
			return nil, err
		}
		// Full: an LRU map may hold a few free entries back per CPU.
		if st.Before < st.Capacity*99/100 {
			return nil, fmt.Errorf("%s: %s holds %d entries after the fill, capacity %d: not full", c.name, c.mapName, st.Before, st.Capacity)
		}
		syn := frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: ppLBMAC, Src: netip.MustParseAddrPort("198.19.0.0:1024"),
			Dst: netip.AddrPortFrom(c.key.VIP, c.key.Port), UDP: c.key.Proto == lb.UDP, SYN: c.key.Proto == lb.TCP})
		pc, err := measureNewFlow(objs, d.bal.Program(), d.global, syn, newRepeat, repeat, rounds, true, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		st.Inserted = newRepeat * rounds
		if st.After, st.FillersAfter, st.NewAfter, err = countFlows(m, fillers, measured); err != nil {
			return nil, err
		}
		// Still full, the measured flows in it (most of them: the LRU
		// is approximate), fillers evicted to make room.
		switch {
		case st.After < st.Capacity*99/100:
			err = fmt.Errorf("%d entries after, capacity %d: the table did not stay full", st.After, st.Capacity)
		case st.NewAfter-st.NewBefore < min(st.Inserted, st.Capacity)/2:
			err = fmt.Errorf("%d of the %d measured flows are in the table", st.NewAfter-st.NewBefore, st.Inserted)
		case st.FillersBefore-st.FillersAfter < st.NewAfter-st.NewBefore-st.Capacity/100:
			err = fmt.Errorf("%d fillers evicted for %d measured flows", st.FillersBefore-st.FillersAfter, st.NewAfter-st.NewBefore)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.name, c.mapName, err)
		}
		o.log.Info("full table", "row", c.name, "map", c.mapName, "capacity", st.Capacity, "before", st.Before, "after", st.After,
			"fillers_evicted", st.FillersBefore-st.FillersAfter, "measured_in", st.NewAfter-st.NewBefore)
		pc.Name, pc.Path, pc.Table = c.name, c.path, &st
		pc.Checked += fmt.Sprintf("; %s filled to %d of %d entries before, %d after, %d fillers evicted, %d measured flows in it", c.mapName, st.Before, st.Capacity, st.After, st.FillersBefore-st.FillersAfter, st.NewAfter-st.NewBefore)
		out = append(out, *pc)
	}
	return out, nil
}

// spreadStep returns a step coprime with n near n times the golden
// ratio's fraction, so that k*step mod n visits every value of 0..n-1 once
// per n steps, consecutive ones far apart.
func spreadStep(n uint32) uint32 {
	gcd := func(a, b uint32) uint32 {
		for b != 0 {
			a, b = b, a%b
		}
		return a
	}
	s := uint32(float64(n) * 0.6180339887)
	for s > 1 && gcd(s, n) != 1 {
		s++
	}
	return max(s, 1)
}

// measureManyFlows times established flows when the connection table holds
// 1M live ones (half TCP, half UDP): spread gives each iteration the tuple
// of one of its protocol's 500,000 flows in a scattered order, so nearly
// every lookup misses the CPU caches, as on a busy balancer. Its cost is
// subtracted as fresh's is: t(spread->xlb) - t(spread->macswap) +
// t(macswap). Checked per run: every packet a connection-table hit.
func measureManyFlows(objs *benchbpf.Objects, repeat, rounds int) (_ []PacketCase, err error) {
	d, err := openBenchDataPlane(loader.Options{ConntrackSize: lb.ConntrackSize.Default})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	ct := d.maps[bpf.MapConntrack]
	if ct.MaxEntries() < manyFlows+manyFlows/32 {
		return nil, fmt.Errorf("connection table of %d entries: too small for %d flows without eviction", ct.MaxEntries(), manyFlows)
	}
	per := manyFlows / 2
	keys := make([]bpf.FlowKey, per)
	for _, key := range []lb.ServiceKey{d.tcp, d.udp} {
		for i := range keys {
			keys[i] = fillerKey(i, netip.AddrPortFrom(key.VIP, key.Port), key.Proto, spreadSrcBase, spreadPorts, spreadSport)
		}
		// Each flow on a backend of its own service.
		val, err := d.flowValue(key)
		if err != nil {
			return nil, err
		}
		if err := fillFlows(ct, keys, val); err != nil {
			return nil, err
		}
	}
	all, in, _, err := countFlows(ct, netip.MustParsePrefix("198.19.0.0/16"), netip.Prefix{})
	if err != nil {
		return nil, err
	}
	if in != manyFlows {
		return nil, fmt.Errorf("%d of the %d filled flows are in the connection table (%d entries)", in, manyFlows, all)
	}
	cfg := benchbpf.SpreadConfig{Flows: uint32(per), Step: spreadStep(uint32(per)), Saddr: spreadSrcBase, Ports: spreadPorts, Sport: spreadSport}
	bench := func(p *ebpf.Program, in []byte, n int) (uint32, float64, error) {
		ret, dur, err := p.Benchmark(in, n, nil)
		return ret, float64(dur.Nanoseconds()), err
	}
	var out []PacketCase
	for _, c := range []struct {
		name string
		key  lb.ServiceKey
	}{{caseManyTCP, d.tcp}, {caseManyUDP, d.udp}} {
		in := frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: ppLBMAC, Src: netip.MustParseAddrPort("198.19.0.0:3000"),
			Dst: netip.AddrPortFrom(c.key.VIP, c.key.Port), UDP: c.key.Proto == lb.UDP})
		var sx, sb, bs, derived []float64
		for r := 0; r < rounds; r++ {
			if err := objs.SetSpread(cfg, d.bal.Program()); err != nil {
				return nil, err
			}
			before, err := d.global()
			if err != nil {
				return nil, err
			}
			n0, err := objs.SpreadCount()
			if err != nil {
				return nil, err
			}
			ret, ns, err := bench(objs.Spread, in, repeat)
			if err != nil || ret != xdpTX {
				return nil, fmt.Errorf("%s: %s, %v", c.name, verdictName(ret), err)
			}
			after, err := d.global()
			if err != nil {
				return nil, err
			}
			n1, err := objs.SpreadCount()
			if err != nil {
				return nil, err
			}
			n := uint64(repeat)
			if n1-n0 != n {
				return nil, fmt.Errorf("%s: spread ran %d times, want %d", c.name, n1-n0, n)
			}
			want := map[string]uint64{"RxPackets": n, "ConntrackHits": n, "TxPackets": n, "NewFlows": 0, "Reschedules": 0, "ExpiredFlows": 0}
			if err := expectCounters(counterDelta(before, after), want); err != nil {
				return nil, fmt.Errorf("%s: %w: not a connection-table hit per packet", c.name, err)
			}
			if err := objs.SetSpread(cfg, objs.Macswap); err != nil {
				return nil, err
			}
			bret, bns, err := bench(objs.Spread, in, repeat)
			if err != nil || bret != xdpTX {
				return nil, fmt.Errorf("%s baseline: %s, %v", c.name, verdictName(bret), err)
			}
			pret, pns, err := bench(objs.Macswap, in, repeat)
			if err != nil || pret != xdpTX {
				return nil, fmt.Errorf("%s plain baseline: %s, %v", c.name, verdictName(pret), err)
			}
			sx, sb, bs = append(sx, ns), append(sb, bns), append(bs, pns)
			derived = append(derived, ns-bns+pns)
		}
		ssx, ssb := NewSeries(sx), NewSeries(sb)
		pc := PacketCase{Name: c.name,
			Path:    fmt.Sprintf("service hit, connection-table hit on one of %d flows of its protocol (%d live flows in the table), MAC rewrite, XDP_TX", per, manyFlows),
			Checked: fmt.Sprintf("verdict XDP_TX; per run RxPackets, ConntrackHits, TxPackets +%d, NewFlows, Reschedules, ExpiredFlows +0, spread ran %d times; all %d flows in the table after the fill", repeat, repeat, manyFlows),
			Xlb:     NewSeries(derived), Baseline: NewSeries(bs),
			Method: fmt.Sprintf("the connection table is filled with %d live flows (batch updates; last seen at the fill, so a flow's packet more than 1 s later refreshes it, as in production); a mutator (spread) gives iteration k flow k*%d mod %d of the row's protocol and tail-calls xlb; its own cost, chained to the baseline, is subtracted: t(spread->xlb) - t(spread->macswap) + t(macswap)",
				manyFlows, cfg.Step, per),
			FreshXlb: &ssx, FreshBase: &ssb,
		}
		pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
		out = append(out, pc)
	}
	return out, nil
}
