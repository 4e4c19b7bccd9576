package maps

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps/lb"
)

// The vocabulary's enum values and bounds are the data plane's.
func TestVocabularyMatchesDataPlane(t *testing.T) {
	for _, c := range []struct {
		name     string
		lb, want uint64
	}{
		{"maglev", uint64(lb.Maglev), uint64(bpf.SchedMaglev)},
		{"source-hash", uint64(lb.SourceHash), uint64(bpf.SchedSourceHash)},
		{"round-robin", uint64(lb.RoundRobin), uint64(bpf.SchedRoundRobin)},
		{"least-conn", uint64(lb.LeastConn), uint64(bpf.SchedLeastConn)},
		{"dsr-l2", uint64(lb.DSRL2), uint64(bpf.FwdDSRL2)},
		{"MaxLeastConnBackends", lb.MaxLeastConnBackends, bpf.MaxLCBackends},
		{"tcp", uint64(lb.TCP), 6},
		{"udp", uint64(lb.UDP), 17},
	} {
		if c.lb != c.want {
			t.Errorf("%s: vocabulary %d, data plane %d", c.name, c.lb, c.want)
		}
	}
}

// Every counter the data plane keeps reaches the vocabulary's struct:
// each field gets a distinct value, and every value must come out.
func TestCounterConversionComplete(t *testing.T) {
	check := func(name string, in any, out func(reflect.Value) any) {
		t.Helper()
		v := reflect.New(reflect.TypeOf(in)).Elem()
		want := map[uint64]bool{}
		for i := range v.NumField() {
			if v.Field(i).Kind() == reflect.Uint64 {
				v.Field(i).SetUint(uint64(1000 + i))
				want[uint64(1000+i)] = true
			}
		}
		got := reflect.ValueOf(out(v))
		for i := range got.NumField() {
			delete(want, got.Field(i).Uint())
		}
		if len(want) > 0 {
			t.Errorf("%s: %d data-plane counters not converted", name, len(want))
		}
	}
	check("global", GlobalCounters{}, func(v reflect.Value) any { return LBGlobal(v.Interface().(GlobalCounters)) })
	check("service", ServiceCounters{}, func(v reflect.Value) any { return LBService(v.Interface().(ServiceCounters)) })
	check("backend", BackendCounters{}, func(v reflect.Value) any { return LBBackend(v.Interface().(BackendCounters)) })
}

// An IPv6 flow from an IPv4-mapped client address is an IPv6 flow in the
// data plane: its key keeps the family and the source whole, so lookups
// and hash predictions match (found by FuzzDataPlane).
func TestMarshalFlowKeyMappedClient(t *testing.T) {
	k := lb.FlowKey{Src: netip.MustParseAddrPort("[::ffff:198.18.0.102]:40000"), Dst: netip.MustParseAddrPort("[2001:2:0:1::1]:80"), Proto: lb.TCP}
	m := MarshalFlowKey(k)
	if m.Family != bpf.FamilyIPv6 {
		t.Fatalf("family %d, want IPv6", m.Family)
	}
	if got := unmarshalFlowKey(m); got != k {
		t.Errorf("round trip: %v, want %v", got, k)
	}
	if h := FlowHash(k); h != 0xfd66fe81 {
		t.Errorf("flow hash %#x, want the data plane's 0xfd66fe81", h)
	}
}
