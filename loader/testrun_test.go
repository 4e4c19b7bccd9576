package loader_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// XDP verdicts.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

var (
	web4   = svcKey("198.18.1.1:80/tcp")
	dns4   = svcKey("198.18.1.1:53/udp")
	web6   = svcKey("[2001:2:0:1::1]:80/tcp")
	dns6   = svcKey("[2001:2:0:1::1]:53/udp")
	empty4 = svcKey("198.18.1.2:80/tcp")
	sh4    = svcKey("198.18.1.3:80/tcp")
)

func svcKey(s string) lb.ServiceKey {
	k, err := lb.ParseServiceKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func beMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, byte(0x11 + i)} }

// backends returns n usable weight-1 backends of the family of vip.
func backends(vip netip.Addr, n int) []lb.Backend {
	out := make([]lb.Backend, n)
	for i := range out {
		a := netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 11+i))
		if vip.Is6() {
			a = netip.MustParseAddr(fmt.Sprintf("2001:2::%x", 0x11+i))
		}
		out[i] = lb.Backend{Addr: a, MAC: beMAC(i), Weight: 1}
	}
	return out
}

type fixture struct {
	t *testing.T
	b *loader.Balancer
}

// newFixture loads the real committed object (not attached anywhere) with
// the standard services installed.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, loader.Options{ConntrackSize: 1 << 16})
}

// newFixtureWith is newFixture with opts (MAC and the service and backend
// limits are the fixture's).
func newFixtureWith(t *testing.T, opts loader.Options) *fixture {
	t.Helper()
	opts.MaxServices, opts.MaxBackends = 64, 1024
	f := newFixtureSized(t, opts)
	for _, s := range []lb.Service{
		{Key: web4, Backends: backends(web4.VIP, 3)},
		{Key: dns4, Backends: backends(dns4.VIP, 3)},
		{Key: web6, Backends: backends(web6.VIP, 3)},
		{Key: dns6, Backends: backends(dns6.VIP, 3)},
		{Key: empty4},
		{Key: sh4, Scheduler: lb.SourceHash, Backends: backends(sh4.VIP, 3)},
	} {
		f.set(s)
	}
	return f
}

func (f *fixture) set(s lb.Service) {
	f.t.Helper()
	if err := f.b.SetService(s); err != nil {
		f.t.Fatalf("set service %s: %v", s.Key, err)
	}
}

