package bpf

import (
	"testing"
	"unsafe"
)

// The decapsulator's wire structs keep their layout, and its maps' key and
// value sizes match the generated Go types.
func TestDecapTypes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"addr", unsafe.Sizeof(DecapAddr{}), 16},
		{"config", unsafe.Sizeof(DecapConfig{}), 8},
		{"counters", unsafe.Sizeof(DecapCounters{}), 18 * 8},
	} {
		if c.got != c.want {
			t.Errorf("struct %s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	spec, err := LoadDecapSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m          string
		key, value uintptr
	}{
		{MapDecapVips, 16, 1},
		{MapDecapAddrs, 16, 1},
		{MapDecapConfig, 4, unsafe.Sizeof(DecapConfig{})},
		{MapDecapStats, 4, unsafe.Sizeof(DecapCounters{})},
	} {
		ms := spec.Maps[c.m]
		if ms == nil {
			t.Fatalf("no map %s", c.m)
		}
		if uintptr(ms.KeySize) != c.key || uintptr(ms.ValueSize) != c.value {
			t.Errorf("map %s: key %d value %d, want %d %d", c.m, ms.KeySize, ms.ValueSize, c.key, c.value)
		}
	}
	if spec.Programs[DecapProgramName] == nil {
		t.Errorf("no program %s", DecapProgramName)
	}
}
