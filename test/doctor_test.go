//go:build integration

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/cmd/doctor"
	"github.com/xlb-lb/xlb/test/lab"
)

// TestDoctor runs the built "xlbd doctor" inside the balancer's network
// namespace (nsenter --net: the host's bpffs stays visible), against a
// real xlbd whose API gives it the interface, the VIP and the backends.
// First the host is wrong in two ways: the balancer's rp_filter is strict
// while the route back to be2 leaves by another interface, and be1 holds
// the VIPs on its eth0 with arp_ignore=0, so it answers ARP (and NDP) for
// them; be2 keeps them on lo with arp_ignore=1, arp_announce=2. Doctor
// must exit 1, fail rp_filter naming be2's route and the sysctl fix, and
// fail vip-arp naming be1 and its MAC (never be2). With rp_filter loose
// and be1 fixed, every check passes and doctor exits 0.
func TestDoctor(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2})
	e := newDaemonEnv(t, topo, labConfig(topo, 8080))
	e.Start()
	lb, be1, be2 := topo.Balancer, topo.Backends[0], topo.Backends[1]

	// The balancer: strict rp_filter, and be2's route via a second link.
	if err := lb.NS.Do(func() error {
		if err := sysctls("net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.eth0.rp_filter=0"); err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "side0"}, PeerName: "side1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		for _, name := range []string{"side0", "side1"} {
			l, err := netlink.LinkByName(name)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return fmt.Errorf("%s up: %w", name, err)
			}
		}
		side, err := netlink.LinkByName("side0")
		if err != nil {
			return err
		}
		dst := &net.IPNet{IP: be2.Addr4.AsSlice(), Mask: net.CIDRMask(32, 32)}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: side.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatal(err)
	}
	// be1 answers for the VIPs: they move from lo to its eth0.
	if err := be1.NS.Do(func() error {
		if err := sysctls("net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0",
			"net.ipv4.conf.all.arp_announce=0", "net.ipv4.conf.eth0.arp_announce=0"); err != nil {
			return err
		}
		return moveAddrs("lo", "eth0", topo.VIP4, topo.VIP6)
	}); err != nil {
		t.Fatal(err)
	}

	args := []string{"doctor", "--api", e.Socket(), "--bpffs", e.BPFFS(), "--vip", topo.VIP6.String(), "--arp-wait", "2s"}
	code, rep, text := runDoctor(t, lb, args)
	t.Logf("doctor on the broken host (exit %d):\n%s", code, text)
	if code != doctor.ExitFail {
		t.Errorf("exit %d, want %d", code, doctor.ExitFail)
	}
	if !strings.HasPrefix(rep.Source, "daemon ") || rep.Interface != lab.LinkName {
		t.Errorf("source %q, interface %q: want the daemon's, eth0", rep.Source, rep.Interface)
	}
	rp := check(t, rep, "rp_filter")
	if rp.Status != doctor.Fail || !strings.Contains(rp.Message, be2.Addr4.String()+" (route via side0)") ||
		rp.Fix != "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth0.rp_filter=2" {
		t.Errorf("rp_filter: %+v", rp)
	}
	arp := check(t, rep, "vip-arp")
	for _, want := range []string{
		fmt.Sprintf("backend %s (%s) answers for VIP %s", be1.Addr4, be1.MAC, topo.VIP4),
		fmt.Sprintf("answers for VIP %s", topo.VIP6),
	} {
		if arp.Status != doctor.Fail || !strings.Contains(arp.Message, want) {
			t.Errorf("vip-arp lacks %q: %+v", want, arp)
		}
	}
	if strings.Contains(arp.Message+arp.Fix, be2.Addr4.String()) || strings.Contains(arp.Message, be2.MAC.String()) {
		t.Errorf("vip-arp names the good backend be2 (%s, %s): %+v", be2.Addr4, be2.MAC, arp)
	}
	if !strings.Contains(arp.Fix, "arp_ignore=1") || !strings.Contains(arp.Fix, "arp_announce=2") {
		t.Errorf("vip-arp fix: %q", arp.Fix)
	}
	if p := check(t, rep, "xdp-program"); p.Status != doctor.OK || !strings.Contains(p.Message, `"xlb"`) {
		t.Errorf("xdp-program: %+v", p)
	}

	// The fixes doctor gave: loose rp_filter; be1's VIPs back on lo.
	if err := lb.NS.Do(func() error {
		return sysctls("net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.eth0.rp_filter=2")
	}); err != nil {
		t.Fatal(err)
	}
	if err := be1.NS.Do(func() error {
		if err := moveAddrs("eth0", "lo", topo.VIP4, topo.VIP6); err != nil {
			return err
		}
		return sysctls("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	}); err != nil {
		t.Fatal(err)
	}
	code, rep, text = runDoctor(t, lb, args)
	t.Logf("doctor on the fixed host (exit %d):\n%s", code, text)
	if code != doctor.ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
	for _, name := range []string{"rp_filter", "vip-arp"} {
		if c := check(t, rep, name); c.Status != doctor.OK {
			t.Errorf("%s after the fix: %+v", name, c)
		}
	}
	for _, c := range rep.Checks {
		if c.Status == doctor.Fail {
			t.Errorf("%s fails on the fixed host: %+v", c.Check, c)
		}
	}
}

// runDoctor runs xlbd doctor in h's network namespace twice, as JSON (the
// report returned) and as text (for the log).
func runDoctor(t *testing.T, h *lab.Host, args []string) (int, doctor.Report, string) {
	t.Helper()
	run := func(extra ...string) (int, []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := h.NS.Command(ctx, bins.Xlbd(), append(append([]string{}, args...), extra...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run doctor: %v", err)
		}
		if stderr.Len() > 0 {
			t.Errorf("doctor wrote to stderr: %s", stderr.String())
		}
		return cmd.ProcessState.ExitCode(), stdout.Bytes()
	}
	code, out := run("-o", "json")
	var rep doctor.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	textCode, text := run()
	if textCode != code {
		t.Errorf("exit %d as text, %d as JSON", textCode, code)
	}
	return code, rep, string(text)
}

func check(t *testing.T, rep doctor.Report, name string) doctor.Result {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Check == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep)
	return doctor.Result{}
}

// sysctls writes KEY=VALUE settings in the calling thread's network
// namespace.
func sysctls(kvs ...string) error {
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", kv, err)
		}
	}
	return nil
}

// moveAddrs moves host addresses (/32, /128 without DAD) from one link to
// another in the calling thread's network namespace.
func moveAddrs(from, to string, addrs ...netip.Addr) error {
	src, err := netlink.LinkByName(from)
	if err != nil {
		return err
	}
	dst, err := netlink.LinkByName(to)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		if err := netlink.AddrDel(src, addr); err != nil {
			return fmt.Errorf("remove %s from %s: %w", a, from, err)
		}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(dst, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", a, to, err)
		}
	}
	return nil
}
