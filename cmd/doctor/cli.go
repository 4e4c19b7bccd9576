package doctor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Exit codes of doctor.
const (
	ExitOK    = 0 // no check failed (warnings allowed)
	ExitFail  = 1 // a check failed
	ExitUsage = 2 // bad flags or values
)

// Env is what Main talks to; tests replace Gather.
type Env struct {
	Stdout, Stderr io.Writer
	// Gather fills the facts from the host (Gather by default).
	Gather func(f *Facts, info ProgInfo, arpWait time.Duration)
	// ProgInfo names an attached XDP program (xlbd passes the loader's).
	ProgInfo ProgInfo
	// Status asks the daemon at socket for its status (the API client by
	// default).
	Status func(ctx context.Context, socket string) (api.Status, error)
}

// Options are doctor's flags.
type Options struct {
	Iface, Config, API, BPFFS, Role, Mode, Output, Proc, Sys string
	VIPs, Backends                                           []netip.Addr
	ARPWait                                                  time.Duration
}

type addrList []netip.Addr

func (l *addrList) String() string { return fmt.Sprint(*l) }

func (l *addrList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q: not an IP address", part)
		}
		*l = append(*l, a.Unmap())
	}
	return nil
}

// ParseFlags reads doctor's arguments (after "doctor").
func ParseFlags(args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("xlbd doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Iface, "iface", "", "the balancer's interface (default: the daemon's or the config file's)")
	fs.StringVar(&o.Iface, "interface", "", "same as --iface")
	fs.StringVar(&o.Config, "config", "", "read interface, VIPs and backends from the config `FILE` when xlbd's API does not answer")
	fs.StringVar(&o.Config, "c", "", "same as --config")
	fs.StringVar(&o.API, "api", api.DefaultSocket, "xlbd's API socket, asked first for interface, VIPs and backends (\"\": do not ask)")
	fs.StringVar(&o.BPFFS, "bpffs", "/sys/fs/bpf/xlb", "xlbd's --bpffs directory (pins in DIR/IFACE)")
	fs.StringVar(&o.Role, "role", "", "balancer or backend (default: the daemon's, else balancer)")
	fs.StringVar(&o.Mode, "xdp-mode", "", "native or generic (default: the daemon's or the config file's, else native)")
	fs.StringVar(&o.Output, "output", "text", "text or json")
	fs.StringVar(&o.Output, "o", "text", "same as --output")
	fs.DurationVar(&o.ARPWait, "arp-wait", time.Second, "how long to collect answers to who-has VIP (0: do not ask)")
	fs.StringVar(&o.Proc, "proc", "/proc", "root of proc (tests)")
	fs.StringVar(&o.Sys, "sys", "/sys", "root of sysfs (tests)")
	fs.Var((*addrList)(&o.VIPs), "vip", "a VIP to check (repeat or comma-separate; added to the daemon's or file's)")
	fs.Var((*addrList)(&o.Backends), "backend", "a dsr-l2 backend address to check (repeat or comma-separate)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: xlbd doctor [flags]\n\nChecks this host for what xlb needs and prints, per check, ok, warn or FAIL\nand the command that fixes it. Exit 0: no check failed; 1: one failed;\n2: bad flags. Interface, VIPs and backends come from the running xlbd\n(--api), else the config file (-c), else --iface, --vip and --backend.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Output != "text" && o.Output != "json" {
		return nil, fmt.Errorf("--output %q: want text or json", o.Output)
	}
	if o.Role != "" {
		var r lb.Role
		if err := r.UnmarshalText([]byte(o.Role)); err != nil {
			return nil, fmt.Errorf("--role: %w", err)
		}
		o.Role = string(r)
	}
	if o.Mode != "" {
		var m lb.XDPMode
		if err := m.UnmarshalText([]byte(o.Mode)); err != nil {
			return nil, fmt.Errorf("--xdp-mode: %w", err)
		}
		o.Mode = string(m)
	}
	if o.ARPWait < 0 || o.ARPWait > time.Minute {
		return nil, fmt.Errorf("--arp-wait %s: want 0 to 1m", o.ARPWait)
	}
	if o.Iface != "" {
		if err := config.ValidateInterface(o.Iface); err != nil {
			return nil, fmt.Errorf("--iface: %w", err)
		}
	}
	return o, nil
}

// Main runs xlbd doctor with args (after "doctor") and returns its exit
// code.
func Main(args []string, env Env) int {
	o, err := ParseFlags(args, env.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "xlbd doctor:", err)
		return ExitUsage
	}
	if env.Gather == nil {
		env.Gather = Gather
	}
	if env.Status == nil {
		env.Status = func(ctx context.Context, socket string) (api.Status, error) {
			return api.NewClient(socket).Status(ctx)
		}
	}
	f, source, err := facts(o, env)
	if err != nil {
		fmt.Fprintln(env.Stderr, "xlbd doctor:", err)
		return ExitUsage
	}
	env.Gather(f, env.ProgInfo, o.ARPWait)
	rep := &Report{Source: source, Interface: f.Iface, VIPs: []string{}, Backends: []string{}, Checks: Run(f)}
	for _, v := range f.VIPs {
		rep.VIPs = append(rep.VIPs, v.String())
	}
	for _, b := range f.Backends {
		rep.Backends = append(rep.Backends, b.Addr.String())
	}
	for _, c := range rep.Checks {
		if c.Status == Fail {
			rep.Failed++
		}
	}
	if o.Output == "json" {
		if err := rep.JSON(env.Stdout); err != nil {
			fmt.Fprintln(env.Stderr, "xlbd doctor:", err)
			return ExitFail
		}
	} else {
		rep.Text(env.Stdout)
	}
	if rep.Failed > 0 {
		return ExitFail
	}
	return ExitOK
}

