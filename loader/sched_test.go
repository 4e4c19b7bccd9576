package loader_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

var (
	rr4 = svcKey("198.18.1.10:80/tcp")
	lc4 = svcKey("198.18.1.11:80/tcp")
	ps4 = svcKey("198.18.1.12:80/tcp")
	pu4 = svcKey("198.18.1.13:53/udp")
)

// weighted returns usable backends of vip with the given weights.
func weighted(vip netip.Addr, w ...uint32) []lb.Backend {
	bes := backends(vip, len(w))
	for i := range bes {
		bes[i].Weight = w[i]
	}
	return bes
}

// send runs one frame of p and returns the backend index it went to, or
// -1 if it was not forwarded.
func (f *fixture) send(p frame.Spec) int {
	f.t.Helper()
	verdict, fr := f.run(build(f.t, p))
	if verdict != xdpTX {
		return -1
	}
	return int(fr[5]) - 0x11
}

// syn is a SYN from client src:port to service k.
func syn(k lb.ServiceKey, src string, port uint16) frame.Spec {
	return frame.Spec{Src: netip.AddrPortFrom(netip.MustParseAddr(src), port), Dst: netip.AddrPortFrom(k.VIP, k.Port), UDP: k.Proto == lb.UDP, SYN: true}
}

// connect sends a flow's first packet and, for a TCP SYN, the handshake's
// ACK, which moves the flow from the half-open table into the connection
// table; both must reach the same backend, which it returns (-1: not
// forwarded).
func (f *fixture) connect(p frame.Spec) int {
	f.t.Helper()
	be := f.send(p)
	if be < 0 || p.UDP || !p.SYN {
		return be
	}
	if ack := f.send(with(p, func(p *frame.Spec) { p.SYN = false })); ack != be {
		f.t.Fatalf("%s -> %s: the SYN went to backend %d, its ACK to %d", p.Src, p.Dst, be, ack)
	}
	return be
}

// with returns p changed by mod.
func with(p frame.Spec, mod func(*frame.Spec)) frame.Spec { mod(&p); return p }

func (f *fixture) backendID(k lb.ServiceKey, i int) uint32 {
	f.t.Helper()
	st, ok := f.b.Service(k)
	if !ok {
		f.t.Fatalf("service %s not installed", k)
	}
	for _, b := range st.Backends {
		if b.MAC.String() == beMAC(i).String() {
			return b.ID
		}
	}
	f.t.Fatalf("service %s has no backend %d", k, i)
	return 0
}

func (f *fixture) active(k lb.ServiceKey, i int) int64 {
	f.t.Helper()
	n, err := f.b.Active().Get(f.backendID(k, i))
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) setActive(k lb.ServiceKey, counts ...int64) {
	f.t.Helper()
	for i, c := range counts {
		if err := f.b.Active().Set(f.backendID(k, i), uint64(c)); err != nil {
			f.t.Fatal(err)
		}
	}
}

// Round robin gives every backend its weighted share of new flows to
// within one flow per CPU (each CPU walks the sequence with its own
// cursor), and a drained backend none.
func TestRoundRobin(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: weighted(rr4.VIP, 1, 2, 3)})
	slack := runtime.NumCPU()
	got := make([]int, 3)
	const n = 1200
	for i := 0; i < n; i++ {
		be := f.send(syn(rr4, fmt.Sprintf("198.18.2.%d", i%200), uint16(10000+i)))
		if be < 0 {
			t.Fatalf("flow %d not forwarded", i)
		}
		got[be]++
	}
	for i, w := range []int{1, 2, 3} {
		if want := n * w / 6; got[i] < want-slack || got[i] > want+slack {
			t.Errorf("backend %d (weight %d): %d of %d flows, want %d±%d", i, w, got[i], n, want, slack)
		}
	}

	// Established flows stay; a drained backend gets no new ones.
	first := f.send(syn(rr4, "198.18.2.1", 10001))
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: weighted(rr4.VIP, 1, 0, 1)})
	if again := f.send(with(syn(rr4, "198.18.2.1", 10001), func(p *frame.Spec) { p.SYN = false })); again != first {
		t.Errorf("established flow moved from backend %d to %d on a drain", first, again)
	}
	got = make([]int, 3)
	for i := 0; i < 100; i++ {
		got[f.send(syn(rr4, "198.18.2.250", uint16(30000+i)))]++
	}
	if got[1] != 0 || got[0] < 50-slack || got[2] < 50-slack {
		t.Errorf("after draining backend 1: new flows %v, want none on 1 and an even split", got)
	}
}

