package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/bench/benchbpf"
	"github.com/xlb-lb/xlb/test/frame"
)

// XDP verdicts.
const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTX      = 3
)

func verdictName(v uint32) string {
	switch v {
	case xdpAborted:
		return "XDP_ABORTED"
	case xdpDrop:
		return "XDP_DROP"
	case xdpPass:
		return "XDP_PASS"
	case xdpTX:
		return "XDP_TX"
	}
	return fmt.Sprintf("verdict %d", v)
}

// Names of the cases the targets refer to.
const (
	caseEstablished  = "TCP established (IPv4)"
	caseNewFlow      = "TCP new flow (IPv4 SYN)"
	caseUDP          = "UDP flow (IPv4)"
	caseEstablished6 = "TCP established (IPv6)"
	caseNonVIP       = "non-VIP TCP (IPv4)"
)

// PacketCase is one per-packet measurement: xlb and the MAC-swap baseline
// on the same input, alternating, in the same process.
type PacketCase struct {
	Name string `json:"name"`
	// Path is what the measurement exercises, and Checked how that was
	// verified after every run.
	Path    string `json:"path"`
	Checked string `json:"checked"`
	// Xlb and Baseline are ns per packet, one value per round.
	Xlb      Series  `json:"xlb_ns"`
	Baseline Series  `json:"baseline_ns"`
	Ratio    float64 `json:"ratio"`
	// Method notes how the figure was derived when it is not a plain
	// BPF_PROG_TEST_RUN repeat.
	Method string `json:"method,omitempty"`
	// Raw figures behind a derived one (new flow): the mutator chained to
	// xlb and to the baseline.
	FreshXlb  *Series `json:"fresh_to_xlb_ns,omitempty"`
	FreshBase *Series `json:"fresh_to_baseline_ns,omitempty"`
	// Table is the filled table of a full-table row, before and after.
	Table *TableState `json:"table,omitempty"`
}

// pktCase is one repeated-frame case of section 1.
type pktCase struct {
	name, path string
	frame      []byte
	verdict    uint32
	counters   []string // each moves by exactly repeat
	still      []string // each must not move
}

// PerPacket is section 1 of the report.
type PerPacket struct {
	Baseline string       `json:"baseline"`
	Repeat   int          `json:"repeat"`
	NewFlowR int          `json:"new_flow_repeat"`
	Rounds   int          `json:"rounds"`
	Cases    []PacketCase `json:"cases"`
	// Previous compares today's object with the one before issue 15
	// (previousCommit) on the same frames (Baseline: the previous object).
	PreviousObject string       `json:"previous_object"`
	Previous       []PacketCase `json:"previous"`
	// Flood counts established connections broken by spoofed floods.
	Flood *Flood `json:"flood,omitempty"`
}

var (
	ppClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	ppLBMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
)

func ppBackends(vip netip.Addr, n int) []lb.Backend {
	out := make([]lb.Backend, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
		if vip.Is6() {
			a = netip.MustParseAddr(fmt.Sprintf("2001:2::%x", 0x11+i))
		}
		out[i] = lb.Backend{Addr: a, MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, byte(0x11 + i)}, Weight: 1}
	}
	return out
}

