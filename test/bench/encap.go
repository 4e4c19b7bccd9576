package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/bench/benchbpf"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/lab"
)

// Names of the encapsulated rows.
const (
	caseEncapEstablished = "TCP established, ipip (IPv4)"
	caseEncapNewFlow     = "TCP new flow, ipip (IPv4 SYN)"
	caseEncapDSRRef      = "TCP established, dsr-l2 (IPv4), timed as the ipip rows"
)

// xdpCtx is the XDP test-run context: the interface the frame came in by,
// whose namespace's FIB the encapsulating path asks.
type xdpCtx struct{ Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32 }

// measureEncap times the encapsulated paths, an ipip service's established
// flow and new flows, on the balancer of a lab (its FIB gives the next hop
// to the backends, permanent neighbours on the segment), against the same
// MAC-swap baseline. An encapsulating program grows the frame it sends,
// and BPF_PROG_TEST_RUN's repeat hands each iteration the previous one's
// output, so a restore program puts the frame back before each iteration
// (and for new flows gives it a fresh source) and tail-calls xlb; its own
// cost, measured chained to the baseline, is subtracted:
// t(restore->xlb) - t(restore->macswap) + t(macswap). The test run takes
// a context here (the ingress interface), which Benchmark does not, so all
// three are timed by the wall clock around one long run each.
func measureEncap(objs *benchbpf.Objects, repeat, newRepeat, rounds int) (_ []PacketCase, err error) {
	topo, err := lab.New(lab.Config{Backends: 2, ClientAddrs: -1})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	lbh := topo.Balancer
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64, ConntrackSize: lb.ConntrackSize.Default,
		Encap: lb.Encap{Source4: netip.PrefixFrom(lbh.Addr4, 32)}})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	key := lb.ServiceKey{VIP: topo.VIP4, Port: 80, Proto: lb.TCP}
	var bes []lb.Backend
	for _, be := range topo.Backends {
		bes = append(bes, lb.Backend{Addr: be.Addr4, Weight: 1})
	}
	if err := bal.SetService(lb.Service{Key: key, Forward: lb.IPIP, Backends: bes}); err != nil {
		return nil, err
	}
	// The same, by dsr-l2 on port 81: the reference the ipip rows are
	// read against (same lab, same method).
	dsrKey := lb.ServiceKey{VIP: topo.VIP4, Port: 81, Proto: lb.TCP}
	if err := bal.SetService(lb.Service{Key: dsrKey, Backends: ppBackends(dsrKey.VIP, 2)}); err != nil {
		return nil, err
	}
	// 60 bytes with 6 of payload: no Ethernet padding, which the
	// encapsulation would trim and restore could not tell from growth.
	mkTo := func(k lb.ServiceKey, syn bool) []byte {
		return frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: lbh.MAC, Src: netip.MustParseAddrPort("198.18.64.1:40000"),
			Dst: netip.AddrPortFrom(k.VIP, k.Port), SYN: syn, Payload: []byte("xlbxlb")})
	}
	mk := func(syn bool) []byte { return mkTo(key, syn) }
	ctx := xdpCtx{IngressIfindex: uint32(lbh.Ifindex)}
	run := func(p *ebpf.Program, in []byte, n int) (uint32, float64, error) {
		ctx.DataEnd = uint32(len(in))
		start := time.Now()
		ret, err := p.Run(&ebpf.RunOptions{Data: in, Repeat: uint32(n), Context: ctx})
		return ret, float64(time.Since(start).Nanoseconds()) / float64(n), err
	}
	global := func() (maps.GlobalCounters, error) { return bal.Stats().Global() }

	var out []PacketCase
	if err := encapReady(topo); err != nil {
		return nil, err
	}
	err = lbh.NS.Do(func() error {
		est, dsr := mk(false), mkTo(dsrKey, false)
		// The flows' first two packets: half-open, then in the
		// connection table.
		for _, f := range [][]byte{est, dsr} {
			for i := 0; i < 2; i++ {
				if ret, _, err := run(bal.Program(), f, 1); err != nil || ret != xdpTX {
					return fmt.Errorf("establish the flows: %s, %v", verdictName(ret), err)
				}
			}
		}
		for _, c := range []struct {
			name, path string
			in         []byte
			fresh      bool
			n          int
			want       func(n uint64) map[string]uint64
		}{
			{caseEncapDSRRef, "service hit, connection-table hit, MAC rewrite, XDP_TX", dsr, false, repeat,
				func(n uint64) map[string]uint64 {
					return map[string]uint64{"RxPackets": n, "ConntrackHits": n, "TxPackets": n, "EncapPackets": 0, "NewFlows": 0}
				}},
			{caseEncapEstablished, "service hit, connection-table hit, next hop from the per-CPU FIB cache, outer IPv4 header pushed, XDP_TX", est, false, repeat,
				func(n uint64) map[string]uint64 {
					return map[string]uint64{"RxPackets": n, "ConntrackHits": n, "EncapPackets": n, "TxPackets": n, "NewFlows": 0, "EncapFibMiss": 0}
				}},
			{caseEncapNewFlow, "connection-table miss, Maglev lookup, half-open insert, next hop from the cache, outer IPv4 header pushed, XDP_TX", mk(true), true, newRepeat,
				func(n uint64) map[string]uint64 {
					return map[string]uint64{"RxPackets": n, "NewFlows": n, "EncapPackets": n, "TxPackets": n, "ConntrackHits": 0, "EncapFibMiss": 0}
				}},
		} {
			var withX, withB, base, derived []float64
			for r := 0; r < rounds; r++ {
				if err := objs.SetRestore(c.in, c.fresh, bal.Program()); err != nil {
					return err
				}
				before, err := global()
				if err != nil {
					return err
				}
				seq0, err := objs.FreshCount()
				if err != nil {
					return err
				}
				ret, xns, err := run(objs.Restore, c.in, c.n)
				if err != nil || ret != xdpTX {
					return fmt.Errorf("%s: %s, %v", c.name, verdictName(ret), err)
				}
				after, err := global()
				if err != nil {
					return err
				}
				if err := expectCounters(counterDelta(before, after), c.want(uint64(c.n))); err != nil {
					return fmt.Errorf("%s: %w: not the path named", c.name, err)
				}
				if seq1, err := objs.FreshCount(); err != nil || c.fresh && seq1-seq0 != uint64(c.n) {
					return fmt.Errorf("%s: restore renewed %d sources, want %d (%v)", c.name, seq1-seq0, c.n, err)
				}
				if err := objs.SetRestore(c.in, c.fresh, objs.Macswap); err != nil {
					return err
				}
				bret, bns, err := run(objs.Restore, c.in, c.n)
				if err != nil || bret != xdpTX {
					return fmt.Errorf("%s baseline: %s, %v", c.name, verdictName(bret), err)
				}
				pret, pns, err := run(objs.Macswap, c.in, c.n)
				if err != nil || pret != xdpTX {
					return fmt.Errorf("%s plain baseline: %s, %v", c.name, verdictName(pret), err)
				}
				withX, withB, base = append(withX, xns), append(withB, bns), append(base, pns)
				derived = append(derived, xns-bns+pns)
			}
			sx, sb := NewSeries(withX), NewSeries(withB)
			pc := PacketCase{Name: c.name, Path: c.path,
				Checked: fmt.Sprintf("verdict XDP_TX; per run the counters of the path (%v) each +%d, the others +0", c.want(1), c.n),
				Xlb:     NewSeries(derived), Baseline: NewSeries(base),
				Method:   "a restore program puts the frame back before each iteration (new flow: with a fresh source) and tail-calls xlb; its own cost, chained to the baseline, is subtracted: t(restore->xlb) - t(restore->macswap) + t(macswap); wall clock around one run of each (the FIB needs the ingress interface in the test-run context)",
				FreshXlb: &sx, FreshBase: &sb,
			}
			pc.Ratio = ratio(pc.Xlb.Median, pc.Baseline.Median)
			out = append(out, pc)
		}
		return nil
	})
	return out, err
}

// encapReady readies the lab's balancer for encapsulated forwarding: its
// interface forwards (the FIB answers only then) and has the backends'
// MACs as permanent neighbours.
func encapReady(topo *lab.Topology) error {
	lbh := topo.Balancer
	return lbh.NS.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/forwarding", []byte("1"), 0o644); err != nil {
			return err
		}
		for _, be := range topo.Backends {
			n := &netlink.Neigh{LinkIndex: lbh.Ifindex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.IP(be.Addr4.AsSlice()), HardwareAddr: be.MAC}
			if err := netlink.NeighSet(n); err != nil {
				return fmt.Errorf("neighbour %s: %w", be.Addr4, err)
			}
		}
		return nil
	})
}
