package benchbpf

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

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
