package lab

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/test/priv"
)

// passProgramSpec is an XDP program that returns XDP_PASS, loaded with the
// XDP attach type from the start (bpf_link updates across attach types
// fail on 6.18).
func passProgramSpec() *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:       "xlb_lab_pass",
		Type:       ebpf.XDP,
		AttachType: ebpf.AttachXDP,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	}
}

var (
	probeOnce sync.Once
	probeErr  error
)

// CheckPrivileged reports whether this process can build a lab: priv.Check
// (root, bpffs mounted at /sys/fs/bpf, BPF programs load), and it must be
// able to create a named network namespace with a veth pair in it and
// attach an XDP program in native mode to that veth. The probe runs once
// per process and leaves nothing behind; later calls return the cached
// result.
func CheckPrivileged() error {
	probeOnce.Do(func() {
		if probeErr = priv.Check(); probeErr == nil {
			probeErr = probeNetns()
		}
	})
	return probeErr
}

// probeNetns creates a namespace and a veth pair and attaches an XDP
// program to the veth.
func probeNetns() (err error) {
	prefix, err := randomPrefix()
	if err != nil {
		return err
	}
	n, err := newNS(prefix + "-probe")
	if err != nil {
		return fmt.Errorf("cannot create a named network namespace: %w", err)
	}
	// A probe namespace left behind is a failure too.
	defer func() { err = errors.Join(err, n.close()) }()
	la := netlink.NewLinkAttrs()
	la.Name = "probe0"
	if err := n.nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "probe1"}); err != nil {
		return fmt.Errorf("cannot create a veth pair in a network namespace: %w", err)
	}
	prog, err := newPassProgram()
	if err != nil {
		return fmt.Errorf("cannot load an XDP program: %w", err)
	}
	defer prog.Close()
	return n.run(func() error {
		ifc, err := netlink.LinkByName("probe0")
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Attrs().Index, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("cannot attach XDP in native mode to a veth: %w", err)
		}
		return l.Close()
	})
}

// RequirePrivileged skips the test, loudly, when CheckPrivileged fails;
// with XLB_REQUIRE_PRIV=1 it fails the test instead (priv.SkipOrFail), so
// CI cannot silently skip the privileged tiers. Tests that need BPF
// test runs but no lab call priv.Require.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	priv.SkipOrFail(tb, CheckPrivileged())
}

// NewT builds a topology for a test: it calls RequirePrivileged, then New,
// and registers Close with tb.Cleanup (a Close error fails the test). A
// build error is fatal.
func NewT(tb testing.TB, cfg Config) *Topology {
	tb.Helper()
	RequirePrivileged(tb)
	t, err := New(cfg)
	if err != nil {
		tb.Fatalf("build lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("close lab %s: %v", t.Prefix, err)
		}
	})
	return t
}
