package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/test/bench/benchbpf"
	"github.com/xlb-lb/xlb/test/lab"
)

// Latency is the latency part of section 2: how long a datagram takes
// from the client's socket to a backend's XDP sink, through xlb and
// through the baseline on the balancer, and the difference.
type Latency struct {
	Method  string  `json:"method"`
	RatePPS int     `json:"rate_pps"`
	PerRep  int     `json:"datagrams_per_repetition"`
	Reps    int     `json:"repetitions"`
	Xlb     LatSide `json:"xlb"`
	Base    LatSide `json:"baseline_l2fwd"`
	// AddedP50 and AddedP99 are xlb's percentiles minus the baseline's
	// (pooled over the repetitions), ns.
	AddedP50 float64 `json:"added_p50_ns"`
	AddedP99 float64 `json:"added_p99_ns"`
}

// LatSide is one balancer program's latencies.
type LatSide struct {
	Sent    uint64 `json:"sent"`
	Samples uint64 `json:"samples"`
	// P50 and P99 are of every sample of the side, pooled, ns.
	P50 float64 `json:"p50_ns"`
	P99 float64 `json:"p99_ns"`
	// P50Reps and P99Reps are each repetition's, ns.
	P50Reps Series `json:"p50_ns_per_repetition"`
	P99Reps Series `json:"p99_ns_per_repetition"`
	// Over counts samples of LatEnd (10 ms) or more.
	Over uint64 `json:"over_10ms"`
}

// latBucketRange is bucket i's latencies in ns, [lo, hi); the overflow
// bucket's hi is +Inf.
func latBucketRange(i int) (lo, hi float64) {
	fine := benchbpf.LatFineEnd / benchbpf.LatFineNs
	switch {
	case i < fine:
		return float64(i * benchbpf.LatFineNs), float64((i + 1) * benchbpf.LatFineNs)
	case i < benchbpf.LatOverflow:
		j := i - fine
		return float64(benchbpf.LatFineEnd + j*benchbpf.LatCoarseNs), float64(benchbpf.LatFineEnd + (j+1)*benchbpf.LatCoarseNs)
	}
	return benchbpf.LatEnd, math.Inf(1)
}

// histPercentile is the q quantile (0 < q <= 1) of latency histogram h
// (benchbpf.LatBuckets counts; the future bucket is not counted), in ns:
// the sample of rank ceil(q*n), placed by linear interpolation inside
// its bucket. In the overflow bucket it is that bucket's lower bound.
// NaN for an empty histogram.
func histPercentile(h []uint64, q float64) float64 {
	var n uint64
	for _, c := range h[:benchbpf.LatFuture] {
		n += c
	}
	if n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range h[:benchbpf.LatFuture] {
		if c == 0 || seen+c < rank {
			seen += c
			continue
		}
		lo, hi := latBucketRange(i)
		if math.IsInf(hi, 1) {
			return lo
		}
		// The k-th of c samples spread evenly over [lo, hi).
		k := rank - seen
		return lo + (hi-lo)*(float64(k)-0.5)/float64(c)
	}
	return math.NaN() // not reached: rank <= n
}

// histSub returns after - before, bucket by bucket.
func histSub(after, before []uint64) []uint64 {
	out := make([]uint64, len(after))
	for i := range out {
		out[i] = after[i] - before[i]
	}
	return out
}

// sendStamped sends n datagrams from the client's address to dst at rate
// per second (paced by sleeping, never in bursts to catch up: a late
// datagram is simply sent late), each carrying CLOCK_MONOTONIC read just
// before its send.
func sendStamped(h *lab.Host, dst netip.AddrPort, n, rate int) (sent int, err error) {
	var conn *net.UDPConn
	err = h.NS.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.Addr4, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("latency sender: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	// 22 bytes of payload: a 64-byte frame, like the throughput runs'.
	buf := make([]byte, 22)
	every := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return sent, err
		}
		benchbpf.LatStamp(buf, uint64(ts.Nano()))
		if _, err := conn.Write(buf); err != nil {
			return sent, fmt.Errorf("latency sender: datagram %d: %w", i, err)
		}
		sent++
	}
	return sent, nil
}

