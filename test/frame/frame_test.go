package frame

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestBuild(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	src4, dst4 := netip.MustParseAddrPort("198.18.0.2:1000"), netip.MustParseAddrPort("198.18.1.1:80")
	src6, dst6 := netip.MustParseAddrPort("[2001:2::2]:1000"), netip.MustParseAddrPort("[2001:2:0:1::1]:80")
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	for _, c := range []struct {
		name string
		s    Spec
		want gopacket.LayerType
		len  int
		// check inspects the decoded frame further.
		check func(t *testing.T, p gopacket.Packet)
	}{
		{"tcp4 syn", Spec{Src: src4, Dst: dst4, SYN: true}, layers.LayerTypeTCP, 60, nil}, // padded to the Ethernet minimum
		{"udp4 64", Spec{Src: src4, Dst: netip.MustParseAddrPort("198.18.1.1:53"), UDP: true, Len: 64}, layers.LayerTypeUDP, 64, nil},
		{"tcp6", Spec{Src: src6, Dst: dst6}, layers.LayerTypeTCP, 74, nil},
		{"tcp6 QinQ 128", Spec{Src: src6, Dst: dst6, VLANs: qinq, Len: 128}, layers.LayerTypeTCP, 128, func(t *testing.T, p gopacket.Packet) {
			var ids []uint16
			for _, l := range p.Layers() {
				if q, ok := l.(*layers.Dot1Q); ok {
					ids = append(ids, q.VLANIdentifier)
				}
			}
			if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); eth.EthernetType != layers.EthernetTypeQinQ || len(ids) != 2 || ids[0] != 100 || ids[1] != 101 {
				t.Errorf("outer type %v, VLAN ids %v; want QinQ, [100 101]", eth.EthernetType, ids)
			}
		}},
		{"udp4 max options", Spec{Src: src4, Dst: dst4, UDP: true, Options: MaxOptions}, layers.LayerTypeUDP, 14 + 60 + 8, func(t *testing.T, p gopacket.Packet) {
			if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.IHL != 15 {
				t.Errorf("IHL %d, want 15", ip.IHL)
			}
		}},
		{"fragment", Spec{Src: src4, Dst: dst4, UDP: true, FragOffset: 10, MoreFragments: true}, layers.LayerTypeIPv4, 60, func(t *testing.T, p gopacket.Packet) {
			if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.FragOffset != 10 || ip.Flags != layers.IPv4MoreFragments {
				t.Errorf("offset %d flags %v", ip.FragOffset, ip.Flags)
			}
		}},
		{"tcp6 hop-by-hop", Spec{Src: src6, Dst: dst6, HopByHop: true}, layers.LayerTypeTCP, 14 + 40 + 8 + 20, func(t *testing.T, p gopacket.Packet) {
			if p.Layer(layers.LayerTypeIPv6HopByHop) == nil {
				t.Error("no hop-by-hop header")
			}
		}},
		{"icmp4", Spec{Src: src4, Dst: dst4, ICMP: true}, layers.LayerTypeICMPv4, 60, nil},
		{"icmp6", Spec{Src: src6, Dst: dst6, ICMP: true}, layers.LayerTypeICMPv6, 60, nil},
		{"tcp4 fin payload ttl", Spec{Src: src4, Dst: dst4, FIN: true, RST: true, TTL: 1, Payload: []byte("hello")}, layers.LayerTypeTCP, 60, func(t *testing.T, p gopacket.Packet) {
			tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !tcp.FIN || !tcp.RST || !tcp.ACK || !bytes.Equal(tcp.Payload, []byte("hello")) {
				t.Errorf("FIN %v RST %v ACK %v payload %q", tcp.FIN, tcp.RST, tcp.ACK, tcp.Payload)
			}
			if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.TTL != 1 {
				t.Errorf("TTL %d", ip.TTL)
			}
		}},
		{"tcp4 syn options", Spec{Src: src4, Dst: dst4, SYN: true, TCPOptions: true}, layers.LayerTypeTCP, 14 + 20 + 40, func(t *testing.T, p gopacket.Packet) {
			tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.DataOffset != 10 || len(tcp.Options) != 5 || tcp.Options[0].OptionType != layers.TCPOptionKindMSS {
				t.Errorf("data offset %d, options %v", tcp.DataOffset, tcp.Options)
			}
		}},
		{"udp6 trailer", Spec{Src: src6, Dst: netip.MustParseAddrPort("[2001:2:0:1::1]:53"), UDP: true, Trailer: 3}, layers.LayerTypeUDP, 14 + 40 + 8 + 3, func(t *testing.T, p gopacket.Packet) {
			if ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.Length != 8 {
				t.Errorf("payload length %d, want 8 (the trailer is not counted)", ip.Length)
			}
		}},
		{"tcp4 lying", Spec{Src: src4, Dst: dst4, VLANs: qinq, Options: 1, Lie: &Lie{IHL: new(uint8(3)), IPLen: new(uint16(1234)), DataOffset: new(uint8(15)), FixIPChecksum: true}},
			layers.LayerTypeEthernet, 14 + 8 + 24 + 20, func(t *testing.T, p gopacket.Packet) {
				b := p.Data()
				if b[22] != 0x43 || b[24] != 0x04 || b[25] != 0xd2 || b[22+24+12] != 0xf0 {
					t.Errorf("lies not written: % x", b)
				}
				var sum uint32
				for i := 22; i < 22+24; i += 2 {
					sum += uint32(b[i])<<8 | uint32(b[i+1])
				}
				for sum > 0xffff {
					sum = sum>>16 + sum&0xffff
				}
				if sum != 0xffff {
					t.Errorf("header checksum does not add up: %#x", sum)
				}
			}},
		{"udp6 lying", Spec{Src: src6, Dst: dst6, UDP: true, Lie: &Lie{IPLen: new(uint16(7)), UDPLen: new(uint16(9))}}, layers.LayerTypeEthernet, 14 + 40 + 8, func(t *testing.T, p gopacket.Packet) {
			if b := p.Data(); b[18] != 0 || b[19] != 7 || b[58] != 0 || b[59] != 9 {
				t.Errorf("lies not written: % x", b)
			}
		}},
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
			if c.check != nil {
				c.check(t, p)
			}
		})
	}
	for name, s := range map[string]Spec{
		"mixed families":    {Src: src4, Dst: netip.MustParseAddrPort("[2001:2::1]:80")},
		"udp and icmp":      {Src: src4, Dst: dst4, UDP: true, ICMP: true},
		"too many options":  {Src: src4, Dst: dst4, Options: MaxOptions + 1},
		"ipv6 fragment":     {Src: src6, Dst: dst6, MoreFragments: true},
		"ipv4 hop-by-hop":   {Src: src4, Dst: dst4, HopByHop: true},
		"ipv6 option words": {Src: src6, Dst: dst6, Options: 1},
		"udp tcp options":   {Src: src4, Dst: dst4, UDP: true, TCPOptions: true},
		"negative trailer":  {Src: src4, Dst: dst4, Trailer: -1},
		"ipv6 ihl":          {Src: src6, Dst: dst6, Lie: &Lie{IHL: new(uint8(5))}},
		"ihl 16":            {Src: src4, Dst: dst4, Lie: &Lie{IHL: new(uint8(16))}},
		"udp data offset":   {Src: src4, Dst: dst4, UDP: true, Lie: &Lie{DataOffset: new(uint8(5))}},
		"tcp udp length":    {Src: src4, Dst: dst4, Lie: &Lie{UDPLen: new(uint16(8))}},
	} {
		if _, err := Build(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFragments(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	payload := make([]byte, 8000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, c := range []struct {
		name     string
		src, dst netip.AddrPort
		size     int
		lens     []int // IP payload (after any fragment header) per fragment
	}{
		{"udp4", netip.MustParseAddrPort("198.18.0.2:1000"), netip.MustParseAddrPort("198.18.1.1:53"), 1480, []int{1480, 1480, 1480, 1480, 1480, 608}},
		{"udp6", netip.MustParseAddrPort("[2001:2::2]:1000"), netip.MustParseAddrPort("[2001:2:0:1::1]:53"), 1452, []int{1448, 1448, 1448, 1448, 1448, 768}},
	} {
		t.Run(c.name, func(t *testing.T) {
			whole := MustBuild(Spec{SrcMAC: mac, DstMAC: mac, Src: c.src, Dst: c.dst, UDP: true, Payload: payload})
			frags, err := Fragments(whole, c.size, 0x12345)
			if err != nil {
				t.Fatal(err)
			}
			if len(frags) != len(c.lens) {
				t.Fatalf("%d fragments, want %d", len(frags), len(c.lens))
			}
			var joined []byte
			for i, f := range frags {
				if !bytes.Equal(f[:14], whole[:14]) {
					t.Errorf("fragment %d: Ethernet header changed", i)
				}
				p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
				if p.ErrorLayer() != nil && i == 0 {
					t.Fatalf("fragment %d: %v", i, p.ErrorLayer().Error())
				}
				var off int
				var more bool
				var data []byte
				if c.dst.Addr().Is4() {
					ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					off, more, data = int(ip.FragOffset)*8, ip.Flags&layers.IPv4MoreFragments != 0, f[14+20:14+int(ip.Length)]
					if ip.Id != 0x2345 || ip.Flags&layers.IPv4DontFragment != 0 {
						t.Errorf("fragment %d: id %#x flags %v", i, ip.Id, ip.Flags)
					}
					var sum uint32
					for j := 14; j < 34; j += 2 {
						sum += uint32(f[j])<<8 | uint32(f[j+1])
					}
					for sum > 0xffff {
						sum = sum>>16 + sum&0xffff
					}
					if sum != 0xffff {
						t.Errorf("fragment %d: bad header checksum", i)
					}
				} else {
					fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
					if !ok {
						t.Fatalf("fragment %d: no fragment header", i)
					}
					off, more, data = int(fh.FragmentOffset)*8, fh.MoreFragments, f[14+48:]
					if fh.Identification != 0x12345 || fh.NextHeader != layers.IPProtocolUDP {
						t.Errorf("fragment %d: id %#x next header %v", i, fh.Identification, fh.NextHeader)
					}
					if ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); int(ip.Length) != 8+len(data) {
						t.Errorf("fragment %d: payload length %d, want %d", i, ip.Length, 8+len(data))
					}
				}
				if off != len(joined) || more != (i < len(frags)-1) || len(data) != c.lens[i] {
					t.Errorf("fragment %d: offset %d more %v length %d; want %d %v %d", i, off, more, len(data), len(joined), i < len(frags)-1, c.lens[i])
				}
				joined = append(joined, data...)
			}
			ipHdr := 20
			if c.dst.Addr().Is6() {
				ipHdr = 40
			}
			if !bytes.Equal(joined, whole[14+ipHdr:]) {
				t.Errorf("fragments do not add up to the datagram")
			}
		})
	}
	if _, err := Fragments(make([]byte, 60), 1480, 1); err == nil {
		t.Errorf("a frame that is not IP: no error")
	}
}
