package loader_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// vipFilterBits reads b's VIP filter.
func vipFilterBits(t *testing.T, b *loader.Balancer) bpf.VipFilter {
	t.Helper()
	v, err := maps.NewVIPFilter(loader.MapOf(b, bpf.MapVipFilter)).Get()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantFilter is the bitmap of vips.
func wantFilter(vips ...netip.Addr) bpf.VipFilter {
	var v bpf.VipFilter
	for _, a := range vips {
		s := maps.VIPSlot(a)
		v.Bits[s/64] |= 1 << (s % 64)
	}
	return v
}

// The VIP filter holds exactly the installed VIPs' bits, and the data
// plane folds an address to the bit the loader set: frames to many VIPs
// of both families, scattered over the filter, are all served.
func TestVIPFilter(t *testing.T) {
	f := newFixture(t)
	if got, want := vipFilterBits(t, f.b), wantFilter(web4.VIP, web6.VIP, empty4.VIP, sh4.VIP); got != want {
		t.Fatal("filter after setup: not the bits of the fixture's VIPs")
	}
	rng := rand.New(rand.NewPCG(15, 15))
	vips := []netip.Addr{web4.VIP, web6.VIP, empty4.VIP, sh4.VIP}
	var keys []lb.ServiceKey
	for i := 0; i < 40; i++ {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
		} else {
			b := netip.MustParseAddr("2001:2::").As16()
			for j := 6; j < 16; j++ {
				b[j] = byte(rng.IntN(256))
			}
			a = netip.AddrFrom16(b)
		}
		k := lb.ServiceKey{VIP: a, Port: 8080, Proto: lb.TCP}
		if _, ok := f.b.Service(k); ok {
			continue
		}
		f.set(lb.Service{Key: k, Backends: backends(a, 1)})
		keys = append(keys, k)
		vips = append(vips, a)
	}
	if got, want := vipFilterBits(t, f.b), wantFilter(vips...); got != want {
		t.Fatal("filter after adding services: not the bits of the VIPs")
	}
	for _, k := range keys {
		src := "198.19.0.7:4000"
		if k.VIP.Is6() {
			src = "[2001:2:ff::7]:4000"
		}
		if v, _ := f.run(build(t, frame.Spec{Src: ap(src), Dst: netip.AddrPortFrom(k.VIP, k.Port), SYN: true})); v != xdpTX {
			t.Fatalf("SYN to %s (filter slot %d): verdict %d, want XDP_TX", k, maps.VIPSlot(k.VIP), v)
		}
	}
	for _, k := range keys {
		if err := f.b.DeleteService(k); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := vipFilterBits(t, f.b), wantFilter(web4.VIP, web6.VIP, empty4.VIP, sh4.VIP); got != want {
		t.Fatal("filter after deleting the services: their bits are still set")
	}
}

// A frame to an address that is not a VIP but shares a VIP's filter bit
// goes through the lookups and to the kernel, counted as not for a
// service; so does a port of a VIP that no service has.
func TestVIPFilterCollision(t *testing.T) {
	f := newFixture(t)
	want := maps.VIPSlot(web4.VIP)
	var other netip.Addr
	for i := 0; i < 1<<17 && !other.IsValid(); i++ {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		if maps.VIPSlot(a) == want && a != web4.VIP {
			other = a
		}
	}
	if !other.IsValid() {
		t.Fatal("no address in 198.19.0.0/16 shares the VIP's slot")
	}
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(other, 80), netip.AddrPortFrom(web4.VIP, 81)} {
		before := f.counters()
		if v, _ := f.run(build(t, frame.Spec{Src: ap("198.19.0.7:4000"), Dst: dst, SYN: true})); v != xdpPass {
			t.Fatalf("SYN to %s: verdict %d, want XDP_PASS", dst, v)
		}
		if d := delta(before, f.counters()); d["PassNotVip"] != 1 || d["NewFlows"] != 0 {
			t.Fatalf("SYN to %s: counters %v, want pass_not_vip", dst, d)
		}
	}
}

