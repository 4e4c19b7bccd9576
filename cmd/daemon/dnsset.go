package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// The pure part of backends named by DNS: what one lookup does to a name's
// state, and the backend list of each service that the names' states give.
// Nothing here reads a clock, the network or the data plane: tests drive it
// with their own times and answers.

// DNSAnswer is the outcome of one lookup of a name's A or AAAA records.
type DNSAnswer struct {
	// Addrs are the addresses of the answer (any order, duplicates
	// allowed).
	Addrs []netip.Addr
	// TTL is the smallest TTL of the answer's records (CNAMEs included).
	TTL time.Duration
	// NoAddrs: the answer says the name has no such records: NXDOMAIN
	// (Rcode "NXDOMAIN") or an empty answer (Rcode "NODATA").
	NoAddrs bool
	Rcode   string
	// Err is a failure to get an answer: timeout, SERVFAIL, REFUSED,
	// no nameserver. It wins over the other fields.
	Err error
}

// dnsPolicy is the resolvers section's timing.
type dnsPolicy struct {
	minRefresh, maxRefresh, retry, holdNX, drain time.Duration
}

func policyOf(r config.Resolvers) dnsPolicy {
	e := r.Effective()
	return dnsPolicy{
		minRefresh: time.Duration(e.MinRefresh), maxRefresh: time.Duration(e.MaxRefresh),
		retry: time.Duration(e.RetryInterval), holdNX: time.Duration(*e.HoldNXDomain),
		drain: time.Duration(*e.VanishedDrain),
	}
}

// nameState is what xlbd knows of one name and family.
type nameState struct {
	// Addrs is the last good set, sorted: the name's backends.
	Addrs []netip.Addr
	// Leaving are addresses gone from the answers, with when they went:
	// drained backends (weight 0) until their flows end or the policy's
	// drain time passes.
	Leaving map[netip.Addr]time.Time
	// Answered: Addrs came from an answer (this run or, Restored, the
	// state file); false: never resolved yet.
	Answered, Restored bool
	LastSuccess        time.Time
	LastError          string
	LastErrorAt        time.Time
	// Failing: the latest lookup failed (the last good set stays).
	Failing bool
	// NoAddrsSince is the first of the current run of NXDOMAIN/NODATA
	// answers; zero when the latest answer had addresses.
	NoAddrsSince time.Time
	TTL          time.Duration
	// Next is when the name is due for its next lookup.
	Next time.Time
}

func (s nameState) clone() nameState {
	s.Addrs = slices.Clone(s.Addrs)
	if s.Leaving != nil {
		l := make(map[netip.Addr]time.Time, len(s.Leaving))
		for a, t := range s.Leaving {
			l[a] = t
		}
		s.Leaving = l
	}
	return s
}

// refreshAfter is the time until the next lookup after an answer with
// this TTL: the TTL clamped to the policy's bounds.
func (p dnsPolicy) refreshAfter(ttl time.Duration) time.Duration {
	return min(max(ttl, p.minRefresh), p.maxRefresh)
}

// applyAnswer returns the state after answer a at now. A failure keeps the
// last good set; NXDOMAIN/NODATA empties it only after the hold; addresses
// that leave the set go to Leaving, addresses that come back leave it.
func applyAnswer(st nameState, a DNSAnswer, now time.Time, p dnsPolicy) nameState {
	st = st.clone()
	switch {
	case a.Err != nil:
		st.Failing = true
		st.LastError, st.LastErrorAt = a.Err.Error(), now
		st.Next = now.Add(p.retry)
		return st
	case a.NoAddrs:
		st.Failing = false
		why := cmpOr(a.Rcode, "NODATA")
		st.LastError, st.LastErrorAt = why+": the name has no such records", now
		if st.NoAddrsSince.IsZero() {
			st.NoAddrsSince = now
		}
		until := st.NoAddrsSince.Add(p.holdNX)
		st.Answered = true
		if len(st.Addrs) > 0 && now.Before(until) {
			// Held, like HAProxy's "hold nx": a zone being reloaded
			// must not empty a service.
			st.Next = minTime(now.Add(p.retry), until)
			return st
		}
		st.LastSuccess = now
		st.setAddrs(nil, now, p)
		st.Next = now.Add(p.retry)
		return st
	}
	st.Failing = false
	st.Answered, st.Restored = true, false
	st.NoAddrsSince = time.Time{}
	st.LastSuccess, st.TTL = now, a.TTL
	st.setAddrs(a.Addrs, now, p)
	st.Next = now.Add(p.refreshAfter(a.TTL))
	return st
}

// setAddrs makes addrs (sorted, deduplicated) the set; addresses that left
// it start draining, those back in it stop.
func (st *nameState) setAddrs(addrs []netip.Addr, now time.Time, p dnsPolicy) {
	next := sortedUnique(addrs)
	for _, a := range st.Addrs {
		if _, still := slices.BinarySearchFunc(next, a, netip.Addr.Compare); !still && p.drain > 0 {
			if st.Leaving == nil {
				st.Leaving = map[netip.Addr]time.Time{}
			}
			st.Leaving[a] = now
		}
	}
	for _, a := range next {
		delete(st.Leaving, a)
	}
	st.Addrs = next
}

