package lb

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// This file answers "why did my request land there?": FlowFacts is what
// the data plane holds for one flow, read key by key (its connection-table
// and half-open entries, its client's persistence entry, the scheduler's
// slot and the backends they name); ExplainFlow judges them as bpf/xlb.c
// does (flow_lookup, halfopen_flow, pick, persisted, schedule, least_conn)
// and says where the flow's next packet goes, and a new flow's.

// FlowFacts is what the data plane holds for one flow of one service.
type FlowFacts struct {
	Key FlowKey
	// Now is CLOCK_MONOTONIC in ns, the clock of the entries' LastSeen.
	Now         uint64
	Timeouts    Timeouts
	Scheduler   Scheduler
	Persistence time.Duration
	// TableSize is the number of slots of every scheduler table.
	TableSize uint32
	// The flow's connection-table and half-open entries and its client's
	// persistence entry; nil when there is none.
	Conntrack, HalfOpen, Persist *EntryFacts
	// Backends holds every backend id the entries and the scheduler name,
	// as the backends map has it.
	Backends map[uint32]BackendFacts
	// FlowHash is the data plane's hash of the 5-tuple (maglev's slot,
	// least-conn's scan start), ClientHash of the client address
	// (source-hash's slot).
	FlowHash, ClientHash uint32
	// Slot is the maglev or source-hash slot of the flow, SlotBackend the
	// backend id in it (0: empty).
	Slot, SlotBackend uint32
	// Cursors are round-robin's per-CPU cursors, in CPU order.
	Cursors []CursorFacts
	// Candidates are least-conn's backend ids, in table order (slots
	// 1..n), and Active their active-flow counts as stored.
	Candidates []uint32
	Active     map[uint32]int64
}

// EntryFacts is one entry of the connection, half-open or persistence
// table.
type EntryFacts struct {
	BackendID uint32
	// LastSeen is CLOCK_MONOTONIC ns of the entry's latest stamp.
	LastSeen uint64
	// Closing: the client sent FIN or RST (connection table only).
	Closing bool
}

// BackendFacts is one backend id's entry in the backends map.
type BackendFacts struct {
	// Addr is the zero Addr for an id no backend holds.
	Addr netip.Addr
	// OfService: the entry belongs to the flow's service.
	OfService bool
	Usable    bool
	Failing   bool
	Weight    uint32
	// MAC is nil while unknown (or for an encapsulated service's).
	MAC net.HardwareAddr
}

// CursorFacts is one CPU's round-robin cursor: the slot its next pick
// reads (after the data plane's wrap to 0) and the backend id there.
type CursorFacts struct {
	Slot, Backend uint32
}

// FlowExplanation is ExplainFlow's answer. Backends are ids, keys of the
// facts' Backends.
type FlowExplanation struct {
	Conntrack, HalfOpen, Persist *EntryExplanation
	Scheduler                    SchedulerExplanation
	// Next is where the flow's next packet (not a bare SYN) goes.
	Next Placement
	// NewFlow is where this 5-tuple would go with no entry of its own
	// (a new connection from the same port); OtherPort where a new flow
	// from another port of the client goes.
	NewFlow, OtherPort Placement
}

// EntryExplanation judges one entry as the data plane would.
type EntryExplanation struct {
	Backend uint32
	// Age is the time since the entry's latest stamp (never below 0: a
	// CPU may stamp after Now was read).
	Age time.Duration
	// Timeout is the age beyond which the data plane ignores it (0:
	// never).
	Timeout time.Duration
	// State is established, closing (FIN or RST seen), active (UDP),
	// half-open, live (persistence), or expired.
	State string
	// Used: the data plane places the flow by this entry; else Ignored
	// says why it does not.
	Used    bool
	Ignored string
}

// SchedulerExplanation is the scheduler's part.
type SchedulerExplanation struct {
	Scheduler Scheduler
	// Hash is the hash the scheduler uses (the 5-tuple's for maglev and
	// least-conn, the client address's for source-hash), HashOf names it.
	Hash   uint32
	HashOf string
	// Slot and Size: maglev and source-hash; Backend the id in the slot
	// (0: empty).
	Slot, Size, Backend uint32
	// Cursors: round-robin's per-CPU cursors.
	Cursors []CursorFacts
	// Candidates: least-conn's scan, from its start; Backend is its pick.
	Candidates []Candidate
	// How says how the scheduler picks.
	How string
}

// Candidate is one backend of a least-conn scan.
type Candidate struct {
	Backend uint32
	Active  int64
	Weight  uint32
	// Eligible: usable, of the service, weight above 0.
	Eligible bool
}

