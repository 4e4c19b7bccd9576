package loader_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// sendFlows sends one packet for each of n flows of a service and returns
// the destination MAC each got (as a backend index 0..).
func (f *fixture) sendFlows(svc lb.ServiceKey, n int, firstPort uint16, srcs int) []int {
	f.t.Helper()
	out := make([]int, n)
	for i := range out {
		src := netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 100+i%srcs))
		p := frame.Spec{Src: netip.AddrPortFrom(src, firstPort+uint16(i)), Dst: netip.AddrPortFrom(svc.VIP, svc.Port), UDP: svc.Proto == lb.UDP}
		verdict, fr := f.run(build(f.t, p))
		if verdict != xdpTX {
			f.t.Fatalf("flow %d: verdict %d, want tx", i, verdict)
		}
		out[i] = int(fr[5]) - 0x11
	}
	return out
}

// establishFlows opens n flows of a TCP service as clients do (a SYN, then
// the handshake's ACK: fixture.connect), so each has a connection-table
// entry, and returns their backends as sendFlows does.
func (f *fixture) establishFlows(svc lb.ServiceKey, n int, firstPort uint16, srcs int) []int {
	f.t.Helper()
	out := make([]int, n)
	for i := range out {
		src := netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 100+i%srcs))
		out[i] = f.connect(frame.Spec{Src: netip.AddrPortFrom(src, firstPort+uint16(i)), Dst: netip.AddrPortFrom(svc.VIP, svc.Port), SYN: true})
		if out[i] < 0 {
			f.t.Fatalf("flow %d: not forwarded", i)
		}
	}
	return out
}

func count(got []int, idx int) int {
	n := 0
	for _, g := range got {
		if g == idx {
			n++
		}
	}
	return n
}

// Flows keep their backend when a backend is added, and only the flows
// of a removed backend move.
func TestFlowsStayPut(t *testing.T) {
	f := newFixture(t)
	const n = 600
	first := f.establishFlows(web4, n, 20000, 50)
	for i := 0; i < 3; i++ {
		if c := count(first, i); c < n/6 {
			t.Errorf("backend %d got %d of %d new flows: uneven", i, c, n)
		}
	}

	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 4)})
	before := f.counters()
	again := f.sendFlows(web4, n, 20000, 50)
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("flows changed backend after a backend was added")
	}
	if d := delta(before, f.counters()); d["ConntrackHits"] != n || d["NewFlows"] != 0 {
		t.Errorf("want %d connection-table hits and no new flows, got %v", n, d)
	}
	if fresh := f.sendFlows(web4, n, 30000, 50); count(fresh, 3) == 0 {
		t.Errorf("the added backend gets no new flows")
	}

	// Remove backend 1: its flows move, nobody else's do.
	bes := backends(web4.VIP, 4)
	f.set(lb.Service{Key: web4, Backends: []lb.Backend{bes[0], bes[2], bes[3]}})
	before = f.counters()
	after := f.sendFlows(web4, n, 20000, 50)
	moved := 0
	for i := range first {
		switch {
		case first[i] == 1 && after[i] == 1:
			t.Fatalf("flow %d still goes to the removed backend", i)
		case first[i] == 1:
			moved++
		case after[i] != first[i]:
			t.Fatalf("flow %d moved from backend %d to %d, but its backend was not removed", i, first[i], after[i])
		}
	}
	if d := delta(before, f.counters()); int(d["Reschedules"]) != moved || moved == 0 {
		t.Errorf("%d flows moved, reschedules counter says %v", moved, d)
	}
}

// A drained backend (weight 0) keeps its flows and gets no new ones; a
// backend that is down loses both.
func TestDrainAndDown(t *testing.T) {
	f := newFixture(t)
	const n = 300
	first := f.sendFlows(web4, n, 20000, 30)
	bes := backends(web4.VIP, 3)
	bes[0].Weight = 0
	f.set(lb.Service{Key: web4, Backends: bes})
	if again := f.sendFlows(web4, n, 20000, 30); !reflect.DeepEqual(first, again) {
		t.Fatalf("draining moved existing flows")
	}
	if fresh := f.sendFlows(web4, n, 40000, 30); count(fresh, 0) != 0 {
		t.Fatalf("drained backend got %d new flows", count(fresh, 0))
	}

	bes[0].Weight = 1
	bes[1].Down = true
	f.set(lb.Service{Key: web4, Backends: bes})
	after := f.sendFlows(web4, n, 20000, 30)
	for i := range first {
		if after[i] == 1 {
			t.Fatalf("flow %d still goes to the down backend", i)
		}
		if first[i] != 1 && after[i] != first[i] {
			t.Fatalf("flow %d moved although its backend is up", i)
		}
	}

	// A backend whose MAC is unknown is not usable either.
	bes[1].Down = false
	bes[2].MAC = nil
	f.set(lb.Service{Key: web4, Backends: bes})
	if fresh := f.sendFlows(web4, n, 50000, 30); count(fresh, 2) != 0 {
		t.Fatalf("backend without a MAC got traffic")
	}
	st, _ := f.b.Service(web4)
	for _, be := range st.Backends {
		if wantUsable := be.Addr != bes[2].Addr; be.Usable != wantUsable {
			t.Errorf("status of %s: usable %v, want %v", be.Addr, be.Usable, wantUsable)
		}
	}
}