// pruneLeaving drops the leaving addresses that have no active flow left
// (active reports a service's flows on an address; the name's services are
// asked) or drained for the policy's drain time. It reports whether any
// went.
func (st *nameState) pruneLeaving(now time.Time, p dnsPolicy, active func(netip.Addr) uint64) bool {
	gone := false
	for a, since := range st.Leaving {
		if active(a) == 0 || !now.Before(since.Add(p.drain)) {
			delete(st.Leaving, a)
			gone = true
		}
	}
	return gone
}

func sortedUnique(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// expansion is the services as the data plane gets them: every named
// backend replaced by its addresses.
type expansion struct {
	Services []config.Service
	// Origin names the DNS name of each resolved backend, per service.
	Origin map[lb.ServiceKey]map[netip.Addr]config.NameKey
	// Skipped lists, per service and name, the resolved addresses left
	// out and why (also a static backend, also another name's, not a
	// usable backend address).
	Skipped map[lb.ServiceKey]map[config.NameKey][]string
}

// expandServices replaces each named backend of svcs by the addresses of
// its name (names not in states have none yet), in place, sorted, each
// with the entry's weight; a leaving address is drained (weight 0). A
// static backend wins over a resolved address, and the first name over a
// later one.
func expandServices(svcs []config.Service, states map[config.NameKey]nameState) expansion {
	ex := expansion{
		Services: make([]config.Service, len(svcs)),
		Origin:   map[lb.ServiceKey]map[netip.Addr]config.NameKey{},
		Skipped:  map[lb.ServiceKey]map[config.NameKey][]string{},
	}
	for i, s := range svcs {
		if !slices.ContainsFunc(s.Backends, config.Backend.Named) {
			ex.Services[i] = s
			continue
		}
		key, err := s.Key()
		if err != nil {
			ex.Services[i] = s
			continue
		}
		static := map[netip.Addr]bool{}
		for _, b := range s.Backends {
			if a, err := b.Addr(); err == nil {
				static[a] = true
			}
		}
		origin := map[netip.Addr]config.NameKey{}
		skip := func(nk config.NameKey, a netip.Addr, why string) {
			if ex.Skipped[key] == nil {
				ex.Skipped[key] = map[config.NameKey][]string{}
			}
			ex.Skipped[key][nk] = append(ex.Skipped[key][nk], a.String()+": "+why)
		}
		out := s
		out.Backends = make([]config.Backend, 0, len(s.Backends))
		for _, b := range s.Backends {
			if !b.Named() {
				out.Backends = append(out.Backends, b)
				continue
			}
			nk := b.NameKey()
			st := states[nk]
			add := func(a netip.Addr, w uint32) {
				switch other, dup := origin[a]; {
				case static[a]:
					skip(nk, a, "also a static backend (the static one is used)")
				case dup:
					skip(nk, a, "also resolved from "+other.Name+" (that one is used)")
				case key.CheckBackend(a) != nil:
					skip(nk, a, key.CheckBackend(a).Error())
				default:
					origin[a] = nk
					out.Backends = append(out.Backends, config.Backend{Address: a.String(), Weight: &w})
				}
			}
			for _, a := range st.Addrs {
				add(a, *b.Weight)
			}
			leaving := make([]netip.Addr, 0, len(st.Leaving))
			for a := range st.Leaving {
				leaving = append(leaving, a)
			}
			slices.SortFunc(leaving, netip.Addr.Compare)
			for _, a := range leaving {
				add(a, 0)
			}
		}
		ex.Origin[key] = origin
		ex.Services[i] = out
	}
	return ex
}

// namesOf lists the name keys the services use, in order, once each.
func namesOf(svcs []config.Service) []config.NameKey {
	var out []config.NameKey
	for _, s := range svcs {
		for _, b := range s.Backends {
			if b.Named() && !slices.Contains(out, b.NameKey()) {
				out = append(out, b.NameKey())
			}
		}
	}
	return out
}

// addrChange compares two sorted sets.
func addrChange(old, next []netip.Addr) (added, removed, kept []string) {
	added, removed, kept = []string{}, []string{}, []string{}
	for _, a := range next {
		if _, ok := slices.BinarySearchFunc(old, a, netip.Addr.Compare); ok {
			kept = append(kept, a.String())
		} else {
			added = append(added, a.String())
		}
	}
	for _, a := range old {
		if _, ok := slices.BinarySearchFunc(next, a, netip.Addr.Compare); !ok {
			removed = append(removed, a.String())
		}
	}
	return added, removed, kept
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// describeAnswer is a log line's summary of an answer.
func describeAnswer(a DNSAnswer) string {
	switch {
	case a.Err != nil:
		return "failed: " + a.Err.Error()
	case a.NoAddrs:
		return cmpOr(a.Rcode, "NODATA")
	}
	return fmt.Sprintf("%d addresses, ttl %s", len(sortedUnique(a.Addrs)), a.TTL)
}
