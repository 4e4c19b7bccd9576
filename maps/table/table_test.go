package table

import (
	"fmt"
	"testing"

	"github.com/xlb-lb/xlb/maps/lb"
)

func rrBackends(w ...uint32) []Backend {
	out := make([]Backend, len(w))
	for i := range w {
		out[i] = Backend{ID: uint32(i + 1), Key: fmt.Sprintf("198.18.0.%d", 10+i), Weight: w[i]}
	}
	return out
}

// A round-robin table's first n slots give each backend its weighted share
// to within one slot, for every n; any other window (the difference of two
// such prefixes) to within two.
func TestRoundRobinWindows(t *testing.T) {
	for _, w := range [][]uint32{{1, 1, 1}, {1, 2, 3}, {5, 1}, {100, 1, 7, 0, 3}, {65535, 1}} {
		const size = 1009
		table, err := RoundRobin(rrBackends(w...), size)
		if err != nil {
			t.Fatal(err)
		}
		var total uint32
		for _, x := range w {
			total += x
		}
		for _, n := range []int{1, 7, 100, 500, size} {
			for start := 0; start+n <= size; start += 37 {
				got := map[uint32]int{}
				for _, id := range table[start : start+n] {
					got[id]++
				}
				for i, x := range w {
					want := float64(n) * float64(x) / float64(total)
					tol := 2.0
					if start == 0 {
						tol = 1
					}
					if d := float64(got[uint32(i+1)]) - want; d > tol || d < -tol {
						t.Fatalf("weights %v, window %d+%d: backend %d has %d slots, want %.1f±%.0f", w, start, n, i, got[uint32(i+1)], want, tol)
					}
				}
			}
		}
	}
	empty, err := RoundRobin(rrBackends(0, 0), 11)
	if err != nil || len(empty) != 11 || empty[0] != 0 {
		t.Errorf("all drained: %v, %v", empty, err)
	}
	if _, err := RoundRobin([]Backend{{ID: 0, Key: "a", Weight: 1}}, 11); err == nil {
		t.Errorf("id 0 accepted")
	}
}

func TestLeastConnTable(t *testing.T) {
	table, err := LeastConn(rrBackends(1, 0, 3), 11)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{2, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0}; fmt.Sprint(table) != fmt.Sprint(want) {
		t.Errorf("table %v, want %v", table, want)
	}
	many := make([]uint32, lb.MaxLeastConnBackends+1)
	for i := range many {
		many[i] = 1
	}
	if _, err := LeastConn(rrBackends(many...), 65537); err == nil {
		t.Errorf("%d backends accepted", len(many))
	}
	if _, err := LeastConn(rrBackends(1, 1, 1), 3); err == nil {
		t.Errorf("3 backends in 3 slots accepted (slot 0 holds the count)")
	}
}
