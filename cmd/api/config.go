package api

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

	"github.com/xlb-lb/xlb/maps"
)

// DefaultConfigPath is where xlbd reads its config file by default.
const DefaultConfigPath = "/etc/xlb/xlb.yaml"

// XDP attach modes.
const (
	XDPModeNative  = "native"
	XDPModeGeneric = "generic"
)

// Defaults and bounds of Limits (the same as the loader's).
const (
	DefaultConntrackSize = 1 << 20
	DefaultMaglevSize    = maps.DefaultMaglevSize
	DefaultMaxServices   = 4096
	DefaultMaxBackends   = 65536
)

// Config is the xlbd config file (default DefaultConfigPath).
type Config struct {
	// Interface is the network interface to attach to. Required unless
	// given by flag, so Validate accepts it empty; see ValidateInterface.
	Interface string `yaml:"interface" json:"interface"`
	// XDPMode is native (default) or generic.
	XDPMode   string    `yaml:"xdp_mode" json:"xdp_mode"`
	Limits    Limits    `yaml:"limits" json:"limits"`
	Conntrack Conntrack `yaml:"conntrack" json:"conntrack"`
	Services  []Service `yaml:"services" json:"services"`
}

// Defaults and bounds of Conntrack (those of IPVS).
const (
	DefaultTCPTimeout    = Duration(900 * time.Second)
	DefaultTCPFinTimeout = Duration(120 * time.Second)
	DefaultUDPTimeout    = Duration(300 * time.Second)
	MinIdleTimeout       = Duration(time.Second)
	MaxIdleTimeout       = Duration(7 * 24 * time.Hour)
)

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

// LoadConfig reads and parses the config file at path. Errors are
// prefixed with the path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
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
	c.XDPMode, err = pick("xdp_mode", c.XDPMode, XDPModeNative, []string{XDPModeNative, XDPModeGeneric}, nil)
	if err != nil {
		return err
	}
	if err := c.Limits.normalize(); err != nil {
		return under("limits", err)
	}
	if err := c.Conntrack.normalize(); err != nil {
		return under("conntrack", err)
	}

	seen := make(map[maps.ServiceKey]int, len(c.Services))
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
		name string
		v    *Duration
		def  Duration
	}{
		{"tcp_timeout", &t.TCPTimeout, DefaultTCPTimeout},
		{"tcp_fin_timeout", &t.TCPFinTimeout, DefaultTCPFinTimeout},
		{"udp_timeout", &t.UDPTimeout, DefaultUDPTimeout},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < MinIdleTimeout || *f.v > MaxIdleTimeout {
			return fieldErr(f.name, f.v.String(), "out of range "+MinIdleTimeout.String()+"-"+MaxIdleTimeout.String())
		}
	}
	return nil
}

func (l *Limits) normalize() error {
	for _, f := range []struct {
		name     string
		v        *uint32
		def      uint32
		min, max uint32
	}{
		{"conntrack_size", &l.ConntrackSize, DefaultConntrackSize, 64, 1 << 28},
		{"maglev_size", &l.MaglevSize, DefaultMaglevSize, 251, 1 << 24},
		{"max_services", &l.MaxServices, DefaultMaxServices, 1, 1 << 16},
		{"max_backends", &l.MaxBackends, DefaultMaxBackends, 2, 1 << 24},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < f.min || *f.v > f.max {
			return fieldErr(f.name, strconv.FormatUint(uint64(*f.v), 10), fmt.Sprintf("out of range %d-%d", f.min, f.max))
		}
	}
	if !maps.IsPrime(l.MaglevSize) {
		return fieldErr("maglev_size", strconv.FormatUint(uint64(l.MaglevSize), 10),
			fmt.Sprintf("not prime (e.g. %d)", nearPrime(l.MaglevSize, 1<<24)))
	}
	return nil
}

// nearPrime returns the least prime above n, or the greatest below it if
// that is above hi.
func nearPrime(n, hi uint32) uint32 {
	p := n + 1
	for !maps.IsPrime(p) {
		p++
	}
	if p <= hi {
		return p
	}
	for p = n - 1; !maps.IsPrime(p); p-- {
	}
	return p
}
