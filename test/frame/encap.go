package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Tunnel describes the outer headers Encap puts around a frame's IP
// packet, as a balancer in ipip or gue mode sends it.
type Tunnel struct {
	SrcMAC, DstMAC net.HardwareAddr
	// VLANs are the outer frame's VLAN tags, as in Spec.
	VLANs []layers.EthernetType
	// Src and Dst are the outer addresses; the outer family follows Dst.
	Src, Dst netip.Addr
	// GUEPort above 0 makes a gue packet: UDP from GUESrcPort to GUEPort
	// whose payload is the inner IP packet. 0 makes ipip (protocol or
	// next header 4 for inner IPv4, 41 for inner IPv6).
	GUEPort, GUESrcPort uint16
	// ZeroUDPChecksum sends a gue packet with UDP checksum 0 (IPv4).
	ZeroUDPChecksum bool
	// Protocol, above 0, replaces the outer protocol / next header.
	Protocol uint8
	// TOS is the outer TOS or traffic class.
	TOS uint8
	// FragOffset and MoreFragments make the outer IPv4 header a fragment's
	// (the packet itself is not cut).
	FragOffset    uint16
	MoreFragments bool
	// Options is the number of outer IPv4 option words (NOPs).
	Options int
	// ID, when set, is the outer IPv4 identification (else 7); DF sets
	// the outer IPv4 don't-fragment bit. FlowLabel is the outer IPv6 flow
	// label.
	ID        *uint16
	DF        bool
	FlowLabel uint32
}

// Encap wraps the IP packet of f (an Ethernet frame without VLAN tags, as
// Build makes; its Ethernet padding, if any, goes in too, as a balancer
// that encapsulates the whole frame sends it) in t's outer headers and returns the new frame; the outer
// lengths and checksums are filled in.
func Encap(f []byte, t Tunnel) ([]byte, error) {
	if len(f) < 14 {
		return nil, errors.New("frame: encap: frame too short")
	}
	if binary.BigEndian.Uint16(f[12:]) == uint16(layers.EthernetTypeDot1Q) || binary.BigEndian.Uint16(f[12:]) == uint16(layers.EthernetTypeQinQ) {
		return nil, errors.New("frame: encap: inner frame has VLAN tags")
	}
	inner := f[14:]
	v4 := t.Dst.Is4()
	if t.Src.Is4() != v4 {
		return nil, fmt.Errorf("frame: encap: outer source %s and destination %s differ in family", t.Src, t.Dst)
	}
	proto := layers.IPProtocolIPv4
	if len(inner) > 0 && inner[0]>>4 == 6 {
		proto = layers.IPProtocolIPv6
	}
	if t.GUEPort > 0 {
		proto = layers.IPProtocolUDP
	}
	if t.Protocol > 0 {
		proto = layers.IPProtocol(t.Protocol)
	}
	eth := &layers.Ethernet{SrcMAC: t.SrcMAC, DstMAC: t.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	if !v4 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	ls := []gopacket.SerializableLayer{eth}
	if len(t.VLANs) > 0 {
		next := eth.EthernetType
		eth.EthernetType = t.VLANs[0]
		for i := range t.VLANs {
			typ := next
			if i+1 < len(t.VLANs) {
				typ = t.VLANs[i+1]
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: typ})
		}
	}
	var nl gopacket.NetworkLayer
	if v4 {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, Id: 7, TOS: t.TOS,
			SrcIP: t.Src.AsSlice(), DstIP: t.Dst.AsSlice(), FragOffset: t.FragOffset}
		if t.ID != nil {
			ip.Id = *t.ID
		}
		if t.MoreFragments {
			ip.Flags = layers.IPv4MoreFragments
		}
		if t.DF {
			ip.Flags |= layers.IPv4DontFragment
		}
		for range 4 * t.Options {
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, TrafficClass: t.TOS,
			FlowLabel: t.FlowLabel, SrcIP: t.Src.AsSlice(), DstIP: t.Dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	}
	if t.GUEPort > 0 {
		udp := &layers.UDP{SrcPort: layers.UDPPort(t.GUESrcPort), DstPort: layers.UDPPort(t.GUEPort)}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, fmt.Errorf("frame: encap: %w", err)
		}
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(inner))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("frame: encap: serialise: %w", err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if t.GUEPort > 0 && t.ZeroUDPChecksum {
		off := 14 + 4*len(t.VLANs) + 40
		if v4 {
			off = 14 + 4*len(t.VLANs) + 20 + 4*t.Options
		}
		b[off+6], b[off+7] = 0, 0
	}
	return b, nil
}

// MustEncap is Encap for tunnels known to be valid; it panics on error.
func MustEncap(f []byte, t Tunnel) []byte {
	b, err := Encap(f, t)
	if err != nil {
		panic(err)
	}
	return b
}