// Least-conn sends a new flow to the backend with the least (active+1)/
// weight, counts it, and stops counting a flow once the client sends FIN
// or RST.
func TestLeastConn(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: weighted(lc4.VIP, 1, 1, 1)})

	f.setActive(lc4, 5, 2, 7)
	if be := f.connect(syn(lc4, "198.18.2.1", 1000)); be != 1 {
		t.Fatalf("counts 5,2,7: new flow to backend %d, want 1", be)
	}
	if n := f.active(lc4, 1); n != 3 {
		t.Errorf("backend 1 active %d after a new flow, want 3", n)
	}
	// Ties go round: from equal counts every backend gets its share.
	f.setActive(lc4, 0, 0, 0)
	got := make([]int, 3)
	for i := 0; i < 30; i++ {
		got[f.connect(syn(lc4, "198.18.2.2", uint16(2000+i)))]++
	}
	if got[0] != 10 || got[1] != 10 || got[2] != 10 {
		t.Errorf("30 flows from equal counts: %v, want 10 each", got)
	}

	// Weights: (3+1)/1 = 4 > (5+1)/2 = 3: backend 1, weight 2, wins.
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: weighted(lc4.VIP, 1, 2, 1)})
	f.setActive(lc4, 3, 5, 9)
	if be := f.send(syn(lc4, "198.18.2.3", 1000)); be != 1 {
		t.Errorf("counts 3,5,9 weights 1,2,1: backend %d, want 1", be)
	}
	// Drained: a backend of weight 0 gets no new flow, however idle.
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: weighted(lc4.VIP, 0, 1, 1)})
	f.setActive(lc4, 0, 4, 4)
	if be := f.send(syn(lc4, "198.18.2.4", 1000)); be == 0 || be < 0 {
		t.Errorf("drained backend 0 (or nobody) got a new flow: %d", be)
	}

	// FIN from the client ends the count once; a second FIN or more
	// packets do not count again.
	f.setActive(lc4, 0, 0, 9)
	c := syn(lc4, "198.18.2.5", 5000)
	be := f.connect(c)
	if be != 1 {
		t.Fatalf("counts 0,0,9 (backend 0 drained): backend %d, want 1", be)
	}
	if n := f.active(lc4, 1); n != 1 {
		t.Fatalf("active %d after the handshake, want 1", n)
	}
	fin := with(c, func(p *frame.Spec) { p.SYN = false; p.FIN = true })
	before := f.counters()
	for i := 0; i < 2; i++ {
		if got := f.send(fin); got != be {
			t.Fatalf("FIN went to backend %d, not the flow's %d", got, be)
		}
	}
	if n := f.active(lc4, 1); n != 0 {
		t.Errorf("active %d after FIN, want 0", n)
	}
	if d := delta(before, f.counters()); d["ClosedFlows"] != 1 {
		t.Errorf("counters %v, want one closed flow", d)
	}
	fl, ok, _ := f.b.Conntrack().Lookup(flowOf(c))
	if !ok || !fl.Closing {
		t.Errorf("flow after FIN: %+v (found %v), want closing", fl, ok)
	}
	// A new SYN on the closed tuple is a new connection: counted again,
	// active once its handshake completes.
	before = f.counters()
	f.connect(c)
	if d := delta(before, f.counters()); d["NewFlows"] != 1 || d["HalfopenPromoted"] != 1 {
		t.Errorf("SYN reusing a closed tuple: counters %v, want a new flow, promoted", d)
	}
	if n := f.active(lc4, 0) + f.active(lc4, 1) + f.active(lc4, 2); n != 10 {
		t.Errorf("active flows %d in all, want 10", n)
	}
	// RST counts as a close too.
	rst := with(c, func(p *frame.Spec) { p.SYN = false; p.RST = true })
	f.send(rst)
	if n := f.active(lc4, 0) + f.active(lc4, 1) + f.active(lc4, 2); n != 9 {
		t.Errorf("active flows %d in all after RST, want 9", n)
	}
}

