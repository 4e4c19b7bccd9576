package lb

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ExplainFlow judges entries as the data plane does: each row changes one
// fact of a maglev flow with a live entry on backend 1, its slot on 2.
func TestExplainFlow(t *testing.T) {
	const now = uint64(1000 * time.Second)
	base := func() FlowFacts {
		return FlowFacts{
			Key: FlowKey{Src: netip.MustParseAddrPort("198.18.2.1:4000"), Dst: netip.MustParseAddrPort("198.18.1.1:80"), Proto: TCP},
			Now: now, Timeouts: DefaultTimeouts, Scheduler: Maglev, TableSize: 7, Slot: 3, SlotBackend: 2,
			Conntrack: &EntryFacts{BackendID: 1, LastSeen: now - uint64(time.Second)},
			Backends: map[uint32]BackendFacts{
				1: {Addr: netip.MustParseAddr("198.18.0.11"), OfService: true, Usable: true, Weight: 1},
				2: {Addr: netip.MustParseAddr("198.18.0.12"), OfService: true, Usable: true, Weight: 1},
				3: {Addr: netip.MustParseAddr("198.18.0.13"), OfService: true, Usable: true, Weight: 1},
			},
		}
	}
	for _, tc := range []struct {
		name      string
		mod       func(*FlowFacts)
		next      Placement // Backend and By compared; Drop too
		newFlow   uint32
		otherPort uint32
		note      string // in Next.Why or an entry's Ignored
	}{
		{"established", func(*FlowFacts) {}, Placement{Backend: 1, By: "conntrack"}, 2, 0, ""},
		{"expired", func(f *FlowFacts) { f.Conntrack.LastSeen = now - uint64(901*time.Second) }, Placement{Backend: 2, By: "scheduler"}, 2, 0, "expired_flows"},
		{"closing, within tcp_fin_timeout", func(f *FlowFacts) { f.Conntrack.Closing = true; f.Conntrack.LastSeen = now - uint64(100*time.Second) },
			Placement{Backend: 1, By: "conntrack"}, 2, 0, "a bare SYN"},
		{"closing, past tcp_fin_timeout", func(f *FlowFacts) { f.Conntrack.Closing = true; f.Conntrack.LastSeen = now - uint64(121*time.Second) },
			Placement{Backend: 2, By: "scheduler"}, 2, 0, "expired_flows"},
		{"udp ignores tcp timeouts", func(f *FlowFacts) { f.Key.Proto = UDP; f.Conntrack.LastSeen = now - uint64(299*time.Second) },
			Placement{Backend: 1, By: "conntrack"}, 2, 0, ""},
		{"backend down", func(f *FlowFacts) { b := f.Backends[1]; b.Usable = false; f.Backends[1] = b }, Placement{Backend: 2, By: "scheduler"}, 2, 0, "reschedules"},
		{"id given to another service", func(f *FlowFacts) { b := f.Backends[1]; b.OfService = false; f.Backends[1] = b }, Placement{Backend: 2, By: "scheduler"}, 2, 0, "another service"},
		{"half-open", func(f *FlowFacts) { f.Conntrack = nil; f.HalfOpen = &EntryFacts{BackendID: 3, LastSeen: now} }, Placement{Backend: 3, By: "half-open"}, 2, 0, ""},
		{"half-open expired", func(f *FlowFacts) {
			f.Conntrack = nil
			f.HalfOpen = &EntryFacts{BackendID: 3, LastSeen: now - uint64(121*time.Second)}
		},
			Placement{Backend: 2, By: "scheduler"}, 2, 0, "tcp_fin_timeout"},
		{"slot empty: drop", func(f *FlowFacts) { f.Conntrack = nil; f.SlotBackend = 0 }, Placement{By: "scheduler", Drop: true}, 0, 0, "drop_no_backend"},
		{"slot's backend down: drop", func(f *FlowFacts) { f.Conntrack = nil; b := f.Backends[2]; b.Usable = false; f.Backends[2] = b },
			Placement{By: "scheduler", Drop: true}, 0, 0, "drop_no_backend"},
		{"persistence", func(f *FlowFacts) {
			f.Conntrack, f.Persistence, f.Persist = nil, time.Minute, &EntryFacts{BackendID: 3, LastSeen: now - uint64(59*time.Second)}
		}, Placement{Backend: 3, By: "persistence"}, 3, 3, ""},
		{"persistence expired", func(f *FlowFacts) {
			f.Conntrack, f.Persistence, f.Persist = nil, time.Minute, &EntryFacts{BackendID: 3, LastSeen: now - uint64(61*time.Second)}
		}, Placement{Backend: 2, By: "scheduler"}, 2, 0, "older than"},
		{"persistent backend failing", func(f *FlowFacts) {
			f.Conntrack, f.Persistence, f.Persist = nil, time.Minute, &EntryFacts{BackendID: 3, LastSeen: now}
			b := f.Backends[3]
			b.Failing, b.Weight = true, 0
			f.Backends[3] = b
		}, Placement{Backend: 2, By: "scheduler"}, 2, 0, "failing"},
		{"persistence off", func(f *FlowFacts) { f.Conntrack, f.Persist = nil, &EntryFacts{BackendID: 3, LastSeen: now} },
			Placement{Backend: 2, By: "scheduler"}, 2, 0, "no persistence"},
		{"source-hash: every port", func(f *FlowFacts) { f.Conntrack, f.Scheduler = nil, SourceHash }, Placement{Backend: 2, By: "scheduler"}, 2, 2, ""},
		{"round-robin: per CPU", func(f *FlowFacts) {
			f.Conntrack, f.Scheduler, f.Cursors = nil, RoundRobin, []CursorFacts{{Slot: 0, Backend: 1}, {Slot: 4, Backend: 3}}
		}, Placement{By: "scheduler"}, 0, 0, "receiving CPU"},
		{"least-conn", func(f *FlowFacts) {
			f.Conntrack, f.Scheduler, f.Candidates, f.Active = nil, LeastConn, []uint32{1, 2, 3}, map[uint32]int64{1: 5, 2: 3, 3: 4}
		}, Placement{Backend: 2, By: "scheduler"}, 2, 2, ""},
		{"least-conn tie: the port decides", func(f *FlowFacts) {
			f.Conntrack, f.Scheduler, f.Candidates, f.Active = nil, LeastConn, []uint32{1, 2, 3}, map[uint32]int64{1: 5, 2: 3, 3: 3}
			f.FlowHash = 2 // the scan starts at 3
		}, Placement{Backend: 3, By: "scheduler"}, 3, 0, ""},
		{"least-conn weights", func(f *FlowFacts) {
			f.Conntrack, f.Scheduler, f.Candidates, f.Active = nil, LeastConn, []uint32{1, 2}, map[uint32]int64{1: 5, 2: 3}
			b := f.Backends[1]
			b.Weight = 3
			f.Backends[1] = b // 6/3 < 4/1
		}, Placement{Backend: 1, By: "scheduler"}, 1, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.mod(&f)
			x := ExplainFlow(f)
			if x.Next.Backend != tc.next.Backend || x.Next.By != tc.next.By || x.Next.Drop != tc.next.Drop {
				t.Errorf("next %+v, want %+v", x.Next, tc.next)
			}
			if x.NewFlow.Backend != tc.newFlow || x.OtherPort.Backend != tc.otherPort {
				t.Errorf("new flow %+v, other port %+v: want %d, %d", x.NewFlow, x.OtherPort, tc.newFlow, tc.otherPort)
			}
			all := x.Next.Why
			for _, e := range []*EntryExplanation{x.Conntrack, x.HalfOpen, x.Persist} {
				if e != nil {
					all += " | " + e.Ignored
				}
			}
			if !strings.Contains(all, tc.note) {
				t.Errorf("no %q in %q", tc.note, all)
			}
		})
	}
}
