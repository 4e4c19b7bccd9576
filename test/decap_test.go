//go:build integration

package test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// TestDecapBackendRole runs xlbd --role backend on a lab backend: the
// client sends ipip and gue packets it crafted (AF_PACKET) to the
// backend's own address, and a UDP server on the VIP (on lo) sees the
// client's address; a TCP SYN so sent is answered by the backend's stack
// with a SYN-ACK from the VIP straight to the client. Status shows the role and counters; a restart
// re-adopts the pins and keeps decapsulating; a reload applies a new decap
// section whole, and a bad one changes nothing.
func TestDecapBackendRole(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 1})
	be, cl := topo.Backends[0], topo.Client
	config := fmt.Sprintf("interface: eth0\ndecap:\n  vips: [%s, '%s']\n", topo.VIP4, topo.VIP6)
	d := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: be, Config: config, Metrics: xlbdproc.DefaultMetrics, Args: []string{"--role", "backend"}})
	d.Start()

	status := func() api.Status {
		t.Helper()
		st, err := d.Client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Role != "backend" || st.Decap == nil {
			t.Fatalf("status: role %q, decap %v", st.Role, st.Decap)
		}
		return st
	}
	st := status()
	if strings.Join(st.Decap.VIPs, ",") != topo.VIP4.String()+","+topo.VIP6.String() || st.Decap.GUEPort != 6080 {
		t.Errorf("decap settings %+v", st.Decap)
	}
	if !strings.Contains(strings.Join(st.Decap.Addresses, ","), be.Addr4.String()) || !strings.Contains(strings.Join(st.Decap.Addresses, ","), be.Addr6.String()) {
		t.Errorf("outer addresses %v lack the interface's %s, %s", st.Decap.Addresses, be.Addr4, be.Addr6)
	}

	// UDP servers on the VIPs, in the backend's namespace.
	type got struct {
		from netip.AddrPort
		data string
	}
	arrivals := make(chan got, 16)
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		var c *net.UDPConn
		if err := be.NS.Do(func() error {
			var err error
			c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 9000)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				arrivals <- got{from, string(buf[:n])}
			}
		}()
	}
	fd, err := newPacketSocket(cl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	send := func(vip netip.Addr, outer int, gue uint16, msg string) {
		t.Helper()
		src := netip.AddrPortFrom(topo.Client.Addr4, 41000)
		if vip.Is6() {
			src = netip.AddrPortFrom(topo.Client.Addr6, 41000)
		}
		in := frame.MustBuild(frame.Spec{SrcMAC: cl.MAC, DstMAC: be.MAC, Src: src, Dst: netip.AddrPortFrom(vip, 9000), UDP: true, Payload: []byte(msg)})
		tun := frame.Tunnel{SrcMAC: cl.MAC, DstMAC: be.MAC, Src: cl.Addr4, Dst: be.Addr4, GUEPort: gue, GUESrcPort: 5555}
		if outer == 6 {
			tun.Src, tun.Dst = cl.Addr6, be.Addr6
		}
		if err := sendFrame(fd, cl.Ifindex, frame.MustEncap(in, tun)); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(msg string, from netip.Addr) {
		t.Helper()
		select {
		case a := <-arrivals:
			if a.data != msg || a.from.Addr() != from {
				t.Errorf("server got %q from %s, want %q from %s", a.data, a.from, msg, from)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("server got nothing for %q", msg)
		}
	}
	expectNone := func() {
		t.Helper()
		select {
		case a := <-arrivals:
			t.Errorf("server got %q from %s, want nothing", a.data, a.from)
		case <-time.After(500 * time.Millisecond):
		}
	}
	send(topo.VIP4, 4, 0, "ipip 4in4")
	expect("ipip 4in4", topo.Client.Addr4)
	send(topo.VIP6, 6, 6080, "gue 6in6")
	expect("gue 6in6", topo.Client.Addr6)
	send(topo.VIP6, 4, 0, "ipip 6in4")
	expect("ipip 6in4", topo.Client.Addr6)
	send(topo.VIP4, 6, 6080, "gue 4in6")
	expect("gue 4in6", topo.Client.Addr4)
	// TCP: the backend's stack accepts the decapsulated SYN from the
	// client's address and answers it directly (SYN-ACK from the VIP to the
	// client, not encapsulated).
	srv, err := be.Serve("decap", 9001)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	rx := newSniffer(t, cl)
	for i, c := range []struct {
		vip   netip.Addr
		outer int
		gue   uint16
	}{{topo.VIP4, 4, 0}, {topo.VIP6, 6, 6080}} {
		src := netip.AddrPortFrom(topo.Client.Addr4, uint16(42000+i))
		if c.vip.Is6() {
			src = netip.AddrPortFrom(topo.Client.Addr6, uint16(42000+i))
		}
		dst := netip.AddrPortFrom(c.vip, 9001)
		syn := frame.MustBuild(frame.Spec{SrcMAC: cl.MAC, DstMAC: be.MAC, Src: src, Dst: dst, SYN: true, TCPOptions: true})
		tun := frame.Tunnel{SrcMAC: cl.MAC, DstMAC: be.MAC, Src: cl.Addr4, Dst: be.Addr4, GUEPort: c.gue, GUESrcPort: 5555}
		if c.outer == 6 {
			tun.Src, tun.Dst = cl.Addr6, be.Addr6
		}
		if err := sendFrame(fd, cl.Ifindex, frame.MustEncap(syn, tun)); err != nil {
			t.Fatal(err)
		}
		if !rx.synAck(dst, src, 3*time.Second) {
			t.Errorf("no SYN-ACK from %s to %s", dst, src)
		}
	}

	st = status()
	if st.Decap.Decapsulated["ipip 4in4"] != 2 || st.Decap.Decapsulated["gue 6in6"] != 2 {
		t.Errorf("decapsulated after the SYNs: %v", st.Decap.Decapsulated)
	}
	for _, k := range []string{"ipip 6in4", "gue 4in6"} {
		if st.Decap.Decapsulated[k] != 1 {
			t.Errorf("decapsulated %s: %d, want 1", k, st.Decap.Decapsulated[k])
		}
	}
	m := d.Metrics()
	if !strings.Contains(m, `xlb_decap_packets_total{inner="ipv6",mode="gue",outer="ipv6"} 2`) {
		t.Errorf("metrics lack the gue 6in6 count:\n%s", m)
	}

	// A restart re-adopts the pins: counters kept, still decapsulating.
	d.Stop()
	if _, err := os.Stat(filepath.Join(d.PinDir(), "decap_stats")); err != nil {
		t.Fatalf("pins after stop: %v", err)
	}
	send(topo.VIP4, 4, 0, "while xlbd is down")
	expect("while xlbd is down", topo.Client.Addr4)
	d.Start()
	st = status()
	if !st.Decap.Adopted || st.Decap.Decapsulated["ipip 4in4"] != 3 {
		t.Errorf("after restart: adopted %v, ipip 4in4 %d (want true, 3)", st.Decap.Adopted, st.Decap.Decapsulated["ipip 4in4"])
	}

	// A bad reload changes nothing; a good one applies whole.
	d.WriteConfig(config + fmt.Sprintf("services: [{vip: %s, port: 80}]\n", topo.VIP4))
	d.Reload()
	time.Sleep(300 * time.Millisecond)
	if st := status(); len(st.Decap.VIPs) != 2 {
		t.Errorf("a refused reload changed the VIPs: %v", st.Decap.VIPs)
	}
	d.WriteConfig(fmt.Sprintf("interface: eth0\ndecap: {vips: ['%s'], gue_port: 7000}\n", topo.VIP6))
	d.Reload()
	deadline := time.Now().Add(3 * time.Second)
	for st = status(); st.Decap.GUEPort != 7000 && time.Now().Before(deadline); st = status() {
		time.Sleep(50 * time.Millisecond)
	}
	if st.Decap.GUEPort != 7000 || strings.Join(st.Decap.VIPs, ",") != topo.VIP6.String() {
		t.Fatalf("after reload: %+v", st.Decap)
	}
	notVIP := st.Decap.Passed["not_vip"]
	send(topo.VIP4, 4, 0, "no longer a vip")
	expectNone()
	send(topo.VIP6, 6, 7000, "gue on the new port")
	expect("gue on the new port", topo.Client.Addr6)
	if st := status(); st.Decap.Passed["not_vip"] != notVIP+1 {
		t.Errorf("not_vip %d, want %d", st.Decap.Passed["not_vip"], notVIP+1)
	}
}

// sniffer reads every frame arriving on a host's eth0 (AF_PACKET).
type sniffer struct{ fd int }

func newSniffer(t *testing.T, h *lab.Host) *sniffer {
	t.Helper()
	const ethPAll = 0x0003
	proto := int(ethPAll>>8 | (ethPAll&0xff)<<8) // network order
	fd := -1
	err := h.NS.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: h.Ifindex})
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", h.Name, err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &sniffer{fd}
}

// synAck waits for a plain (not encapsulated) TCP SYN-ACK from -> to.
func (s *sniffer) synAck(from, to netip.AddrPort, timeout time.Duration) bool {
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue
		}
		p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
		tcp, ok := p.TransportLayer().(*layers.TCP)
		if !ok || !tcp.SYN || !tcp.ACK || uint16(tcp.SrcPort) != from.Port() || uint16(tcp.DstPort) != to.Port() {
			continue
		}
		var src, dst net.IP
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, dst = ip.SrcIP, ip.DstIP
		case *layers.IPv6:
			src, dst = ip.SrcIP, ip.DstIP
		}
		a, _ := netip.AddrFromSlice(src)
		b, _ := netip.AddrFromSlice(dst)
		if a.Unmap() == from.Addr() && b.Unmap() == to.Addr() {
			return true
		}
	}
	return false
}
