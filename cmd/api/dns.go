package api

import (
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

// States of a backend name in NameStatus.State.
const (
	NameOK       = "ok"       // the latest lookup answered with addresses
	NamePending  = "pending"  // not resolved yet: no backends from it
	NameFailing  = "failing"  // the latest lookup failed: the last good set stays
	NameHeld     = "held"     // NXDOMAIN/NODATA: the last good set stays until HeldUntil
	NameRestored = "restored" // the set saved before a restart, until the first answer
)

// NameStatus is one backend entry named by DNS and what it resolved to.
type NameStatus struct {
	Name   string `json:"name"`
	Family string `json:"family"`
	// Weight is the entry's weight, each address's.
	Weight uint32 `json:"weight"`
	// State is NameOK, NamePending, NameFailing, NameHeld or
	// NameRestored.
	State string `json:"state"`
	// Addresses are the last good set: the backends the name gives.
	Addresses []string `json:"addresses"`
	// Leaving are addresses gone from the answers, drained (weight 0)
	// until their flows end.
	Leaving []string `json:"leaving,omitempty"`
	// Skipped are resolved addresses not used, with why (also a static
	// backend, ...).
	Skipped     []string  `json:"skipped,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the latest failed lookup or NXDOMAIN/NODATA answer,
	// kept after later successes (see State for the present).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// TTL is the latest answer's smallest TTL.
	TTL config.Duration `json:"ttl"`
	// NextRefresh is when the name is resolved again.
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	// HeldUntil is when a held set (State NameHeld) is emptied.
	HeldUntil time.Time `json:"held_until,omitzero"`
}

// ResolveResult answers POST /v1/services/{service}/resolve: each name of
// the service looked up again, and what changed.
type ResolveResult struct {
	Service string       `json:"service"`
	Names   []NameChange `json:"names"`
}

// NameChange is what one lookup changed in a name's set.
type NameChange struct {
	Name    string   `json:"name"`
	Family  string   `json:"family"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Kept    []string `json:"kept"`
	// Error is why the lookup gave no new set (failure, or NXDOMAIN/
	// NODATA held); the set stays.
	Error string `json:"error,omitempty"`
}
