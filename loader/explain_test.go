package loader_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// explain is what xlbctl explain says about the flow of frame p: the
// loader's facts judged by lb.ExplainFlow.
func (f *fixture) explain(p frame.Spec) lb.FlowExplanation {
	f.t.Helper()
	k := lb.ServiceKey{VIP: p.Dst.Addr(), Port: p.Dst.Port(), Proto: flowOf(p).Proto}
	facts, err := f.b.FlowFacts(k, p.Src, loader.MonotonicNow())
	if err != nil {
		f.t.Fatalf("facts of %s: %v", flowOf(p), err)
	}
	return lb.ExplainFlow(facts)
}

// index is the fixture's backend index of id in service k (-1: none).
func (f *fixture) index(k lb.ServiceKey, id uint32) int {
	f.t.Helper()
	st, _ := f.b.Service(k)
	for i := range st.Backends {
		if id != 0 && f.backendID(k, i) == id {
			return i
		}
	}
	return -1
}

// explain's prediction for a new flow is the backend the XDP program
// picks for its first frame, for every scheduler, and for an existing
// flow it names the connection-table (or half-open) backend; entries the
// program ignores (expired, backend down) are ignored and the flow's next
// frame goes where explain says.
func TestExplainMatchesDataPlane(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: lc4, Scheduler: lb.LeastConn, Backends: weighted(lc4.VIP, 1, 2, 1)})
	f.set(lb.Service{Key: rr4, Scheduler: lb.RoundRobin, Backends: weighted(rr4.VIP, 1, 2, 3)})
	for _, k := range []lb.ServiceKey{web4, dns4, web6, sh4, lc4, rr4} {
		t.Run(k.String(), func(t *testing.T) {
			hits := map[int]int{}
			for i := range 40 {
				src := fmt.Sprintf("198.18.4.%d", i%7+1)
				if k.VIP.Is6() {
					src = fmt.Sprintf("2001:2:0:4::%x", i%7+1)
				}
				p := syn(k, src, uint16(20000+i))
				x := f.explain(p)
				if x.Conntrack != nil || x.Next.By != "scheduler" || x.Next.Backend != x.NewFlow.Backend {
					t.Fatalf("%s before its first frame: %+v", flowOf(p), x)
				}
				want := f.index(k, x.NewFlow.Backend)
				be := f.send(p)
				hits[be]++
				switch {
				case k == rr4:
					// The receiving CPU's cursor decides: one of the
					// per-CPU choices.
					if !slices.ContainsFunc(x.NewFlow.Choices, func(id uint32) bool { return f.index(k, id) == be }) && want != be {
						t.Fatalf("%s went to backend %d, explain said one of %v", flowOf(p), be, x.NewFlow.Choices)
					}
				case be != want || be < 0:
					t.Fatalf("%s went to backend %d, explain said %d (%+v)", flowOf(p), be, want, x.NewFlow)
				}
				if p.UDP {
					x = f.explain(p)
				} else {
					// The SYN is half-open: the ACK goes by that entry.
					x = f.explain(p)
					if x.HalfOpen == nil || !x.HalfOpen.Used || x.Next.By != "half-open" || f.index(k, x.Next.Backend) != be {
						t.Fatalf("%s after its SYN: next %+v, half-open %+v, want backend %d", flowOf(p), x.Next, x.HalfOpen, be)
					}
					if ack := f.send(with(p, func(p *frame.Spec) { p.SYN = false })); ack != be {
						t.Fatalf("%s: the ACK went to %d, the SYN to %d", flowOf(p), ack, be)
					}
					x = f.explain(p)
				}
				if x.Conntrack == nil || !x.Conntrack.Used || x.Next.By != "conntrack" || f.index(k, x.Next.Backend) != be {
					t.Fatalf("%s established on %d: next %+v, conntrack %+v", flowOf(p), be, x.Next, x.Conntrack)
				}
			}
			if len(hits) < 2 {
				t.Errorf("40 flows all went to backend(s) %v: the test shows nothing", hits)
			}
		})
	}

	// An expired entry is ignored: the next frame is a new flow, placed
	// where explain says (and the test would fail if it kept the entry:
	// the entry names another backend than the slot).
	p := syn(web4, "198.18.4.100", 30000)
	f.connect(p)
	x := f.explain(p)
	slotBe := f.index(web4, x.NewFlow.Backend)
	other := (slotBe + 1) % 3
	k := flowOf(p)
	fl, _, _ := f.b.Conntrack().Lookup(k)
	fl.BackendID = f.backendID(web4, other)
	fl.LastSeen = loader.MonotonicNow() - uint64(1000*time.Second)
	if err := f.b.Conntrack().Put(k, fl); err != nil {
		t.Fatal(err)
	}
	ack := with(p, func(p *frame.Spec) { p.SYN = false })
	if x = f.explain(p); x.Conntrack.Used || x.Conntrack.State != "expired" || f.index(web4, x.Next.Backend) != slotBe {
		t.Errorf("expired entry: conntrack %+v, next %+v", x.Conntrack, x.Next)
	}
	if be := f.send(ack); be != slotBe {
		t.Errorf("expired entry: the next frame went to %d, explain said %d", be, slotBe)
	}
	// Fresh again on another backend: used; that backend down: ignored,
	// rescheduled where explain says.
	fl.LastSeen = loader.MonotonicNow()
	if err := f.b.Conntrack().Put(k, fl); err != nil {
		t.Fatal(err)
	}
	if x = f.explain(p); !x.Conntrack.Used || f.index(web4, x.Next.Backend) != other {
		t.Errorf("fresh entry on %d: conntrack %+v, next %+v", other, x.Conntrack, x.Next)
	}
	if be := f.send(ack); be != other {
		t.Errorf("fresh entry: the next frame went to %d, not the entry's %d", be, other)
	}
	bes := backends(web4.VIP, 3)
	bes[other].Down = true
	f.set(lb.Service{Key: web4, Backends: bes})
	x = f.explain(p)
	if x.Conntrack.Used || x.Next.By != "scheduler" || f.index(web4, x.Next.Backend) == other {
		t.Errorf("entry on a down backend: conntrack %+v, next %+v", x.Conntrack, x.Next)
	}
	if be, want := f.send(ack), f.index(web4, x.Next.Backend); be != want {
		t.Errorf("entry on a down backend: the next frame went to %d, explain said %d", be, want)
	}
}