// Placement is where a packet goes and by what.
type Placement struct {
	// Backend is 0 when it is dropped (Drop) or cannot be told
	// (Choices, or the port decides).
	Backend uint32
	// By is conntrack, half-open, persistence or scheduler.
	By string
	// Drop: no usable backend, the packet is dropped (drop_no_backend).
	Drop bool
	// Choices are the backends it may go to when the receiving CPU
	// decides (round-robin), one per CPU.
	Choices []uint32
	Why     string
}

// ExplainFlow judges the facts as the data plane does.
func ExplainFlow(f FlowFacts) FlowExplanation {
	var e FlowExplanation
	usable := func(id uint32) bool {
		b, ok := f.Backends[id]
		return id != 0 && ok && b.Usable && b.OfService
	}
	unusable := func(id uint32) string {
		b, ok := f.Backends[id]
		switch {
		case id == 0 || !ok || !b.Addr.IsValid():
			return fmt.Sprintf("backend id %d is no longer installed", id)
		case !b.OfService:
			return fmt.Sprintf("backend id %d now belongs to another service", id)
		}
		return "its backend is not usable (down, or MAC unknown)"
	}
	age := func(last uint64) time.Duration { return time.Duration(max(int64(f.Now-last), 0)) }

	// pick: the client's persistence entry first, then the scheduler.
	var persisted uint32
	if p := f.Persist; p != nil {
		x := &EntryExplanation{Backend: p.BackendID, Age: age(p.LastSeen), Timeout: f.Persistence, State: "live"}
		switch {
		case f.Persistence == 0:
			x.Ignored = "the service has no persistence (the entry is left for the sweep)"
		case int64(f.Now-p.LastSeen) > int64(f.Persistence):
			x.State, x.Ignored = "expired", "older than the service's persistence"
		case !usable(p.BackendID):
			x.Ignored = unusable(p.BackendID)
		case f.Backends[p.BackendID].Failing:
			x.Ignored = "its backend is failing its health check (a drained backend keeps no persistent client then)"
		default:
			x.Used = true
			persisted = p.BackendID
		}
		e.Persist = x
	}
	e.Scheduler = explainScheduler(f, usable)
	s := e.Scheduler
	byScheduler := func(port string) Placement {
		pl := Placement{By: "scheduler"}
		switch f.Scheduler {
		case RoundRobin:
			for _, c := range s.Cursors {
				pl.Choices = append(pl.Choices, c.Backend)
			}
			if len(pl.Choices) > 0 && allSame(pl.Choices) {
				pl.Backend, pl.Choices = pl.Choices[0], nil
			}
			pl.Why = "round-robin: the next slot of the receiving CPU's cursor"
		case Maglev:
			if port != "" {
				pl.Why = "maglev: each source port hashes to its own slot (explain that port)"
				return pl
			}
			pl.Backend = s.Backend
			pl.Why = fmt.Sprintf("maglev: 5-tuple hash %#08x, slot %d of %d", s.Hash, s.Slot, s.Size)
		case SourceHash:
			pl.Backend = s.Backend
			pl.Why = fmt.Sprintf("source-hash: client hash %#08x, slot %d of %d (every port of the client)", s.Hash, s.Slot, s.Size)
		case LeastConn:
			pl.Backend = s.Backend
			pl.Why = "least-conn: fewest active flows per weight now"
			if port != "" && leastConnTie(s.Candidates) {
				pl.Backend = 0
				pl.Why = "least-conn: fewest active flows per weight; a tie, broken by the port's hash (explain that port)"
			}
		}
		switch {
		case pl.Choices != nil:
			for _, id := range pl.Choices {
				if !usable(id) {
					pl.Why += "; a CPU whose slot holds no usable backend drops it (drop_no_backend)"
					break
				}
			}
		case pl.Backend != 0 || !strings.Contains(pl.Why, "explain that port"):
			// The pick is known: usable_backend() decides.
			if !usable(pl.Backend) {
				pl.Drop, pl.Backend = true, 0
				pl.Why += "; no usable backend there: dropped (drop_no_backend) until the daemon rebuilds the table"
			}
		}
		return pl
	}
	pick := func(port string) Placement {
		if persisted != 0 {
			return Placement{Backend: persisted, By: "persistence", Why: "the client's persistence entry"}
		}
		pl := byScheduler(port)
		if f.Persistence > 0 {
			pl.Why += "; the client is then remembered for persistence"
		}
		return pl
	}
	e.NewFlow = pick("")
	e.OtherPort = pick("other")

	// The flow's next packet: its connection-table entry, then (TCP) its
	// half-open entry, then pick.
	if c := f.Conntrack; c != nil {
		x := &EntryExplanation{Backend: c.BackendID, Age: age(c.LastSeen), Timeout: f.Timeouts.Of(f.Key.Proto, c.Closing), State: "established"}
		switch {
		case f.Key.Proto == UDP:
			x.State = "active"
		case c.Closing:
			x.State = "closing"
		}
		switch {
		case f.Timeouts.Expired(f.Key.Proto, c.Closing, c.LastSeen, f.Now):
			x.State, x.Ignored = "expired", "idle beyond its timeout: the next packet is a new flow (expired_flows)"
		case !usable(c.BackendID):
			x.Ignored = unusable(c.BackendID) + ": the next packet reschedules the flow (reschedules)"
		default:
			x.Used = true
			e.Next = Placement{Backend: c.BackendID, By: "conntrack", Why: "the flow's connection-table entry"}
			if c.Closing {
				e.Next.Why += " (a bare SYN from this port would start a new connection instead)"
			}
		}
		e.Conntrack = x
	}
	if h := f.HalfOpen; h != nil && f.Key.Proto == TCP {
		x := &EntryExplanation{Backend: h.BackendID, Age: age(h.LastSeen), Timeout: f.Timeouts.TCPFin, State: "half-open"}
		switch {
		case e.Next.By != "":
			x.Ignored = "the connection-table entry comes first"
		case f.Timeouts.Expired(TCP, true, h.LastSeen, f.Now):
			x.State, x.Ignored = "expired", "older than tcp_fin_timeout"
		case !usable(h.BackendID):
			x.Ignored = unusable(h.BackendID)
		default:
			x.Used = true
			e.Next = Placement{Backend: h.BackendID, By: "half-open", Why: "the flow's half-open entry: its next packet (the handshake's ACK) moves it to the connection table"}
		}
		e.HalfOpen = x
	}
	if e.Next.By == "" {
		e.Next = e.NewFlow
		if f.Key.Proto == TCP && f.Conntrack == nil {
			e.Next.Why += "; recorded in the half-open table until the flow's next packet"
		}
	}
	return e
}

