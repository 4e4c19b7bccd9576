package daemon

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func ips(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

var testPolicy = dnsPolicy{minRefresh: time.Second, maxRefresh: time.Minute, retry: 5 * time.Second, holdNX: 30 * time.Second, drain: 15 * time.Minute}

// The refresh follows the TTL, clamped to min_refresh and max_refresh.
func TestDNSRefreshClampsTTL(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{0, time.Second}, // TTL 0: min_refresh
		{300 * time.Millisecond, time.Second},
		{2 * time.Second, 2 * time.Second}, // within the bounds: the TTL
		{30 * time.Second, 30 * time.Second},
		{time.Hour, time.Minute}, // max_refresh
	} {
		st := applyAnswer(nameState{}, DNSAnswer{Addrs: ips("198.18.0.11"), TTL: tc.ttl}, t0, testPolicy)
		if got := st.Next.Sub(t0); got != tc.want {
			t.Errorf("ttl %s: next refresh after %s, want %s", tc.ttl, got, tc.want)
		}
	}
	// The resolvers section's defaults and bounds give the policy.
	hold := config.Duration(0)
	p := policyOf(config.Resolvers{MinRefresh: config.Duration(2 * time.Second), MaxRefresh: config.Duration(10 * time.Second), HoldNXDomain: &hold})
	if p.minRefresh != 2*time.Second || p.maxRefresh != 10*time.Second || p.retry != 5*time.Second || p.holdNX != 0 || p.drain != 15*time.Minute {
		t.Errorf("policy %+v", p)
	}
}

// A new address joins, a vanished one leaves through draining, an
// unchanged one stays; A and AAAA sets alike.
func TestDNSJoinLeave(t *testing.T) {
	for _, fam := range []struct{ a, b, c string }{
		{"198.18.0.11", "198.18.0.12", "198.18.0.13"},
		{"2001:2::11", "2001:2::12", "2001:2::13"},
	} {
		st := applyAnswer(nameState{}, DNSAnswer{Addrs: ips(fam.b, fam.a, fam.a), TTL: 2 * time.Second}, t0, testPolicy)
		if !slices.Equal(st.Addrs, ips(fam.a, fam.b)) || !st.Answered || st.Failing {
			t.Fatalf("first answer: %+v", st)
		}
		// Join: c appears.
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a, fam.b, fam.c), TTL: 2 * time.Second}, t0.Add(2*time.Second), testPolicy)
		if !slices.Equal(st.Addrs, ips(fam.a, fam.b, fam.c)) || len(st.Leaving) != 0 {
			t.Fatalf("join: %+v", st)
		}
		// Leave: b goes, and drains.
		t4 := t0.Add(4 * time.Second)
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a, fam.c), TTL: 2 * time.Second}, t4, testPolicy)
		if !slices.Equal(st.Addrs, ips(fam.a, fam.c)) || !st.Leaving[ips(fam.b)[0]].Equal(t4) {
			t.Fatalf("leave: %+v", st)
		}
		// It stays while it has flows, goes when they end.
		flows := uint64(1)
		active := func(netip.Addr) uint64 { return flows }
		if st.pruneLeaving(t4.Add(time.Minute), testPolicy, active) || len(st.Leaving) != 1 {
			t.Fatalf("pruned with a flow left: %+v", st)
		}
		flows = 0
		if !st.pruneLeaving(t4.Add(time.Minute), testPolicy, active) || len(st.Leaving) != 0 {
			t.Fatalf("not pruned without flows: %+v", st)
		}
		// ... or when the drain time is up, flows or not.
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a), TTL: 2 * time.Second}, t4, testPolicy)
		flows = 3
		if !st.pruneLeaving(t4.Add(testPolicy.drain), testPolicy, active) {
			t.Fatalf("not pruned after the drain time: %+v", st)
		}
		// An address that comes back stops leaving.
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a, fam.c)}, t4, testPolicy)
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a)}, t4, testPolicy)
		st = applyAnswer(st, DNSAnswer{Addrs: ips(fam.a, fam.c)}, t4, testPolicy)
		if len(st.Leaving) != 0 || len(st.Addrs) != 2 {
			t.Fatalf("came back: %+v", st)
		}
	}
	// vanished_drain 0: gone at once.
	p := testPolicy
	p.drain = 0
	st := applyAnswer(nameState{}, DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12")}, t0, p)
	st = applyAnswer(st, DNSAnswer{Addrs: ips("198.18.0.11")}, t0, p)
	if len(st.Leaving) != 0 {
		t.Errorf("vanished_drain 0 keeps %v", st.Leaving)
	}
}