// persistenceKey is the persistence entry of a client of service k.
func (f *fixture) persistence(k lb.ServiceKey, client string) (maps.Persistence, bool) {
	f.t.Helper()
	st, _ := f.b.Service(k)
	p, ok, err := f.b.Persistence().Lookup(maps.PersistKey{ServiceID: st.ID, Client: netip.MustParseAddr(client)})
	if err != nil {
		f.t.Fatal(err)
	}
	return p, ok
}

func (f *fixture) agePersistence(k lb.ServiceKey, client string, age time.Duration) {
	f.t.Helper()
	st, _ := f.b.Service(k)
	key := maps.PersistKey{ServiceID: st.ID, Client: netip.MustParseAddr(client)}
	p, ok, err := f.b.Persistence().Lookup(key)
	if err != nil || !ok {
		f.t.Fatalf("no persistence entry for %s: %v", client, err)
	}
	p.LastSeen = loader.MonotonicNow() - uint64(age)
	if err := f.b.Persistence().Put(key, p); err != nil {
		f.t.Fatal(err)
	}
}

// Persistence: one client's new flows all go to one backend, within the
// timeout, also after the backend is drained; after the timeout, or once
// the backend is down, the scheduler decides again.
func TestPersistence(t *testing.T) {
	for _, sched := range []lb.Scheduler{lb.Maglev, lb.SourceHash, lb.RoundRobin, lb.LeastConn} {
		t.Run(sched.String(), func(t *testing.T) {
			f := newFixture(t)
			svc := lb.Service{Key: ps4, Scheduler: sched, Persistence: 300 * time.Second, Backends: weighted(ps4.VIP, 1, 1, 1)}
			f.set(svc)
			const client = "198.18.3.1"
			first := f.send(syn(ps4, client, 1000))
			before := f.counters()
			for i := 1; i < 50; i++ {
				if be := f.send(syn(ps4, client, uint16(1000+i))); be != first {
					t.Fatalf("connection %d went to backend %d, the client's first to %d", i, be, first)
				}
			}
			if d := delta(before, f.counters()); d["PersistHits"] != 49 {
				t.Errorf("counters %v, want 49 persistence hits", d)
			}
			// Other clients are spread as usual.
			others := map[int]bool{}
			for i := 0; i < 60; i++ {
				others[f.send(syn(ps4, fmt.Sprintf("198.18.3.%d", 10+i), 1000))] = true
			}
			if len(others) < 2 {
				t.Errorf("60 other clients all went to one backend")
			}

			// Drained: persistent clients keep coming.
			svc.Backends[first].Weight = 0
			f.set(svc)
			if be := f.send(syn(ps4, client, 2000)); be != first {
				t.Errorf("after draining backend %d the client went to %d", first, be)
			}
			// Drained and failing its health check: its established flow
			// stays, the persistent client moves (and back again once it
			// recovers: the entry now names the other backend).
			est := with(syn(ps4, client, 2000), func(p *frame.Spec) { p.SYN = false })
			svc.Backends[first].Failing = true
			f.set(svc)
			if be := f.send(est); be != first {
				t.Errorf("drained and failing: its established flow went to %d, not %d", be, first)
			}
			if be := f.send(syn(ps4, client, 2100)); be == first || be < 0 {
				t.Errorf("drained and failing: the persistent client still went to %d", be)
			}
			svc.Backends[first].Failing = false
			f.set(svc)
			st, _ := f.b.Service(ps4)
			if err := f.b.Persistence().Put(maps.PersistKey{ServiceID: st.ID, Client: netip.MustParseAddr(client)},
				maps.Persistence{BackendID: f.backendID(ps4, first), LastSeen: loader.MonotonicNow()}); err != nil {
				t.Fatal(err)
			}
			// Within the timeout still; after it, the scheduler picks
			// among the others (the drained backend gets no new client).
			f.agePersistence(ps4, client, 299*time.Second)
			if be := f.send(syn(ps4, client, 2001)); be != first {
				t.Errorf("299s after: backend %d, want %d", be, first)
			}
			f.agePersistence(ps4, client, 301*time.Second)
			moved := f.send(syn(ps4, client, 2002))
			if moved == first || moved < 0 {
				t.Errorf("301s after, with backend %d drained: backend %d", first, moved)
			}
			if p, ok := f.persistence(ps4, client); !ok || p.BackendID != f.backendID(ps4, moved) {
				t.Errorf("persistence entry %+v (found %v) does not name the new backend %d", p, ok, moved)
			}

			// Down: the client moves at once and stays on the new one.
			svc.Backends[first].Weight = 1
			svc.Backends[moved].Down = true
			f.set(svc)
			next := f.send(syn(ps4, client, 3000))
			if next == moved || next < 0 {
				t.Fatalf("backend %d down, the client still went to %d", moved, next)
			}
			for i := 1; i < 10; i++ {
				if be := f.send(syn(ps4, client, uint16(3000+i))); be != next {
					t.Fatalf("after failover connection %d went to %d, not %d", i, be, next)
				}
			}
		})
	}
}

