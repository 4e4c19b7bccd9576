// Package priv decides whether a privileged test runs: it probes once per
// process for root, bpffs and the right to load BPF programs, and skips a
// test that cannot run, loudly, or fails it when XLB_REQUIRE_PRIV=1 (CI
// sets it), so a privileged tier is never skipped in silence.
package priv

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// RequireEnv is the environment variable that, set to "1", turns the skip
// of Require into a test failure.
const RequireEnv = "XLB_REQUIRE_PRIV"

// bpffsMagic is BPF_FS_MAGIC from <linux/magic.h>.
const bpffsMagic = 0xcafe4a11

var (
	once     sync.Once
	probeErr error
)

// Check reports whether this process may load BPF programs and pin them:
// root, bpffs at /sys/fs/bpf, and an XDP program that loads. The probe
// runs once per process and leaves nothing behind.
func Check() error {
	once.Do(func() { probeErr = probe() })
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
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xlb_priv_probe", Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		return fmt.Errorf("cannot load an XDP program: %w", err)
	}
	return prog.Close()
}

// Require skips the test, loudly, unless Check passes. With
// XLB_REQUIRE_PRIV=1 it fails the test instead.
func Require(tb testing.TB) {
	tb.Helper()
	SkipOrFail(tb, Check())
}

// SkipOrFail skips the test (or fails it, with XLB_REQUIRE_PRIV=1) because
// of err, the reason a privileged test cannot run; nil does nothing. Lab
// helpers with probes of their own (network namespaces, veth) use it too.
func SkipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("PRIVILEGED TEST NOT RUN: %v (run as root with bpffs mounted)", err)
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("%s; failing because %s=1", msg, RequireEnv)
	}
	tb.Skipf("%s; set %s=1 to turn this skip into a failure", msg, RequireEnv)
}
