package lb

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a bounded setting: its name (the config file's key), the value
// that zero stands for, and the range it must lie in. Every such setting
// is one Limit here, read by the config parser, the API's validation and
// the loader alike.
type Limit[T cmp.Ordered] struct {
	Name          string
	Default       T
	Min, Max      T
	defaultIsZero bool
}

// Or returns v, or the default if v is zero.
func (l Limit[T]) Or(v T) T {
	var zero T
	if v == zero && !l.defaultIsZero {
		return l.Default
	}
	return v
}

// Check reports a value outside the range: "out of range MIN-MAX".
func (l Limit[T]) Check(v T) error {
	if v < l.Min || v > l.Max {
		return fmt.Errorf("out of range %s-%s", FormatValue(l.Min), FormatValue(l.Max))
	}
	return nil
}

// Range is "MIN-MAX".
func (l Limit[T]) Range() string { return FormatValue(l.Min) + "-" + FormatValue(l.Max) }

// FormatValue prints a limit's value: durations without zero trailing
// units ("1h", "1m30s"), numbers in decimal.
func FormatValue[T cmp.Ordered](v T) string {
	switch x := any(v).(type) {
	case time.Duration:
		return FormatDuration(x)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	}
	return fmt.Sprint(v)
}

// FormatDuration formats d like time.Duration, without zero trailing units
// ("2s", "1m30s", "1h" rather than "1h0m0s").
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Sizes of the data plane's maps (config file: limits). They apply when
// the data plane is first loaded.
var (
	// ConntrackSize is the number of flows the connection table holds.
	ConntrackSize = Limit[uint32]{Name: "conntrack_size", Default: 1 << 20, Min: 64, Max: 1 << 28}
	// TableSize is the number of slots of each service's scheduler table
	// (the Maglev table, the round-robin sequence, the least-conn list). It
	// must be prime. The config key keeps its first name, maglev_size.
	TableSize = Limit[uint32]{Name: "maglev_size", Default: 65537, Min: 251, Max: 1 << 24}
	// MaxServices bounds the number of services.
	MaxServices = Limit[uint32]{Name: "max_services", Default: 4096, Min: 1, Max: 1 << 16}
	// MaxBackends bounds the service-backend pairs; one slot is reserved
	// (id 0 marks an empty slot), so MaxBackends-1 pairs fit.
	MaxBackends = Limit[uint32]{Name: "max_backends", Default: 65536, Min: 2, Max: 1 << 24}
	// PersistSize is the number of (service, client address) entries of
	// the persistence table (an LRU).
	PersistSize = Limit[uint32]{Name: "persist_size", Default: 1 << 18, Min: 64, Max: 1 << 28}
	// HalfOpenSize is the number of entries of the half-open TCP table
	// (LRU): SYNs waiting for the handshake's next packet. A flood churns
	// it; a real handshake survives while fewer than this many SYNs arrive
	// within its round trip.
	HalfOpenSize = Limit[uint32]{Name: "halfopen_size", Default: 1 << 18, Min: 64, Max: 1 << 28}
)

// CheckTableSize checks a scheduler table size: in range and prime.
func CheckTableSize(n uint32) error {
	if err := TableSize.Check(n); err != nil {
		return err
	}
	if !IsPrime(n) {
		return fmt.Errorf("not prime (e.g. %d)", nearPrime(n, TableSize.Max))
	}
	return nil
}

// IsPrime reports whether n is prime.
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n < 4 {
		return true
	}
	if n%2 == 0 || n%3 == 0 {
		return false
	}
	m := uint64(n)
	for i := uint64(5); i*i <= m; i += 6 {
		if m%i == 0 || m%(i+2) == 0 {
			return false
		}
	}
	return true
}

// nearPrime returns the least prime above n, or the greatest below it if
// that is above hi.
func nearPrime(n, hi uint32) uint32 {
	p := n + 1
	for !IsPrime(p) {
		p++
	}
	if p <= hi {
		return p
	}
	for p = n - 1; !IsPrime(p); p-- {
	}
	return p
}

// Per-service and per-backend bounds.
var (
	// Weight is a backend's relative share of new flows; 0 drains it.
	Weight = Limit[uint32]{Name: "weight", Default: 1, Min: 0, Max: MaxWeight}
	// Persistence keeps a client address on one backend for this long
	// (whole seconds); 0, the default, is off.
	Persistence = Limit[time.Duration]{Name: "persistence", Default: 0, Min: 0, Max: 30 * 24 * time.Hour, defaultIsZero: true}
)

// MaxWeight is the largest backend weight.
const MaxWeight = 65535

// MaxLeastConnBackends is the number of backends with a weight above 0 a
// least-conn service may have: the data plane scans them all for every new
// flow, so the scan has a fixed bound (MAX_LC_BACKENDS in the data plane; a
// test in package maps holds the two equal).
const MaxLeastConnBackends = 256

// Idle timeouts of the connection table (config file: conntrack), those of
// IPVS by default.
var (
	TCPTimeout    = Limit[time.Duration]{Name: "tcp_timeout", Default: 900 * time.Second, Min: time.Second, Max: 7 * 24 * time.Hour}
	TCPFinTimeout = Limit[time.Duration]{Name: "tcp_fin_timeout", Default: 120 * time.Second, Min: time.Second, Max: 7 * 24 * time.Hour}
	UDPTimeout    = Limit[time.Duration]{Name: "udp_timeout", Default: 300 * time.Second, Min: time.Second, Max: 7 * 24 * time.Hour}
)

// Health-check bounds. The timeout's default is DefaultCheckTimeout or
// half the interval, whichever is less; it must stay below the interval.
var (
	CheckInterval = Limit[time.Duration]{Name: "interval", Default: 2 * time.Second, Min: 100 * time.Millisecond, Max: time.Hour}
	CheckRise     = Limit[int]{Name: "rise", Default: 2, Min: 1, Max: 100}
	CheckFall     = Limit[int]{Name: "fall", Default: 3, Min: 1, Max: 100}
)

// DefaultCheckTimeout bounds one probe unless the service says otherwise.
const DefaultCheckTimeout = time.Second
