package loader_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// halfOpen looks up p's flow in the half-open table.
func (f *fixture) halfOpen(p frame.Spec) (maps.Flow, bool) {
	f.t.Helper()
	fl, ok, err := f.b.HalfOpen().Lookup(flowOf(p))
	if err != nil {
		f.t.Fatal(err)
	}
	return fl, ok
}

// tracked looks up p's flow in the connection table.
func (f *fixture) tracked(p frame.Spec) (maps.Flow, bool) {
	f.t.Helper()
	fl, ok, err := f.b.Conntrack().Lookup(flowOf(p))
	if err != nil {
		f.t.Fatal(err)
	}
	return fl, ok
}

func (f *fixture) totalActive(k lb.ServiceKey, n int) int64 {
	var sum int64
	for i := 0; i < n; i++ {
		sum += f.active(k, i)
	}
	return sum
}

// TestHalfOpen walks a TCP handshake through the half-open table for
// every scheduler: the SYN is scheduled and recorded there only (no
// connection-table entry, not active, counted new), a retransmitted SYN
// keeps its backend without counting again, and the handshake's ACK moves
// the flow into the connection table on the same backend, even for
// round-robin and least-conn, whose next pick would differ.
func TestHalfOpen(t *testing.T) {
	f := newFixture(t)
	ps4 := svcKey("198.18.1.12:80/tcp")
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: backends(rr4.VIP, 3)})
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: backends(lc4.VIP, 3)})
	f.set(lb.Service{Key: ps4, Persistence: time.Minute, Backends: backends(ps4.VIP, 3)})
	for _, k := range []lb.ServiceKey{web4, web6, sh4, rr4, lc4, ps4} {
		t.Run(k.String(), func(t *testing.T) {
			f.t = t
			client := "198.18.6.1"
			if k.VIP.Is6() {
				client = "2001:2::6:1"
			}
			p := syn(k, client, 7000)
			f.setActive(k, 0, 0, 0)
			before := f.counters()
			be := f.send(p)
			if be < 0 {
				t.Fatal("SYN not forwarded")
			}
			if d := delta(before, f.counters()); !reflect.DeepEqual(d, map[string]uint64{"RxPackets": 1, "TxPackets": 1, "NewFlows": 1, "HalfopenNew": 1}) {
				t.Errorf("SYN: counters %v", d)
			}
			if h, ok := f.halfOpen(p); !ok || h.BackendID != f.backendID(k, be) || h.Closing {
				t.Errorf("SYN: half-open entry %+v (%v), want backend %d", h, ok, f.backendID(k, be))
			}
			if fl, ok := f.tracked(p); ok {
				t.Errorf("SYN: connection-table entry %+v", fl)
			}
			if n := f.totalActive(k, 3); n != 0 {
				t.Errorf("SYN: %d active, want 0", n)
			}
			if k == ps4 {
				if pe, ok := f.persistence(k, client); !ok || pe.BackendID != f.backendID(k, be) {
					t.Errorf("SYN: persistence %+v (%v), want backend %d", pe, ok, f.backendID(k, be))
				}
			}

			// Retransmitted SYNs: same backend, nothing new.
			before = f.counters()
			for i := 0; i < 3; i++ {
				if again := f.send(p); again != be {
					t.Fatalf("retransmitted SYN to backend %d, the first went to %d", again, be)
				}
			}
			if d := delta(before, f.counters()); !reflect.DeepEqual(d, map[string]uint64{"RxPackets": 3, "TxPackets": 3}) {
				t.Errorf("retransmitted SYNs: counters %v", d)
			}

			// The handshake's ACK: promoted.
			ack := with(p, func(p *frame.Spec) { p.SYN = false })
			before = f.counters()
			if got := f.send(ack); got != be {
				t.Fatalf("ACK to backend %d, the SYN went to %d", got, be)
			}
			if d := delta(before, f.counters()); !reflect.DeepEqual(d, map[string]uint64{"RxPackets": 1, "TxPackets": 1, "HalfopenPromoted": 1}) {
				t.Errorf("ACK: counters %v", d)
			}
			if h, ok := f.halfOpen(p); ok {
				t.Errorf("ACK: half-open entry left: %+v", h)
			}
			if fl, ok := f.tracked(p); !ok || fl.BackendID != f.backendID(k, be) || fl.Closing {
				t.Errorf("ACK: connection-table entry %+v (%v), want backend %d", fl, ok, f.backendID(k, be))
			}
			if n := f.active(k, be); n != 1 {
				t.Errorf("ACK: backend %d active %d, want 1", be, n)
			}
			// Established: hits.
			before = f.counters()
			for i := 0; i < 5; i++ {
				if got := f.send(ack); got != be {
					t.Fatalf("established packet to backend %d, want %d", got, be)
				}
			}
			if d := delta(before, f.counters()); d["ConntrackHits"] != 5 || d["NewFlows"] != 0 {
				t.Errorf("established: counters %v", d)
			}
		})
	}
	f.t = t
}

