package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/bench/benchbpf"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/lab"
)

// Throughput is section 2: frames per second through the balancer
// namespace on veth, xlb against the L2-forward baseline, with 1 and with
// 2 generator CPUs; and the latency xlb adds on that path.
type Throughput struct {
	Topology  string  `json:"topology"`
	Baseline  string  `json:"baseline"`
	Generator string  `json:"generator"`
	FrameLen  int     `json:"frame_bytes"`
	Flows     int     `json:"flows"`
	Reps      int     `json:"repetitions"`
	Seconds   float64 `json:"seconds_per_repetition"`
	// CPUs is the machine's: generators on all of them leave none to the
	// rest of the path.
	CPUs int `json:"cpus"`
	// Runs: one per number of generator CPUs, each with its own
	// baseline.
	Runs []ThroughputRun `json:"runs"`
	// Latency is the time a stamped datagram takes from the client to a
	// backend, through xlb and through the baseline.
	Latency *Latency `json:"latency,omitempty"`
}

// ThroughputRun is the rotation of xlb (dsr-l2, ipip) and the baseline
// with one set of generator CPUs.
type ThroughputRun struct {
	GenCPUs []int `json:"generator_cpus"`
	Xlb     Side  `json:"xlb"`
	Base    Side  `json:"baseline_l2fwd"`
	// Ratio is xlb's median received Mpps over the baseline's.
	Ratio float64 `json:"ratio"`
	// IPIP is xlb with the service in ipip mode (each frame encapsulated
	// to its backend, next hop from the FIB cache), in the same
	// rotation; RatioIPIP its median over the baseline's.
	IPIP      Side    `json:"xlb_ipip"`
	RatioIPIP float64 `json:"ratio_ipip"`
}

// run returns the run with n generator CPUs, nil if there is none.
func (t *Throughput) run(n int) *ThroughputRun {
	for i := range t.Runs {
		if len(t.Runs[i].GenCPUs) == n {
			return &t.Runs[i]
		}
	}
	return nil
}

// Side is one program's repetitions.
type Side struct {
	// RxMpps are frames counted by the sinks per second (millions).
	RxMpps Series `json:"rx_mpps"`
	// TxMpps are frames the generator sent per second (millions).
	TxMpps Series `json:"tx_mpps"`
	// Loss is the fraction of sent frames that did not reach a sink.
	Loss Series `json:"loss"`
	// Forwarded is xlb's own count of frames it sent with XDP_TX (0 for
	// the baseline, which counts nothing).
	Forwarded uint64 `json:"forwarded_by_xlb,omitempty"`
}

const (
	strayAllowance = 1000
	tputPort       = 9
	tputFrameLen   = 64
	tputFlows      = 65536
	tputPorts      = 4096
)

// genCPUSets returns the generator CPUs of each throughput run:
// BENCH_GEN_CPUS, comma separated counts, default 1 and 2 (the CPUs
// there are, at most). Each set is the highest-numbered CPUs: CPU 0 tends
// to get the most interrupts.
func genCPUSets() ([][]int, error) {
	ncpu := runtime.NumCPU()
	v := envOr("BENCH_GEN_CPUS", "")
	counts := []int{1, 2}
	if v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > ncpu {
				return nil, fmt.Errorf("BENCH_GEN_CPUS=%q: want counts 1-%d, comma separated", v, ncpu)
			}
			counts = append(counts, n)
		}
	}
	var out [][]int
	for _, n := range counts {
		if n > ncpu {
			continue
		}
		var cpus []int
		for i := ncpu - n; i < ncpu; i++ {
			cpus = append(cpus, i)
		}
		out = append(out, cpus)
	}
	return out, nil
}