// An established flow's frames are checked against the service their
// backend belongs to: when the flow's service is deleted and its backend's
// id goes to a backend of another service on the same VIP, the flow's
// next frame is not forwarded there but, its service gone, left to the
// kernel.
func TestEstablishedBackendIDReused(t *testing.T) {
	// Three backend ids (1-3), so the allocator, which reuses an id as
	// late as it can, must hand the freed one out again.
	f := newFixtureSized(t, loader.Options{MaxServices: 4, MaxBackends: 4})
	a := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.5.1"), Port: 80, Proto: lb.TCP}
	// Same VIP, another port: the VIP filter lets the frame through.
	b := lb.ServiceKey{VIP: a.VIP, Port: 81, Proto: lb.TCP}
	f.set(lb.Service{Key: a, Backends: backends(a.VIP, 1)})
	p := frame.Spec{Src: ap("198.19.0.9:5000"), Dst: netip.AddrPortFrom(a.VIP, 80), SYN: true}
	if f.connect(p) < 0 {
		t.Fatal("flow not established")
	}
	old := f.backendID(a, 0)
	if err := f.b.DeleteService(a); err != nil {
		t.Fatal(err)
	}
	f.set(lb.Service{Key: b, Backends: backends(b.VIP, 3)})
	reused := false
	for i := 0; i < 3; i++ {
		reused = reused || f.backendID(b, i) == old
	}
	if !reused {
		t.Fatalf("precondition: no backend of the new service has the freed id %d", old)
	}
	before := f.counters()
	ack := with(p, func(p *frame.Spec) { p.SYN = false })
	if v, _ := f.run(build(t, ack)); v != xdpPass {
		t.Fatalf("ACK of the deleted service's flow: verdict %d, want XDP_PASS", v)
	}
	if d := delta(before, f.counters()); d["PassNotVip"] != 1 || d["TxPackets"] != 0 || d["ConntrackHits"] != 0 {
		t.Fatalf("ACK of the deleted service's flow: counters %v", d)
	}
}

// newFixtureSized is a fixture with no services, with opts' limits and
// the fixture's MAC.
func newFixtureSized(t *testing.T, opts loader.Options) *fixture {
	t.Helper()
	priv.Require(t)
	opts.MAC = lbMAC
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close balancer: %v", err)
		}
	})
	return &fixture{t: t, b: b}
}

// A re-adopted data plane has its unpinned maps derived from the services
// (vips, the VIP filter, each backend's service) filled before it takes
// traffic: the flows' next frames, sent before any change, are all
// connection-table hits on their backends.
func TestReadoptFillsDerivedMaps(t *testing.T) {
	opts := pinnedOptions(t, "xlb-fast")
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, b: b}
	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 3)})
	f.set(lb.Service{Key: web6, Backends: backends(web6.VIP, 3)})
	first := f.establishFlows(web4, 20, 30000, 4)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := loader.Open(opts)
	if err != nil {
		t.Fatalf("re-adopt: %v", err)
	}
	t.Cleanup(func() {
		if err := b2.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	f.b = b2
	if got, want := vipFilterBits(t, b2), wantFilter(web4.VIP, web6.VIP); got != want {
		t.Fatal("re-adopted filter: not the bits of the VIPs")
	}
	before := f.counters()
	if again := f.sendFlows(web4, 20, 30000, 4); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("IPv4 flows moved across the restart: %v, were %v", again, first)
	}
	if d := delta(before, f.counters()); d["ConntrackHits"] != 20 || d["TxPackets"] != 20 {
		t.Fatalf("want 20 connection-table hits after re-adoption, got %v", d)
	}
}

// A persistent client's new connection, sent to its persistent backend
// again, stamps the client's entry (stamped in place, not re-inserted):
// the persistence window runs from the client's latest connection.
func TestPersistenceRestamped(t *testing.T) {
	f := newFixture(t)
	f.set(lb.Service{Key: ps4, Persistence: 300 * time.Second, Backends: weighted(ps4.VIP, 1, 1, 1)})
	const client = "198.18.3.1"
	first := f.send(syn(ps4, client, 1000))
	st, _ := f.b.Service(ps4)
	pk := maps.PersistKey{ServiceID: st.ID, Client: netip.MustParseAddr(client)}
	old := loader.MonotonicNow() - uint64(200*time.Second)
	if err := f.b.Persistence().Put(pk, maps.Persistence{BackendID: f.backendID(ps4, first), LastSeen: old}); err != nil {
		t.Fatal(err)
	}
	before := f.counters()
	if be := f.send(syn(ps4, client, 1001)); be != first {
		t.Fatalf("second connection went to backend %d, the client's first to %d", be, first)
	}
	if d := delta(before, f.counters()); d["PersistHits"] != 1 {
		t.Fatalf("counters %v, want 1 persistence hit", d)
	}
	e, ok, err := f.b.Persistence().Lookup(pk)
	if err != nil || !ok {
		t.Fatalf("client's entry: found %v, %v", ok, err)
	}
	if e.BackendID != f.backendID(ps4, first) || e.LastSeen <= old+uint64(100*time.Second) {
		t.Fatalf("client's entry after its second connection: %+v, want backend %d stamped now (was %d)", e, f.backendID(ps4, first), old)
	}
}