// TestHalfOpenEdges: what the half-open table does at its edges.
func TestHalfOpenEdges(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: backends(rr4.VIP, 3)})
	ack := func(p frame.Spec) frame.Spec { return with(p, func(p *frame.Spec) { p.SYN = false }) }

	// A flow first seen mid-stream (from before a restart, or from
	// another balancer): its first packet is half-open as a SYN is, its
	// second promotes it; round-robin keeps the first pick.
	mid := with(syn(rr4, "198.18.7.1", 1000), func(p *frame.Spec) { p.SYN = false })
	before := f.counters()
	be := f.send(mid)
	if d := delta(before, f.counters()); !reflect.DeepEqual(d, map[string]uint64{"RxPackets": 1, "TxPackets": 1, "NewFlows": 1, "HalfopenNew": 1}) {
		t.Errorf("mid-flow packet: counters %v", d)
	}
	if h, ok := f.halfOpen(mid); !ok || h.BackendID != f.backendID(rr4, be) {
		t.Errorf("mid-flow packet: half-open entry %+v (%v)", h, ok)
	}
	if fl, ok := f.tracked(mid); ok {
		t.Errorf("mid-flow packet: connection-table entry %+v after one packet", fl)
	}
	if got := f.send(mid); got != be {
		t.Errorf("mid-flow second packet to %d, the first to %d", got, be)
	}
	if fl, ok := f.tracked(mid); !ok || fl.BackendID != f.backendID(rr4, be) {
		t.Errorf("mid-flow second packet: entry %+v (%v)", fl, ok)
	}

	// A half-open entry older than the FIN timeout is ignored: the ACK is
	// a new flow, half-open afresh.
	old := syn(rr4, "198.18.7.2", 1000)
	f.send(old)
	h, _ := f.halfOpen(old)
	h.LastSeen = loader.MonotonicNow() - uint64(lb.DefaultTimeouts.TCPFin) - uint64(time.Second)
	if err := f.b.HalfOpen().Put(flowOf(old), h); err != nil {
		t.Fatal(err)
	}
	before = f.counters()
	f.send(ack(old))
	if d := delta(before, f.counters()); d["NewFlows"] != 1 || d["HalfopenNew"] != 1 || d["HalfopenPromoted"] != 0 {
		t.Errorf("ACK after a stale half-open entry: counters %v, want a new half-open flow", d)
	}
	if h, ok := f.halfOpen(old); !ok || loader.MonotonicNow()-h.LastSeen > uint64(time.Minute) {
		t.Errorf("ACK after a stale half-open entry: entry %+v (%v), want a fresh one", h, ok)
	}
	// The sweep deletes stale entries.
	stale := syn(rr4, "198.18.7.3", 1000)
	f.send(stale)
	h, _ = f.halfOpen(stale)
	h.LastSeen = loader.MonotonicNow() - uint64(lb.DefaultTimeouts.TCPFin) - uint64(time.Second)
	if err := f.b.HalfOpen().Put(flowOf(stale), h); err != nil {
		t.Fatal(err)
	}
	res, err := f.b.Sweep(loader.MonotonicNow())
	if err != nil || res.HalfOpenExpired != 1 {
		t.Errorf("sweep: %+v, %v; want one half-open entry expired", res, err)
	}
	if _, ok := f.halfOpen(stale); ok {
		t.Error("the sweep left the stale half-open entry")
	}
	if _, ok := f.halfOpen(old); !ok {
		t.Error("the sweep deleted a live half-open entry")
	}

	// The half-open backend is removed before the ACK: the ACK is placed
	// anew, not promoted to the removed backend.
	gone := syn(rr4, "198.18.7.4", 1000)
	first := f.send(gone)
	bes := backends(rr4.VIP, 3)
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: append(bes[:first:first], bes[first+1:]...)})
	before = f.counters()
	if got := f.send(ack(gone)); got == first || got < 0 {
		t.Errorf("ACK after its half-open backend %d went: backend %d", first, got)
	}
	if d := delta(before, f.counters()); d["NewFlows"] != 1 || d["HalfopenNew"] != 1 || d["HalfopenPromoted"] != 0 {
		t.Errorf("ACK after its half-open backend went: counters %v", d)
	}
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: bes})

	// A SYN reusing a closed flow's tuple drops the closed entry (the
	// handshake's ACK must not find it) and is half-open.
	reuse := syn(rr4, "198.18.7.5", 1000)
	f.connect(reuse)
	f.send(with(reuse, func(p *frame.Spec) { p.SYN = false; p.FIN = true }))
	if fl, ok := f.tracked(reuse); !ok || !fl.Closing {
		t.Fatalf("after FIN: %+v (%v), want closing", fl, ok)
	}
	activeBefore := f.totalActive(rr4, 3)
	be = f.send(reuse)
	if fl, ok := f.tracked(reuse); ok {
		t.Errorf("SYN on a closed tuple left its entry: %+v", fl)
	}
	if h, ok := f.halfOpen(reuse); !ok || h.BackendID != f.backendID(rr4, be) {
		t.Errorf("SYN on a closed tuple: half-open %+v (%v)", h, ok)
	}
	if got := f.send(ack(reuse)); got != be {
		t.Errorf("ACK to %d, its SYN to %d", got, be)
	}
	if n := f.totalActive(rr4, 3); n != activeBefore+1 {
		t.Errorf("active %d after the new handshake, want %d", n, activeBefore+1)
	}

	// A SYN whose connection-table entry is live (a retransmission after
	// the ACK, or a spoofed SYN with a live tuple) is that flow's packet.
	before = f.counters()
	if got := f.send(reuse); got != be {
		t.Errorf("SYN of a live flow to %d, want %d", got, be)
	}
	if d := delta(before, f.counters()); !reflect.DeepEqual(d, map[string]uint64{"RxPackets": 1, "TxPackets": 1, "ConntrackHits": 1}) {
		t.Errorf("SYN of a live flow: counters %v", d)
	}

	// A FIN or RST as the handshake's next packet promotes the flow
	// closing, never counted active.
	rst := syn(rr4, "198.18.7.6", 1000)
	be = f.send(rst)
	activeBefore = f.totalActive(rr4, 3)
	if got := f.send(with(rst, func(p *frame.Spec) { p.SYN = false; p.RST = true })); got != be {
		t.Errorf("RST to %d, its SYN to %d", got, be)
	}
	if fl, ok := f.tracked(rst); !ok || !fl.Closing {
		t.Errorf("RST after SYN: entry %+v (%v), want closing", fl, ok)
	}
	if n := f.totalActive(rr4, 3); n != activeBefore {
		t.Errorf("RST after SYN: active %d, want %d", n, activeBefore)
	}
}