func measureThroughput(o options) (_ *Throughput, err error) {
	reps, secs := 5, 2.0
	if o.quick {
		reps, secs = 3, 0.6
	}
	cpuSets, err := genCPUSets()
	if err != nil {
		return nil, err
	}
	// The programs come first: the lab's bridge ports run l2switch.
	objs, err := benchbpf.Load(benchbpf.Config{
		GenSrcAddr: netip.MustParseAddr("198.18.64.1"), GenDstAddr: lab.VIP4, GenDstPort: tputPort, GenSrcPort: 10000,
		GenFlows: tputFlows, GenPorts: tputPorts,
		SinkDst: lab.VIP4,
	})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, objs.Close()) }()
	topo, err := lab.New(lab.Config{Backends: 2, ClientAddrs: -1, PassOn: []string{lab.RoleClient}, PortXDP: objs.L2switch})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	if err := staticFDB(topo); err != nil {
		return nil, err
	}
	// A devmap resolves ifindexes in the caller's namespace.
	err = topo.Segment.Do(func() error {
		for i, h := range topo.Hosts() {
			if err := objs.SwitchPort(uint32(i), h.MAC, h.PeerIfindex); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lbHost, client, be1 := topo.Balancer, topo.Client, topo.Backends[0]
	// The MACs are known only now: set them in fresh copies of the
	// generator and the baseline.
	macs, err := benchbpf.Load(benchbpf.Config{
		FwdDst: be1.MAC, FwdSrc: lbHost.MAC,
		GenDst: lbHost.MAC, GenSrc: client.MAC,
		GenSrcAddr: netip.MustParseAddr("198.18.64.1"), GenDstAddr: topo.VIP4, GenDstPort: tputPort, GenSrcPort: 10000,
		GenFlows: tputFlows, GenPorts: tputPorts,
		SinkDst: topo.VIP4,
	})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, macs.Close()) }()

	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	attach := func(h *lab.Host, prog *ebpf.Program) (link.Link, error) {
		var l link.Link
		err := h.NS.Do(func() error {
			var err error
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.Ifindex, Flags: link.XDPDriverMode})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", prog, h.Name, err)
		}
		links = append(links, l)
		return l, nil
	}
	for _, be := range topo.Backends {
		if _, err := attach(be, macs.Sink); err != nil {
			return nil, err
		}
	}
	bal, err := loader.Open(loader.Options{MAC: lbHost.MAC, MaxServices: 16, MaxBackends: 64})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	var bes []lb.Backend
	for _, be := range topo.Backends {
		bes = append(bes, lb.Backend{Addr: be.Addr4, MAC: be.MAC, Weight: 1})
	}
	key := lb.ServiceKey{VIP: topo.VIP4, Port: tputPort, Proto: lb.UDP}
	if err := bal.SetService(lb.Service{Key: key, Backends: bes}); err != nil {
		return nil, err
	}
	// For the ipip runs: the balancer's interface forwards (its FIB gives
	// the next hop) and knows the backends' MACs.
	if err := bal.SetEncap(lb.Encap{Source4: netip.PrefixFrom(lbHost.Addr4, 32)}); err != nil {
		return nil, err
	}
	if err := encapReady(topo); err != nil {
		return nil, err
	}
	setMode := func(m lb.ForwardMode) error {
		var bs []lb.Backend
		for _, b := range bes {
			if m != lb.DSRL2 {
				b.MAC = nil
			}
			bs = append(bs, b)
		}
		return bal.SetService(lb.Service{Key: key, Forward: m, Backends: bs})
	}
	lbLink, err := attach(lbHost, bal.Program())
	if err != nil {
		return nil, err
	}
	in := frame.MustBuild(frame.Spec{SrcMAC: client.MAC, DstMAC: lbHost.MAC,
		Src: netip.MustParseAddrPort("198.18.64.1:10000"), Dst: netip.AddrPortFrom(topo.VIP4, tputPort), UDP: true, Len: tputFrameLen})

	t := &Throughput{
		Topology: "client netns -> bridge netns -> balancer netns (one-armed; XDP_TX back out the same veth) -> bridge -> backend netns; " +
			"an XDP switch (static MAC table, redirect) on the client's and balancer's bridge ports, so the path is XDP end to end as with a NIC and a hardware switch; a counting XDP_DROP sink on every backend's eth0",
		Baseline: fmt.Sprintf("l2fwd on the balancer: destination MAC := %s (backend be1), source MAC := the balancer's, XDP_TX; no parsing, no maps", be1.MAC),
		Generator: fmt.Sprintf("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES in the client netns, one long run per pinned CPU ended by a signal; "+
			"each frame rewritten whole (Ethernet, IPv4, UDP) for flow i mod %d (%d source addresses x %d ports), XDP_TX out of the client's eth0", tputFlows, tputFlows/tputPorts, tputPorts),
		FrameLen: len(in), Flows: tputFlows, Reps: reps, Seconds: secs, CPUs: runtime.NumCPU(),
	}
	type sample struct{ rx, tx, loss float64 }
	// one runs the generator on cpus with prog on the balancer; for xlb
	// it returns the frames xlb forwarded too.
	one := func(prog *ebpf.Program, isXlb bool, cpus []int) (sample, uint64, error) {
		if err := lbLink.Update(prog); err != nil {
			return sample{}, 0, fmt.Errorf("switch balancer program: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
		g0, err := macs.GenTotals()
		if err != nil {
			return sample{}, 0, err
		}
		s0, err := macs.SinkTotals()
		if err != nil {
			return sample{}, 0, err
		}
		x0, err := bal.Stats().Global()
		if err != nil {
			return sample{}, 0, err
		}
		el, err := generate(client.NS, macs.Gen, client.Ifindex, in, cpus, time.Duration(secs*float64(time.Second)))
		if err != nil {
			return sample{}, 0, err
		}
		time.Sleep(100 * time.Millisecond) // let the last frames land
		g1, err := macs.GenTotals()
		if err != nil {
			return sample{}, 0, err
		}
		s1, err := macs.SinkTotals()
		if err != nil {
			return sample{}, 0, err
		}
		x1, err := bal.Stats().Global()
		if err != nil {
			return sample{}, 0, err
		}
		sent, got := g1.Sent-g0.Sent, s1.Ours-s0.Ours
		if sent == 0 {
			return sample{}, 0, errors.New("the generator sent nothing")
		}
		if g1.ShortFrames != g0.ShortFrames {
			return sample{}, 0, errors.New("the generator saw short frames")
		}
		if got == 0 {
			return sample{}, 0, errors.New("nothing reached the sinks")
		}
		xd := counterDelta(x0, x1)
		if isXlb {
			// xlb must have handled the traffic itself: forwarded, not passed.
			if xd["TxPackets"] < got {
				return sample{}, 0, fmt.Errorf("sinks counted %d frames but xlb forwarded only %d", got, xd["TxPackets"])
			}
			// The namespaces' own chatter (IPv6 MLD and the like) is
			// passed to the kernel; the generator's frames must all be
			// forwarded.
			if xd["DropNoBackend"]+xd["DropInternal"]+xd["PassOtherHost"] != 0 || xd["RxPackets"]-xd["TxPackets"] > strayAllowance {
				return sample{}, 0, fmt.Errorf("xlb did not forward everything: %v", xd)
			}
		} else if xd["RxPackets"] != 0 {
			return sample{}, 0, fmt.Errorf("xlb saw %d frames during the baseline run", xd["RxPackets"])
		}
		sec := el.Seconds()
		return sample{rx: float64(got) / sec / 1e6, tx: float64(sent) / sec / 1e6, loss: 1 - float64(got)/float64(sent)}, xd["TxPackets"], nil
	}
	side := func(ss []sample) Side {
		var rx, tx, loss []float64
		for _, s := range ss {
			rx, tx, loss = append(rx, s.rx), append(tx, s.tx), append(loss, s.loss)
		}
		return Side{RxMpps: NewSeries(rx), TxMpps: NewSeries(tx), Loss: NewSeries(loss)}
	}
	for _, cpus := range cpuSets {
		var xs, bs, is []sample
		var fwd [3]uint64
		for r := 0; r < reps; r++ {
			// Rotated order, so a drift in machine load hits all alike:
			// 0 dsr-l2, 1 baseline, 2 ipip.
			order := [][]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}}[r%3]
			for _, which := range order {
				prog, isXlb, name := macs.L2fwd, which != 1, []string{"xlb", "baseline", "xlb ipip"}[which]
				if isXlb {
					prog = bal.Program()
					mode := lb.DSRL2
					if which == 2 {
						mode = lb.IPIP
					}
					if err := setMode(mode); err != nil {
						return nil, err
					}
				}
				s, n, err := one(prog, isXlb, cpus)
				if err != nil {
					return nil, fmt.Errorf("%d generator CPU(s), repetition %d, %s: %w", len(cpus), r+1, name, err)
				}
				fwd[which] += n
				switch which {
				case 0:
					xs = append(xs, s)
				case 1:
					bs = append(bs, s)
				case 2:
					is = append(is, s)
				}
				o.log.Debug("throughput", "cpus", cpus, "run", name, "rx_mpps", s.rx, "tx_mpps", s.tx, "loss", s.loss)
			}
		}
		run := ThroughputRun{GenCPUs: cpus, Xlb: side(xs), Base: side(bs), IPIP: side(is)}
		run.Xlb.Forwarded, run.IPIP.Forwarded = fwd[0], fwd[2]
		run.Ratio = ratio(run.Xlb.RxMpps.Median, run.Base.RxMpps.Median)
		run.RatioIPIP = ratio(run.IPIP.RxMpps.Median, run.Base.RxMpps.Median)
		t.Runs = append(t.Runs, run)
	}
	if err := setMode(lb.DSRL2); err != nil {
		return nil, err
	}
	if t.Latency, err = measureLatency(o, topo, bal, macs, lbLink); err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	return t, nil
}