// With persistence a new flow of the client, from any port, goes to its
// persistent backend, which explain names; a port whose own slot holds
// another backend shows that persistence decided.
func TestExplainPersistence(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: ps4, Persistence: 300 * time.Second, Backends: weighted(ps4.VIP, 1, 1, 1)})
	const client = "198.18.4.200"
	first := f.connect(syn(ps4, client, 1000))
	checked := 0
	for port := uint16(1001); port < 1200 && checked < 5; port++ {
		p := syn(ps4, client, port)
		x := f.explain(p)
		if x.Persist == nil || !x.Persist.Used || x.NewFlow.By != "persistence" || f.index(ps4, x.NewFlow.Backend) != first || x.OtherPort.Backend != x.NewFlow.Backend {
			t.Fatalf("port %d: persist %+v, new %+v, other %+v, want backend %d", port, x.Persist, x.NewFlow, x.OtherPort, first)
		}
		if f.index(ps4, x.Scheduler.Backend) == first {
			continue // the slot agrees: shows nothing
		}
		checked++
		if be := f.send(p); be != first {
			t.Fatalf("port %d went to %d, explain said %d (persistence)", port, be, first)
		}
	}
	if checked == 0 {
		t.Fatal("no port hashed to another backend than the persistent one")
	}
	// Past the timeout the entry is ignored and the slot decides.
	f.agePersistence(ps4, client, 301*time.Second)
	for port := uint16(2000); port < 2200; port++ {
		p := syn(ps4, client, port)
		x := f.explain(p)
		if x.Persist.Used || x.NewFlow.By != "scheduler" {
			t.Fatalf("expired persistence: persist %+v, new %+v", x.Persist, x.NewFlow)
		}
		if want := f.index(ps4, x.NewFlow.Backend); want != first {
			if be := f.send(p); be != want {
				t.Fatalf("expired persistence: port %d went to %d, explain said %d", port, be, want)
			}
			return
		}
	}
	t.Fatal("no port hashed to another backend than the persistent one")
}