// explainScheduler works out the scheduler's pick for the flow.
func explainScheduler(f FlowFacts, usable func(uint32) bool) SchedulerExplanation {
	s := SchedulerExplanation{Scheduler: f.Scheduler, Size: f.TableSize}
	switch f.Scheduler {
	case Maglev:
		s.Hash, s.HashOf, s.Slot, s.Backend = f.FlowHash, "5-tuple", f.Slot, f.SlotBackend
		s.How = "the 5-tuple's hash picks a slot of the Maglev table"
	case SourceHash:
		s.Hash, s.HashOf, s.Slot, s.Backend = f.ClientHash, "client address", f.Slot, f.SlotBackend
		s.How = "the client address's hash picks a slot of the Maglev table"
	case RoundRobin:
		s.Cursors = f.Cursors
		s.How = "each CPU's cursor walks the weighted sequence; the CPU that receives the packet (RSS) decides"
	case LeastConn:
		s.Hash, s.HashOf = f.FlowHash, "5-tuple"
		s.How = "the backend with the fewest active flows per weight; the scan starts at the 5-tuple's hash, so ties spread"
		n := uint32(len(f.Candidates))
		if n == 0 {
			break
		}
		var bestLoad, bestW uint64
		start := f.FlowHash % n
		for i := range n {
			slot := (start + i) % n
			id := f.Candidates[slot]
			b := f.Backends[id]
			c := Candidate{Backend: id, Active: f.Active[id], Weight: b.Weight, Eligible: usable(id) && b.Weight > 0}
			s.Candidates = append(s.Candidates, c)
			if !c.Eligible {
				continue
			}
			load, w := c.load()
			if s.Backend == 0 || load*bestW < bestLoad*w {
				s.Backend, bestLoad, bestW = id, load, w
			}
		}
	}
	return s
}

// load is lc_step's (active+1, weight): counts below 0 (between a close
// and the daemon's correction) count as 0.
func (c Candidate) load() (uint64, uint64) {
	if c.Active > 0 {
		return uint64(c.Active) + 1, uint64(c.Weight)
	}
	return 1, uint64(c.Weight)
}

// leastConnTie reports whether more than one eligible candidate has the
// least load per weight: then the scan's start, the port's hash, decides.
func leastConnTie(cs []Candidate) bool {
	n := 0
	var bl, bw uint64
	for _, c := range cs {
		if !c.Eligible {
			continue
		}
		load, w := c.load()
		switch {
		case n == 0 || load*bw < bl*w:
			n, bl, bw = 1, load, w
		case load*bw == bl*w:
			n++
		}
	}
	return n > 1
}

func allSame(ids []uint32) bool {
	for _, id := range ids {
		if id != ids[0] {
			return false
		}
	}
	return true
}
