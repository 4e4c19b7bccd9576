package bpf

import (
	"testing"
	"unsafe"
)

// The wire structs must keep their layout: keys built in Go hash to the
// same bytes as keys built in C only if both sides agree on every byte.
func TestTypeSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"svc_key", unsafe.Sizeof(SvcKey{}), 20},
		{"service", unsafe.Sizeof(Service{}), 12},
		{"backend", unsafe.Sizeof(Backend{}), 32},
		{"flow_key", unsafe.Sizeof(FlowKey{}), 40},
		{"flow", unsafe.Sizeof(Flow{}), 16},
		{"persist_key", unsafe.Sizeof(PersistKey{}), 24},
		{"persist_entry", unsafe.Sizeof(PersistEntry{}), 16},
		{"xlb_config", unsafe.Sizeof(Config{}), 56},
		{"vip_key", unsafe.Sizeof(VipKey{}), 20},
	} {
		if c.got != c.want {
			t.Errorf("struct %s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
}

// The generated Go types must match the maps' key and value sizes.
func TestMapSpecsMatchTypes(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m          string
		key, value uintptr
	}{
		{MapServices, unsafe.Sizeof(SvcKey{}), unsafe.Sizeof(Service{})},
		{MapBackends, 4, unsafe.Sizeof(Backend{})},
		{MapConntrack, unsafe.Sizeof(FlowKey{}), unsafe.Sizeof(Flow{})},
		{MapStats, 4, unsafe.Sizeof(GlobalCounters{})},
		{MapSvcStats, 4, unsafe.Sizeof(SvcCounters{})},
		{MapBackendStats, 4, unsafe.Sizeof(BackendCounters{})},
		{MapPersist, unsafe.Sizeof(PersistKey{}), unsafe.Sizeof(PersistEntry{})},
		{MapActive, 4, 8},
		{MapRRCursor, 4, 4},
		{MapConfig, 4, unsafe.Sizeof(Config{})},
		{MapVips, unsafe.Sizeof(VipKey{}), unsafe.Sizeof(Vip{})},
		{MapHalfOpen, unsafe.Sizeof(FlowKey{}), unsafe.Sizeof(Flow{})},
		{MapFrags, unsafe.Sizeof(FragKey{}), unsafe.Sizeof(FragEntry{})},
	} {
		ms := spec.Maps[c.m]
		if ms == nil {
			t.Fatalf("no map %s", c.m)
		}
		if uintptr(ms.KeySize) != c.key || uintptr(ms.ValueSize) != c.value {
			t.Errorf("map %s: key/value %d/%d bytes, Go types %d/%d", c.m, ms.KeySize, ms.ValueSize, c.key, c.value)
		}
	}
	if inner := spec.Maps[MapMaglevTables].InnerMap; inner == nil || inner.ValueSize != 4 {
		t.Errorf("maglev_tables inner map: %+v", inner)
	}
}
