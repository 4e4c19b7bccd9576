package frame

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Encap puts correct outer headers (lengths, checksums, protocol) around
// the inner IP packet, which it carries byte for byte.
func TestEncap(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	in4 := MustBuild(Spec{SrcMAC: mac, DstMAC: mac, Src: netip.MustParseAddrPort("198.18.0.2:1000"), Dst: netip.MustParseAddrPort("198.18.1.1:80"), Payload: []byte("x")})
	in6 := MustBuild(Spec{SrcMAC: mac, DstMAC: mac, Src: netip.MustParseAddrPort("[2001:2::2]:1000"), Dst: netip.MustParseAddrPort("[2001:2:0:1::1]:80"), TOS: 0xb8})
	lb4, be4 := netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.2.10")
	lb6, be6 := netip.MustParseAddr("2001:2::3"), netip.MustParseAddr("2001:2:0:2::10")
	for _, c := range []struct {
		name  string
		in    []byte
		t     Tunnel
		proto layers.IPProtocol
	}{
		{"ipip 4in4", in4, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb4, Dst: be4, TOS: 3}, layers.IPProtocolIPv4},
		{"ipip 6in4", in6, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb4, Dst: be4}, layers.IPProtocolIPv6},
		{"ipip 6in6 vlan", in6, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb6, Dst: be6, VLANs: []layers.EthernetType{layers.EthernetTypeDot1Q}}, layers.IPProtocolIPv6},
		{"gue 4in6", in4, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb6, Dst: be6, GUEPort: 6080, GUESrcPort: 40000}, layers.IPProtocolUDP},
		{"gue 4in4 zero checksum, options", in4, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb4, Dst: be4, GUEPort: 6080, ZeroUDPChecksum: true, Options: 2}, layers.IPProtocolUDP},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Encap(c.in, c.t)
			if err != nil {
				t.Fatal(err)
			}
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.DecodeOptions{DecodeStreamsAsDatagrams: true})
			var payload []byte
			switch ip := p.Layer(layers.LayerTypeIPv4).(type) {
			case *layers.IPv4:
				if ip.Protocol != c.proto || int(ip.Length) != len(f)-14-4*len(c.t.VLANs) || ip.TOS != c.t.TOS {
					t.Errorf("outer ipv4 %+v", ip)
				}
				// A header checksum over a correct header sums to 0xffff.
				hdr := ip.Contents
				var sum uint32
				for i := 0; i < len(hdr); i += 2 {
					sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
				}
				for sum > 0xffff {
					sum = sum&0xffff + sum>>16
				}
				if sum != 0xffff {
					t.Errorf("outer ipv4 checksum wrong")
				}
				payload = ip.Payload
			default:
				ip6, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if !ok || ip6.NextHeader != c.proto || int(ip6.Length) != len(f)-14-40-4*len(c.t.VLANs) {
					t.Fatalf("outer ipv6 %+v", ip6)
				}
				payload = ip6.Payload
			}
			if c.t.GUEPort > 0 {
				if len(payload) < 8 || binary.BigEndian.Uint16(payload[2:]) != c.t.GUEPort || int(binary.BigEndian.Uint16(payload[4:])) != len(payload) {
					t.Fatalf("udp header %x", payload[:8])
				}
				if c.t.ZeroUDPChecksum != (binary.BigEndian.Uint16(payload[6:]) == 0) {
					t.Errorf("udp checksum %x", payload[6:8])
				}
				payload = payload[8:]
			}
			if !bytes.Equal(payload, c.in[14:]) {
				t.Errorf("inner packet not carried byte for byte")
			}
		})
	}
	if _, err := Encap(in4, Tunnel{SrcMAC: mac, DstMAC: mac, Src: lb4, Dst: be6}); err == nil {
		t.Error("mixed outer families accepted")
	}
}
