package loader_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/xlb-lb/xlb/maps/lb"
)

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
)

// pkt describes a test frame. Zero values give a plain client-to-VIP frame.
type pkt struct {
	src, dst netip.AddrPort
	proto    lb.Proto
	dstMAC   net.HardwareAddr
	vlans    []layers.EthernetType // outer to inner tag types
	ttl      uint8
	ipv4Opts int // number of 4-byte IPv4 option words
	fragment uint16
	moreFrag bool
	hopByHop bool // IPv6 hop-by-hop extension header
	icmp     bool
	payload  []byte
	syn      bool
	fin, rst bool
}

// build serialises p with gopacket, lengths and checksums filled in.
func build(tb testing.TB, p pkt) []byte {
	tb.Helper()
	dstMAC := p.dstMAC
	if dstMAC == nil {
		dstMAC = lbMAC
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	v6 := p.dst.Addr().Is6()
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: dstMAC}
	ls = append(ls, eth)
	inner := layers.EthernetTypeIPv4
	if v6 {
		inner = layers.EthernetTypeIPv6
	}
	if len(p.vlans) == 0 {
		eth.EthernetType = inner
	} else {
		eth.EthernetType = p.vlans[0]
		for i := range p.vlans {
			next := inner
			if i+1 < len(p.vlans) {
				next = p.vlans[i+1]
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: next})
		}
	}
	ipProto := layers.IPProtocolTCP
	if p.proto == lb.UDP {
		ipProto = layers.IPProtocolUDP
	}
	if p.icmp {
		ipProto = layers.IPProtocolICMPv4
		if v6 {
			ipProto = layers.IPProtocolICMPv6
		}
	}
	var netLayer gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: p.ttl, NextHeader: ipProto,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		if p.ttl == 0 {
			ip.HopLimit = 64
		}
		netLayer = ip
		ls = append(ls, ip)
		if p.hopByHop {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			hbh := &layers.IPv6HopByHop{}
			hbh.NextHeader = ipProto
			hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
			ls = append(ls, hbh)
		}
	} else {
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: ipProto, Id: 7,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(),
			FragOffset: p.fragment}
		if p.ttl == 0 {
			ip.TTL = 64
		}
		if p.moreFrag {
			ip.Flags = layers.IPv4MoreFragments
		}
		for i := 0; i < p.ipv4Opts; i++ {
			// NOPs, one word at a time (type 1 has no length byte).
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1},
				layers.IPv4Option{OptionType: 1, OptionLength: 1},
				layers.IPv4Option{OptionType: 1, OptionLength: 1},
				layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		netLayer = ip
		ls = append(ls, ip)
	}
	switch {
	case p.icmp && v6:
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		icmp.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, icmp)
	case p.icmp:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})
	case p.proto == lb.UDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		u.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, u)
	default:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()),
			Seq: 1000, SYN: p.syn, ACK: !p.syn, FIN: p.fin, RST: p.rst, Window: 64000}
		tcp.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, tcp)
	}
	if p.payload != nil {
		ls = append(ls, gopacket.Payload(p.payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialise frame: %v", err)
	}
	out := append([]byte(nil), buf.Bytes()...)
	// The IPv4 layer writes IHL from its options; make sure it did.
	return out
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
