package config

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/xlb-lb/xlb/maps/lb"
)

// Decap configures the decapsulator that xlbd --role backend runs on a
// backend host: the balancer's ipip and gue packets for these VIPs,
// addressed to this host, are unwrapped and handed to the local stack.
// The balancer role ignores it.
type Decap struct {
	// VIPs are the VIPs this host serves (held on lo): inner destinations
	// that are decapsulated. Written back in canonical form.
	VIPs []string `yaml:"vips" json:"vips"`
	// GUEPort is the UDP port of gue packets, 1-65535; default 6080.
	GUEPort uint32 `yaml:"gue_port" json:"gue_port"`
	// Addresses are the outer destinations accepted, this host's
	// addresses the balancer sends to. Empty: the interface's addresses
	// when xlbd starts or reloads.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
}

// Clone returns a deep copy; nil stays nil.
func (d *Decap) Clone() *Decap {
	if d == nil {
		return nil
	}
	c := *d
	c.VIPs = append([]string(nil), d.VIPs...)
	if d.Addresses != nil {
		c.Addresses = append([]string(nil), d.Addresses...)
	}
	return &c
}

func (d *Decap) normalize() error {
	d.GUEPort = lb.GUEPort.Or(d.GUEPort)
	if err := lb.GUEPort.Check(d.GUEPort); err != nil {
		return fieldErr(lb.GUEPort.Name, strconv.FormatUint(uint64(d.GUEPort), 10), err.Error())
	}
	var err error
	if d.VIPs, err = addrList("vips", d.VIPs, lb.DecapMaxVIPs); err != nil {
		return err
	}
	if d.VIPs == nil {
		d.VIPs = []string{}
	}
	if len(d.Addresses) == 0 {
		d.Addresses = nil
		return nil
	}
	d.Addresses, err = addrList("addresses", d.Addresses, lb.DecapMaxAddrs)
	return err
}

// addrList checks a list of unicast addresses: each parses, none twice, at
// most max; it returns them in canonical form.
func addrList(path string, in []string, max int) ([]string, error) {
	if len(in) > max {
		return nil, fieldErr(path, "", fmt.Sprintf("%d addresses, more than %d", len(in), max))
	}
	seen := make(map[netip.Addr]int, len(in))
	var out []string
	for i, s := range in {
		at := path + "[" + strconv.Itoa(i) + "]"
		a, err := parseAddr(at, s)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[a]; dup {
			return nil, fieldErr(at, quote(s), fmt.Sprintf("duplicate of %s[%d]", path, j))
		}
		seen[a] = i
		out = append(out, a.String())
	}
	return out, nil
}

// DataPlane returns the decapsulator's settings; ifaceAddrs are the outer
// destinations when the section names none.
func (d *Decap) DataPlane(ifaceAddrs []netip.Addr) lb.DecapConfig {
	c := lb.DecapConfig{GUEPort: uint16(lb.GUEPort.Or(0))}
	if d == nil {
		c.Addresses = ifaceAddrs
		return c
	}
	c.GUEPort = uint16(lb.GUEPort.Or(d.GUEPort))
	for _, s := range d.VIPs {
		if a, err := lb.ParseAddr(s); err == nil {
			c.VIPs = append(c.VIPs, a)
		}
	}
	if len(d.Addresses) == 0 {
		c.Addresses = ifaceAddrs
		return c
	}
	for _, s := range d.Addresses {
		if a, err := lb.ParseAddr(s); err == nil {
			c.Addresses = append(c.Addresses, a)
		}
	}
	return c
}