// TestSYNFlood: a flood of spoofed SYNs ten times the connection table's
// size, with a backend added twice during it, breaks no established
// connection of any scheduler: the SYNs churn the half-open table only.
// So do floods of spoofed ACKs and RSTs (one packet per tuple). It also
// checks that real handshakes made during the flood complete on one
// backend.
func TestSYNFlood(t *testing.T) {
	for _, kind := range []string{"SYN", "ACK", "RST"} {
		t.Run(kind, func(t *testing.T) { testFlood(t, kind) })
	}
}

func testFlood(t *testing.T, kind string) {
	const (
		conntrackSize = 4096
		halfOpenSize  = 1024
		established   = 600 // per service
		flood         = 10 * conntrackSize
	)
	f := newFixtureWith(t, loader.Options{ConntrackSize: conntrackSize, HalfOpenSize: halfOpenSize})
	svcs := []lb.Service{
		{Key: web4, Backends: backends(web4.VIP, 3)},
		{Key: rr4, Scheduler: lb.RoundRobin, Backends: backends(rr4.VIP, 3)},
		{Key: lc4, Scheduler: lb.LeastConn, Backends: backends(lc4.VIP, 3)},
	}
	for _, s := range svcs {
		f.set(s)
	}
	type conn struct {
		p  frame.Spec
		be int
	}
	var conns []conn
	for si, s := range svcs {
		for i := 0; i < established; i++ {
			p := syn(s.Key, fmt.Sprintf("198.18.%d.%d", 8+si, 1+i%250), uint16(10000+i))
			be := f.connect(p)
			if be < 0 {
				t.Fatalf("%s: handshake not forwarded", p.Src)
			}
			conns = append(conns, conn{with(p, func(p *frame.Spec) { p.SYN = false }), be})
		}
	}
	snap, err := f.b.Snapshot()
	if err != nil || snap.Flows != len(conns) {
		t.Fatalf("%d tracked flows (%v), want %d", snap.Flows, err, len(conns))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	before := f.counters()
	added := 0
	var during []conn
	for i := 0; i < flood; i++ {
		if i == flood/3 || i == 2*flood/3 {
			// Backends join mid-flood: every scheduler's table changes.
			added++
			for j, s := range svcs {
				s.Backends = backends(s.Key.VIP, 3+added)
				svcs[j] = s
				f.set(s)
			}
		}
		s := svcs[i%len(svcs)]
		src := netip.AddrFrom4([4]byte{198, 19, byte(rng.IntN(256)), byte(rng.IntN(256))})
		spoofed := frame.Spec{Src: netip.AddrPortFrom(src, uint16(1024+rng.IntN(60000))), Dst: netip.AddrPortFrom(s.Key.VIP, s.Key.Port),
			SYN: kind == "SYN", RST: kind == "RST"}
		if f.send(spoofed) < 0 {
			t.Fatalf("spoofed %s %d not forwarded", kind, i)
		}
		if i%(flood/20) == 0 {
			// A real client connects during the flood: its SYN and ACK
			// come close together, as over a short round trip.
			p := syn(s.Key, "198.18.20.1", uint16(2000+i/(flood/20)))
			during = append(during, conn{with(p, func(p *frame.Spec) { p.SYN = false }), f.connect(p)})
		}
	}
	d := delta(before, f.counters())
	if d["HalfopenNew"] < flood || d["ConntrackInsertErrors"] != 0 {
		t.Errorf("flood counters %v, want %d half-open flows", d, flood)
	}

	broken := 0
	for _, c := range append(conns, during...) {
		if got := f.send(c.p); got != c.be {
			broken++
			if broken <= 5 {
				t.Errorf("%s -> %s: now backend %d, was %d", c.p.Src, c.p.Dst, got, c.be)
			}
		}
	}
	snap, err = f.b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s flood of %d (%d× the connection table, half-open table %d), %d backends added per service mid-flood: %d of %d established connections broken; %d made during the flood, broken included; connection table %d entries, half-open %d",
		kind, flood, flood/conntrackSize, halfOpenSize, added, broken, len(conns)+len(during), len(during), snap.Flows, snap.HalfOpen)
	if broken != 0 {
		t.Errorf("%d established connections broken by the flood, want 0", broken)
	}
	if snap.Flows != len(conns)+len(during) {
		t.Errorf("connection table holds %d entries after the flood, want the %d established", snap.Flows, len(conns)+len(during))
	}
}

