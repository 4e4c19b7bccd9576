package bpf

import (
	"testing"
	"unsafe"
)

// The health check tunnel's structs keep their layout, and its maps' key
// and value sizes match the generated Go types.
func TestProbeTypes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"probe_key", unsafe.Sizeof(ProbeKey{}), 24},
		{"probe", unsafe.Sizeof(Probe{}), 40},
		{"probe_counters", unsafe.Sizeof(ProbeCounters{}), 24},
	} {
		if c.got != c.want {
			t.Errorf("struct %s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	spec, err := LoadProbeSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m          string
		key, value uintptr
	}{
		{MapProbes, unsafe.Sizeof(ProbeKey{}), unsafe.Sizeof(Probe{})},
		{MapProbeStats, 4, unsafe.Sizeof(ProbeCounters{})},
	} {
		ms := spec.Maps[c.m]
		if ms == nil {
			t.Fatalf("no map %s", c.m)
		}
		if uintptr(ms.KeySize) != c.key || uintptr(ms.ValueSize) != c.value {
			t.Errorf("map %s: key %d value %d, want %d %d", c.m, ms.KeySize, ms.ValueSize, c.key, c.value)
		}
	}
	for _, p := range []string{ProbeOutProgram, ProbeInProgram} {
		if spec.Programs[p] == nil {
			t.Errorf("no program %s", p)
		}
	}
}