// staticFDB pins every host's MAC to its bridge port, so the bridge never
// floods benchmark frames to every port while it learns.
func staticFDB(t *lab.Topology) error {
	return t.Segment.Do(func() error {
		for _, h := range t.Hosts() {
			n := &netlink.Neigh{LinkIndex: h.PeerIfindex, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER,
				State: netlink.NUD_NOARP, HardwareAddr: h.MAC}
			if err := netlink.NeighSet(n); err != nil {
				return fmt.Errorf("static fdb entry %s on %s: %w", h.MAC, h.PeerName, err)
			}
		}
		return nil
	})
}

// Markdown renders section 2.
func (t *Throughput) Markdown() string {
	var b strings.Builder
	b.WriteString("### 2. Throughput on veth (64-byte UDP, many flows)\n\n")
	fmt.Fprintf(&b, "%d repetitions of %.1f s each per number of generator CPUs, xlb (dsr-l2, ipip) and the baseline in rotating order.\n\n", t.Reps, t.Seconds)
	var rows [][]string
	for _, r := range t.Runs {
		row := func(name string, s Side, rat string) []string {
			return []string{fmt.Sprintf("%d %v", len(r.GenCPUs), r.GenCPUs), name, f(s.RxMpps.Median, 2), f(s.RxMpps.Min, 2) + "-" + f(s.RxMpps.Max, 2), pct(s.RxMpps.Spread, 0), f(s.TxMpps.Median, 2), pct(s.Loss.Median, 1), rat}
		}
		rows = append(rows, row("xlb (dsr-l2 hairpin, 2 backends)", r.Xlb, f(r.Ratio, 2)+"x"),
			row("xlb (ipip, 2 backends: outer IPv4 header, next hop from the FIB cache)", r.IPIP, f(r.RatioIPIP, 2)+"x"),
			row("baseline l2fwd", r.Base, ""))
	}
	b.WriteString(mdTable([]string{"generator CPUs", "balancer program", "received Mpps (median)", "min-max", "spread", "sent Mpps", "loss (median)", "/ baseline"}, rows))
	if one, two := t.run(1), t.run(2); one != nil && two != nil {
		fmt.Fprintf(&b, "\nFrom 1 to 2 generator CPUs: xlb (dsr-l2) %.2fx, ipip %.2fx, baseline %.2fx.\n",
			ratio(two.Xlb.RxMpps.Median, one.Xlb.RxMpps.Median), ratio(two.IPIP.RxMpps.Median, one.IPIP.RxMpps.Median), ratio(two.Base.RxMpps.Median, one.Base.RxMpps.Median))
	}
	for _, r := range t.Runs {
		if len(r.GenCPUs) >= t.CPUs {
			fmt.Fprintf(&b, "\nWith %d generator CPUs on this %d-CPU machine the generators share every CPU with the rest of the path (veth NAPI, the XDP switch, the balancer's program, the sinks), so that run shows contention (and the loss it causes), not how xlb scales with free CPUs.\n", len(r.GenCPUs), t.CPUs)
		}
	}
	var fw uint64
	for _, r := range t.Runs {
		fw += r.Xlb.Forwarded + r.IPIP.Forwarded
	}
	fmt.Fprintf(&b, "\nThe encapsulated frames are 20 bytes longer. Baseline: %s. Generator: %s. Topology: %s. Loss is frames sent by the generator that no sink counted (veth ring overflow under overload), not frames xlb dropped; xlb forwarded %d frames in total.\n\n",
		t.Baseline, t.Generator, t.Topology, fw)
	if t.Latency != nil {
		b.WriteString(t.Latency.Markdown())
	}
	return b.String()
}

func (r *Report) throughputTarget() Target {
	const name, want = "veth throughput / L2-forward baseline, 1 generator CPU", "≥ 0.9x"
	if r.Throughput == nil || r.Throughput.run(1) == nil {
		return target(name, want, false, "", false)
	}
	run := r.Throughput.run(1)
	return target(name, want, true, fmt.Sprintf("%.2fx (%s of %s Mpps)", run.Ratio, f(run.Xlb.RxMpps.Median, 2), f(run.Base.RxMpps.Median, 2)), run.Ratio >= 0.9)
}
