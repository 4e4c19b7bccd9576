package daemon

import (
	"net/netip"

	"github.com/xlb-lb/xlb/cmd/config"
)

// CheckConfig runs the checks a start or reload makes on a parsed config
// beyond the config package's own (health checks as the prober takes
// them, the BGP speaker's settings), none of which need the data plane
// (xlbd --check-config). ifaceAddrs are the interface's addresses, the
// defaults of the BGP router ID and next hops; nil (the interface is not
// on this host) skips the checks that need them.
func CheckConfig(cfg *config.Config, ifaceAddrs []netip.Addr) error {
	for _, s := range cfg.Services {
		if _, _, err := checkedHealthConfig(s); err != nil {
			return err
		}
	}
	if cfg.BGP == nil {
		return nil
	}
	if ifaceAddrs == nil {
		// Stand-ins for the interface's addresses: everything else
		// about the speaker is still checked.
		ifaceAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	}
	_, err := speakerConfig(cfg.BGP, ifaceAddrs)
	return err
}
