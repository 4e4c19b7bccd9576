package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands that read a single feature (struct ethtool_value).
const (
	ethtoolGTXCSUM = 0x16 // ETHTOOL_GTXCSUM: get TX checksum offload
	ethtoolGTSO    = 0x1e // ETHTOOL_GTSO: get TCP segmentation offload
)

// ethtoolValue mirrors struct ethtool_value from <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData mirrors struct ifreq with ifr_data set: a 16-byte name followed
// by a 24-byte union whose first member is the pointer.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValueIoctl runs one SIOCETHTOOL request carrying an ethtool_value
// on ifname, using a socket created on the calling thread (and therefore in
// the calling thread's network namespace). It returns the data field after
// the call.
func ethtoolValueIoctl(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ethtool socket: %w", err)
	}
	defer func() { _ = unix.Close(fd) }() // close(2) frees fd whatever it returns
	ev := &ethtoolValue{cmd: cmd, data: data}
	ifr := &ifreqData{data: unsafe.Pointer(ev)}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(ev)
	if errno != 0 {
		return 0, fmt.Errorf("ethtool cmd %#x on %s: %w", cmd, ifname, errno)
	}
	return ev.data, nil
}

// disableTxChecksum turns transmit checksum offload off on ifname (the
// kernel then drops TSO as well, since it depends on checksum offload).
// Must run inside the interface's namespace.
func disableTxChecksum(ifname string) error {
	_, err := ethtoolValueIoctl(ifname, unix.ETHTOOL_STXCSUM, 0)
	return err
}

// offloads reports the TX checksum and TSO state of ifname. Must run inside
// the interface's namespace.
func offloads(ifname string) (txcsum, tso bool, err error) {
	c, err := ethtoolValueIoctl(ifname, ethtoolGTXCSUM, 0)
	if err != nil {
		return false, false, err
	}
	t, err := ethtoolValueIoctl(ifname, ethtoolGTSO, 0)
	if err != nil {
		return false, false, err
	}
	return c != 0, t != 0, nil
}

// writeSysctl writes value to the sysctl key (dotted, e.g.
// "net.ipv4.conf.all.arp_ignore"). /proc/sys/net shows the network
// namespace of the calling thread, so this must run on a thread inside the
// target namespace.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// readSysctl reads a sysctl of the calling thread's namespace.
func readSysctl(key string) (string, error) {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}
