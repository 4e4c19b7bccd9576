package probe

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

var (
	localMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	hopMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
)

const tcActOK = 0

// run passes in through prog (a TC program) and returns its verdict and
// the packet it leaves.
func run(t *testing.T, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+128)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

// ipLen is the length of the IP packet of an untagged frame.
func ipLen(f []byte) int {
	if f[14]>>4 == 4 {
		return int(binary.BigEndian.Uint16(f[16:]))
	}
	return 40 + int(binary.BigEndian.Uint16(f[18:]))
}

// withTOS writes tos into the IP header of frame f (untagged) and fixes the
// IPv4 header checksum.
func withTOS(f []byte, tos uint8) []byte {
	if f[14]>>4 == 4 {
		f[15] = tos
		binary.BigEndian.PutUint16(f[24:], 0)
		var s uint32
		for i := 14; i < 34; i += 2 {
			s += uint32(binary.BigEndian.Uint16(f[i:]))
		}
		for s > 0xffff {
			s = s&0xffff + s>>16
		}
		binary.BigEndian.PutUint16(f[24:], ^uint16(s))
		return f
	}
	v := binary.BigEndian.Uint32(f[14:])
	binary.BigEndian.PutUint32(f[14:], v&^(0xff<<20)|uint32(tos)<<20)
	return f
}

