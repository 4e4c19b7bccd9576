package frame

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestBuild(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		name string
		s    Spec
		want gopacket.LayerType
		len  int
	}{
		{"tcp4 syn", Spec{Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.MustParseAddrPort("198.18.1.1:80"), SYN: true}, layers.LayerTypeTCP, 60}, // padded to the Ethernet minimum,
		{"udp4 64", Spec{Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.MustParseAddrPort("198.18.1.1:53"), UDP: true, Len: 64}, layers.LayerTypeUDP, 64},
		{"tcp6", Spec{Src: netip.MustParseAddrPort("[2001:2::2]:1000"), Dst: netip.MustParseAddrPort("[2001:2:0:1::1]:80")}, layers.LayerTypeTCP, 74},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.s.SrcMAC, c.s.DstMAC = mac, mac
			b, err := Build(c.s)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != c.len {
				t.Errorf("length %d, want %d", len(b), c.len)
			}
			p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
			if p.Layer(c.want) == nil {
				t.Fatalf("no %s layer in %v", c.want, p)
			}
			if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.SYN != c.s.SYN {
				t.Errorf("SYN %v, want %v", tcp.SYN, c.s.SYN)
			}
		})
	}
	if _, err := Build(Spec{Src: netip.MustParseAddrPort("198.18.0.2:1"), Dst: netip.MustParseAddrPort("[2001:2::1]:80")}); err == nil {
		t.Error("mixed families: no error")
	}
}