// facts builds the facts' inputs: the running daemon's status, else the
// config file, then the flags on top.
func facts(o *Options, env Env) (*Facts, string, error) {
	f := &Facts{Proc: o.Proc, Sys: o.Sys}
	source := "flags"
	var notes []string
	daemon := false
	if o.API != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := env.Status(ctx, o.API)
		cancel()
		if err == nil {
			if err := fromStatus(f, st); err != nil {
				return nil, "", fmt.Errorf("xlbd's status: %w", err)
			}
			source, daemon = "daemon "+o.API, true
		} else {
			notes = append(notes, "xlbd's API at "+o.API+" did not answer")
		}
	}
	if !daemon && o.Config != "" {
		cfg, _, err := config.Load(o.Config)
		if err != nil {
			return nil, "", err
		}
		fromConfig(f, cfg)
		source = "config " + o.Config
	}
	if o.Iface != "" {
		f.Iface = o.Iface
	}
	if o.Role != "" {
		f.Role = o.Role
	}
	if f.Role == "" {
		f.Role = string(lb.RoleBalancer)
	}
	if o.Mode != "" {
		f.Mode = o.Mode
	}
	if f.Mode == "" {
		f.Mode = string(lb.Native)
	}
	for _, v := range o.VIPs {
		f.addVIP(v)
	}
	for _, b := range o.Backends {
		f.addBackend(Backend{Addr: b, L2: true})
	}
	if f.Iface == "" {
		return nil, "", errors.New("no interface: pass --iface NAME or -c FILE, or run it where xlbd's API answers (--api)")
	}
	if o.BPFFS != "" {
		f.PinDir = filepath.Join(o.BPFFS, f.Iface)
	}
	if len(notes) > 0 {
		source += " (" + strings.Join(notes, "; ") + ")"
	}
	return f, source, nil
}

func (f *Facts) addVIP(v netip.Addr) {
	for _, have := range f.VIPs {
		if have == v {
			return
		}
	}
	f.VIPs = append(f.VIPs, v)
}

func (f *Facts) addBackend(b Backend) {
	for i, have := range f.Backends {
		if have.Addr == b.Addr {
			f.Backends[i].L2 = have.L2 || b.L2
			return
		}
	}
	f.Backends = append(f.Backends, b)
}

func fromStatus(f *Facts, st api.Status) error {
	f.Iface, f.Mode, f.Role = st.Interface, st.XDPMode, st.Role
	if st.Decap != nil {
		for _, s := range st.Decap.VIPs {
			if v, err := netip.ParseAddr(s); err == nil {
				f.addVIP(v)
			}
		}
	}
	for _, s := range st.Services {
		key, err := lb.ParseServiceKey(s.Service)
		if err != nil {
			return err
		}
		f.addVIP(key.VIP)
		if s.Health != nil && s.Health.Via == string(lb.CheckViaTunnel) {
			f.Tunnel = true
		}
		for _, b := range s.Backends {
			a, err := netip.ParseAddr(b.Address)
			if err != nil {
				return fmt.Errorf("service %s: backend %q: %w", s.Service, b.Address, err)
			}
			f.addBackend(Backend{Addr: a.Unmap(), L2: s.Forward == "" || s.Forward == lb.DSRL2.String()})
		}
	}
	return nil
}

func fromConfig(f *Facts, cfg *config.Config) {
	f.Iface, f.Mode = cfg.Interface, cfg.XDPMode
	if cfg.Decap != nil {
		for _, s := range cfg.Decap.VIPs {
			if v, err := netip.ParseAddr(s); err == nil {
				f.addVIP(v.Unmap())
			}
		}
	}
	for _, s := range cfg.Services {
		if v, err := netip.ParseAddr(s.VIP); err == nil {
			f.addVIP(v.Unmap())
		}
		if s.Health != nil && s.Health.Via == string(lb.CheckViaTunnel) {
			f.Tunnel = true
		}
		for _, b := range s.Backends {
			if a, err := netip.ParseAddr(b.Address); err == nil {
				f.addBackend(Backend{Addr: a.Unmap(), L2: s.Forward == "" || s.Forward == lb.DSRL2.String()})
			}
		}
	}
}
