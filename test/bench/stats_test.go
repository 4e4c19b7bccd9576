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
			{Name: "new flow, maglev + persistence 300s", Ratio: 11},
			{Name: "new flow, least-conn + persistence 300s", Ratio: 12.5},
			{Name: caseUDP, Ratio: 2.5},
			{Name: caseEstablished6, Ratio: 2.2},
			{Name: caseNonVIP, Ratio: 1.2},
		}, Flood: &Flood{Established: 10, Rows: []FloodRow{{Kind: "SYN", Broken: 0, BrokenBefore: 4}, {Kind: "ACK", Broken: 1}}}},
		Throughput: &Throughput{Runs: []ThroughputRun{{GenCPUs: []int{1}, Ratio: 0.95}, {GenCPUs: []int{0, 1}, Ratio: 0.5}}},
		Control: &Control{
			Memory:     &Memory{Services: 100, BackendsPerService: 100, StartupMs: 900, VmRSSMiB: 100},
			BackendAdd: &AddTiming{Reps: 3, TrafficMs: NewSeries([]float64{12, 30, 31})},
		},
		Disruption: &Disruption{Flows: 100, Cases: []DisruptionCase{
			{Change: "remove 1 of 10", MovedOthers: 0, WithConntrack: 0.1},
			{Change: "add 1 to 10", WithConntrack: 0.01},
		}},
	}
	r.evaluateTargets()
	want := []string{
		"met",          // established: worst 2.5x
		"not met",      // new flow 9x
		"not met",      // persistence: the worst row, 12.5x
		"met",          // non-VIP 1.2x
		"met",          // throughput with 1 CPU, 0.95x
		"not measured", // startup: a quick run's 100 services
		"not measured", // RSS: the same
		"not met",      // backend add 30 ms
		"not met",      // flood
		"not met",      // disruption
		"not measured", // maglev
	}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d", len(r.Targets), len(want))
	}
	for i, tg := range r.Targets {
		if tg.Status != want[i] {
			t.Errorf("target %q: %s (got %s), want %s", tg.Name, tg.Status, tg.Got, want[i])
		}
		if wantIssue := map[bool]int{true: 15, false: 0}[i < 8]; tg.Issue != wantIssue {
			t.Errorf("target %q: issue %d, want %d", tg.Name, tg.Issue, wantIssue)
		}
	}
	r.Control.Memory.Services = 1000
	r.evaluateTargets()
	if s := r.Targets[5].Status + "/" + r.Targets[6].Status; s != "met/met" {
		t.Errorf("startup and RSS with 1000 services: %s, want met/met", s)
	}
	md := r.Markdown()
	for _, s := range []string{
		"### Targets of issue 15 (line rate): 5 of 8 met",
		"| established flow (TCP or UDP, IPv4 or IPv6) / MAC swap | TCP established (IPv4) 2.40x; UDP flow (IPv4) 2.50x; TCP established (IPv6) 2.20x | ≤ 2.5x | met |",
		"| new flow with persistence / MAC swap | new flow, maglev + persistence 300s 11.00x; new flow, least-conn + persistence 300s 12.50x | ≤ 12x | not met |",
		"| veth throughput / L2-forward baseline, 1 generator CPU | 0.95x (0.00 of 0.00 Mpps) | ≥ 0.9x | met |",
		"| first start with 1000 services x 100 backends until all are in the data plane | 0.90 s | < 3 s | met |",
		"| `xlbctl backend add` until a new connection reaches the backend | 30.0 ms (median of 3) | ≤ 10 ms | not met |",
		"Targets of earlier issues, still checked:",
		"add 1 to 10: 1 other flows moved",
		"| established connections broken by a 10× spoofed flood, backends added mid-flood | 1 of 20 | 0 | not met |", "| SYN |  | 0 of 10 | 4 of 10 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not encode: %v", err)
	}
}
