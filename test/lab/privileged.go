package lab

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RequirePrivEnv is the environment variable that, set to "1", turns the
// skip of RequirePrivileged into a test failure (CI sets it).
const RequirePrivEnv = "XLB_REQUIRE_PRIV"

// bpffsMagic is BPF_FS_MAGIC from <linux/magic.h>.
const bpffsMagic = 0xcafe4a11

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

// CheckPrivileged reports whether this process can build a lab: it must be
// root, bpffs must be mounted at /sys/fs/bpf, and it must be able to create
// a named network namespace with a veth pair in it and attach an XDP
// program in native mode to that veth. The probe runs once per process and
// leaves nothing behind; later calls return the cached result.
func CheckPrivileged() error {
	probeOnce.Do(func() { probeErr = probe() })
	return probeErr
}

func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not running as root (euid %d)", os.Geteuid())
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != bpffsMagic {
		return errors.New("bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
	}
	prefix, err := randomPrefix()
	if err != nil {
		return err
	}
	n, err := newNS(prefix + "-probe")
	if err != nil {
		return fmt.Errorf("cannot create a named network namespace: %w", err)
	}
	defer n.close()
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

// RequirePrivileged skips the test, loudly, when CheckPrivileged fails. With
// XLB_REQUIRE_PRIV=1 in the environment it fails the test instead, so CI
// cannot silently skip the privileged tiers.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	err := CheckPrivileged()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("PRIVILEGED LAB TEST NOT RUN: %v (run as root with bpffs mounted)", err)
	if os.Getenv(RequirePrivEnv) == "1" {
		tb.Fatalf("%s; failing because %s=1", msg, RequirePrivEnv)
	}
	tb.Skipf("%s; set %s=1 to turn this skip into a failure", msg, RequirePrivEnv)
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
