package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/xlb-lb/xlb/maps/lb"
)

// DefaultPath is where xlbd reads its config file unless told otherwise.
const DefaultPath = "/etc/xlb/xlb.yaml"

// Config is the xlbd config file (default DefaultPath).
type Config struct {
	// Interface is the network interface to attach to. Required unless
	// given by flag, so Validate accepts it empty; see ValidateInterface.
	Interface string `yaml:"interface" json:"interface"`
	// XDPMode is native (default) or generic.
	XDPMode   string    `yaml:"xdp_mode" json:"xdp_mode"`
	Limits    Limits    `yaml:"limits" json:"limits"`
	Conntrack Conntrack `yaml:"conntrack" json:"conntrack"`
	// ICMPEcho: the data plane answers ICMP/ICMPv6 echo requests to a VIP
	// itself; false leaves them to the kernel. Absent (nil) means true.
	// Applied at start and on every reload; see ICMP.
	ICMPEcho *bool `yaml:"icmp_echo,omitempty" json:"icmp_echo,omitempty"`
	// ICMPForward: the data plane sends ICMP errors to a VIP (fragmentation
	// needed, packet too big, destination unreachable) to the backend of
	// the flow they quote, so path MTU discovery works through DSR; false
	// leaves them to the kernel. Absent (nil) means true. Applied like
	// ICMPEcho; see ICMP.
	ICMPForward *bool     `yaml:"icmp_forward,omitempty" json:"icmp_forward,omitempty"`
	Services    []Service `yaml:"services" json:"services"`
	// BGP announces the VIPs to routers; nil: off.
	BGP *BGP `yaml:"bgp,omitempty" json:"bgp,omitempty"`
	// Decap is the backend role's decapsulator (xlbd --role backend);
	// the balancer role ignores it.
	Decap *Decap `yaml:"decap,omitempty" json:"decap,omitempty"`
	// Encap holds the encapsulated modes' settings; nil: the defaults.
	Encap *Encap `yaml:"encap,omitempty" json:"encap,omitempty"`
	// Resolvers configures the lookups of backends named by DNS; nil:
	// the defaults (the nameservers of /etc/resolv.conf).
	Resolvers *Resolvers `yaml:"resolvers,omitempty" json:"resolvers,omitempty"`
}

// Conntrack holds the connection table's idle timeouts: a flow idle
// longer is forgotten (its next packet is scheduled as a new flow) and no
// longer counts as active. They apply at start and on every reload.
type Conntrack struct {
	// TCPTimeout applies to established TCP flows; default 900s.
	TCPTimeout Duration `yaml:"tcp_timeout" json:"tcp_timeout"`
	// TCPFinTimeout applies once the client sent FIN or RST; default 120s.
	TCPFinTimeout Duration `yaml:"tcp_fin_timeout" json:"tcp_fin_timeout"`
	// UDPTimeout applies to UDP flows; default 300s.
	UDPTimeout Duration `yaml:"udp_timeout" json:"udp_timeout"`
}

// Limits size the data plane's maps; 0 takes the default. They apply when
// the data plane is first loaded.
type Limits struct {
	// ConntrackSize is the number of flows the connection table holds,
	// 64-268435456; default 1048576.
	ConntrackSize uint32 `yaml:"conntrack_size" json:"conntrack_size"`
	// MaglevSize is the number of slots of each service's table, a prime
	// in 251-16777216; default 65537.
	MaglevSize uint32 `yaml:"maglev_size" json:"maglev_size"`
	// MaxServices is 1-65536; default 4096.
	MaxServices uint32 `yaml:"max_services" json:"max_services"`
	// MaxBackends bounds the service-backend pairs, 2-16777216; default
	// 65536. One slot is reserved, so MaxBackends-1 pairs fit.
	MaxBackends uint32 `yaml:"max_backends" json:"max_backends"`
	// HalfOpenSize is the number of TCP SYNs the half-open table holds
	// until their handshake's next packet, 64-268435456; default 262144.
	HalfOpenSize uint32 `yaml:"halfopen_size" json:"halfopen_size"`
}

// ParseConfig parses a YAML config strictly (unknown keys are errors),
// applies the defaults and validates it. An empty document is a valid
// config with no services. Errors carry the line when it is known.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	if err == nil {
		var extra yaml.Node
		switch err2 := dec.Decode(&extra); {
		case err2 == nil:
			err = &FieldError{Line: extra.Line, Reason: "more than one YAML document (only one config per file)"}
		case !errors.Is(err2, io.EOF):
			err = err2
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(data, err)
	}
	if err := checkWhole(data); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		if fe, ok := err.(*FieldError); ok && fe.Line == 0 {
			fe.Line = newYAMLIndex(data).lineOf(fe.Path)
		}
		return nil, err
	}
	return &c, nil
}

// Load reads and parses the config file at path. It returns the file's
// bytes too (xlbd hashes them). Errors are prefixed with the path.
func Load(path string) (*Config, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, data, nil
}

// Validate applies the defaults to c, normalises it (see
// Service.Normalize) and validates it whole: limits, every service, and
// duplicates across services. On error c is unchanged.
func (c *Config) Validate() error {
	n := *c
	n.Services = make([]Service, len(c.Services))
	for i, s := range c.Services {
		n.Services[i] = s.Clone()
	}
	if c.Services == nil {
		n.Services = nil
	}
	n.BGP = c.BGP.Clone()
	n.Decap = c.Decap.Clone()
	if c.Encap != nil {
		e := *c.Encap
		n.Encap = &e
	}
	n.Resolvers = c.Resolvers.Clone()
	if err := n.normalize(); err != nil {
		return err
	}
	*c = n
	return nil
}

