package loader

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/maps"
)

// XDPMode is how the program attaches to the interface.
type XDPMode string

// Attach modes.
const (
	// Native runs the program in the driver (the fast path).
	Native XDPMode = "native"
	// Generic runs it after the kernel built an skb: works on any
	// interface, much slower. Only when asked for.
	Generic XDPMode = "generic"
)

// UnmarshalText parses "native" or "generic".
func (m *XDPMode) UnmarshalText(b []byte) error {
	switch XDPMode(strings.ToLower(string(b))) {
	case Native, "":
		*m = Native
	case Generic:
		*m = Generic
	default:
		return fmt.Errorf("xdp mode %q: want native or generic", b)
	}
	return nil
}

// Defaults for Options.
const (
	DefaultMaxServices   = 4096
	DefaultMaxBackends   = 65536
	DefaultConntrackSize = 1 << 20
	DefaultPersistSize   = 1 << 18
)

// Default idle timeouts of the connection table (those of IPVS: tcp 900s,
// tcpfin 120s, udp 300s).
var DefaultTimeouts = maps.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}

// MaxTimeout bounds each idle timeout (a week).
const MaxTimeout = 7 * 24 * time.Hour

// Options configure Open. Zero values take the defaults.
type Options struct {
	// Interface to attach to, resolved in the caller's network namespace.
	// Empty: load only (BPF_PROG_TEST_RUN tests).
	Interface string
	// MAC is the source address of forwarded frames. Default: the
	// interface's; with neither, the address each frame was sent to.
	MAC net.HardwareAddr
	// XDPMode: Native (default) or Generic.
	XDPMode XDPMode
	// PinDir is the bpffs directory holding this balancer's pins (link and
	// maps). Empty: nothing is pinned and Close detaches.
	PinDir string
	// MaglevSize is the number of slots per service table (prime).
	MaglevSize uint32
	// MaxServices, MaxBackends (service-backend pairs) and ConntrackSize
	// size the maps.
	MaxServices   uint32
	MaxBackends   uint32
	ConntrackSize uint32
	// PersistSize is the number of (service, client address) entries of
	// the persistence table (LRU).
	PersistSize uint32
	// Timeouts are the connection table's idle timeouts; zero fields take
	// DefaultTimeouts. Balancer.SetTimeouts changes them while running.
	Timeouts maps.Timeouts
	// ConntrackNoCommonLRU gives each CPU its own LRU list in the shared
	// connection table (BPF_F_NO_COMMON_LRU). See the benchmark
	// BenchmarkConntrackVariants for the measurement behind the default.
	ConntrackNoCommonLRU bool
	// ConntrackPerCPU makes the connection table an LRU_PERCPU_HASH (for
	// measurements only: a flow seen on another CPU has no backend there
	// and is rescheduled).
	ConntrackPerCPU bool
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.XDPMode == "" {
		o.XDPMode = Native
	}
	if o.MaglevSize == 0 {
		o.MaglevSize = maps.DefaultMaglevSize
	}
	if o.MaxServices == 0 {
		o.MaxServices = DefaultMaxServices
	}
	if o.MaxBackends == 0 {
		o.MaxBackends = DefaultMaxBackends
	}
	if o.ConntrackSize == 0 {
		o.ConntrackSize = DefaultConntrackSize
	}
	if o.PersistSize == 0 {
		o.PersistSize = DefaultPersistSize
	}
	o.Timeouts = timeoutDefaults(o.Timeouts)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	switch {
	case o.XDPMode != Native && o.XDPMode != Generic:
		return fmt.Errorf("xdp mode %q: want native or generic", o.XDPMode)
	case len(o.MAC) != 0 && len(o.MAC) != 6:
		return fmt.Errorf("mac %s: not a 6-byte Ethernet address", o.MAC)
	case !maps.IsPrime(o.MaglevSize):
		return fmt.Errorf("maglev table size %d: must be prime (e.g. 65537)", o.MaglevSize)
	case o.MaglevSize < 251 || o.MaglevSize > 1<<24:
		return fmt.Errorf("maglev table size %d: out of range 251-16777216", o.MaglevSize)
	case o.MaxServices < 1 || o.MaxServices > 1<<16:
		return fmt.Errorf("max services %d: out of range 1-65536", o.MaxServices)
	case o.MaxBackends < 2 || o.MaxBackends > 1<<24:
		return fmt.Errorf("max backends %d: out of range 2-16777216", o.MaxBackends)
	case o.ConntrackSize < 64 || o.ConntrackSize > 1<<28:
		return fmt.Errorf("connection table size %d: out of range 64-268435456", o.ConntrackSize)
	case o.PersistSize < 64 || o.PersistSize > 1<<28:
		return fmt.Errorf("persistence table size %d: out of range 64-268435456", o.PersistSize)
	}
	return validateTimeouts(o.Timeouts)
}

func timeoutDefaults(t maps.Timeouts) maps.Timeouts {
	if t.TCP == 0 {
		t.TCP = DefaultTimeouts.TCP
	}
	if t.TCPFin == 0 {
		t.TCPFin = DefaultTimeouts.TCPFin
	}
	if t.UDP == 0 {
		t.UDP = DefaultTimeouts.UDP
	}
	return t
}

func validateTimeouts(t maps.Timeouts) error {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"tcp", t.TCP}, {"tcp fin", t.TCPFin}, {"udp", t.UDP}} {
		if f.v < time.Second || f.v > MaxTimeout {
			return fmt.Errorf("%s idle timeout %s: out of range 1s-%s", f.name, f.v, MaxTimeout)
		}
	}
	return nil
}