// Source hash sends every flow of a client to one backend, the one the Go
// twin of the hash predicts, whatever the source port.
func TestSourceHash(t *testing.T) {
	f := newFixture(t)
	for c := 0; c < 20; c++ {
		src := netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 100+c))
		want := -1
		for port := uint16(1000); port < 1030; port++ {
			p := frame.Spec{Src: netip.AddrPortFrom(src, port), Dst: netip.AddrPortFrom(sh4.VIP, sh4.Port), SYN: true}
			_, fr := f.run(build(t, p))
			got := int(fr[5]) - 0x11
			if want == -1 {
				want = got
				_, be := f.expectedBackend(sh4, flowOf(p))
				if int(be.MAC[5])-0x11 != got {
					t.Fatalf("client %s: data plane chose backend %d, Go twin of the hash predicts %s", src, got, be.Addr)
				}
			}
			if got != want {
				t.Fatalf("client %s port %d went to backend %d, its other flows to %d", src, port, got, want)
			}
		}
	}
}

// Per-backend counters follow the traffic.
func TestBackendCounters(t *testing.T) {
	f := newFixture(t)
	got := f.sendFlows(web4, 90, 20000, 9)
	st, _ := f.b.Service(web4)
	for _, be := range st.Backends {
		c, err := f.b.Stats().Backend(be.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := uint64(count(got, int(be.MAC[5])-0x11))
		if c.Packets != want || c.NewFlows != want || c.Bytes != want*60 {
			t.Errorf("backend %s: counters %+v, want %d packets/flows of 60 bytes", be.Addr, c, want)
		}
	}
}

// A rejected change leaves everything as it was.
func TestRejectedChangesApplyNothing(t *testing.T) {
	f := newFixture(t)
	before := f.b.Services()
	dup := backends(web4.VIP, 2)
	dup = append(dup, dup[0])
	bad := []lb.Service{
		{Key: web4, Backends: dup},
		{Key: web4, Backends: []lb.Backend{{Addr: netip.MustParseAddr("198.18.0.11"), MAC: beMAC(0), Weight: 70000}}},
		{Key: lb.ServiceKey{VIP: web4.VIP, Port: 0, Proto: lb.TCP}},
		{Key: web4, Scheduler: 9},
	}
	for _, s := range bad {
		if err := f.b.SetService(s); err == nil {
			t.Errorf("set service %+v: accepted", s)
		}
	}
	// Sync with one bad service changes none of the good ones either.
	good := lb.Service{Key: svcKey("198.18.1.9:80/tcp"), Backends: backends(web4.VIP, 1)}
	if err := f.b.Sync([]lb.Service{good, bad[0]}); err == nil {
		t.Errorf("sync with a bad service: accepted")
	}
	if after := f.b.Services(); !reflect.DeepEqual(before, after) {
		t.Errorf("a rejected change altered the installed services")
	}
	if err := f.b.DeleteService(svcKey("198.18.1.99:80/tcp")); !errors.Is(err, loader.ErrNoService) {
		t.Errorf("delete unknown service: %v, want ErrNoService", err)
	}
}

// Sync installs exactly the given set and deletes the rest; deleted
// services' traffic goes to the kernel again.
func TestSyncDeletes(t *testing.T) {
	f := newFixture(t)
	if err := f.b.Sync([]lb.Service{{Key: dns4, Backends: backends(dns4.VIP, 2)}}); err != nil {
		t.Fatal(err)
	}
	if got := f.b.Services(); len(got) != 1 || got[0].Key != dns4 {
		t.Fatalf("after sync: %v", got)
	}
	p := frame.Spec{Src: ap("198.18.0.100:1234"), Dst: ap("198.18.1.1:80"), SYN: true}
	if verdict, _ := f.run(build(t, p)); verdict != xdpPass {
		t.Fatalf("deleted service still handled: verdict %d", verdict)
	}
}

// pinnedOptions are the options of a small data plane pinned under
// /sys/fs/bpf/NAME-PID, removed when the test ends.
func pinnedOptions(t *testing.T, name string) loader.Options {
	t.Helper()
	priv.Require(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("%s-%d", name, os.Getpid()))
	t.Cleanup(func() {
		stale, _ := filepath.Glob(dir + "-tmp-*") // an interrupted pin
		for _, d := range append(stale, dir) {
			if err := os.RemoveAll(d); err != nil {
				t.Errorf("remove pins: %v", err)
			}
		}
	})
	return loader.Options{MAC: lbMAC, PinDir: dir, MaxServices: 16, MaxBackends: 64, ConntrackSize: 1024}
}

// A pinned data plane survives Close and is re-adopted with its services,
// ids and connection table.
func TestPinAndReadopt(t *testing.T) {
	opts := pinnedOptions(t, "xlb-test")
	dir := opts.PinDir
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, b: b}
	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 3)})
	first := f.establishFlows(web4, 50, 20000, 5)
	want := b.Services()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2, err := loader.Open(opts)
	if err != nil {
		t.Fatalf("re-adopt: %v", err)
	}
	defer func() {
		if err := b2.Close(); err != nil {
			t.Errorf("close re-adopted balancer: %v", err)
		}
	}()
	if !b2.Adopted() {
		t.Fatal("second open did not re-adopt the pins")
	}
	got := b2.Services()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovered services differ:\n got %+v\nwant %+v", got, want)
	}
	f.b = b2
	// A new backend set applied after the restart keeps every flow.
	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 4)})
	before := f.counters()
	if again := f.sendFlows(web4, 50, 20000, 5); !reflect.DeepEqual(first, again) {
		t.Fatalf("flows moved across the restart")
	}
	if d := delta(before, f.counters()); d["ConntrackHits"] != 50 {
		t.Errorf("want 50 connection-table hits after re-adoption, got %v", d)
	}

	// A different maglev size cannot adopt these tables.
	bad := opts
	bad.TableSize = 251
	if _, err := loader.Open(bad); err == nil {
		t.Fatal("re-adopt with another maglev size: accepted")
	}
	if err := b2.Detach(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pins left after detach: %v", err)
	}
}

