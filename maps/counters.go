package maps

import (
	"reflect"

	"github.com/cilium/ebpf"
)

// sumCounters adds per-CPU copies of a struct whose fields are all uint64.
// Reflection keeps one implementation for every counter struct, so a field
// added in C needs no Go change here.
func sumCounters[T any](per []T) T {
	var total T
	tv := reflect.ValueOf(&total).Elem()
	for i := range per {
		pv := reflect.ValueOf(&per[i]).Elem()
		for f := 0; f < tv.NumField(); f++ {
			if tv.Field(f).Kind() == reflect.Uint64 {
				tv.Field(f).SetUint(tv.Field(f).Uint() + pv.Field(f).Uint())
			}
		}
	}
	return total
}

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}
