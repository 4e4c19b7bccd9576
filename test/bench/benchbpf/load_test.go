package benchbpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// The generated types must match the maps' value sizes.
func TestValueSizes(t *testing.T) {
	spec, err := loadBench()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    string
		size uintptr
	}{{"gen_stats", unsafe.Sizeof(GenState{})}, {"sink_stats", unsafe.Sizeof(SinkCounters{})}} {
		if got := spec.Maps[c.m].ValueSize; uintptr(got) != c.size {
			t.Errorf("map %s: value size %d, Go type %d", c.m, got, c.size)
		}
	}
}

// The baselines do exactly what the bench says they do.
func TestBaselines(t *testing.T) {
	priv.Require(t)
	dst, src := []byte{2, 0, 0, 0, 0, 0xbe}, []byte{2, 0, 0, 0, 0, 0x1b}
	objs, err := Load(Config{FwdDst: dst, FwdSrc: src})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := objs.Close(); err != nil {
			t.Errorf("close objects: %v", err)
		}
	}()
	in := frame.MustBuild(frame.Spec{DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.MustParseAddrPort("198.18.1.1:53"), UDP: true, Len: 64})
	for _, c := range []struct {
		name string
		prog *ebpf.Program
		want []byte
	}{
		{"macswap", objs.Macswap, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}},
		{"l2fwd", objs.L2fwd, append(append([]byte{}, dst...), src...)},
	} {
		out := make([]byte, len(in))
		opts := &ebpf.RunOptions{Data: in, DataOut: out}
		ret, err := c.prog.Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		if ret != 3 {
			t.Errorf("%s: verdict %d, want XDP_TX", c.name, ret)
		}
		if !bytes.Equal(opts.DataOut[:12], c.want) || !bytes.Equal(opts.DataOut[12:], in[12:]) {
			t.Errorf("%s: frame % x, want MACs % x and the rest untouched", c.name, opts.DataOut[:14], c.want)
		}
	}
}

// spread hands out flow k*step mod flows on its k-th run on a CPU, and
// passes the frame on unchanged otherwise.
func TestSpread(t *testing.T) {
	priv.Require(t)
	objs, err := Load(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := objs.Close(); err != nil {
			t.Errorf("close objects: %v", err)
		}
	}()
	cfg := SpreadConfig{Flows: 10, Step: 3, Saddr: 0xc6130000, Ports: 4, Sport: 3000}
	if err := objs.SetSpread(cfg, objs.Macswap); err != nil {
		t.Fatal(err)
	}
	in := frame.MustBuild(frame.Spec{DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.MustParseAddrPort("198.18.1.1:80")})
	// One CPU, so the per-CPU sequence is one sequence.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &all) }()
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	k0, err := objs.SpreadCount()
	if err != nil {
		t.Fatal(err)
	}
	for k := k0; k < k0+12; k++ {
		out := make([]byte, len(in))
		opts := &ebpf.RunOptions{Data: in, DataOut: out}
		if ret, err := objs.Spread.Run(opts); err != nil || ret != 3 {
			t.Fatalf("run %d: verdict %d, %v", k, ret, err)
		}
		i := uint32(k*uint64(cfg.Step)) % cfg.Flows
		a := cfg.Saddr + i/cfg.Ports
		wantSrc := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		gotSrc := netip.AddrFrom4([4]byte(opts.DataOut[26:30]))
		gotPort := binary.BigEndian.Uint16(opts.DataOut[34:36])
		if gotSrc != wantSrc || gotPort != uint16(cfg.Sport+i%cfg.Ports) {
			t.Errorf("run %d: source %s:%d, want flow %d, %s:%d", k, gotSrc, gotPort, i, wantSrc, cfg.Sport+i%cfg.Ports)
		}
		if !bytes.Equal(opts.DataOut[36:], in[36:]) || !bytes.Equal(opts.DataOut[12:26], in[12:26]) {
			t.Errorf("run %d: spread changed more than the source", k)
		}
	}
	if n, err := objs.SpreadCount(); err != nil || n != k0+12 {
		t.Errorf("spread count %d, want %d (%v)", n, k0+12, err)
	}
}

// The sink files a stamped datagram in the bucket of its age, and one
// stamped in its future in the last bucket.
func TestSinkLatency(t *testing.T) {
	priv.Require(t)
	vip := netip.MustParseAddr("198.18.1.1")
	objs, err := Load(Config{SinkDst: vip})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := objs.Close(); err != nil {
			t.Errorf("close objects: %v", err)
		}
	}()
	payload := make([]byte, 22)
	mk := func(age time.Duration) []byte {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		LatStamp(payload, uint64(ts.Nano()-int64(age)))
		return frame.MustBuild(frame.Spec{DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
			Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.AddrPortFrom(vip, 9), UDP: true, Payload: payload})
	}
	for _, age := range []time.Duration{2 * time.Millisecond, -time.Hour} {
		in := mk(age)
		if ret, err := objs.Sink.Run(&ebpf.RunOptions{Data: in}); err != nil || ret != 1 {
			t.Fatalf("sink: verdict %d, %v", ret, err)
		}
	}
	h, err := objs.LatencyHist()
	if err != nil {
		t.Fatal(err)
	}
	var at []int
	for i, c := range h {
		if c != 0 {
			at = append(at, i)
		}
	}
	// 2 ms old: a 10 us bucket from [2 ms, ...), a little later for the
	// time between the stamp and the run.
	first := LatFineEnd/LatFineNs + (2_000_000-LatFineEnd)/LatCoarseNs
	if len(at) != 2 || at[0] < first || at[0] > first+100 || at[1] != LatFuture {
		t.Errorf("samples in buckets %v, want one in [%d, %d] and one in %d", at, first, first+100, LatFuture)
	}
}