// A failed lookup keeps the last good set, says why, and retries at the
// retry interval; NXDOMAIN and NODATA hold the set for hold_nxdomain.
func TestDNSFailureKeepsSet(t *testing.T) {
	good := applyAnswer(nameState{}, DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12"), TTL: 2 * time.Second}, t0, testPolicy)
	t1 := t0.Add(2 * time.Second)
	st := applyAnswer(good, DNSAnswer{Err: errors.New("198.18.0.53:53: timeout after 2s")}, t1, testPolicy)
	if !slices.Equal(st.Addrs, good.Addrs) || !st.Failing || !strings.Contains(st.LastError, "timeout") ||
		!st.LastErrorAt.Equal(t1) || !st.Next.Equal(t1.Add(testPolicy.retry)) || !st.LastSuccess.Equal(t0) {
		t.Fatalf("after a timeout: %+v", st)
	}
	// However long it lasts.
	for i := range 100 {
		st = applyAnswer(st, DNSAnswer{Err: errors.New("answer SERVFAIL")}, t1.Add(time.Duration(i)*time.Hour), testPolicy)
	}
	if !slices.Equal(st.Addrs, good.Addrs) {
		t.Fatalf("failures emptied the set: %+v", st)
	}
	// A success clears Failing and keeps LastError as history.
	st = applyAnswer(st, DNSAnswer{Addrs: ips("198.18.0.11", "198.18.0.12"), TTL: 2 * time.Second}, t1, testPolicy)
	if st.Failing || st.LastError == "" {
		t.Fatalf("after recovery: %+v", st)
	}

	for _, rcode := range []string{"NXDOMAIN", "NODATA"} {
		st := applyAnswer(good, DNSAnswer{NoAddrs: true, Rcode: rcode}, t1, testPolicy)
		if !slices.Equal(st.Addrs, good.Addrs) || st.Failing || !strings.HasPrefix(st.LastError, rcode) || !st.NoAddrsSince.Equal(t1) {
			t.Fatalf("%s: %+v", rcode, st)
		}
		st = applyAnswer(st, DNSAnswer{NoAddrs: true, Rcode: rcode}, t1.Add(29*time.Second), testPolicy)
		if !slices.Equal(st.Addrs, good.Addrs) || !st.Next.Equal(t1.Add(30*time.Second)) {
			t.Fatalf("%s within the hold: %+v (next %s)", rcode, st, st.Next.Sub(t1))
		}
		st = applyAnswer(st, DNSAnswer{NoAddrs: true, Rcode: rcode}, t1.Add(30*time.Second), testPolicy)
		if len(st.Addrs) != 0 || len(st.Leaving) != 2 {
			t.Fatalf("%s after the hold: %+v", rcode, st)
		}
	}
	// A name never resolved has nothing to hold.
	st = applyAnswer(nameState{}, DNSAnswer{NoAddrs: true, Rcode: "NXDOMAIN"}, t0, testPolicy)
	if len(st.Addrs) != 0 || !st.Answered {
		t.Fatalf("NXDOMAIN first: %+v", st)
	}
}

func mustService(t *testing.T, s config.Service) config.Service {
	t.Helper()
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	return s
}

func weight(w uint32) *uint32 { return &w }

// expandServices: static and named backends side by side, a static one
// winning over a resolved address, the first name over a later one, the
// names' weights, leaving ones drained, both families.
func TestDNSExpand(t *testing.T) {
	web4 := config.NameKey{Name: "web.pool.example", Family: "ipv4"}
	web6 := config.NameKey{Name: "web.pool.example", Family: "ipv6"}
	more := config.NameKey{Name: "more.pool.example", Family: "ipv4"}
	svcs := []config.Service{
		mustService(t, config.Service{VIP: "198.18.1.1", Port: 80, Backends: []config.Backend{
			{Address: "198.18.0.11"},
			{Name: "web.pool.example", Weight: weight(2)},
			{Name: "more.pool.example"},
		}}),
		mustService(t, config.Service{VIP: "2001:2::1", Port: 80, Backends: []config.Backend{{Name: "Web.Pool.Example."}}}),
		mustService(t, config.Service{VIP: "198.18.1.2", Port: 80, Backends: []config.Backend{{Address: "198.18.0.99"}}}),
	}
	if got := namesOf(svcs); !slices.Equal(got, []config.NameKey{web4, more, web6}) {
		t.Fatalf("names %v", got)
	}
	states := map[config.NameKey]nameState{
		web4: {Addrs: ips("198.18.0.11", "198.18.0.12", "198.18.0.13"), Leaving: map[netip.Addr]time.Time{netip.MustParseAddr("198.18.0.14"): t0}},
		more: {Addrs: ips("198.18.0.13", "198.18.0.15")},
		web6: {Addrs: ips("2001:2::12")},
	}
	ex := expandServices(svcs, states)
	var got []string
	for _, s := range ex.Services {
		var bs []string
		for _, b := range s.Backends {
			bs = append(bs, b.Address+"="+strconv.FormatUint(uint64(*b.Weight), 10))
		}
		got = append(got, strings.Join(bs, " "))
	}
	want := []string{
		"198.18.0.11=1 198.18.0.12=2 198.18.0.13=2 198.18.0.14=0 198.18.0.15=1",
		"2001:2::12=1",
		"198.18.0.99=1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("expanded:\n%q\nwant\n%q", got, want)
	}
	k1, _ := svcs[0].Key()
	if o := ex.Origin[k1]; o[netip.MustParseAddr("198.18.0.13")] != web4 || o[netip.MustParseAddr("198.18.0.15")] != more {
		t.Errorf("origin %v", o)
	}
	sk := ex.Skipped[k1]
	if len(sk[web4]) != 1 || !strings.Contains(sk[web4][0], "198.18.0.11: also a static backend") ||
		len(sk[more]) != 1 || !strings.Contains(sk[more][0], "198.18.0.13: also resolved from web.pool.example") {
		t.Errorf("skipped %v", sk)
	}
	// The input is not changed: the desired state keeps its names.
	if !svcs[0].Backends[1].Named() || svcs[0].Backends[1].Address != "" {
		t.Errorf("expand changed its input: %+v", svcs[0].Backends[1])
	}
	// A name not resolved yet gives no backend; the service stays.
	ex = expandServices(svcs, nil)
	if len(ex.Services[0].Backends) != 1 || len(ex.Services[1].Backends) != 0 {
		t.Errorf("unresolved: %+v", ex.Services)
	}
}
