package loader

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
)

// MonotonicNow is CLOCK_MONOTONIC in nanoseconds, the clock of
// the last-seen times of flows and persistence entries, which the data
// plane stamps with bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE: behind
// CLOCK_MONOTONIC by at most a tick, nothing at second-scale timeouts).
func MonotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return uint64(ts.Nano())
}

// Sweep deletes connection-table entries idle beyond their timeout and
// persistence entries older than their service's persistence (or of a
// service that no longer has it), then rewrites every installed backend's
// active-flow count from the entries left: flows not closing and not
// expired. now is MonotonicNow() (a parameter for tests).
//
// The rewrite races with the data plane: a flow that starts or closes
// while the table is walked may be missed or counted twice until the next
// sweep. The counts steer least-conn; they are not billing.
func (b *Balancer) Sweep(now uint64) (lb.SweepResult, error) {
	var res lb.SweepResult
	to, err := b.cfgMap.Timeouts()
	if err != nil {
		return res, err
	}
	counts := map[uint32]uint64{}
	var expired []lb.FlowKey
	err = b.conntrack.Iterate(func(k lb.FlowKey, f maps.Flow) bool {
		if maps.Expired(to, k.Proto, f, now) {
			expired = append(expired, k)
			return true
		}
		res.Flows++
		if !f.Closing {
			counts[f.BackendID]++
		}
		return true
	})
	if err != nil {
		return res, err
	}
	for _, k := range expired {
		// A packet may have revived the entry since it was read: check
		// again right before deleting.
		if f, ok, err := b.conntrack.Lookup(k); err != nil || !ok || !maps.Expired(to, k.Proto, f, MonotonicNow()) {
			if ok {
				res.Flows++
			}
			continue
		}
		if err := b.conntrack.Delete(k); err != nil {
			return res, err
		}
		res.Expired++
	}

	b.mu.Lock()
	persistOf := make(map[uint32]time.Duration, len(b.services))
	var ids []uint32
	for _, st := range b.services {
		persistOf[st.id] = st.cfg.Persistence
		for _, id := range st.ids {
			ids = append(ids, id)
		}
	}
	b.mu.Unlock()

	for _, id := range ids {
		cur, err := b.active.Get(id)
		if err != nil {
			return res, err
		}
		if cur != int64(counts[id]) {
			if err := b.active.Set(id, counts[id]); err != nil {
				return res, err
			}
			res.Corrected++
		}
	}

	var stale []maps.PersistKey
	err = b.persist.Iterate(func(k maps.PersistKey, p maps.Persistence) bool {
		if d := persistOf[k.ServiceID]; d == 0 || int64(now-p.LastSeen) > int64(d) {
			stale = append(stale, k)
		}
		return true
	})
	if err != nil {
		return res, err
	}
	for _, k := range stale {
		p, ok, err := b.persist.Lookup(k)
		if err != nil {
			return res, err
		}
		if d := persistOf[k.ServiceID]; !ok || (d > 0 && int64(MonotonicNow()-p.LastSeen) <= int64(d)) {
			continue // refreshed since it was read
		}
		if err := b.persist.Delete(k); err != nil {
			return res, err
		}
		res.PersistExpired++
	}
	n, err := b.sweepHalfOpen(to, now)
	res.HalfOpenExpired = n
	return res, err
}

// sweepHalfOpen deletes half-open entries older than the TCP FIN timeout
// (the data plane ignores them already; the LRU would reuse them only
// under pressure).
func (b *Balancer) sweepHalfOpen(to lb.Timeouts, now uint64) (int, error) {
	expired := func(f maps.Flow, now uint64) bool {
		f.Closing = true // half-open entries live the FIN timeout
		return maps.Expired(to, lb.TCP, f, now)
	}
	var stale []lb.FlowKey
	err := b.halfopen.Iterate(func(k lb.FlowKey, f maps.Flow) bool {
		if expired(f, now) {
			stale = append(stale, k)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range stale {
		f, ok, err := b.halfopen.Lookup(k)
		if err != nil {
			return n, err
		}
		if !ok || !expired(f, MonotonicNow()) {
			continue // a retransmitted SYN or a new one since
		}
		if err := b.halfopen.Delete(k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
