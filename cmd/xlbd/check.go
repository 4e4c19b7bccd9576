package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon"
	"github.com/xlb-lb/xlb/maps/lb"
)

// checkConfig is xlbd --check-config: it parses and validates the config
// file as a start or reload would, with every check that needs no data
// plane, and prints a summary to w. It touches no BPF, pins, API socket,
// lock or state file, so it needs no root. The flags that override the
// file (--interface, --xdp-mode, --role) count as they would at start.
func checkConfig(w io.Writer, f *flags) error {
	cfg, _, err := config.Load(f.checkConfig)
	if err != nil {
		return err
	}
	var role lb.Role
	if err := role.UnmarshalText([]byte(f.role)); err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	iface := cfg.Interface
	if f.iface != "" {
		iface = f.iface
	}
	if iface == "" {
		return fmt.Errorf("config %s: interface: required (or pass --interface)", f.checkConfig)
	}
	if err := config.ValidateInterface(iface); err != nil {
		return fmt.Errorf("interface: %w", err)
	}
	mode := cfg.XDPMode
	if f.xdpMode != "" {
		mode = f.xdpMode
	}
	var xdpMode lb.XDPMode
	if err := xdpMode.UnmarshalText([]byte(mode)); err != nil {
		return fmt.Errorf("xdp_mode: %w", err)
	}
	if role == lb.RoleBackend {
		if err := daemon.CheckBackendConfig(cfg); err != nil {
			return fmt.Errorf("config %s: %w", f.checkConfig, err)
		}
	}
	// The interface's addresses are the BGP defaults; an interface not on
	// this host (a file checked elsewhere) skips only those checks.
	var addrs []netip.Addr
	present := false
	if ifc, err := net.InterfaceByName(iface); err == nil {
		present = true
		if addrs, err = interfaceAddrs(ifc); err != nil {
			return err
		}
	}
	if role == lb.RoleBalancer {
		if err := daemon.CheckConfig(cfg, addrs); err != nil {
			return fmt.Errorf("config %s: %w", f.checkConfig, err)
		}
	}
	printSummary(w, f, cfg, role, iface, xdpMode, present)
	return nil
}

// printSummary writes what the checked config would run.
func printSummary(w io.Writer, f *flags, cfg *config.Config, role lb.Role, iface string, mode lb.XDPMode, present bool) {
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("config %s: ok (role %s)", f.checkConfig, role)
	note := ""
	if !present {
		note = " (not on this host: checks of its addresses skipped)"
	}
	p("interface %s, xdp_mode %s%s", iface, mode, note)
	p("listeners: api %s, metrics %s", f.apiSock, orNone(f.metrics))
	if role == lb.RoleBackend {
		if d := cfg.Decap; d == nil || len(d.VIPs) == 0 {
			p("decap: no vips: nothing is decapsulated")
		} else {
			p("decap: vips %s, gue_port %d, addresses %s", strings.Join(d.VIPs, " "), d.GUEPort, orDefault(strings.Join(d.Addresses, " ")))
		}
		return
	}
	l := cfg.Limits
	p("limits: max_services %d, max_backends %d, maglev_size %d, conntrack_size %d, halfopen_size %d",
		l.MaxServices, l.MaxBackends, l.MaglevSize, l.ConntrackSize, l.HalfOpenSize)
	p("services: %d", len(cfg.Services))
	for _, s := range cfg.Services {
		key, err := s.Key()
		name := fmt.Sprint(key)
		if err != nil {
			name = s.VIP
		}
		p("  %s scheduler %s forward %s backends %d health %s", name, s.Scheduler, s.Forward, len(s.Backends), healthSummary(s.Health))
		for _, b := range s.Backends {
			if b.Named() {
				p("    backend name %s (%s) weight %d: looked up by the running xlbd, not here", b.Name, b.Family, *b.Weight)
			}
		}
	}
	if cfg.BGP == nil {
		p("bgp: off")
		return
	}
	b := cfg.BGP
	p("bgp: asn %d, router_id %s, next_hop %s, vip_policy %s, peers %d", b.ASN, orDefault(b.RouterID), orDefault(b.NextHop), b.VIPPolicy, len(b.Peers))
	for _, peer := range b.Peers {
		p("  peer %s asn %d", peer.Address, peer.ASN)
	}
}

func healthSummary(h *config.Health) string {
	if !h.Probes() {
		return "none"
	}
	s := fmt.Sprintf("%s every %s timeout %s rise %d fall %d", h.Type, h.Interval, h.Timeout, h.Rise, h.Fall)
	if h.HTTP != nil {
		s += " path " + h.HTTP.Path
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orDefault(s string) string {
	if s == "" {
		return "(the interface's)"
	}
	return s
}