// run passes frame through the program once.
func (f *fixture) run(frame []byte) (uint32, []byte) {
	f.t.Helper()
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	ret, err := f.b.Program().Run(opts)
	if err != nil {
		f.t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

func (f *fixture) counters() maps.GlobalCounters {
	f.t.Helper()
	c, err := f.b.Stats().Global()
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// delta lists the counters that changed, by field name.
func delta(before, after maps.GlobalCounters) map[string]uint64 {
	out := map[string]uint64{}
	bv, av := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := 0; i < bv.NumField(); i++ {
		if bv.Field(i).Kind() != reflect.Uint64 {
			continue // structs.HostLayout marker
		}
		if d := av.Field(i).Uint() - bv.Field(i).Uint(); d != 0 {
			out[bv.Type().Field(i).Name] = d
		}
	}
	return out
}

// expectedBackend predicts, from the installed table and the Go twin of
// the data plane's hash, which backend a new flow must get.
func (f *fixture) expectedBackend(k lb.ServiceKey, flow lb.FlowKey) (uint32, maps.Backend) {
	f.t.Helper()
	st, ok := f.b.Service(k)
	if !ok {
		f.t.Fatalf("service %s not installed", k)
	}
	table, err := f.b.Tables().Get(st.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	id := table[maps.Slot(st.Scheduler, flow, uint32(len(table)))]
	be, err := f.b.BackendMap().Get(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return id, be
}

// flowOf is the flow of a TCP or UDP frame.
func flowOf(p frame.Spec) lb.FlowKey {
	k := lb.FlowKey{Src: p.Src, Dst: p.Dst, Proto: lb.TCP}
	if p.UDP {
		k.Proto = lb.UDP
	}
	return k
}

func TestVerdicts(t *testing.T) {
	f := newFixture(t)
	port := uint16(40000)
	c4 := func(dst netip.AddrPort, proto lb.Proto) frame.Spec {
		port++
		return frame.Spec{Src: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.200"), port), Dst: dst, UDP: proto == lb.UDP, SYN: proto == lb.TCP}
	}
	c6 := func(dst netip.AddrPort, proto lb.Proto) frame.Spec {
		port++
		return frame.Spec{Src: netip.AddrPortFrom(netip.MustParseAddr("2001:2::200"), port), Dst: dst, UDP: proto == lb.UDP, SYN: proto == lb.TCP}
	}
	vip4web, vip4dns := ap("198.18.1.1:80"), ap("198.18.1.1:53")
	vip6web, vip6dns := ap("[2001:2:0:1::1]:80"), ap("[2001:2:0:1::1]:53")
	newFlow := map[string]uint64{"TxPackets": 1, "NewFlows": 1}

	cases := []struct {
		name     string
		p        frame.Spec
		svc      lb.ServiceKey // for TX: the service that must match
		verdict  uint32
		counters map[string]uint64 // besides RxPackets
	}{
		{"tcp4 syn", c4(vip4web, lb.TCP), web4, xdpTX, newFlow},
		{"tcp4 mid-flow ack", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.SYN = false; p.Payload = []byte("hello") }), web4, xdpTX, newFlow},
		{"udp4", with(c4(vip4dns, lb.UDP), func(p *frame.Spec) { p.Payload = []byte("query") }), dns4, xdpTX, newFlow},
		{"tcp6 syn", c6(vip6web, lb.TCP), web6, xdpTX, newFlow},
		{"udp6", with(c6(vip6dns, lb.UDP), func(p *frame.Spec) { p.Payload = []byte("query") }), dns6, xdpTX, newFlow},
		{"tcp4 802.1Q", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.VLANs = []layers.EthernetType{layers.EthernetTypeDot1Q} }), web4, xdpTX, newFlow},
		{"udp6 QinQ", with(c6(vip6dns, lb.UDP), func(p *frame.Spec) {
			p.VLANs = []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
		}), dns6, xdpTX, newFlow},
		{"tcp4 three VLAN tags", with(c4(vip4web, lb.TCP), func(p *frame.Spec) {
			p.VLANs = []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q}
		}), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotIp": 1}},
		{"tcp4 one option word", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.Options = 1 }), web4, xdpTX, newFlow},
		{"udp4 max options (IHL 15)", with(c4(vip4dns, lb.UDP), func(p *frame.Spec) { p.Options = 10 }), dns4, xdpTX, newFlow},
		{"tcp4 not a VIP", c4(ap("198.18.9.9:80"), lb.TCP), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"tcp6 not a VIP", c6(ap("[2001:2::9]:80"), lb.TCP), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"tcp4 wrong port", c4(ap("198.18.1.1:81"), lb.TCP), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"udp4 to tcp-only port", c4(vip4web, lb.UDP), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"tcp6 to udp-only port", c6(vip6dns, lb.TCP), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		// Echo requests to a VIP are answered (echo_test.go); any other
		// ICMP goes to the kernel.
		{"icmp4 echo reply to VIP", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.ICMP = true; p.ICMPType = new(uint8) }), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"icmp6 echo reply to VIP", with(c6(vip6web, lb.TCP), func(p *frame.Spec) {
			p.ICMP = true
			p.ICMPType = u8(129)
			p.ICMPID = 1
		}), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassNotVip": 1}},
		{"ttl 1", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.TTL = 1 }), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassTtl": 1}},
		{"hop limit 1", with(c6(vip6web, lb.TCP), func(p *frame.Spec) { p.TTL = 1 }), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassTtl": 1}},
		{"ttl 2 forwarded", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.TTL = 2 }), web4, xdpTX, newFlow},
		// Fragments and IPv6 extension headers: frag_test.go has more.
		{"first fragment", with(c4(vip4dns, lb.UDP), func(p *frame.Spec) { p.MoreFragments = true }), dns4, xdpTX, map[string]uint64{"TxPackets": 1, "NewFlows": 1, "FragFirst": 1}},
		{"later fragment, no first", with(c4(vip4dns, lb.UDP), func(p *frame.Spec) {
			p.Src = netip.AddrPortFrom(netip.MustParseAddr("198.18.0.201"), 0)
			p.FragOffset = 10
		}), lb.ServiceKey{}, xdpPass, map[string]uint64{"FragUnmatched": 1}},
		{"ipv6 hop-by-hop", with(c6(vip6web, lb.TCP), func(p *frame.Spec) { p.HopByHop = true }), web6, xdpTX, newFlow},
		{"no backends", c4(ap("198.18.1.2:80"), lb.TCP), lb.ServiceKey{}, xdpDrop, map[string]uint64{"DropNoBackend": 1}},
		{"other host's MAC", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.DstMAC = otherMAC }), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassOtherHost": 1}},
		{"broadcast MAC", with(c4(vip4web, lb.TCP), func(p *frame.Spec) { p.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }), lb.ServiceKey{}, xdpPass, map[string]uint64{"PassOtherHost": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := build(t, tc.p)
			orig := append([]byte(nil), in...)
			before := f.counters()
			var svcBefore maps.ServiceCounters
			var svcID uint32
			if tc.verdict == xdpTX {
				st, _ := f.b.Service(tc.svc)
				svcID = st.ID
				svcBefore, _ = f.b.Stats().Service(svcID)
			}
			verdict, out := f.run(in)
			if verdict != tc.verdict {
				t.Fatalf("verdict %d, want %d", verdict, tc.verdict)
			}
			want := map[string]uint64{"RxPackets": 1}
			for k, v := range tc.counters {
				want[k] = v
			}
			if tc.verdict == xdpTX && !tc.p.UDP && !tc.p.ICMP {
				// A new TCP flow's first packet is half-open.
				want["HalfopenNew"] = 1
			}
			if got := delta(before, f.counters()); !reflect.DeepEqual(got, want) {
				t.Errorf("counters changed %v, want %v", got, want)
			}
			switch tc.verdict {
			case xdpPass:
				if !bytes.Equal(out, orig) {
					t.Errorf("passed frame was modified:\n got %x\nwant %x", out, orig)
				}
			case xdpTX:
				id, be := f.expectedBackend(tc.svc, flowOf(tc.p))
				if len(out) != len(orig) {
					t.Fatalf("output %d bytes, input %d", len(out), len(orig))
				}
				if !bytes.Equal(out[0:6], be.MAC) {
					t.Errorf("dst mac %x, want backend %d's %s", out[0:6], id, be.MAC)
				}
				if !bytes.Equal(out[6:12], lbMAC) {
					t.Errorf("src mac %x, want the balancer's %s", out[6:12], lbMAC)
				}
				if !bytes.Equal(out[12:], orig[12:]) {
					t.Errorf("bytes after the MACs changed:\n got %x\nwant %x", out[12:], orig[12:])
				}
				sc, _ := f.b.Stats().Service(svcID)
				if sc.Packets-svcBefore.Packets != 1 || sc.Bytes-svcBefore.Bytes != uint64(len(orig)) || sc.NewFlows-svcBefore.NewFlows != 1 {
					t.Errorf("service counters moved by %d packets, %d bytes, %d flows; want 1, %d, 1",
						sc.Packets-svcBefore.Packets, sc.Bytes-svcBefore.Bytes, sc.NewFlows-svcBefore.NewFlows, len(orig))
				}
			}
		})
	}
}