// measurePerPacket runs section 1.
func measurePerPacket(o options) (_ *PerPacket, err error) {
	repeat, newRepeat, rounds := 1_000_000, 100_000, 5
	if o.quick {
		repeat, newRepeat, rounds = 200_000, 40_000, 3
	}
	// No interface MAC: with repeat, each iteration sees the previous
	// one's output (addressed to the backend by then), which the
	// other-host check would otherwise hand to the kernel.
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64, ConntrackSize: lb.ConntrackSize.Default})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	web4 := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	dns4 := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 53, Proto: lb.UDP}
	web6 := lb.ServiceKey{VIP: netip.MustParseAddr("2001:2:0:1::1"), Port: 80, Proto: lb.TCP}
	for _, k := range []lb.ServiceKey{web4, dns4, web6} {
		if err := bal.SetService(lb.Service{Key: k, Backends: ppBackends(k.VIP, 3)}); err != nil {
			return nil, fmt.Errorf("set service %s: %w", k, err)
		}
	}
	objs, err := benchbpf.Load(benchbpf.Config{})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, objs.Close()) }()

	mk := func(src, dst string, udp, syn bool) []byte {
		return frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: ppLBMAC,
			Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), UDP: udp, SYN: syn})
	}
	cases := []pktCase{
		{caseEstablished, "service hit, connection-table hit, MAC rewrite, XDP_TX",
			mk("198.18.0.100:40000", "198.18.1.1:80", false, false), xdpTX, []string{"ConntrackHits", "TxPackets"}, []string{"NewFlows", "Reschedules", "DropNoBackend"}},
		{caseUDP, "service hit, connection-table hit, MAC rewrite, XDP_TX",
			mk("198.18.0.100:40000", "198.18.1.1:53", true, false), xdpTX, []string{"ConntrackHits", "TxPackets"}, []string{"NewFlows", "Reschedules", "DropNoBackend"}},
		{caseEstablished6, "service hit, connection-table hit, MAC rewrite, XDP_TX",
			mk("[2001:2::100]:40000", "[2001:2:0:1::1]:80", false, false), xdpTX, []string{"ConntrackHits", "TxPackets"}, []string{"NewFlows", "Reschedules", "DropNoBackend"}},
		{caseNonVIP, "service miss, XDP_PASS to the kernel",
			mk("198.18.0.100:40000", "198.18.1.9:80", false, false), xdpPass, []string{"PassNotVip"}, []string{"TxPackets", "NewFlows"}},
	}
	prog := bal.Program()
	global := func() (maps.GlobalCounters, error) { return bal.Stats().Global() }

	// Establish the flows first (one new flow each), as a client would:
	// a TCP flow has its connection-table entry from its second packet.
	for _, c := range cases {
		for i := 0; i < 2; i++ {
			ret, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
			if err != nil {
				return nil, fmt.Errorf("%s: packet %d: %w", c.name, i+1, err)
			}
			if ret != c.verdict {
				return nil, fmt.Errorf("%s: packet %d: %s, want %s", c.name, i+1, verdictName(ret), verdictName(c.verdict))
			}
		}
	}

	pp := &PerPacket{
		Baseline: "macswap: swap source and destination MAC, XDP_TX (no parsing beyond Ethernet, no maps)",
		Repeat:   repeat, NewFlowR: newRepeat, Rounds: rounds,
	}
	bench := func(p *ebpf.Program, in []byte, n int) (uint32, float64, error) {
		ret, d, err := p.Benchmark(in, n, nil)
		return ret, float64(d.Nanoseconds()), err
	}
	for _, c := range cases {
		var xs, bs []float64
		for r := 0; r < rounds; r++ {
			before, err := global()
			if err != nil {
				return nil, err
			}
			ret, ns, err := bench(prog, c.frame, repeat)
			if err != nil {
				return nil, fmt.Errorf("%s: xlb: %w", c.name, err)
			}
			after, err := global()
			if err != nil {
				return nil, err
			}
			if ret != c.verdict {
				return nil, fmt.Errorf("%s: xlb returned %s, want %s: not the path named", c.name, verdictName(ret), verdictName(c.verdict))
			}
			want := map[string]uint64{"RxPackets": uint64(repeat)}
			for _, k := range c.counters {
				want[k] = uint64(repeat)
			}
			for _, k := range c.still {
				want[k] = 0
			}
			if err := expectCounters(counterDelta(before, after), want); err != nil {
				return nil, fmt.Errorf("%s: xlb: %w: not the path named", c.name, err)
			}
			bret, bns, err := bench(objs.Macswap, c.frame, repeat)
			if err != nil {
				return nil, fmt.Errorf("%s: baseline: %w", c.name, err)
			}
			if bret != xdpTX {
				return nil, fmt.Errorf("%s: baseline returned %s", c.name, verdictName(bret))
			}
			xs, bs = append(xs, ns), append(bs, bns)
		}
		checked := fmt.Sprintf("verdict %s; per run RxPackets", verdictName(c.verdict))
		for _, k := range c.counters {
			checked += ", " + k
		}
		checked += fmt.Sprintf(" each +%d", repeat)
		for i, k := range c.still {
			if i == 0 {
				checked += "; "
			} else {
				checked += ", "
			}
			checked += k
		}
		checked += " +0"
		pc := PacketCase{Name: c.name, Path: c.path, Checked: checked, Xlb: NewSeries(xs), Baseline: NewSeries(bs)}
		pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
		pp.Cases = append(pp.Cases, pc)
	}

	// New flows: fresh rewrites the source address and port on every
	// iteration and tail-calls xlb (or the baseline), so each iteration
	// is a SYN of a flow never seen. Its own cost and the tail call's are
	// measured by chaining it to the baseline and cancelled out:
	//   new flow = t(fresh->xlb) - t(fresh->macswap) + t(macswap).
	// The first row (maglev) is the one the target applies to; the others
	// are the same measurement under each scheduler, each on a fresh data plane.
	var newFlows []PacketCase
	for _, sc := range newFlowSchedulers {
		pc, err := newFlowRow(objs, sc.sched, sc.persist, mk, newRepeat, repeat, rounds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
		pc.Name, pc.Path = sc.name, sc.path
		newFlows = append(newFlows, *pc)
	}
	pp.Cases = append(pp.Cases[:1], append(newFlows, pp.Cases[1:]...)...)
	many, err := measureManyFlows(objs, repeat, rounds)
	if err != nil {
		return nil, fmt.Errorf("1M flows: %w", err)
	}
	full, err := measureFullTables(o, objs, newRepeat, repeat, rounds)
	if err != nil {
		return nil, fmt.Errorf("full tables: %w", err)
	}
	pp.Cases = append(pp.Cases, append(many, full...)...)
	enc, err := measureEncap(objs, repeat, newRepeat, rounds)
	if err != nil {
		return nil, fmt.Errorf("encapsulated paths: %w", err)
	}
	pp.Cases = append(pp.Cases, enc...)

	syn := mk("198.19.0.0:1024", "198.18.1.1:80", false, true)
	prev, err := measurePrevious(bal, objs, cases, syn, repeat, newRepeat, rounds)
	if err != nil {
		return nil, fmt.Errorf("against the previous object: %w", err)
	}
	pp.PreviousObject, pp.Previous = previousCommit, prev
	if pp.Flood, err = measureFlood(o); err != nil {
		return nil, err
	}
	return pp, nil
}