// setFlow replaces a flow's entry with one last seen age ago.
func (f *fixture) ageFlow(p frame.Spec, age time.Duration, closing bool) {
	f.t.Helper()
	k := flowOf(p)
	fl, ok, err := f.b.Conntrack().Lookup(k)
	if err != nil || !ok {
		f.t.Fatalf("flow %s: not in the table (%v)", k, err)
	}
	fl.LastSeen = loader.MonotonicNow() - uint64(age)
	fl.Closing = closing
	if err := f.b.Conntrack().Put(k, fl); err != nil {
		f.t.Fatal(err)
	}
}

// Idle timeouts: a flow idle beyond its protocol's timeout is new again
// (and no longer counted as active); one within it is not.
func TestIdleTimeouts(t *testing.T) {
	f := newFixture(t)
	if err := f.b.SetTimeouts(lb.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}); err != nil {
		t.Fatal(err)
	}
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: weighted(lc4.VIP, 1, 1, 1)})
	f.set(lb.Service{Key: pu4, Scheduler: lb.LeastConn, Backends: weighted(pu4.VIP, 1, 1, 1)})
	udp := frame.Spec{Src: ap("198.18.4.1:5000"), Dst: netip.AddrPortFrom(pu4.VIP, pu4.Port), UDP: true}
	cases := []struct {
		name    string
		p       frame.Spec
		svc     lb.ServiceKey
		age     time.Duration
		closing bool
		expired bool
	}{
		{"tcp 899s", syn(lc4, "198.18.4.2", 1), lc4, 899 * time.Second, false, false},
		{"tcp 901s", syn(lc4, "198.18.4.2", 2), lc4, 901 * time.Second, false, true},
		{"tcp closing 119s", syn(lc4, "198.18.4.2", 3), lc4, 119 * time.Second, true, false},
		{"tcp closing 121s", syn(lc4, "198.18.4.2", 4), lc4, 121 * time.Second, true, true},
		{"udp 299s", udp, pu4, 299 * time.Second, false, false},
		{"udp 301s", with(udp, func(p *frame.Spec) { p.Src = ap("198.18.4.1:5001") }), pu4, 301 * time.Second, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.setActive(c.svc, 0, 0, 0)
			if f.connect(c.p) < 0 {
				t.Fatal("first packet not forwarded")
			}
			f.ageFlow(c.p, c.age, c.closing)
			if c.closing {
				// The close was counted when the FIN passed.
				f.setActive(c.svc, 0, 0, 0)
			}
			next := with(c.p, func(p *frame.Spec) { p.SYN = false })
			before := f.counters()
			if f.send(next) < 0 {
				t.Fatal("second packet not forwarded")
			}
			d := delta(before, f.counters())
			total := f.active(c.svc, 0) + f.active(c.svc, 1) + f.active(c.svc, 2)
			if c.expired {
				if d["ExpiredFlows"] != 1 || d["NewFlows"] != 1 || total != 1 {
					t.Errorf("counters %v, %d active; want an expired flow counted once as new and active", d, total)
				}
			} else {
				wantActive := int64(1)
				if c.closing {
					wantActive = 0
				}
				if d["ConntrackHits"] != 1 || d["NewFlows"] != 0 || total != wantActive {
					t.Errorf("counters %v, %d active; want a hit and %d active", d, total, wantActive)
				}
			}
		})
	}
}

