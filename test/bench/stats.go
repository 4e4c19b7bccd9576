package main

import (
	"fmt"
	"math"
	"reflect"
	"slices"
)

// Series is one figure measured several times in the same run.
type Series struct {
	// Values are the repetitions, in the order they were measured.
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Spread is (max-min)/median: 0.1 means the repetitions lie within
	// 10% of the median's size.
	Spread float64 `json:"spread"`
}

// NewSeries summarises vs (which it does not reorder).
func NewSeries(vs []float64) Series {
	s := Series{Values: slices.Clone(vs)}
	if len(vs) == 0 {
		return s
	}
	s.Median = median(vs)
	s.Min, s.Max = slices.Min(vs), slices.Max(vs)
	if s.Median != 0 {
		s.Spread = (s.Max - s.Min) / s.Median
	}
	return s
}

// median returns the middle value (mean of the two middle ones for an
// even count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is a/b, 0 when b is 0 (JSON has no NaN).
func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// counterDelta returns after-before for every uint64 field of two counter
// structs of the same type, by field name.
func counterDelta[T any](before, after T) map[string]uint64 {
	out := map[string]uint64{}
	bv, av := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := 0; i < bv.NumField(); i++ {
		if bv.Field(i).Kind() != reflect.Uint64 {
			continue
		}
		out[bv.Type().Field(i).Name] = av.Field(i).Uint() - bv.Field(i).Uint()
	}
	return out
}

// expectCounters checks that each named counter moved by exactly the
// given amount. A name the struct does not have is an error too: the
// check must not pass because a counter was renamed.
func expectCounters(d map[string]uint64, want map[string]uint64) error {
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		got, ok := d[k]
		if !ok {
			return fmt.Errorf("counter %s does not exist", k)
		}
		if got != want[k] {
			return fmt.Errorf("counter %s moved by %d, want %d", k, got, want[k])
		}
	}
	return nil
}
