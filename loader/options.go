package loader

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/xlb-lb/xlb/maps/lb"
)

// XDPMode is how the program attaches to the interface (lb.Native or
// lb.Generic).
type XDPMode = lb.XDPMode

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
	// TableSize is the number of slots of every service's scheduler table
	// (prime; see lb.TableSize).
	TableSize uint32
	// MaxServices, MaxBackends (service-backend pairs) and ConntrackSize
	// size the maps.
	MaxServices   uint32
	MaxBackends   uint32
	ConntrackSize uint32
	// PersistSize is the number of (service, client address) entries of
	// the persistence table (LRU).
	PersistSize uint32
	// HalfOpenSize is the number of entries of the half-open TCP table
	// (LRU): SYNs awaiting the handshake's next packet.
	HalfOpenSize uint32
	// Timeouts are the connection table's idle timeouts; zero fields take
	// DefaultTimeouts. Balancer.SetTimeouts changes them while running.
	Timeouts lb.Timeouts
	// ICMP holds the ICMP switches (the zero value: echo requests to a
	// VIP answered, ICMP errors forwarded to their flow's backend).
	// Balancer.SetICMP changes them while running.
	ICMP lb.ICMP
	// Encap holds the encapsulated modes' outer sources and GUE port (0:
	// lb.DefaultGUEPort). Balancer.SetEncap changes them while running.
	Encap lb.Encap
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

	// batchTables makes a fresh data plane's tables the layout of xlb
	// before they were memory-mapped (tests of re-adopting such pins).
	batchTables bool
}

func (o *Options) setDefaults() {
	if o.XDPMode == "" {
		o.XDPMode = lb.Native
	}
	o.TableSize = lb.TableSize.Or(o.TableSize)
	o.MaxServices = lb.MaxServices.Or(o.MaxServices)
	o.MaxBackends = lb.MaxBackends.Or(o.MaxBackends)
	o.ConntrackSize = lb.ConntrackSize.Or(o.ConntrackSize)
	o.PersistSize = lb.PersistSize.Or(o.PersistSize)
	o.HalfOpenSize = lb.HalfOpenSize.Or(o.HalfOpenSize)
	if o.Encap.GUEPort == 0 {
		o.Encap.GUEPort = lb.DefaultGUEPort
	}
	o.Timeouts = o.Timeouts.OrDefault()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if _, ok := lb.XDPModes.Lookup(string(o.XDPMode)); !ok {
		return fmt.Errorf("xdp mode %q: want native or generic", o.XDPMode)
	}
	if len(o.MAC) != 0 && len(o.MAC) != 6 {
		return fmt.Errorf("mac %s: not a 6-byte Ethernet address", o.MAC)
	}
	if err := lb.CheckTableSize(o.TableSize); err != nil {
		return fmt.Errorf("table size %d: %w", o.TableSize, err)
	}
	for _, l := range []struct {
		lim lb.Limit[uint32]
		v   uint32
	}{{lb.MaxServices, o.MaxServices}, {lb.MaxBackends, o.MaxBackends}, {lb.ConntrackSize, o.ConntrackSize}, {lb.PersistSize, o.PersistSize}, {lb.HalfOpenSize, o.HalfOpenSize}} {
		if err := l.lim.Check(l.v); err != nil {
			return fmt.Errorf("%s %d: %w", l.lim.Name, l.v, err)
		}
	}
	return o.Timeouts.Validate()
}
