package maps

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/xlb-lb/xlb/bpf"
)

// Every decap counter of the data plane reaches lb.DecapCounters.
func TestDecapConversionComplete(t *testing.T) {
	v := reflect.ValueOf(&bpf.DecapCounters{}).Elem()
	want := map[uint64]bool{}
	for i := range v.NumField() {
		if v.Field(i).Kind() == reflect.Uint64 {
			v.Field(i).SetUint(uint64(1000 + i))
			want[uint64(1000+i)] = true
		}
	}
	got := LBDecap(v.Interface().(bpf.DecapCounters))
	delete(want, got.RxPackets)
	delete(want, got.ECNCE)
	for _, n := range got.Decap {
		delete(want, n)
	}
	for _, n := range got.Pass {
		delete(want, n)
	}
	if len(want) > 0 {
		t.Errorf("%d decap counters not converted", len(want))
	}
}

// Decap address keys hold the wire bytes, IPv4 mapped, and read back.
func TestDecapAddrKey(t *testing.T) {
	for _, s := range []string{"198.18.0.1", "2001:2::1", "::ffff:198.18.0.9"} {
		a := netip.MustParseAddr(s)
		k := MarshalDecapAddr(a)
		if got := unmarshalDecapAddr(k); got != a.Unmap() {
			t.Errorf("%s: read back %s", s, got)
		}
	}
	k := MarshalDecapAddr(netip.MustParseAddr("198.18.0.1"))
	b := netip.MustParseAddr("::ffff:198.18.0.1").As16()
	if got := unmarshalDecapAddr(k).As16(); got != netip.AddrFrom4([4]byte{198, 18, 0, 1}).As16() || b != got {
		t.Errorf("IPv4 key not mapped: %v", got)
	}
}
