// Package frame builds Ethernet frames for BPF_PROG_TEST_RUN measurements
// and tests: Ethernet with optional VLAN tags, IPv4 (with options or as a
// fragment) or IPv6 (with a hop-by-hop header), TCP (with or without SYN
// options), UDP or ICMP echo, lengths and checksums filled in (gopacket does
// the serialising). Hostile frames are built by overwriting length fields
// after serialising (Spec.Lie) and by bytes past the IP packet's end
// (Spec.Trailer).
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

// MaxOptions is the most IPv4 option words a header can hold (IHL 15).
const MaxOptions = 10

// Spec describes one frame. The zero value of every field but the
// addresses gives a plain TCP ACK with TTL 64 and no payload.
type Spec struct {
	SrcMAC, DstMAC net.HardwareAddr
	// VLANs are the frame's VLAN tags, outer first, each given by its tag
	// protocol (layers.EthernetTypeDot1Q or EthernetTypeQinQ); tag i has
	// VLAN id 100+i.
	VLANs []layers.EthernetType
	// The family follows Dst; Src must match it.
	Src, Dst netip.AddrPort
	// UDP selects UDP, ICMP an ICMP (ICMPv6 for IPv6) echo request whose
	// ports are unused; otherwise TCP: an ACK, or a SYN when SYN is set,
	// with FIN and RST as set.
	UDP, ICMP     bool
	SYN, FIN, RST bool
	// ICMPType and ICMPCode replace an ICMP frame's type (nil: echo
	// request, 8 or 128) and code.
	ICMPType *uint8
	ICMPCode uint8
	// ICMPID and ICMPSeq are an ICMP frame's echo identifier and sequence
	// number. ICMPv4 always has them; for ICMPv6 they are written (4
	// bytes after the 4-byte ICMPv6 header) only when either is above 0,
	// so the zero value keeps the bare 4-byte header.
	ICMPID, ICMPSeq uint16
	// TTL (hop limit); 0 means 64.
	TTL uint8
	// Options is the number of 4-byte IPv4 option words (NOPs), at most
	// MaxOptions.
	Options int
	// FragOffset (in 8-byte units) and MoreFragments make an IPv4
	// fragment.
	FragOffset    uint16
	MoreFragments bool
	// HopByHop adds an IPv6 hop-by-hop extension header (8 bytes: one
	// PadN option).
	HopByHop bool
	// Payload follows the L4 header.
	Payload []byte
	// Len pads the payload with zeros so the frame is at least Len bytes
	// (without FCS); 0 adds nothing.
	Len int
	// TCPOptions gives the TCP header the options of a Linux SYN: MSS,
	// SACK permitted, timestamps, NOP, window scale (20 bytes, data offset
	// 10).
	TCPOptions bool
	// Trailer appends this many bytes (0xa5) after the serialised frame:
	// bytes past the end of the IP packet that its lengths do not count,
	// as Ethernet padding is.
	Trailer int
	// Lie overwrites header fields after serialising; nil writes nothing.
	Lie *Lie
	// TOS is the IPv4 TOS or IPv6 traffic class (DSCP and ECN); 0 by
	// default.
	TOS uint8
}

// Lie holds raw values written over a serialised frame, so that its
// length fields can say what the frame is not. A nil field keeps what was
// serialised. Checksums are left as serialised (the TCP/UDP checksums no
// longer match a rewritten length) unless FixIPChecksum is set.
type Lie struct {
	// IHL is the IPv4 header length in 32-bit words (the low nibble of
	// the first byte; the version stays 4).
	IHL *uint8
	// IPLen is the IPv4 total length or the IPv6 payload length.
	IPLen *uint16
	// DataOffset is the TCP data offset in 32-bit words (the high nibble
	// of byte 12; the reserved bits stay).
	DataOffset *uint8
	// UDPLen is the UDP length field.
	UDPLen *uint16
	// FixIPChecksum recomputes the IPv4 header checksum over the header
	// as serialised (its IHL, not a lying one) after the rewrite.
	FixIPChecksum bool
}

