package config

import (
	"net/netip"
	"strconv"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Encap holds the settings of the encapsulated forwarding modes (ipip,
// gue), for the whole balancer.
type Encap struct {
	// SourceV4 and SourceV6 are the outer source of encapsulated packets:
	// an address, or a prefix whose host part takes the flow's hash (at
	// most 16 bits for IPv4, 32 for IPv6) so the backends' NICs spread the
	// flows by source. Empty: the interface's first address of the family.
	SourceV4 string `yaml:"source_v4,omitempty" json:"source_v4,omitempty"`
	SourceV6 string `yaml:"source_v6,omitempty" json:"source_v6,omitempty"`
	// GUEPort is gue's UDP destination port; 0: 6080.
	GUEPort uint16 `yaml:"gue_port,omitempty" json:"gue_port,omitempty"`
}

func (e *Encap) normalize() error {
	for _, f := range []struct {
		name string
		v    *string
		v4   bool
	}{{"source_v4", &e.SourceV4, true}, {"source_v6", &e.SourceV6, false}} {
		if *f.v == "" {
			continue
		}
		p, err := lb.ParseEncapSource(*f.v, f.v4)
		if err != nil {
			return fieldErr(f.name, quote(*f.v), err.Error())
		}
		*f.v = formatSource(p)
	}
	if e.GUEPort == 0 {
		e.GUEPort = lb.DefaultGUEPort
	}
	return nil
}

// formatSource writes an address alone, a prefix with its length.
func formatSource(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Settings returns the settings in the data plane's terms (nil e: all
// defaults, sources unset).
func (e *Encap) Settings() lb.Encap {
	out := lb.Encap{GUEPort: lb.DefaultGUEPort}
	if e == nil {
		return out
	}
	if e.GUEPort != 0 {
		out.GUEPort = e.GUEPort
	}
	out.Source4, _ = lb.ParseEncapSource(e.SourceV4, true)
	out.Source6, _ = lb.ParseEncapSource(e.SourceV6, false)
	return out
}

// String is for logs.
func (e *Encap) String() string {
	s := e.Settings()
	return "source_v4=" + s.Source4.String() + " source_v6=" + s.Source6.String() + " gue_port=" + strconv.Itoa(int(s.GUEPort))
}
