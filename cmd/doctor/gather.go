package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ProgInfo looks up an XDP program's name and tag by id (xlbd passes the
// loader's; the doctor package links no BPF library).
type ProgInfo func(id uint32) (name, tag string, err error)

// Gather reads what the checks need about f.Iface, its backends and VIPs
// from the network namespace it runs in: netlink (link, XDP program,
// neighbours, routes, the netdev family's xdp-features), the ethtool ioctl
// (driver, offloads) and, when arpWait is above 0, who answers ARP/NDP for
// the VIPs within arpWait.
func Gather(f *Facts, info ProgInfo, arpWait time.Duration) {
	f.CPUs = runtime.NumCPU()
	f.PageSize = os.Getpagesize()
	nlLink, err := netlink.LinkByName(f.Iface)
	if err != nil {
		return
	}
	a := nlLink.Attrs()
	l := &Link{Name: a.Name, Index: a.Index, MTU: a.MTU, MAC: a.HardwareAddr,
		Up: a.Flags&net.FlagUp != 0, RxQueues: a.NumRxQueues}
	f.Link = l
	l.Driver, l.DriverErr = driver(a.Name)
	l.Features, l.FeaturesErr = features(a.Name)
	l.XDPFeatures, l.XDPFeaturesKnown = xdpFeatures(a.Index)
	if x := a.Xdp; x != nil && x.Attached && x.ProgId != 0 {
		at := &Attached{ID: x.ProgId, Mode: attachMode(x.AttachMode)}
		if info != nil {
			at.Name, at.Tag, at.InfoErr = info(x.ProgId)
		} else {
			at.InfoErr = errors.New("no program lookup")
		}
		l.XDP = at
	}
	f.Neigh = neighbours(a.Index)
	f.Routes = map[netip.Addr]string{}
	for _, b := range f.Backends {
		if b.Addr.Is4() {
			f.Routes[b.Addr] = routeDev(b.Addr)
		}
	}
	f.DefaultDev = defaultDev()
	if arpWait > 0 && len(f.VIPs) > 0 {
		ifi, err := net.InterfaceByIndex(a.Index)
		if err != nil {
			f.ARPErr = err
		} else {
			f.ARP, f.ARPErr = AskVIPs(ifi, f.VIPs, arpWait, source6(nlLink))
		}
		f.ARPAsked = true
	}
}

// source6 is the address to solicit from: the interface's link-local
// address, else a global one, never one still tentative or failed.
func source6(l netlink.Link) netip.Addr {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}
	}
	var best netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		if ip.IsLinkLocalUnicast() {
			return ip
		}
		if !best.IsValid() {
			best = ip
		}
	}
	return best
}

func attachMode(m uint32) string {
	switch m {
	case nl.XDP_ATTACHED_DRV:
		return "native"
	case nl.XDP_ATTACHED_SKB:
		return "generic"
	case nl.XDP_ATTACHED_HW:
		return "offload"
	case nl.XDP_ATTACHED_HW + 1: // XDP_ATTACHED_MULTI
		return "multi"
	}
	return fmt.Sprintf("mode %d", m)
}

var nudNames = map[int]string{
	netlink.NUD_INCOMPLETE: "INCOMPLETE", netlink.NUD_REACHABLE: "REACHABLE",
	netlink.NUD_STALE: "STALE", netlink.NUD_DELAY: "DELAY", netlink.NUD_PROBE: "PROBE",
	netlink.NUD_FAILED: "FAILED", netlink.NUD_NOARP: "NOARP", netlink.NUD_PERMANENT: "PERMANENT",
	netlink.NUD_NONE: "NONE",
}

func neighbours(index int) map[netip.Addr]Neigh {
	out := map[netip.Addr]Neigh{}
	list, err := netlink.NeighList(index, netlink.FAMILY_ALL)
	if err != nil {
		return out
	}
	for _, n := range list {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		state := nudNames[n.State]
		if state == "" {
			state = fmt.Sprintf("0x%x", n.State)
		}
		out[a.Unmap()] = Neigh{State: state, MAC: n.HardwareAddr}
	}
	return out
}

// routeDev is the interface the route to a leaves by, "" without one.
func routeDev(a netip.Addr) string {
	routes, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return ""
	}
	return linkName(routes[0].LinkIndex)
}

