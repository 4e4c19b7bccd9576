package benchbpf

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

type (
	// Objects are the loaded programs and maps.
	Objects = benchObjects
	// GenState is the generator's per-CPU state and counters.
	GenState = benchGenState
	// SinkCounters are the sink's per-CPU counters.
	SinkCounters = benchSinkCounters
	// BenchRestoreFrame is the frame restore writes back.
	BenchRestoreFrame = benchRestoreFrame
	// SpreadConfig says which flows spread hands out, in which order.
	SpreadConfig = benchSpreadCfg
)

// The sink's latency histogram (bench.c lat_hist): 50 ns buckets below
// 100 us, 10 us buckets below 10 ms, then one bucket for 10 ms or more and
// one for a stamp later than the sink's clock.
const (
	LatFineNs    = 50
	LatFineEnd   = 100_000
	LatCoarseNs  = 10_000
	LatEnd       = 10_000_000
	LatBuckets   = LatFineEnd/LatFineNs + (LatEnd-LatFineEnd)/LatCoarseNs + 2
	LatOverflow  = LatBuckets - 2 // LatEnd or more
	LatFuture    = LatBuckets - 1 // stamp after the sink's clock
	latMagic     = 0x31302d74616c626c
	LatStampSize = 16 // the payload's first bytes: magic, then the stamp
)

// LatStamp writes the magic and monoNs (CLOCK_MONOTONIC) into the first
// LatStampSize bytes of p, a UDP payload, as the sink reads them.
func LatStamp(p []byte, monoNs uint64) {
	binary.NativeEndian.PutUint64(p[0:8], latMagic)
	binary.NativeEndian.PutUint64(p[8:16], monoNs)
}

// Config are the programs' load-time settings. Zero values are fine for
// the programs that do not use them (macswap and fresh use none).
type Config struct {
	// FwdDst and FwdSrc are the MACs l2fwd writes.
	FwdDst, FwdSrc net.HardwareAddr
	// GenDst and GenSrc are the MACs of generated frames.
	GenDst, GenSrc net.HardwareAddr
	// GenSrcAddr is the first source address; flow i comes from
	// GenSrcAddr + i/GenPorts, port GenSrcPort + i%GenPorts.
	GenSrcAddr netip.Addr
	// GenDst is the destination (the VIP) and GenDstPort its UDP port.
	GenDstAddr netip.Addr
	GenDstPort uint16
	GenSrcPort uint16
	// GenFlows is the number of distinct flows the generator cycles
	// through; GenPorts the source ports per source address.
	GenFlows, GenPorts uint32
	// SinkDst is the address the sink counts as ours.
	SinkDst netip.Addr
}

// Load loads every benchmark program with cfg applied.
func Load(cfg Config) (*Objects, error) {
	spec, err := loadBench()
	if err != nil {
		return nil, fmt.Errorf("load bench collection spec: %w", err)
	}
	set := func(name string, v any) error {
		vs := spec.Variables[name]
		if vs == nil {
			return fmt.Errorf("bench collection has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	mac := func(m net.HardwareAddr) [6]byte {
		var out [6]byte
		copy(out[:], m)
		return out
	}
	be32 := func(a netip.Addr) [4]byte {
		if !a.Is4() {
			return [4]byte{}
		}
		return a.As4() // network order: the bytes as they are on the wire
	}
	for _, kv := range []struct {
		name string
		v    any
	}{
		{"fwd_dst_mac", mac(cfg.FwdDst)},
		{"fwd_src_mac", mac(cfg.FwdSrc)},
		{"gen_dst_mac", mac(cfg.GenDst)},
		{"gen_src_mac", mac(cfg.GenSrc)},
		{"gen_saddr", be32(cfg.GenSrcAddr)},
		{"gen_daddr", be32(cfg.GenDstAddr)},
		{"gen_dport", cfg.GenDstPort},
		{"gen_sport", cfg.GenSrcPort},
		{"gen_flows", max(cfg.GenFlows, 1)},
		{"gen_ports", max(cfg.GenPorts, 1)},
		{"sink_daddr", be32(cfg.SinkDst)},
	} {
		if err := set(kv.name, kv.v); err != nil {
			return nil, err
		}
	}
	if got := spec.Maps["lat_hist"].MaxEntries; got != LatBuckets {
		return nil, fmt.Errorf("lat_hist has %d buckets, the Go side counts %d: bench.c and load.go disagree", got, LatBuckets)
	}
	var objs Objects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load bench programs: %w", err)
	}
	return &objs, nil
}

// GenTotals sums the generator's per-CPU state.
func (o *Objects) GenTotals() (GenState, error) {
	var per []GenState
	if err := o.GenStats.Lookup(uint32(0), &per); err != nil {
		return GenState{}, fmt.Errorf("read generator counters: %w", err)
	}
	var t GenState
	for _, c := range per {
		t.Seq += c.Seq
		t.Sent += c.Sent
		t.ShortFrames += c.ShortFrames
	}
	return t, nil
}

// SinkTotals sums the sink's per-CPU counters.
func (o *Objects) SinkTotals() (SinkCounters, error) {
	var per []SinkCounters
	if err := o.SinkStats.Lookup(uint32(0), &per); err != nil {
		return SinkCounters{}, fmt.Errorf("read sink counters: %w", err)
	}
	var t SinkCounters
	for _, c := range per {
		t.Packets += c.Packets
		t.Ours += c.Ours
		t.Bytes += c.Bytes
	}
	return t, nil
}

// FreshCount sums the fresh mutator's per-CPU sequence numbers (frames it
// rewrote).
func (o *Objects) FreshCount() (uint64, error) {
	var per []uint64
	if err := o.FreshSeq.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read fresh sequence: %w", err)
	}
	var t uint64
	for _, c := range per {
		t += c
	}
	return t, nil
}