// linuxSYNOptions are the options a Linux SYN carries, in its order.
var linuxSYNOptions = []layers.TCPOption{
	{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
	{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
	{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0x10, 0, 0, 0, 0, 0}},
	{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
	{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
}

// Offsets of the headers in s's frame: IP and L4.
func (s Spec) offsets() (ip, l4 int) {
	ip = 14 + 4*len(s.VLANs)
	switch {
	case s.Dst.Addr().Is4():
		l4 = ip + 20 + 4*s.Options
	case s.HopByHop:
		l4 = ip + 48
	default:
		l4 = ip + 40
	}
	return ip, l4
}

// apply writes the lie into b, the frame serialised from s.
func (l *Lie) apply(s Spec, b []byte) error {
	ip, l4 := s.offsets()
	v4 := s.Dst.Addr().Is4()
	switch {
	case l.IHL != nil && !v4:
		return errors.New("frame: IHL on an IPv6 frame")
	case l.IHL != nil && *l.IHL > 15, l.DataOffset != nil && *l.DataOffset > 15:
		return errors.New("frame: IHL and data offset are 4 bits")
	case l.DataOffset != nil && (s.UDP || s.ICMP):
		return errors.New("frame: TCP data offset on a frame that is not TCP")
	case l.UDPLen != nil && !s.UDP:
		return errors.New("frame: UDP length on a frame that is not UDP")
	}
	if l.IHL != nil {
		b[ip] = 0x40 | *l.IHL
	}
	if l.IPLen != nil {
		off := ip + 4 // IPv6 payload length
		if v4 {
			off = ip + 2 // IPv4 total length
		}
		binary.BigEndian.PutUint16(b[off:], *l.IPLen)
	}
	if l.DataOffset != nil {
		b[l4+12] = b[l4+12]&0x0f | *l.DataOffset<<4
	}
	if l.UDPLen != nil {
		binary.BigEndian.PutUint16(b[l4+4:], *l.UDPLen)
	}
	if l.FixIPChecksum && v4 {
		hdr := b[ip:l4]
		hdr[10], hdr[11] = 0, 0
		var sum uint32
		for i := 0; i < len(hdr); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(hdr[10:], ^uint16(sum))
	}
	return nil
}

// Build serialises s.
func Build(s Spec) ([]byte, error) {
	v4 := s.Dst.Addr().Is4()
	switch {
	case s.Src.Addr().Is4() != v4:
		return nil, fmt.Errorf("frame: source %s and destination %s differ in family", s.Src, s.Dst)
	case s.UDP && s.ICMP:
		return nil, errors.New("frame: UDP and ICMP both set")
	case s.Options < 0 || s.Options > MaxOptions:
		return nil, fmt.Errorf("frame: %d IPv4 option words, want 0 to %d", s.Options, MaxOptions)
	case !v4 && (s.Options > 0 || s.FragOffset > 0 || s.MoreFragments):
		return nil, errors.New("frame: IPv4 options or fragment fields on an IPv6 frame")
	case v4 && s.HopByHop:
		return nil, errors.New("frame: hop-by-hop header on an IPv4 frame")
	case s.TCPOptions && (s.UDP || s.ICMP):
		return nil, errors.New("frame: TCP options on a frame that is not TCP")
	case !s.ICMP && (s.ICMPType != nil || s.ICMPCode != 0 || s.ICMPID != 0 || s.ICMPSeq != 0):
		return nil, errors.New("frame: ICMP fields on a frame that is not ICMP")
	case s.Trailer < 0:
		return nil, fmt.Errorf("frame: trailer of %d bytes", s.Trailer)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	proto := layers.IPProtocolTCP
	switch {
	case s.UDP:
		proto = layers.IPProtocolUDP
	case s.ICMP && v4:
		proto = layers.IPProtocolICMPv4
	case s.ICMP:
		proto = layers.IPProtocolICMPv6
	}

	eth := &layers.Ethernet{SrcMAC: s.SrcMAC, DstMAC: s.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	if !v4 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	ls := []gopacket.SerializableLayer{eth}
	hdr := 14
	if len(s.VLANs) > 0 {
		inner := eth.EthernetType
		eth.EthernetType = s.VLANs[0]
		for i := range s.VLANs {
			next := inner
			if i+1 < len(s.VLANs) {
				next = s.VLANs[i+1]
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: next})
			hdr += 4
		}
	}

	var nl gopacket.NetworkLayer
	if v4 {
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: proto, Id: 1,
			SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice(), FragOffset: s.FragOffset, TOS: s.TOS}
		if s.MoreFragments {
			ip.Flags = layers.IPv4MoreFragments
		}
		for range 4 * s.Options {
			// NOPs: type 1 is a single byte, no length.
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		ls, nl = append(ls, ip), ip
		hdr += 20 + 4*s.Options
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: proto, TrafficClass: s.TOS,
			SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice()}
		ls, nl = append(ls, ip), ip
		hdr += 40
		if s.HopByHop {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			hbh := &layers.IPv6HopByHop{}
			hbh.NextHeader = proto
			hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
			ls = append(ls, hbh)
			hdr += 8
		}
	}

	var l4 gopacket.SerializableLayer
	var echo6 gopacket.SerializableLayer
	switch {
	case s.ICMP && v4:
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if s.ICMPType != nil {
			typ = *s.ICMPType
		}
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, s.ICMPCode), Id: s.ICMPID, Seq: s.ICMPSeq}
		hdr += 8
	case s.ICMP:
		typ := uint8(layers.ICMPv6TypeEchoRequest)
		if s.ICMPType != nil {
			typ = *s.ICMPType
		}
		l4 = &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, s.ICMPCode)}
		hdr += 4
		if s.ICMPID != 0 || s.ICMPSeq != 0 {
			echo6 = &layers.ICMPv6Echo{Identifier: s.ICMPID, SeqNumber: s.ICMPSeq}
			hdr += 4
		}
	case s.UDP:
		l4 = &layers.UDP{SrcPort: layers.UDPPort(s.Src.Port()), DstPort: layers.UDPPort(s.Dst.Port())}
		hdr += 8
	default:
		l4 = &layers.TCP{SrcPort: layers.TCPPort(s.Src.Port()), DstPort: layers.TCPPort(s.Dst.Port()),
			Seq: 1000, SYN: s.SYN, ACK: !s.SYN, FIN: s.FIN, RST: s.RST, Window: 64000}
		hdr += 20
		if s.TCPOptions {
			l4.(*layers.TCP).Options = linuxSYNOptions
			hdr += 20
		}
	}
	// The pseudo-header checksums (TCP, UDP, ICMPv6) need the IP layer.
	if c, ok := l4.(interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}); ok {
		if err := c.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, fmt.Errorf("frame: %w", err)
		}
	}
	ls = append(ls, l4)
	if echo6 != nil {
		ls = append(ls, echo6)
	}
	payload := make([]byte, max(s.Len-hdr, len(s.Payload)))
	copy(payload, s.Payload)
	if len(payload) > 0 {
		ls = append(ls, gopacket.Payload(payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("frame: serialise: %w", err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	for range s.Trailer {
		b = append(b, 0xa5)
	}
	if s.Lie != nil {
		if err := s.Lie.apply(s, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// MustBuild is Build for specs known to be valid; it panics on error.
func MustBuild(s Spec) []byte {
	b, err := Build(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Fragments splits the IP packet of f, an Ethernet frame without VLAN tags
// holding IPv4 or IPv6 (without extension headers), into fragments whose
// fragmentable part holds at most size bytes (rounded down to a multiple
// of 8), as a sending host does. It returns whole frames, the first
// fragment first. id is the datagram's identification: the IPv4 header's
// (its low 16 bits) or the IPv6 fragment header's. IPv4 fragments keep the
// header (options included), lose DF and get their checksum recomputed;
// IPv6 fragments get a fragment header after the fixed header. Ethernet
// padding past the IP packet is dropped.
func Fragments(f []byte, size int, id uint32) ([][]byte, error) {
	const eth = 14
	size &^= 7
	if size < 8 {
		return nil, fmt.Errorf("frame: fragment size %d, want at least 8", size)
	}
	if len(f) < eth+20 {
		return nil, fmt.Errorf("frame: %d bytes, too short for IP", len(f))
	}
	var hdr, data []byte
	v4 := binary.BigEndian.Uint16(f[12:]) == uint16(layers.EthernetTypeIPv4)
	switch {
	case v4:
		ihl := int(f[eth]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(f[eth+2:]))
		if ihl < 20 || total < ihl || eth+total > len(f) {
			return nil, errors.New("frame: bad IPv4 header or total length")
		}
		hdr, data = f[eth:eth+ihl], f[eth+ihl:eth+total]
	case binary.BigEndian.Uint16(f[12:]) == uint16(layers.EthernetTypeIPv6):
		if len(f) < eth+40 {
			return nil, errors.New("frame: too short for IPv6")
		}
		plen := int(binary.BigEndian.Uint16(f[eth+4:]))
		if eth+40+plen > len(f) {
			return nil, errors.New("frame: bad IPv6 payload length")
		}
		switch f[eth+6] {
		case 0, 43, 44, 60:
			return nil, errors.New("frame: IPv6 extension headers are not fragmented here")
		}
		hdr, data = f[eth:eth+40], f[eth+40:eth+40+plen]
	default:
		return nil, errors.New("frame: neither IPv4 nor IPv6")
	}
	var out [][]byte
	for off := 0; off < len(data); off += size {
		chunk := data[off:min(off+size, len(data))]
		more := off+len(chunk) < len(data)
		b := append([]byte(nil), f[:eth]...)
		b = append(b, hdr...)
		ip := b[eth:]
		if v4 {
			binary.BigEndian.PutUint16(ip[2:], uint16(len(hdr)+len(chunk)))
			binary.BigEndian.PutUint16(ip[4:], uint16(id))
			fo := uint16(off / 8)
			if more {
				fo |= 0x2000 // MF
			}
			binary.BigEndian.PutUint16(ip[6:], fo)
			ip[10], ip[11] = 0, 0
			var sum uint32
			for i := 0; i < len(hdr); i += 2 {
				sum += uint32(binary.BigEndian.Uint16(ip[i:]))
			}
			for sum > 0xffff {
				sum = sum>>16 + sum&0xffff
			}
			binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		} else {
			binary.BigEndian.PutUint16(ip[4:], uint16(8+len(chunk)))
			next := ip[6]
			ip[6] = 44 // fragment header
			fh := make([]byte, 8)
			fh[0] = next
			fo := uint16(off/8) << 3
			if more {
				fo |= 1 // M
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], id)
			b = append(b, fh...)
		}
		out = append(out, append(b, chunk...))
	}
	return out, nil
}
