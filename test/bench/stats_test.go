package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSeries(t *testing.T) {
	for _, c := range []struct {
		in                       []float64
		median, min, max, spread float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3, 1},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4, 1.2},
		{[]float64{5}, 5, 5, 5, 0},
		{nil, 0, 0, 0, 0},
		{[]float64{0, 0}, 0, 0, 0, 0},
	} {
		s := NewSeries(c.in)
		if s.Median != c.median || s.Min != c.min || s.Max != c.max || s.Spread != c.spread {
			t.Errorf("NewSeries(%v) = %+v, want median %v min %v max %v spread %v", c.in, s, c.median, c.min, c.max, c.spread)
		}
		if len(c.in) > 0 && s.Values[0] != c.in[0] {
			t.Errorf("NewSeries(%v) reordered the values: %v", c.in, s.Values)
		}
	}
	if r := ratio(1, 0); r != 0 {
		t.Errorf("ratio(1, 0) = %v, want 0 (JSON has no NaN)", r)
	}
}

type counters struct {
	A, B uint64
	_    string // not a counter: skipped
}

func TestCounterChecks(t *testing.T) {
	d := counterDelta(counters{A: 1, B: 5}, counters{A: 4, B: 5})
	if d["A"] != 3 || d["B"] != 0 || len(d) != 2 {
		t.Fatalf("counterDelta = %v", d)
	}
	if err := expectCounters(d, map[string]uint64{"A": 3, "B": 0}); err != nil {
		t.Error(err)
	}
	if err := expectCounters(d, map[string]uint64{"A": 2}); err == nil || !strings.Contains(err.Error(), "counter A moved by 3, want 2") {
		t.Errorf("wrong delta: %v", err)
	}
	if err := expectCounters(d, map[string]uint64{"Renamed": 0}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing counter: %v", err)
	}
}

func TestTable(t *testing.T) {
	got := mdTable([]string{"a", "b"}, [][]string{{"1", "x|y"}, {"2"}})
	want := "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2 |  |\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestTargets(t *testing.T) {
	r := &Report{
		PerPacket: &PerPacket{Cases: []PacketCase{
			{Name: caseEstablished, Ratio: 2.4},
			{Name: caseNewFlow, Ratio: 9},
		}, Flood: &Flood{Established: 10, Rows: []FloodRow{{Kind: "SYN", Broken: 0, BrokenBefore: 4}, {Kind: "ACK", Broken: 1}}}},
		Throughput: &Throughput{Runs: []ThroughputRun{{GenCPUs: []int{1}, Ratio: 0.95}}},
		Disruption: &Disruption{Flows: 100, Cases: []DisruptionCase{
			{Change: "remove 1 of 10", MovedOthers: 0, WithConntrack: 0.1},
			{Change: "add 1 to 10", WithConntrack: 0.01},
		}},
	}
	r.evaluateTargets()
	want := []string{"met", "not met", "not met", "met", "not met", "not measured"}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d", len(r.Targets), len(want))
	}
	for i, tg := range r.Targets {
		if tg.Status != want[i] {
			t.Errorf("target %q: %s (got %s), want %s", tg.Name, tg.Status, tg.Got, want[i])
		}
	}
	md := r.Markdown()
	for _, s := range []string{"| established-flow cost vs MAC swap | ≤ 2.5x | 2.40x | met |", "add 1 to 10: 1 other flows moved",
		"| established connections broken by a 10× spoofed flood, backends added mid-flood | 0 | 1 of 20 | not met |", "| SYN |  | 0 of 10 | 4 of 10 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not encode: %v", err)
	}
}