// Sync leaves an unchanged service alone (no table rebuilt, no map
// written), so a health change of one service costs one rebuild, and
// rebuilds a service whose backends changed.
func TestSyncSkipsUnchanged(t *testing.T) {
	f := newFixture(t)
	svcs := []lb.Service{{Key: web4, Backends: backends(web4.VIP, 3)}, {Key: dns4, Backends: backends(dns4.VIP, 3)}}
	if err := f.b.Sync(svcs); err != nil {
		t.Fatal(err)
	}
	ids := map[lb.ServiceKey]uint32{}
	for _, s := range f.b.Services() {
		ids[s.Key] = s.ID
	}
	// A marker table written behind the balancer's back shows whether
	// Sync rewrote it.
	marker := make([]uint32, f.b.TableSize())
	for i := range marker {
		marker[i] = 4242
	}
	for _, k := range []lb.ServiceKey{web4, dns4} {
		if err := f.b.Tables().Swap(ids[k], marker); err != nil {
			t.Fatal(err)
		}
	}
	svcs[1].Backends[0].Down = true
	if err := f.b.Sync(svcs); err != nil {
		t.Fatal(err)
	}
	web, err := f.b.Tables().Get(ids[web4])
	if err != nil {
		t.Fatal(err)
	}
	if web[0] != 4242 {
		t.Error("unchanged service's table was rebuilt")
	}
	dns, err := f.b.Tables().Get(ids[dns4])
	if err != nil {
		t.Fatal(err)
	}
	if dns[0] == 4242 {
		t.Error("changed service's table was not rebuilt")
	}
}