// measurePrevious times today's object and the one before issue 15 on
// the same frames, alternating round by round: the repeated-frame cases
// (flows already in both connection tables; non-VIP traffic) and a new
// flow (fresh chained to each, its cost subtracted as in the new-flow
// rows, both half-open tables emptied before each round).
func measurePrevious(bal *loader.Balancer, objs *benchbpf.Objects, cases []pktCase, syn []byte, repeat, newRepeat, rounds int) (_ []PacketCase, err error) {
	p, err := loadPrevious(bal, 0)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	prev := p.prog
	now := bal.Program()
	var out []PacketCase
	for _, c := range cases {
		// The flow's first packets, so both connection tables hold it.
		for i := 0; i < 2; i++ {
			if ret, err := prev.Run(&ebpf.RunOptions{Data: c.frame}); err != nil || ret != c.verdict {
				return nil, fmt.Errorf("%s: previous object: %s, %v", c.name, verdictName(ret), err)
			}
		}
		var xs, ps []float64
		for r := 0; r < rounds; r++ {
			for _, run := range []struct {
				p   *ebpf.Program
				out *[]float64
			}{{now, &xs}, {prev, &ps}} {
				ret, d, err := run.p.Benchmark(c.frame, repeat, nil)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
				if ret != c.verdict {
					return nil, fmt.Errorf("%s: %s, want %s", c.name, verdictName(ret), verdictName(c.verdict))
				}
				*run.out = append(*run.out, float64(d.Nanoseconds()))
			}
		}
		pc := PacketCase{Name: c.name, Path: c.path, Checked: "verdict " + verdictName(c.verdict) + " from both objects every run",
			Xlb: NewSeries(xs), Baseline: NewSeries(ps)}
		pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
		out = append(out, pc)
	}

	// A new flow: t(fresh->object) - t(fresh->macswap) + t(macswap).
	nowMaps, err := programMaps(now)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range nowMaps {
			m.Close()
		}
	}()
	halfOpen := []*ebpf.Map{nowMaps[bpf.MapHalfOpen], p.coll.Maps[bpf.MapHalfOpen]}
	timeIt := func(next *ebpf.Program, n int) (float64, error) {
		if err := objs.SetFreshNext(next); err != nil {
			return 0, err
		}
		seq0, err := objs.FreshCount()
		if err != nil {
			return 0, err
		}
		ret, d, err := objs.Fresh.Benchmark(syn, n, nil)
		if err != nil || ret != xdpTX {
			return 0, fmt.Errorf("new flow: %s, %v", verdictName(ret), err)
		}
		if seq1, err := objs.FreshCount(); err != nil || seq1-seq0 != uint64(n) {
			return 0, fmt.Errorf("new flow: fresh ran %d times, want %d (%v)", seq1-seq0, n, err)
		}
		return float64(d.Nanoseconds()), nil
	}
	var xs, ps []float64
	for r := 0; r < rounds; r++ {
		for _, m := range halfOpen {
			if err := clearTable[bpf.FlowKey, bpf.Flow](m); err != nil {
				return nil, err
			}
		}
		tn, err := timeIt(now, newRepeat)
		if err != nil {
			return nil, err
		}
		tp, err := timeIt(prev, newRepeat)
		if err != nil {
			return nil, err
		}
		tb, err := timeIt(objs.Macswap, newRepeat)
		if err != nil {
			return nil, err
		}
		ret, d, err := objs.Macswap.Benchmark(syn, repeat, nil)
		if err != nil || ret != xdpTX {
			return nil, fmt.Errorf("new flow plain baseline: %s, %v", verdictName(ret), err)
		}
		base := float64(d.Nanoseconds())
		xs, ps = append(xs, tn-tb+base), append(ps, tp-tb+base)
	}
	pc := PacketCase{Name: caseNewFlow, Path: "connection-table miss, Maglev lookup, half-open insert, MAC rewrite, XDP_TX",
		Checked: "verdict XDP_TX from both objects every run, fresh ran once per iteration",
		Method:  "t(fresh->object) - t(fresh->macswap) + t(macswap), half-open tables emptied before each round",
		Xlb:     NewSeries(xs), Baseline: NewSeries(ps)}
	pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
	return append(out, pc), nil
}