// TestProbeOut: a registered check connection's packets leave as the data
// plane's would: the inner destination made the VIP (TCP checksum fixed),
// inside an outer header from the configured source to the backend (ipip,
// or gue with the UDP checksum over IPv6), the inner DSCP/ECN copied, the
// frame's MACs kept (the kernel's next hop for the backend); answers from
// the VIP get the backend's address back. Anything not registered passes
// unchanged.
func TestProbeOut(t *testing.T) {
	priv.Require(t)
	tun, err := load()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tun.Close() }()

	const lport = 40000
	v4 := struct{ local, backend, vip, src netip.Addr }{
		netip.MustParseAddr("198.18.100.1"), netip.MustParseAddr("198.18.200.11"), netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.100.9")}
	v6 := struct{ local, backend, vip, src netip.Addr }{
		netip.MustParseAddr("2001:2:100::1"), netip.MustParseAddr("2001:2:200::11"), netip.MustParseAddr("2001:2:0:1::1"), netip.MustParseAddr("2001:2:100::9")}
	for _, c := range []struct {
		name      string
		local, be netip.Addr
		vip, src  netip.Addr
		port, gue uint16
		tos       uint8
		payload   []byte
	}{
		{"ipip4 syn", v4.local, v4.backend, v4.vip, v4.src, 8080, 0, 0xb9, nil},
		{"gue4 request", v4.local, v4.backend, v4.vip, v4.src, 8081, 6080, 0, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"ipip6 syn", v6.local, v6.backend, v6.vip, v6.src, 8080, 0, 0x2e, nil},
		{"gue6 request", v6.local, v6.backend, v6.vip, v6.src, 8081, 6080, 0x01, []byte("GET /healthz HTTP/1.1\r\nHost: y\r\n\r\n")},
		{"gue6 odd length", v6.local, v6.backend, v6.vip, v6.src, 8082, 7000, 0, []byte("odd")},
	} {
		r := maps.ProbeRoute{Backend: c.be, VIP: c.vip, Source: c.src, Port: c.port, LocalPort: lport, GUEPort: c.gue}
		if err := tun.probes.Add(r); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		spec := frame.Spec{SrcMAC: localMAC, DstMAC: hopMAC, Src: netip.AddrPortFrom(c.local, lport), Dst: netip.AddrPortFrom(c.be, c.port), SYN: c.payload == nil, Payload: c.payload}
		in := withTOS(frame.MustBuild(spec), c.tos)
		// The inner packet as the backend must get it: to the VIP.
		spec.Dst = netip.AddrPortFrom(c.vip, c.port)
		inner := withTOS(frame.MustBuild(spec), c.tos)
		// Without the Ethernet padding of a short frame (which a
		// socket's packets do not have, and which stays at the end).
		inner = inner[:14+ipLen(inner)]
		tn := frame.Tunnel{SrcMAC: localMAC, DstMAC: hopMAC, Src: c.src, Dst: c.be, TOS: c.tos}
		if c.be.Is4() {
			var id uint16
			tn.ID, tn.DF = &id, inner[14+6]&0x40 != 0
		} else {
			tn.FlowLabel = lport
		}
		if c.gue != 0 {
			tn.GUEPort, tn.GUESrcPort = c.gue, 0xc000|lport&0x3fff
			tn.ZeroUDPChecksum = c.be.Is4()
		}
		want := frame.MustEncap(inner, tn)
		v, out := run(t, tun.objs.ProbeOut, in)
		if v != tcActOK || len(out) < len(want) || !bytes.Equal(out[:len(want)], want) {
			t.Errorf("%s: verdict %d, output\n got %x\nwant %x", c.name, v, out, want)
		}

		// The answer, from the VIP, comes back as from the backend.
		ans := frame.Spec{SrcMAC: hopMAC, DstMAC: localMAC, Src: netip.AddrPortFrom(c.vip, c.port), Dst: netip.AddrPortFrom(c.local, lport), Payload: []byte("HTTP/1.1 200 OK\r\n\r\nok\n")}
		inAns := frame.MustBuild(ans)
		ans.Src = netip.AddrPortFrom(c.be, c.port)
		wantAns := frame.MustBuild(ans)
		if v, out := run(t, tun.objs.ProbeIn, inAns); v != tcActOK || !bytes.Equal(out, wantAns) {
			t.Errorf("%s: answer: verdict %d\n got %x\nwant %x", c.name, v, out, wantAns)
		}

		// Not registered: another local port, another backend, the other
		// direction's program, UDP.
		for i, s := range []frame.Spec{
			{Src: netip.AddrPortFrom(c.local, lport+1), Dst: netip.AddrPortFrom(c.be, c.port), SYN: true},
			{Src: netip.AddrPortFrom(c.local, lport), Dst: netip.AddrPortFrom(c.vip, c.port), SYN: true},
			{Src: netip.AddrPortFrom(c.local, lport), Dst: netip.AddrPortFrom(c.be, c.port), UDP: true, Payload: []byte("q")},
		} {
			s.SrcMAC, s.DstMAC = localMAC, hopMAC
			f := frame.MustBuild(s)
			for _, p := range []*ebpf.Program{tun.objs.ProbeOut, tun.objs.ProbeIn} {
				if v, out := run(t, p, f); v != tcActOK || !bytes.Equal(out, f) {
					t.Errorf("%s: unregistered packet %d changed by %s: verdict %d", c.name, i, p, v)
				}
			}
		}
		if err := tun.probes.Delete(r); err != nil {
			t.Fatal(err)
		}
		// Deregistered: passes unchanged.
		if v, out := run(t, tun.objs.ProbeOut, in); v != tcActOK || !bytes.Equal(out, in) {
			t.Errorf("%s: after Delete: verdict %d, changed", c.name, v)
		}
	}
	if n, err := tun.probes.Len(); err != nil || n != 0 {
		t.Errorf("entries left: %d, %v", n, err)
	}
	st, err := tun.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Out != 5 || st.In != 5 || st.Errors != 0 {
		t.Errorf("counters %+v, want 5 out, 5 in, no errors", st)
	}
}

// A route's addresses must be of one family; a duplicate registration is
// refused whole.
func TestProbeRouteErrors(t *testing.T) {
	priv.Require(t)
	tun, err := load()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tun.Close() }()
	mixed := maps.ProbeRoute{Backend: netip.MustParseAddr("198.18.200.11"), VIP: netip.MustParseAddr("2001:2::1"), Source: netip.MustParseAddr("198.18.100.1"), Port: 80, LocalPort: 1}
	if err := tun.probes.Add(mixed); err == nil {
		t.Error("mixed families accepted")
	}
	r := maps.ProbeRoute{Backend: netip.MustParseAddr("198.18.200.11"), VIP: netip.MustParseAddr("198.18.1.1"), Source: netip.MustParseAddr("198.18.100.1"), Port: 80, LocalPort: 1}
	if err := tun.probes.Add(r); err != nil {
		t.Fatal(err)
	}
	if err := tun.probes.Add(r); err == nil {
		t.Error("duplicate accepted")
	}
	if n, _ := tun.probes.Len(); n != 2 {
		t.Errorf("%d entries after a refused duplicate, want 2", n)
	}
}
