package loader_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xlb-lb/xlb/test/frame"
)

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
)

// build serialises s, a frame from the client to the balancer unless s
// names other MACs.
func build(tb testing.TB, s frame.Spec) []byte {
	tb.Helper()
	if s.SrcMAC == nil {
		s.SrcMAC = clientMAC
	}
	if s.DstMAC == nil {
		s.DstMAC = lbMAC
	}
	b, err := frame.Build(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