// TestMalformed truncates valid frames at every length from the minimum
// BPF_PROG_TEST_RUN accepts (14 bytes, an Ethernet header) to one byte
// short of the end of the L4 header, and corrupts header fields: all must
// reach the kernel untouched and be counted as malformed.
func TestMalformed(t *testing.T) {
	f := newFixture(t)
	bases := []struct {
		name   string
		p      frame.Spec
		l4Size int
	}{
		{"tcp4", frame.Spec{Src: ap("198.18.0.200:1000"), Dst: ap("198.18.1.1:80"), SYN: true}, 20},
		{"udp4 options", frame.Spec{Src: ap("198.18.0.200:1000"), Dst: ap("198.18.1.1:53"), UDP: true, Options: 3}, 8},
		{"tcp6 QinQ", frame.Spec{Src: ap("[2001:2::200]:1000"), Dst: ap("[2001:2:0:1::1]:80"),
			VLANs: []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}}, 20},
		{"udp6 802.1Q", frame.Spec{Src: ap("[2001:2::200]:1000"), Dst: ap("[2001:2:0:1::1]:53"), UDP: true,
			VLANs: []layers.EthernetType{layers.EthernetTypeDot1Q}}, 8},
	}
	for _, base := range bases {
		full := build(t, base.p)
		// gopacket pads to the 60-byte Ethernet minimum: stop at the
		// end of the L4 header, not of the frame.
		end := 14 + 4*len(base.p.VLANs) + base.l4Size
		if base.p.Dst.Addr().Is6() {
			end += 40
		} else {
			end += 20 + 4*base.p.Options
		}
		for n := 14; n < end; n++ {
			t.Run(fmt.Sprintf("%s/%d-of-%d", base.name, n, len(full)), func(t *testing.T) {
				in := append([]byte(nil), full[:n]...)
				before := f.counters()
				verdict, out := f.run(in)
				if verdict != xdpPass {
					t.Fatalf("verdict %d, want pass", verdict)
				}
				if !bytes.Equal(out, full[:n]) {
					t.Errorf("frame modified")
				}
				want := map[string]uint64{"RxPackets": 1, "PassMalformed": 1}
				if got := delta(before, f.counters()); !reflect.DeepEqual(got, want) {
					t.Errorf("counters changed %v, want %v", got, want)
				}
			})
		}
	}

	tcp4 := build(t, frame.Spec{Src: ap("198.18.0.200:1001"), Dst: ap("198.18.1.1:80"), SYN: true})
	corrupt := []struct {
		name string
		mod  func([]byte)
	}{
		{"ipv4 version 6", func(b []byte) { b[14] = 0x65 }},
		{"ipv4 ihl 4", func(b []byte) { b[14] = 0x44 }},
		{"ipv4 ihl 15 beyond frame", func(b []byte) { b[14] = 0x4f }},
		{"tcp doff 4", func(b []byte) { b[14+20+12] = 0x40 }},
	}
	for _, c := range corrupt {
		t.Run(c.name, func(t *testing.T) {
			in := append([]byte(nil), tcp4...)
			c.mod(in)
			orig := append([]byte(nil), in...)
			before := f.counters()
			verdict, out := f.run(in)
			if verdict != xdpPass || !bytes.Equal(out, orig) {
				t.Fatalf("verdict %d (want pass), modified %v", verdict, !bytes.Equal(out, orig))
			}
			want := map[string]uint64{"RxPackets": 1, "PassMalformed": 1}
			if got := delta(before, f.counters()); !reflect.DeepEqual(got, want) {
				t.Errorf("counters changed %v, want %v", got, want)
			}
		})
	}
}