func defaultDev() string {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return ""
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask != nil && isZero(r.Dst.Mask) {
			return linkName(r.LinkIndex)
		}
	}
	return ""
}

func isZero(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func linkName(index int) string {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return fmt.Sprintf("index %d", index)
	}
	return l.Attrs().Name
}

// The netdev generic netlink family (include/uapi/linux/netdev.h).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXDPFeatures = 3
)

// genlHeader is struct genlmsghdr with its reserved bytes zero: nl.Genlmsg
// serialises 4 bytes from a 2-byte struct, and the netdev family rejects
// a reserved field that is not zero (EINVAL).
type genlHeader [2]uint8

func (h genlHeader) Len() int { return nl.SizeofGenlmsg }

func (h genlHeader) Serialize() []byte { return []byte{h[0], h[1], 0, 0} }

// xdpFeatures asks the netdev family (kernel 6.3+) for the interface's
// xdp-features; false where the kernel has no such family.
func xdpFeatures(index int) (uint64, bool) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return 0, false
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(genlHeader{netdevCmdDevGet, 1})
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(index))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil || len(msgs) == 0 || len(msgs[0]) < nl.SizeofGenlmsg {
		return 0, false
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][nl.SizeofGenlmsg:])
	if err != nil {
		return 0, false
	}
	for _, at := range attrs {
		if at.Attr.Type == netdevAttrXDPFeatures && len(at.Value) == 8 {
			return binary.NativeEndian.Uint64(at.Value), true
		}
	}
	return 0, false
}

// ethtool ioctl commands and string set (include/uapi/linux/ethtool.h).
const (
	ethtoolGStrings  = 0x1b
	ethtoolGSSetInfo = 0x37
	ethtoolGFeatures = 0x3a
	ethSSFeatures    = 4
	ethGStringLen    = 32
)

func driver(name string) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer func() { _ = unix.Close(fd) }()
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return "", fmt.Errorf("ethtool driver info: %w", err)
	}
	return unix.ByteSliceToString(info.Driver[:]), nil
}

// ifreqPtr is struct ifreq with ifr_data.
type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func ethtool(fd int, name string, buf []byte) error {
	ifr := &ifreqPtr{data: unsafe.Pointer(&buf[0])}
	copy(ifr.name[:unix.IFNAMSIZ-1], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

// features reads the interface's ethtool features (what ethtool -k shows)
// through the SIOCETHTOOL ioctl: the names of the features string set,
// then the active bits.
func features(name string) (map[string]bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Close(fd) }()
	ne := binary.NativeEndian
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
	info := make([]byte, 20)
	ne.PutUint32(info[0:], ethtoolGSSetInfo)
	ne.PutUint64(info[8:], 1<<ethSSFeatures)
	if err := ethtool(fd, name, info); err != nil {
		return nil, fmt.Errorf("ethtool string set info: %w", err)
	}
	if ne.Uint64(info[8:]) == 0 {
		return nil, errors.New("ethtool: no features string set")
	}
	n := int(ne.Uint32(info[16:]))
	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	strs := make([]byte, 12+n*ethGStringLen)
	ne.PutUint32(strs[0:], ethtoolGStrings)
	ne.PutUint32(strs[4:], ethSSFeatures)
	ne.PutUint32(strs[8:], uint32(n))
	if err := ethtool(fd, name, strs); err != nil {
		return nil, fmt.Errorf("ethtool feature names: %w", err)
	}
	// struct ethtool_gfeatures: cmd, size, features[size] of
	// {available, requested, active, never_changed}.
	blocks := (n + 31) / 32
	feat := make([]byte, 8+blocks*16)
	ne.PutUint32(feat[0:], ethtoolGFeatures)
	ne.PutUint32(feat[4:], uint32(blocks))
	if err := ethtool(fd, name, feat); err != nil {
		return nil, fmt.Errorf("ethtool features: %w", err)
	}
	out := make(map[string]bool, n)
	for i := range n {
		s := unix.ByteSliceToString(strs[12+i*ethGStringLen : 12+(i+1)*ethGStringLen])
		if s == "" {
			continue
		}
		active := ne.Uint32(feat[8+(i/32)*16+8:])
		out[s] = active&(1<<(i%32)) != 0
	}
	return out, nil
}
