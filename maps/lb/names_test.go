package lb

import "testing"

func TestIsPrime(t *testing.T) {
	cases := []struct {
		n    uint32
		want bool
	}{
		{0, false}, {1, false}, {2, true}, {3, true}, {4, false}, {9, false},
		{25, false}, {251, true}, {65536, false}, {65537, true}, {655373, true},
		{655371, false}, {4294967291, true}, {4294967295, false},
	}
	for _, tc := range cases {
		if got := IsPrime(tc.n); got != tc.want {
			t.Errorf("IsPrime(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestSchedulerNames(t *testing.T) {
	for in, want := range map[string]Scheduler{"MH": Maglev, "sh": SourceHash, "rr": RoundRobin, "wrr": RoundRobin,
		"round-robin": RoundRobin, "lc": LeastConn, "wlc": LeastConn, "least-conn": LeastConn} {
		var s Scheduler
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %v, %v; want %v", in, s, err, want)
		}
	}
	var s Scheduler
	if err := s.UnmarshalText([]byte("sed")); err == nil {
		t.Errorf("sed accepted")
	}
}

// An empty name is not a scheduler: the config applies the default, the
// enum does not guess.
func TestSchedulerEmpty(t *testing.T) {
	var s Scheduler
	if err := s.UnmarshalText(nil); err == nil {
		t.Error("empty scheduler accepted")
	}
}