// TestHalfOpenAcrossRestarts: the half-open table is pinned, so a
// handshake in flight across a restart completes on its backend; pins
// without it (an older xlb) or of another size are re-adopted with a
// fresh half-open table, the rest kept.
func TestHalfOpenAcrossRestarts(t *testing.T) {
	opts := pinnedOptions(t, "xlb-halfopen")
	opts.HalfOpenSize = 1024
	open := func(o loader.Options) *fixture {
		t.Helper()
		b, err := loader.Open(o)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return &fixture{t: t, b: b}
	}
	closeB := func(f *fixture) {
		t.Helper()
		if err := f.b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f := open(opts)
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: backends(rr4.VIP, 3)})
	// Three SYNs: the cursor moves on, so a second pick of any of them
	// would differ from its first.
	var syns []frame.Spec
	var bes []int
	for i := 0; i < 3; i++ {
		p := syn(rr4, "198.18.30.1", uint16(1000+i))
		syns, bes = append(syns, p), append(bes, f.send(p))
	}
	closeB(f)

	f = open(opts)
	if !f.b.Adopted() {
		t.Fatal("not re-adopted")
	}
	before := f.counters()
	if got := f.send(with(syns[0], func(p *frame.Spec) { p.SYN = false })); got != bes[0] {
		t.Errorf("ACK after the restart to backend %d, its SYN went to %d", got, bes[0])
	}
	if d := delta(before, f.counters()); d["HalfopenPromoted"] != 1 {
		t.Errorf("ACK after the restart: counters %v, want promoted", d)
	}
	closeB(f)

	// Pins of a version without the half-open table.
	if err := os.Remove(filepath.Join(opts.PinDir, bpf.MapHalfOpen)); err != nil {
		t.Fatal(err)
	}
	f = open(opts)
	if !f.b.Adopted() {
		t.Fatal("pins without a half-open table: not re-adopted")
	}
	if _, ok := f.halfOpen(syns[1]); ok {
		t.Error("half-open entry found in a table that had no pin")
	}
	if _, err := os.Stat(filepath.Join(opts.PinDir, bpf.MapHalfOpen)); err != nil {
		t.Errorf("fresh half-open table not pinned: %v", err)
	}
	if n, err := f.b.Conntrack().Count(); err != nil || n != 1 {
		t.Errorf("connection table after the upgrade: %d flows (%v), want the 1 kept", n, err)
	}
	p := syns[2]
	f.send(p)
	closeB(f)

	// Another size: a fresh table.
	opts.HalfOpenSize = 2048
	f = open(opts)
	defer closeB(f)
	if !f.b.Adopted() {
		t.Fatal("another half-open size: not re-adopted")
	}
	if _, ok := f.halfOpen(p); ok {
		t.Error("half-open entry kept across a resize")
	}
	info, err := loader.HalfOpenMap(f.b).Info()
	if err != nil || info.MaxEntries != 2048 {
		t.Errorf("half-open table after the resize: %+v, %v", info, err)
	}
}
