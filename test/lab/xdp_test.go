package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// miniBalancer returns an XDP program that bounces IPv4 frames for vip back
// out of the interface (XDP_TX) with the destination MAC set to backend and
// the source MAC set to self: the smallest possible L2 DSR balancer.
func miniBalancer(vip netip.Addr, backend, self net.HardwareAddr) *ebpf.ProgramSpec {
	le32 := func(b []byte) int64 { return int64(binary.LittleEndian.Uint32(b)) }
	le16 := func(b []byte) int64 { return int64(binary.LittleEndian.Uint16(b)) }
	v := vip.As4()
	return &ebpf.ProgramSpec{
		Type:       ebpf.XDP,
		AttachType: ebpf.AttachXDP,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 34), // Ethernet + IPv4 header
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
			asm.JNE.Imm32(asm.R5, 0x0008, "pass"), // ETH_P_IP, network order
			asm.LoadMem(asm.R5, asm.R2, 30, asm.Word),
			asm.JNE.Imm32(asm.R5, int32(le32(v[:])), "pass"),
			asm.StoreImm(asm.R2, 0, le32(backend[0:4]), asm.Word),
			asm.StoreImm(asm.R2, 4, le16(backend[4:6]), asm.Half),
			asm.StoreImm(asm.R2, 6, le32(self[0:4]), asm.Word),
			asm.StoreImm(asm.R2, 10, le16(self[4:6]), asm.Half),
			asm.Mov.Imm(asm.R0, 3), // XDP_TX
			asm.Return(),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
			asm.Return(),
		},
	}
}

// TestXDPTxThroughSegment checks the premise of the lab: a frame the
// balancer sends back out with XDP_TX reaches a backend, which answers the
// client directly, and this depends on the XDP_PASS program on the
// balancer's bridge port.
func TestXDPTxThroughSegment(t *testing.T) {
	t.Parallel()
	topo := NewT(t, Config{Backends: 1})
	c, lb, be := topo.Client, topo.Balancer, topo.Backends[0]
	if _, err := be.Serve("be1", 80); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(miniBalancer(topo.VIP4, be.MAC, lb.MAC))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	err = lb.NS.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: lb.Ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	vip := netip.AddrPortFrom(topo.VIP4, 80)
	for _, network := range []string{"tcp", "udp"} {
		for _, src := range []netip.AddrPort{{}, netip.AddrPortFrom(c.Extra4[2], 0)} {
			r, err := c.Query(network, src, vip, 2*time.Second)
			want := src.Addr()
			if !want.IsValid() {
				want = c.Addr4
			}
			if err != nil || r.Server != "be1" || r.Client.Addr() != want {
				t.Errorf("%s from %s to VIP: %v, %v", network, want, r, err)
			}
		}
	}
	// Streaming through the balancer: large writes, the client's TSO would
	// otherwise hand the balancer frames without a filled-in checksum.
	conn, err := c.Dial(netip.AddrPort{}, vip, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }() // the stream is over by then
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if _, err := conn.Read(buf); err != nil { // greeting
		t.Fatal(err)
	}
	line := make([]byte, 32<<10)
	for i := range line {
		line[i] = 'a' + byte(i%26)
	}
	line[len(line)-1] = '\n'
	total := 0
	if _, err := conn.Write(line); err != nil {
		t.Fatal(err)
	}
	for total < len(line)+len("echo ") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read echo after %d bytes: %v", total, err)
		}
		total += n
	}

	// Without the pass program on the balancer's bridge port, XDP_TX'd
	// frames vanish.
	topo.mu.Lock()
	err = topo.passLinks[lb.PeerName].Close()
	delete(topo.passLinks, lb.PeerName)
	topo.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Query("udp", netip.AddrPort{}, vip, 300*time.Millisecond); err == nil {
		t.Fatalf("query answered (%v) without XDP on the balancer's bridge port", r)
	}
	if err := topo.AddPassXDP(lb.PeerName); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query("udp", netip.AddrPort{}, vip, 2*time.Second); err != nil {
		t.Fatalf("after AddPassXDP: %v", err)
	}
}