// newFlowSchedulers are the new-flow rows: maglev first (the target's row).
var newFlowSchedulers = []struct {
	name, path string
	sched      lb.Scheduler
	persist    time.Duration
}{
	{caseNewFlow, "service hit, connection-table miss, Maglev lookup, half-open insert, MAC rewrite, XDP_TX", lb.Maglev, 0},
	{"new flow, source-hash", "connection-table miss, Maglev slot of the client address, half-open insert", lb.SourceHash, 0},
	{"new flow, round-robin", "connection-table miss, next backend of the weighted sequence (per-CPU cursor), half-open insert", lb.RoundRobin, 0},
	{"new flow, least-conn (3 backends)", "connection-table miss, scan of active counts, half-open insert", lb.LeastConn, 0},
	// The mutator's client addresses repeat, so these rows mix persistence
	// hits (no scheduling) and misses (scheduling and an insert).
	{"new flow, maglev + persistence 300s", "connection-table miss, persistence lookup (hit, or Maglev lookup and persistence insert), half-open insert", lb.Maglev, 300 * time.Second},
	{"new flow, least-conn + persistence 300s", "connection-table miss, persistence lookup (hit, or scan and persistence insert), half-open insert", lb.LeastConn, 300 * time.Second},
}

// newFlowRow measures new flows under one scheduler on a data plane of
// its own, so that every row starts with an empty connection table (rows
// sharing one would pay LRU eviction once it filled up).
func newFlowRow(objs *benchbpf.Objects, sched lb.Scheduler, persist time.Duration, mk func(src, dst string, udp, syn bool) []byte, newRepeat, repeat, rounds int) (_ *PacketCase, err error) {
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64, ConntrackSize: lb.ConntrackSize.Default})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	key := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	if err := bal.SetService(lb.Service{Key: key, Scheduler: sched, Persistence: persist, Backends: ppBackends(key.VIP, 3)}); err != nil {
		return nil, fmt.Errorf("set service %s: %w", key, err)
	}
	syn := mk("198.19.0.0:1024", netip.AddrPortFrom(key.VIP, key.Port).String(), false, true)
	global := func() (maps.GlobalCounters, error) { return bal.Stats().Global() }
	// Every round starts from empty tables: rounds of 100,000 SYNs would
	// otherwise fill the half-open table (and persistence's) and time
	// LRU evictions from the third round on, which the full-table rows
	// measure on their own.
	ms, err := programMaps(bal.Program())
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range ms {
			m.Close()
		}
	}()
	empty := func() error {
		for _, n := range []string{bpf.MapConntrack, bpf.MapHalfOpen} {
			if err := clearTable[bpf.FlowKey, bpf.Flow](ms[n]); err != nil {
				return err
			}
		}
		return clearTable[bpf.PersistKey, bpf.PersistEntry](ms[bpf.MapPersist])
	}
	return measureNewFlow(objs, bal.Program(), global, syn, newRepeat, repeat, rounds, persist == 0, empty)
}

