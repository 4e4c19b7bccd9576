// Package frame builds Ethernet frames for BPF_PROG_TEST_RUN measurements
// and tests: plain Ethernet, IPv4 or IPv6, TCP or UDP, lengths and
// checksums filled in (gopacket does the serialising).
package frame

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Spec describes one frame. The family follows Dst; Src must match it.
type Spec struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.AddrPort
	// UDP selects UDP; otherwise TCP (an ACK, or a SYN when SYN is set).
	UDP bool
	SYN bool
	// TTL (hop limit); 0 means 64.
	TTL uint8
	// Len pads the payload so the frame is at least Len bytes (without
	// FCS); 0 adds no payload.
	Len int
}

// Build serialises s.
func Build(s Spec) ([]byte, error) {
	if s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return nil, fmt.Errorf("frame: source %s and destination %s differ in family", s.Src, s.Dst)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	eth := &layers.Ethernet{SrcMAC: s.SrcMAC, DstMAC: s.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	proto := layers.IPProtocolTCP
	if s.UDP {
		proto = layers.IPProtocolUDP
	}
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	hdr := 14
	if s.Dst.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: proto, Id: 1,
			SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice()}
		ip, nl = v4, v4
		hdr += 20
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto,
			SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice()}
		ip, nl = v6, v6
		hdr += 40
	}
	var l4 gopacket.SerializableLayer
	if s.UDP {
		u := &layers.UDP{SrcPort: layers.UDPPort(s.Src.Port()), DstPort: layers.UDPPort(s.Dst.Port())}
		u.SetNetworkLayerForChecksum(nl)
		l4 = u
		hdr += 8
	} else {
		t := &layers.TCP{SrcPort: layers.TCPPort(s.Src.Port()), DstPort: layers.TCPPort(s.Dst.Port()),
			Seq: 1000, SYN: s.SYN, ACK: !s.SYN, Window: 64000}
		t.SetNetworkLayerForChecksum(nl)
		l4 = t
		hdr += 20
	}
	payload := gopacket.Payload(make([]byte, max(s.Len-hdr, 0)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, l4, payload); err != nil {
		return nil, fmt.Errorf("frame: serialise: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// MustBuild is Build for specs known to be valid; it panics on error.
func MustBuild(s Spec) []byte {
	b, err := Build(s)
	if err != nil {
		panic(err)
	}
	return b
}
