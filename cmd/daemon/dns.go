package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// dnsState is the daemon's side of backends named by DNS: each name's
// state, the resolvers section, and what wakes the resolver loop. Fields
// are guarded by daemon.mu but for lookup, clock and wake.
type dnsState struct {
	lookup func(context.Context, config.NameKey, config.Resolvers) DNSAnswer
	clock  func() time.Time
	wake   chan struct{}

	opts   config.Resolvers // normalised, defaults not applied
	names  map[config.NameKey]nameState
	counts map[string]uint64 // lookups by result, for metrics
}

func newDNSState(lookup func(context.Context, config.NameKey, config.Resolvers) DNSAnswer, clock func() time.Time) *dnsState {
	if lookup == nil {
		lookup = lookupDNS
	}
	if clock == nil {
		clock = time.Now
	}
	return &dnsState{lookup: lookup, clock: clock, wake: make(chan struct{}, 1),
		names: map[config.NameKey]nameState{}, counts: map[string]uint64{}}
}

func (s *dnsState) policy() dnsPolicy { return policyOf(s.opts) }

// resolversOf is the resolvers section, the zero value when absent.
func resolversOf(r *config.Resolvers) config.Resolvers {
	if r == nil {
		return config.Resolvers{}
	}
	return *r.Clone()
}

// forgetUnused forgets the names no service of svcs names any more.
// Callers hold daemon.mu.
func (s *dnsState) forgetUnused(svcs []config.Service) {
	want := namesOf(svcs)
	for k := range s.names {
		if !slices.Contains(want, k) {
			delete(s.names, k)
		}
	}
}

// track adds the names of svcs not resolved yet: they are due now.
// Callers hold daemon.mu.
func (s *dnsState) track(svcs []config.Service) {
	fresh := false
	for _, k := range namesOf(svcs) {
		if _, ok := s.names[k]; !ok {
			s.names[k] = nameState{}
			fresh = true
		}
	}
	if fresh {
		s.kick()
	}
}

// kick wakes the resolver loop (coalesced).
func (s *dnsState) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// restore seeds the names' last good sets from the state file: a restart
// serves them until the first answer, even while DNS is down.
func (s *dnsState) restore(saved []persistedName) {
	for _, p := range saved {
		k := config.NameKey{Name: p.Name, Family: p.Family}
		st := nameState{Answered: true, Restored: true, LastSuccess: p.Resolved}
		for _, a := range p.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				st.Addrs = append(st.Addrs, addr.Unmap())
			}
		}
		st.Addrs = sortedUnique(st.Addrs)
		for _, l := range p.Leaving {
			if addr, err := netip.ParseAddr(l.Address); err == nil {
				if st.Leaving == nil {
					st.Leaving = map[netip.Addr]time.Time{}
				}
				st.Leaving[addr.Unmap()] = l.Since
			}
		}
		s.names[k] = st
	}
}