// ValidateInterface checks that name can be a Linux interface name: 1-15
// bytes, not "." or "..", no '/', ':' or whitespace.
func ValidateInterface(name string) error {
	var why string
	switch {
	case name == "":
		why = "required (e.g. eth0)"
	case len(name) > 15:
		why = "longer than 15 characters"
	case name == "." || name == "..":
		why = "not a valid interface name"
	case strings.ContainsAny(name, "/:"):
		why = "not a valid interface name (no '/' or ':')"
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		why = "not a valid interface name (no spaces or control characters)"
	default:
		return nil
	}
	if name == "" {
		return fieldErr("interface", "", why)
	}
	return fieldErr("interface", quote(name), why)
}

func (c *Config) normalize() error {
	if c.Interface != "" {
		if err := ValidateInterface(c.Interface); err != nil {
			return err
		}
	}
	var err error
	c.XDPMode, err = pick("xdp_mode", c.XDPMode, lb.Native, lb.XDPModes)
	if err != nil {
		return err
	}
	if err := c.Limits.normalize(); err != nil {
		return under("limits", err)
	}
	if err := c.Conntrack.normalize(); err != nil {
		return under("conntrack", err)
	}
	if c.BGP != nil {
		if err := c.BGP.normalize(); err != nil {
			return under("bgp", err)
		}
	}
	if c.Decap != nil {
		if err := c.Decap.normalize(); err != nil {
			return under("decap", err)
		}
	}
	if c.Encap != nil {
		if err := c.Encap.normalize(); err != nil {
			return under("encap", err)
		}
	}
	if c.Resolvers != nil {
		if err := c.Resolvers.normalize(); err != nil {
			return under("resolvers", err)
		}
	}

	// One form for "no services": an empty list (what the file and the
	// state file write back).
	if c.Services == nil {
		c.Services = []Service{}
	}
	seen := make(map[lb.ServiceKey]int, len(c.Services))
	pairs := 0
	for i := range c.Services {
		at := "services[" + strconv.Itoa(i) + "]"
		s := &c.Services[i]
		if err := s.normalize(); err != nil {
			return under(at, err)
		}
		k, _ := s.Key()
		if j, dup := seen[k]; dup {
			return fieldErr(at, "", fmt.Sprintf("duplicate service %s (also services[%d])", k, j))
		}
		seen[k] = i
		active := 0
		for _, b := range s.Backends {
			if *b.Weight > 0 {
				active++
			}
		}
		if uint64(active) > uint64(c.Limits.MaglevSize) {
			return fieldErr(at+".backends", "", fmt.Sprintf("%d backends with weight above 0, more than limits.maglev_size %d", active, c.Limits.MaglevSize))
		}
		pairs += len(s.Backends)
	}
	if n := len(c.Services); uint64(n) > uint64(c.Limits.MaxServices) {
		return fieldErr("services", "", fmt.Sprintf("%d services, more than limits.max_services %d", n, c.Limits.MaxServices))
	}
	if uint64(pairs) >= uint64(c.Limits.MaxBackends) {
		return fieldErr("services", "", fmt.Sprintf("%d backends in all; limits.max_backends %d allows at most %d (one slot is reserved)",
			pairs, c.Limits.MaxBackends, c.Limits.MaxBackends-1))
	}
	return nil
}

func (t *Conntrack) normalize() error {
	for _, f := range []struct {
		l lb.Limit[time.Duration]
		v *Duration
	}{{lb.TCPTimeout, &t.TCPTimeout}, {lb.TCPFinTimeout, &t.TCPFinTimeout}, {lb.UDPTimeout, &t.UDPTimeout}} {
		*f.v = Duration(f.l.Or(time.Duration(*f.v)))
		if err := f.l.Check(time.Duration(*f.v)); err != nil {
			return fieldErr(f.l.Name, f.v.String(), err.Error())
		}
	}
	return nil
}

// ICMP returns the data plane's ICMP switches: icmp_echo and icmp_forward,
// each true unless set false.
func (c *Config) ICMP() lb.ICMP {
	return lb.ICMP{NoEcho: c.ICMPEcho != nil && !*c.ICMPEcho, NoForward: c.ICMPForward != nil && !*c.ICMPForward}
}

// Timeouts returns the idle timeouts in the data plane's terms.
func (t Conntrack) Timeouts() lb.Timeouts {
	return lb.Timeouts{TCP: time.Duration(t.TCPTimeout), TCPFin: time.Duration(t.TCPFinTimeout), UDP: time.Duration(t.UDPTimeout)}
}

func (l *Limits) normalize() error {
	for _, f := range []struct {
		l lb.Limit[uint32]
		v *uint32
	}{{lb.ConntrackSize, &l.ConntrackSize}, {lb.TableSize, &l.MaglevSize}, {lb.MaxServices, &l.MaxServices}, {lb.MaxBackends, &l.MaxBackends}, {lb.HalfOpenSize, &l.HalfOpenSize}} {
		*f.v = f.l.Or(*f.v)
		if err := f.l.Check(*f.v); err != nil {
			return fieldErr(f.l.Name, strconv.FormatUint(uint64(*f.v), 10), err.Error())
		}
	}
	if err := lb.CheckTableSize(l.MaglevSize); err != nil {
		return fieldErr(lb.TableSize.Name, strconv.FormatUint(uint64(l.MaglevSize), 10), err.Error())
	}
	return nil
}
