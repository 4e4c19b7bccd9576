package api

import "github.com/xlb-lb/xlb/cmd/config"

// Explain is the answer of GET /v1/services/{service}/explain?client=IP:PORT:
// which backend the flow from the client goes to and why, judged from the
// data plane's entries as the data plane judges them.
type Explain struct {
	Service     string          `json:"service"`
	Client      string          `json:"client"`
	Scheduler   string          `json:"scheduler"`
	Persistence config.Duration `json:"persistence"`
	// Conntrack is the flow's connection-table entry, HalfOpen its entry
	// in the half-open TCP table, PersistenceEntry its client's
	// persistence entry; null when there is none.
	Conntrack        *ExplainEntry `json:"conntrack"`
	HalfOpen         *ExplainEntry `json:"half_open"`
	PersistenceEntry *ExplainEntry `json:"persistence_entry"`
	// Slot is the scheduler's part: what it picks for this flow.
	Slot ExplainScheduler `json:"scheduler_pick"`
	// NextPacket is where the flow's next packet (not a bare SYN) goes;
	// NewFlow where this 5-tuple would go with no entry of its own;
	// OtherPort where a new flow from another port of the client goes.
	NextPacket ExplainPlacement `json:"next_packet"`
	NewFlow    ExplainPlacement `json:"new_flow"`
	OtherPort  ExplainPlacement `json:"other_port"`
	// Backends are the state of every backend named above.
	Backends []ExplainBackend `json:"backends"`
}

// ExplainEntry is one entry of the connection, half-open or persistence
// table.
type ExplainEntry struct {
	Backend string `json:"backend"`
	// AgeSeconds is the time since its latest stamp (the flow's last
	// packet, stamped at most once a second).
	AgeSeconds float64 `json:"age_seconds"`
	// Timeout is the age beyond which the data plane ignores it; 0:
	// never.
	Timeout config.Duration `json:"timeout"`
	// State: established, closing (the client's FIN or RST seen), active
	// (UDP), half-open, live (persistence) or expired.
	State string `json:"state"`
	// Used: the data plane places the flow by this entry; else Ignored
	// says why not.
	Used    bool   `json:"used"`
	Ignored string `json:"ignored,omitempty"`
}

// ExplainScheduler is the scheduler's pick for the flow.
type ExplainScheduler struct {
	// How the scheduler picks.
	How string `json:"how"`
	// Hash (hex) and what it hashes: "5-tuple" (maglev, least-conn's scan
	// start) or "client address" (source-hash).
	Hash   string `json:"hash,omitempty"`
	HashOf string `json:"hash_of,omitempty"`
	// Slot of the table (maglev, source-hash), of Size slots.
	Slot *uint32 `json:"slot,omitempty"`
	Size uint32  `json:"size"`
	// Backend in the slot, or least-conn's pick now; empty: none.
	Backend string `json:"backend,omitempty"`
	// Cursors are round-robin's per-CPU cursors.
	Cursors []ExplainCursor `json:"cursors,omitempty"`
	// Candidates are least-conn's scan, from its start.
	Candidates []ExplainCandidate `json:"candidates,omitempty"`
}

// ExplainCursor is one CPU's round-robin cursor.
type ExplainCursor struct {
	CPU     int    `json:"cpu"`
	Slot    uint32 `json:"slot"`
	Backend string `json:"backend"`
}

// ExplainCandidate is one backend of least-conn's scan.
type ExplainCandidate struct {
	Backend string `json:"backend"`
	Active  int64  `json:"active"`
	Weight  uint32 `json:"weight"`
	// Eligible: usable with a weight above 0.
	Eligible bool `json:"eligible"`
}

// ExplainPlacement is where a packet goes and by what.
type ExplainPlacement struct {
	// Backend is empty when the packet is dropped or the answer depends
	// on what Why names (the receiving CPU: Choices; the source port).
	Backend string `json:"backend,omitempty"`
	// By: conntrack, half-open, persistence or scheduler.
	By string `json:"by"`
	// Drop: no usable backend, dropped (drop_no_backend).
	Drop bool `json:"drop,omitempty"`
	// Choices: one backend per CPU (round-robin).
	Choices []string `json:"choices,omitempty"`
	Why     string   `json:"why"`
}

// ExplainBackend is the state of a backend an explanation names.
type ExplainBackend struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	// State is StateUp, StateDown, StateDrain or StateNoMAC, or "gone"
	// (not a backend of the service any more) or "other-service".
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	Usable bool   `json:"usable"`
}