// An upgrade that changes the counters' layout (a counter added) re-adopts
// the data plane all the same: flows, services and tables are kept, the
// counters start from zero in maps pinned in place of the old ones. A
// change to any other map's layout still refuses, naming the way out.
func TestReadoptWithNewCounterLayout(t *testing.T) {
	opts := pinnedOptions(t, "xlb-test-layout")
	dir := opts.PinDir
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, b: b}
	f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 3)})
	first := f.establishFlows(web4, 20, 20000, 5)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The previous version's global counters: a smaller value.
	replacePin := func(name string, spec *ebpf.MapSpec) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Pin(path); err != nil {
			t.Fatal(err)
		}
	}
	replacePin(bpf.MapStats, &ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	// The previous version's settings: the timeouts only, 24 bytes.
	replacePin(bpf.MapConfig, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 24, MaxEntries: 1})

	b2, err := loader.Open(opts)
	if err != nil {
		t.Fatalf("re-adopt with counters of another layout: %v", err)
	}
	if !b2.Adopted() {
		t.Fatal("not re-adopted")
	}
	f.b = b2
	if again := f.sendFlows(web4, 20, 20000, 5); !reflect.DeepEqual(first, again) {
		t.Fatalf("flows moved across the upgrade")
	}
	g, err := b2.Stats().Global()
	if err != nil || g.ConntrackHits != 20 || g.NewFlows != 0 {
		t.Errorf("fresh counters after the upgrade: %+v, %v", g, err)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.MapStats), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := pinned.Info(); err != nil || info.ValueSize == 16 {
		t.Errorf("the old counters are still pinned: %+v %v", info, err)
	}
	_ = pinned.Close() // only looked at
	// The settings were written whole into the fresh config map, and the
	// VIP list (not pinned) was rebuilt from the recovered services.
	if to, err := b2.Timeouts(); err != nil || to != lb.DefaultTimeouts {
		t.Errorf("timeouts after the upgrade: %+v, %v", to, err)
	}
	if got, err := b2.ICMP(); err != nil || got != (lb.ICMP{}) {
		t.Errorf("ICMP switches after the upgrade: %+v, %v", got, err)
	}
	e4 := echoSpec(netip.MustParseAddr("198.18.0.200"), web4.VIP)
	f.checkEcho(t, echoRow{"echo after the upgrade", build(t, e4), xdpTX, replyOf(e4), map[string]uint64{"IcmpEchoReplies": 1}})
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	// The connection table in another layout: refused, with the way out.
	replacePin(bpf.MapPersist, &ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 8, ValueSize: 8, MaxEntries: 64})
	if _, err := loader.Open(opts); err == nil || !strings.Contains(err.Error(), "detach") {
		t.Errorf("re-adopt with a persistence table of another layout: %v", err)
	}
}

// TestStaleTempPinsRemoved: a start killed between pinning and the rename
// leaves PinDir-tmp-*, whose pins keep maps alive; the next start removes
// it.
func TestStaleTempPinsRemoved(t *testing.T) {
	opts := pinnedOptions(t, "xlb-stale")
	stale := opts.PinDir + "-tmp-123"
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(filepath.Join(stale, bpf.MapConfig)); err != nil {
		t.Fatal(err)
	}
	_ = m.Close() // the pin keeps it
	b, err := loader.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale pins %s: %v, want removed", stale, err)
	}
	if _, err := os.Stat(filepath.Join(opts.PinDir, bpf.MapConfig)); err != nil {
		t.Errorf("pins: %v", err)
	}
}

// Tables are memory-mapped arrays, filled through a mapping; a data plane
// pinned with tables of the older layout (filled by batch updates) is
// re-adopted with that layout, with or without tables installed, and one
// pinned with mapped tables keeps those.
func TestReadoptTableLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		batch     bool
		installed bool
	}{
		{"mapped", false, true},
		{"mapped-empty", false, false},
		{"batch", true, true},
		{"batch-empty", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := pinnedOptions(t, "xlb-layout-"+c.name)
			first := opts
			if c.batch {
				first = loader.WithBatchTables(opts)
			}
			b, err := loader.Open(first)
			if err != nil {
				t.Fatal(err)
			}
			if loader.MappedTables(b) == c.batch {
				t.Fatalf("fresh data plane: mapped tables %v, want %v", loader.MappedTables(b), !c.batch)
			}
			f := &fixture{t: t, b: b}
			if c.installed {
				f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 3)})
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b2, err := loader.Open(opts)
			if err != nil {
				t.Fatalf("re-adopt: %v", err)
			}
			defer func() {
				if err := b2.Detach(); err != nil {
					t.Error(err)
				}
			}()
			if loader.MappedTables(b2) == c.batch {
				t.Errorf("re-adopted: mapped tables %v, want %v", loader.MappedTables(b2), !c.batch)
			}
			f.b = b2
			f.set(lb.Service{Key: web4, Backends: backends(web4.VIP, 4)})
			f.set(lb.Service{Key: dns4, Backends: backends(dns4.VIP, 2)})
			for _, k := range []lb.ServiceKey{web4, dns4} {
				st, _ := b2.Service(k)
				tbl, err := b2.Tables().Get(st.ID)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range tbl {
					if v == 0 {
						t.Fatalf("service %s: slot %d empty", k, i)
					}
				}
			}
			if got := f.sendFlows(web4, 40, 20000, 5); count(got, 3) == 0 {
				t.Errorf("the backend added after re-adoption gets no flows: %v", got)
			}
		})
	}
}
