package daemon

import "golang.org/x/sys/unix"

// monotonicNow is CLOCK_MONOTONIC in nanoseconds, the clock of
// the connection table's last-seen times (bpf_ktime_get_coarse_ns: the
// same clock, behind by at most a tick).
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return uint64(ts.Nano())
}