// measureLatency sends stamped datagrams at a modest fixed rate through
// the throughput lab, alternating xlb (dsr-l2) and the baseline on the
// balancer each repetition, and reads the sinks' histogram of arrival
// time minus stamp.
func measureLatency(o options, topo *lab.Topology, bal *loader.Balancer, macs *benchbpf.Objects, lbLink link.Link) (*Latency, error) {
	rate, perRep, reps := 5000, 5000, 5
	if o.quick {
		perRep, reps = 2000, 3
	}
	l := &Latency{RatePPS: rate, PerRep: perRep, Reps: reps,
		Method: fmt.Sprintf("a UDP socket in the client netns sends %d datagrams per second (not saturating), each stamped with CLOCK_MONOTONIC (the clock bpf_ktime_get_ns reads) just before its send; "+
			"the sink on the backends' eth0 (XDP) takes bpf_ktime_get_ns() - stamp into a per-CPU histogram (50 ns buckets to 100 us, 10 us buckets to 10 ms). "+
			"A sample is the whole trip, the sender's system call, the client's stack, the veth hops through the XDP switch and the balancer's program, to the backend's XDP sink, so only the difference between the two programs, measured alternately on the same path, is xlb's; "+
			"every datagram sent must be counted once by the sinks and, for xlb, forwarded by it", rate),
	}
	dst := netip.AddrPortFrom(topo.VIP4, tputPort)
	pooled := [2][]uint64{make([]uint64, benchbpf.LatBuckets), make([]uint64, benchbpf.LatBuckets)}
	var p50s, p99s [2][]float64
	var sent, samples [2]uint64
	for r := 0; r < reps; r++ {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, which := range order {
			prog := bal.Program()
			if which == 1 {
				prog = macs.L2fwd
			}
			if err := lbLink.Update(prog); err != nil {
				return nil, fmt.Errorf("switch balancer program: %w", err)
			}
			time.Sleep(50 * time.Millisecond)
			h0, err := macs.LatencyHist()
			if err != nil {
				return nil, err
			}
			x0, err := bal.Stats().Global()
			if err != nil {
				return nil, err
			}
			n, err := sendStamped(topo.Client, dst, perRep, rate)
			if err != nil {
				return nil, err
			}
			time.Sleep(50 * time.Millisecond) // let the last ones land
			h1, err := macs.LatencyHist()
			if err != nil {
				return nil, err
			}
			x1, err := bal.Stats().Global()
			if err != nil {
				return nil, err
			}
			h := histSub(h1, h0)
			var got uint64
			for _, c := range h[:benchbpf.LatFuture] {
				got += c
			}
			name := []string{"xlb", "baseline"}[which]
			if h[benchbpf.LatFuture] != 0 {
				return nil, fmt.Errorf("%s: %d stamps later than the sink's clock: not the same clock", name, h[benchbpf.LatFuture])
			}
			if got != uint64(n) {
				return nil, fmt.Errorf("%s: %d datagrams sent, the sinks counted %d", name, n, got)
			}
			xd := counterDelta(x0, x1)
			if which == 0 {
				if xd["TxPackets"] < got || xd["RxPackets"]-xd["TxPackets"] > strayAllowance {
					return nil, fmt.Errorf("xlb: the sinks counted %d datagrams, xlb forwarded %d of %d frames", got, xd["TxPackets"], xd["RxPackets"])
				}
			} else if xd["RxPackets"] != 0 {
				return nil, fmt.Errorf("xlb saw %d frames during the baseline run", xd["RxPackets"])
			}
			for i := range h {
				pooled[which][i] += h[i]
			}
			sent[which] += uint64(n)
			samples[which] += got
			p50s[which] = append(p50s[which], histPercentile(h, 0.50))
			p99s[which] = append(p99s[which], histPercentile(h, 0.99))
		}
	}
	side := func(i int) LatSide {
		return LatSide{Sent: sent[i], Samples: samples[i], P50: histPercentile(pooled[i], 0.50), P99: histPercentile(pooled[i], 0.99),
			P50Reps: NewSeries(p50s[i]), P99Reps: NewSeries(p99s[i]), Over: pooled[i][benchbpf.LatOverflow]}
	}
	l.Xlb, l.Base = side(0), side(1)
	l.AddedP50, l.AddedP99 = l.Xlb.P50-l.Base.P50, l.Xlb.P99-l.Base.P99
	return l, nil
}

// Markdown renders the latency part.
func (l *Latency) Markdown() string {
	var b strings.Builder
	b.WriteString("#### Latency on the veth path\n\n")
	fmt.Fprintf(&b, "%d repetitions of %d datagrams each, xlb (dsr-l2) and the baseline alternating. Method: %s.\n\n", l.Reps, l.PerRep, l.Method)
	us := func(ns float64) string { return f(ns/1000, 2) }
	row := func(name string, s LatSide) []string {
		return []string{name, fmt.Sprint(s.Samples), us(s.P50), us(s.P50Reps.Min) + "-" + us(s.P50Reps.Max), us(s.P99), us(s.P99Reps.Min) + "-" + us(s.P99Reps.Max), fmt.Sprint(s.Over)}
	}
	b.WriteString(mdTable([]string{"balancer program", "samples", "p50 µs", "p50 per repetition", "p99 µs", "p99 per repetition", "≥ 10 ms"},
		[][]string{row("xlb (dsr-l2)", l.Xlb), row("baseline l2fwd", l.Base)}))
	fmt.Fprintf(&b, "\nAdded by xlb: p50 %s ns, p99 %s ns (xlb's minus the baseline's, each over all its samples; the per-repetition ranges show how much of that is noise).\n\n",
		f(l.AddedP50, 0), f(l.AddedP99, 0))
	return b.String()
}