// Sweep deletes expired flows and stale persistence entries and rewrites
// the active counts from what is left.
func TestSweep(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Persistence: 60 * time.Second, Backends: weighted(lc4.VIP, 1, 1, 1)})
	var flows []frame.Spec
	for i := 0; i < 6; i++ {
		p := syn(lc4, fmt.Sprintf("198.18.5.%d", i), 1000)
		f.connect(p)
		flows = append(flows, p)
	}
	f.ageFlow(flows[0], 901*time.Second, false)
	f.ageFlow(flows[1], 10*time.Second, true)
	f.agePersistence(lc4, "198.18.5.2", 61*time.Second)
	f.setActive(lc4, 40, 40, 40) // drifted: evictions, lost closes
	res, err := f.b.Sweep(loader.MonotonicNow())
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired != 1 || res.PersistExpired != 1 || res.Corrected != 3 {
		t.Errorf("sweep %+v, want 1 expired flow, 1 expired persistence entry, 3 corrections", res)
	}
	if _, ok, _ := f.b.Conntrack().Lookup(flowOf(flows[0])); ok {
		t.Errorf("expired flow still in the table")
	}
	if _, ok := f.persistence(lc4, "198.18.5.2"); ok {
		t.Errorf("expired persistence entry still in the table")
	}
	if n := f.active(lc4, 0) + f.active(lc4, 1) + f.active(lc4, 2); n != 4 {
		t.Errorf("%d active after the sweep, want 4 (6 flows, 1 expired, 1 closing)", n)
	}
}

// Invalid settings are refused whole.
func TestSchedulerValidation(t *testing.T) {
	f := newFixture(t)
	for _, s := range []lb.Service{
		{Key: ps4, Persistence: 1500 * time.Millisecond, Backends: backends(ps4.VIP, 1)},
		{Key: ps4, Persistence: -time.Second},
		{Key: ps4, Scheduler: 9},
		{Key: lc4, Scheduler: lb.LeastConn, Backends: manyBackends(lb.MaxLeastConnBackends + 1)},
	} {
		if err := f.b.SetService(s); err == nil {
			t.Errorf("service %+v accepted", s.Key)
		} else {
			t.Logf("refused: %v", err)
		}
	}
	if err := f.b.SetService(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: manyBackends(lb.MaxLeastConnBackends)}); err != nil {
		t.Errorf("least-conn with %d backends: %v", lb.MaxLeastConnBackends, err)
	}
	if err := f.b.SetTimeouts(lb.Timeouts{TCP: time.Millisecond}); err == nil {
		t.Errorf("tcp timeout 1ms accepted")
	}
}

func manyBackends(n int) []lb.Backend {
	out := make([]lb.Backend, n)
	for i := range out {
		out[i] = lb.Backend{Addr: netip.AddrFrom4([4]byte{198, 18, 100 + byte(i/250), byte(1 + i%250)}), MAC: beMAC(0), Weight: 1}
	}
	return out
}