// saved is what the state file keeps of the names.
func (s *dnsState) saved(svcs []config.Service) []persistedName {
	var out []persistedName
	for _, k := range namesOf(svcs) {
		st, ok := s.names[k]
		if !ok || !st.Answered {
			continue
		}
		p := persistedName{Name: k.Name, Family: k.Family, Addresses: []string{}, Resolved: st.LastSuccess}
		for _, a := range st.Addrs {
			p.Addresses = append(p.Addresses, a.String())
		}
		for a, since := range st.Leaving {
			p.Leaving = append(p.Leaving, persistedLeaving{Address: a.String(), Since: since})
		}
		slices.SortFunc(p.Leaving, func(a, b persistedLeaving) int { return cmpString(a.Address, b.Address) })
		out = append(out, p)
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// runDNS resolves every name when it is due, and prunes drained leaving
// addresses, until ctx ends.
func (d *Daemon) runDNS(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.mu.Lock()
		now := d.dns.clock()
		var due []config.NameKey
		next := now.Add(time.Hour)
		leaving := false
		if d.started {
			for k, st := range d.dns.names {
				if !st.Next.After(now) {
					due = append(due, k)
				} else {
					next = minTime(next, st.Next)
				}
				leaving = leaving || len(st.Leaving) > 0
			}
		}
		opts := d.dns.opts
		d.mu.Unlock()
		if len(due) > 0 {
			answers := d.lookupAll(ctx, due, opts)
			if ctx.Err() != nil {
				// Shutting down: lookups cut short are no DNS failures.
				return
			}
			// A failed commit is logged and kept in the names' states.
			_, _ = d.applyLookups(answers)
			continue
		}
		if leaving {
			d.pruneLeaving()
			next = minTime(next, now.Add(time.Second))
		}
		t.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-d.dns.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// lookupAll resolves names concurrently.
func (d *Daemon) lookupAll(ctx context.Context, names []config.NameKey, opts config.Resolvers) map[config.NameKey]DNSAnswer {
	out := make(map[config.NameKey]DNSAnswer, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range names {
		wg.Go(func() {
			a := d.dns.lookup(ctx, k, opts)
			mu.Lock()
			out[k] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// applyLookups applies answers to the names' states and, when a set
// changed, the services' new backend lists through commit, the path every
// change takes. If commit refuses them, the names keep their previous sets
// and say why, and are due again after the retry interval; the commit's
// error is returned. It returns each name's state before and after.
func (d *Daemon) applyLookups(answers map[config.NameKey]DNSAnswer) (map[config.NameKey][2]nameState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.dns.clock()
	p := d.dns.policy()
	out := map[config.NameKey][2]nameState{}
	changed := false
	for k, a := range answers {
		old, ok := d.dns.names[k]
		if !ok {
			continue // no service names it any more
		}
		st := applyAnswer(old, a, now, p)
		d.dns.names[k] = st
		out[k] = [2]nameState{old, st}
		d.dns.counts[resultOf(a)]++
		if !slices.Equal(old.Addrs, st.Addrs) || len(old.Leaving) != len(st.Leaving) {
			changed = true
			added, removed, _ := addrChange(old.Addrs, st.Addrs)
			d.log.Info("dns: name's addresses changed", "name", k.Name, "family", k.Family, "added", added, "removed", removed)
		}
		if a.Err != nil || a.NoAddrs {
			d.log.Warn("dns: lookup", "name", k.Name, "family", k.Family, "result", describeAnswer(a), "kept", len(st.Addrs))
		}
	}
	var err error
	if changed && d.started {
		if err = d.commit(desiredState{d.desired, d.bgpCfg}, d.configHash); err != nil {
			d.log.Error("dns: resolved addresses not applied; the names keep their previous sets", "err", err)
			for k, pair := range out {
				st := d.dns.names[k]
				st.Addrs, st.Leaving = pair[0].Addrs, pair[0].clone().Leaving
				st.LastError, st.LastErrorAt, st.Failing = "resolved, but not applied: "+err.Error(), now, true
				st.Next = now.Add(p.retry)
				d.dns.names[k] = st
				out[k] = [2]nameState{pair[0], st}
			}
		}
	}
	return out, err
}

// pruneLeaving removes leaving addresses whose flows have ended (or whose
// drain time is up), through commit.
func (d *Daemon) pruneLeaving() {
	snap, err := d.dp.Snapshot()
	if err != nil {
		d.log.Error("dns: read the active flows of leaving backends", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.dns.clock()
	p := d.dns.policy()
	users := map[config.NameKey][]lb.ServiceKey{}
	eachNamed(d.desired, func(key lb.ServiceKey, b config.Backend) {
		users[b.NameKey()] = append(users[b.NameKey()], key)
	})
	old := map[config.NameKey]nameState{}
	for k, st := range d.dns.names {
		if len(st.Leaving) == 0 {
			continue
		}
		prev := st
		st = st.clone()
		active := func(a netip.Addr) uint64 {
			var n uint64
			for _, key := range users[k] {
				n += snap.Services[key].Backends[a].Active
			}
			return n
		}
		if st.pruneLeaving(now, p, active) {
			d.dns.names[k] = st
			old[k] = prev
		}
	}
	if len(old) > 0 {
		if err := d.commit(desiredState{d.desired, d.bgpCfg}, d.configHash); err != nil {
			d.log.Error("dns: remove drained backends", "err", err)
			// Not removed: they stay leaving, as the data plane has them.
			maps.Copy(d.dns.names, old)
		}
	}
}

func resultOf(a DNSAnswer) string {
	switch {
	case a.Err != nil:
		return "error"
	case a.NoAddrs && a.Rcode == "NXDOMAIN":
		return "nxdomain"
	case a.NoAddrs:
		return "nodata"
	}
	return "success"
}

// resolveTimeout bounds a resolve request's lookups (each ends after its
// own timeout and attempts anyway).
const resolveTimeout = 5 * time.Minute

// resolveService resolves the names of one service now and answers what
// changed (xlbctl service resolve).
func (d *Daemon) resolveService(ctx context.Context, key lb.ServiceKey) (api.ResolveResult, error) {
	d.mu.Lock()
	i := findService(d.desired, key)
	var names []config.NameKey
	if i >= 0 {
		names = namesOf(d.desired[i : i+1])
	}
	opts := d.dns.opts
	d.mu.Unlock()
	if i < 0 {
		return api.ResolveResult{}, notFound("service %s: no such service", key)
	}
	res := api.ResolveResult{Service: key.String(), Names: []api.NameChange{}}
	if len(names) == 0 {
		return res, nil
	}
	pairs, err := d.applyLookups(d.lookupAll(ctx, names, opts))
	if err != nil {
		// Not the request's fault (whatever commit called it): a 500.
		return api.ResolveResult{}, fmt.Errorf("service %s: resolved, but not applied (the names keep their previous sets): %s", key, err.Error())
	}
	for _, k := range names {
		pair, ok := pairs[k]
		if !ok {
			continue
		}
		c := api.NameChange{Name: k.Name, Family: k.Family}
		c.Added, c.Removed, c.Kept = addrChange(pair[0].Addrs, pair[1].Addrs)
		if pair[1].Failing || !pair[1].NoAddrsSince.IsZero() {
			c.Error = pair[1].LastError
		}
		res.Names = append(res.Names, c)
	}
	return res, nil
}

// nameStatus is the status of one named backend entry. Callers hold
// daemon.mu.
func (s *dnsState) nameStatus(b config.Backend, skipped []string) api.NameStatus {
	k := b.NameKey()
	st := s.names[k]
	ns := api.NameStatus{Name: k.Name, Family: k.Family, Weight: weightOf(b), Addresses: []string{},
		LastSuccess: st.LastSuccess, LastError: st.LastError, LastErrorAt: st.LastErrorAt,
		TTL: config.Duration(st.TTL), NextRefresh: st.Next, Skipped: skipped}
	for _, a := range st.Addrs {
		ns.Addresses = append(ns.Addresses, a.String())
	}
	for a := range st.Leaving {
		ns.Leaving = append(ns.Leaving, a.String())
	}
	slices.Sort(ns.Leaving)
	p := s.policy()
	switch {
	case !st.Answered:
		ns.State = api.NamePending
	case st.Failing:
		ns.State = api.NameFailing
	case !st.NoAddrsSince.IsZero() && len(st.Addrs) > 0:
		ns.State = api.NameHeld
		ns.HeldUntil = st.NoAddrsSince.Add(p.holdNX)
	case st.Restored:
		ns.State = api.NameRestored
	default:
		ns.State = api.NameOK
	}
	return ns
}

// eachNamed calls fn with every named backend entry of svcs and its
// service's key, in order.
func eachNamed(svcs []config.Service, fn func(lb.ServiceKey, config.Backend)) {
	for _, s := range svcs {
		key, err := s.Key()
		if err != nil {
			continue
		}
		for _, b := range s.Backends {
			if b.Named() {
				fn(key, b)
			}
		}
	}
}