// clearTable empties a hash map of keys K and values V by batches.
func clearTable[K, V any](m *ebpf.Map) error {
	if m == nil {
		return errors.New("clear: no such map")
	}
	keys, vals := make([]K, 4096), make([]V, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		_, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("clear %s: %w", m, err)
		}
	}
}

// measureNewFlow times a SYN with a fresh tuple every iteration, checking
// after each run that every packet was one new flow and one insert (and,
// unless the service has persistence, no persistence hit).
// reset, when not nil, runs before each round.
func measureNewFlow(objs *benchbpf.Objects, prog *ebpf.Program, global func() (maps.GlobalCounters, error), syn []byte, newRepeat, repeat, rounds int, noPersist bool, reset func() error) (*PacketCase, error) {
	bench := func(p *ebpf.Program, in []byte, n int) (uint32, float64, error) {
		ret, d, err := p.Benchmark(in, n, nil)
		return ret, float64(d.Nanoseconds()), err
	}
	var fx, fb, bs, derived []float64
	for r := 0; r < rounds; r++ {
		if reset != nil {
			if err := reset(); err != nil {
				return nil, err
			}
		}
		if err := objs.SetFreshNext(prog); err != nil {
			return nil, err
		}
		before, err := global()
		if err != nil {
			return nil, err
		}
		seq0, err := objs.FreshCount()
		if err != nil {
			return nil, err
		}
		ret, ns, err := bench(objs.Fresh, syn, newRepeat)
		if err != nil {
			return nil, fmt.Errorf("new flow: %w", err)
		}
		after, err := global()
		if err != nil {
			return nil, err
		}
		seq1, err := objs.FreshCount()
		if err != nil {
			return nil, err
		}
		if ret != xdpTX {
			return nil, fmt.Errorf("new flow: %s, want XDP_TX", verdictName(ret))
		}
		n := uint64(newRepeat)
		if seq1-seq0 != n {
			return nil, fmt.Errorf("new flow: mutator ran %d times, want %d", seq1-seq0, n)
		}
		want := map[string]uint64{"RxPackets": n, "NewFlows": n, "TxPackets": n, "ConntrackHits": 0, "ConntrackInsertErrors": 0}
		if noPersist {
			want["PersistHits"] = 0
		}
		if err := expectCounters(counterDelta(before, after), want); err != nil {
			return nil, fmt.Errorf("new flow: %w: not one insert per packet", err)
		}
		if err := objs.SetFreshNext(objs.Macswap); err != nil {
			return nil, err
		}
		bret, bns, err := bench(objs.Fresh, syn, newRepeat)
		if err != nil || bret != xdpTX {
			return nil, fmt.Errorf("new flow baseline: %s, %v", verdictName(bret), err)
		}
		pret, pns, err := bench(objs.Macswap, syn, repeat)
		if err != nil || pret != xdpTX {
			return nil, fmt.Errorf("new flow plain baseline: %s, %v", verdictName(pret), err)
		}
		fx, fb, bs = append(fx, ns), append(fb, bns), append(bs, pns)
		derived = append(derived, ns-bns+pns)
	}
	sfx, sfb := NewSeries(fx), NewSeries(fb)
	pc := &PacketCase{
		Checked: fmt.Sprintf("verdict XDP_TX; per run NewFlows, TxPackets +%d, ConntrackHits and ConntrackInsertErrors +0 (and PersistHits +0 without persistence), mutator ran %d times", newRepeat, newRepeat),
		Xlb:     NewSeries(derived), Baseline: NewSeries(bs),
		Method:   "a mutator gives each iteration a fresh source address and port and tail-calls xlb; its own cost, measured chained to the baseline, is subtracted: t(fresh->xlb) - t(fresh->macswap) + t(macswap)",
		FreshXlb: &sfx, FreshBase: &sfb,
	}
	pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
	return pc, nil
}