// SetFreshNext makes fresh tail-call prog.
func (o *Objects) SetFreshNext(prog *ebpf.Program) error {
	if err := o.FreshNext.Put(uint32(0), prog); err != nil {
		return fmt.Errorf("set fresh's next program: %w", err)
	}
	return nil
}

// SwitchPort makes l2switch redirect frames for mac to ifindex, through
// devmap slot slot (one per port).
func (o *Objects) SwitchPort(slot uint32, mac net.HardwareAddr, ifindex int) error {
	if len(mac) != 6 {
		return fmt.Errorf("switch port %d: mac %s is not 6 bytes", ifindex, mac)
	}
	if err := o.SwitchPorts.Put(slot, uint32(ifindex)); err != nil {
		return fmt.Errorf("switch port slot %d -> ifindex %d: %w", slot, ifindex, err)
	}
	var k [8]byte
	copy(k[:], mac)
	if err := o.SwitchFdb.Put(k, slot); err != nil {
		return fmt.Errorf("switch fdb %s -> slot %d: %w", mac, slot, err)
	}
	return nil
}

// SetRestore makes restore write frame back before each run (renewing its
// source, as fresh does, when fresh is set; counted by FreshCount) and
// tail-call next.
func (o *Objects) SetRestore(frame []byte, fresh bool, next *ebpf.Program) error {
	var t BenchRestoreFrame
	if len(frame) < 60 || len(frame) > len(t.Data) {
		return fmt.Errorf("restore: frame of %d bytes, want 60-%d", len(frame), len(t.Data))
	}
	t.Len = uint32(len(frame))
	copy(t.Data[:], frame)
	if fresh {
		t.Fresh = 1
	}
	if err := o.RestoreTmpl.Put(uint32(0), &t); err != nil {
		return fmt.Errorf("set restore's frame: %w", err)
	}
	if err := o.RestoreNext.Put(uint32(0), next); err != nil {
		return fmt.Errorf("set restore's next program: %w", err)
	}
	return nil
}

// SetSpread configures spread and makes it tail-call next.
func (o *Objects) SetSpread(cfg SpreadConfig, next *ebpf.Program) error {
	if cfg.Flows == 0 || cfg.Ports == 0 {
		return fmt.Errorf("spread: %d flows, %d ports per address: want both above 0", cfg.Flows, cfg.Ports)
	}
	if err := o.SpreadConf.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("set spread's configuration: %w", err)
	}
	if err := o.SpreadNext.Put(uint32(0), next); err != nil {
		return fmt.Errorf("set spread's next program: %w", err)
	}
	return nil
}

// SpreadCount sums spread's per-CPU counts (frames it rewrote).
func (o *Objects) SpreadCount() (uint64, error) {
	var per []uint64
	if err := o.SpreadSeq.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read spread sequence: %w", err)
	}
	var t uint64
	for _, c := range per {
		t += c
	}
	return t, nil
}

// LatencyHist returns the sink's latency histogram summed over CPUs,
// LatBuckets counts.
func (o *Objects) LatencyHist() ([]uint64, error) {
	out := make([]uint64, LatBuckets)
	var per []uint64
	for i := range out {
		if err := o.LatHist.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read latency bucket %d: %w", i, err)
		}
		for _, c := range per {
			out[i] += c
		}
	}
	return out, nil
}
