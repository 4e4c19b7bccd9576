package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Kernel minimums, from what the data plane uses (bpf/, loader/).
var (
	// minKernel: bpf_loop (the least-conn scan, 5.17) is the newest helper
	// xlb.c calls; the others are older (bpf_ktime_get_coarse_ns 5.11,
	// XDP bpf_link 5.9, mmapable arrays 5.5, global functions 5.6).
	minKernel = kver{5, 17}
	// tcxKernel: the health checks' tunnel (loader/probe) attaches with
	// tcx, 6.6.
	tcxKernel = kver{6, 6}
)

// XDP's room in a page (include/net/xdp.h, include/linux/skbuff.h):
// single-buffer XDP (xlb's programs are SEC("xdp"), not "xdp.frags") needs
// the frame, the headroom and the skb_shared_info in one page.
const (
	xdpHeadroom = 256 // XDP_PACKET_HEADROOM
	skbShinfo   = 320 // SKB_DATA_ALIGN(sizeof(struct skb_shared_info)), 64-bit
	ethHeader   = 14  // ETH_HLEN
)

// xlbProgs are the names xlb's XDP programs load under (bpf/xlb.c,
// bpf/decap.c), by role.
var xlbProgs = map[string]string{"xlb": "balancer", "decap": "backend"}

// nativeDrivers have native XDP (used when the kernel does not report
// xdp-features, before 6.3).
var nativeDrivers = []string{"veth", "virtio_net", "tun", "bond", "netdevsim",
	"mlx4_en", "mlx5_core", "i40e", "ice", "ixgbe", "ixgbevf", "igb", "igc",
	"bnxt_en", "qede", "nfp", "ena", "gve", "hv_netvsc", "sfc", "tsnep",
	"stmmaceth", "fec", "mvneta", "mvpp2", "octeontx2-nicpf", "cpsw", "dpaa2-eth",
	"lan966x-switch", "mtk_soc_eth", "thunder-nicvf", "enetc", "xen-netfront", "ionic", "idpf", "atlantic"}

// netdev xdp-features bit (include/uapi/linux/netdev.h).
const xdpActBasic = 1 << 0

func checkInterface(f *Facts) Result {
	l := f.Link
	if l == nil {
		return fail("pass the balancer's interface: --iface NAME (ip -br link)", "interface %q not found in this network namespace", f.Iface)
	}
	if !l.Up {
		return warn("ip link set dev "+l.Name+" up", "%s (index %d) is down", l.Name, l.Index)
	}
	return ok("%s (index %d, mac %s, driver %s) is up", l.Name, l.Index, l.MAC, orUnknown(l.Driver))
}

// mounts returns the mount points of bpf filesystems in the proc root's
// mounts table.
func mounts(proc string) ([]string, error) {
	file, err := os.Open(filepath.Join(proc, "self", "mounts"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = file.Close() }()
	var bpf []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "bpf" {
			bpf = append(bpf, strings.ReplaceAll(fields[1], `\040`, " "))
		}
	}
	return bpf, sc.Err()
}

func checkBPFFS(f *Facts) Result {
	points, err := mounts(f.Proc)
	if err != nil {
		return warn("", "cannot read the mount table: %v", err)
	}
	const fix = "mount -t bpf bpf /sys/fs/bpf (the systemd unit does it)"
	if len(points) == 0 {
		return fail(fix, "no bpf filesystem mounted: xlbd cannot pin its data plane")
	}
	if f.PinDir == "" {
		return ok("bpf filesystem at %s", strings.Join(points, " "))
	}
	var under string
	for _, p := range points {
		if p == "/" || f.PinDir == p || strings.HasPrefix(f.PinDir, strings.TrimSuffix(p, "/")+"/") {
			under = p
		}
	}
	if under == "" {
		return fail(fix, "pin directory %s is not on a bpf filesystem (bpffs at %s)", f.PinDir, strings.Join(points, " "))
	}
	pins, err := os.ReadDir(f.PinDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ok("bpffs at %s; no pins in %s yet (xlbd makes them)", under, f.PinDir)
	case err != nil:
		return warn("", "bpffs at %s; pin directory %s: %v", under, f.PinDir, err)
	}
	link := ""
	for _, p := range pins {
		if p.Name() == "link" {
			link = ", its link among them: a data plane is pinned"
		}
	}
	return ok("bpffs at %s; %d pins in %s%s", under, len(pins), f.PinDir, link)
}

type kver struct{ major, minor int }

func (v kver) less(o kver) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

func (v kver) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// parseRelease reads "6.18.44-fc" as 6.18.
func parseRelease(s string) (kver, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
	if len(parts) < 2 {
		return kver{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR", s)
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	minor, err2 := strconv.Atoi(parts[1][:digits])
	if err1 != nil || err2 != nil {
		return kver{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR", s)
	}
	return kver{major, minor}, nil
}

func checkKernel(f *Facts) Result {
	data, err := os.ReadFile(filepath.Join(f.Proc, "sys", "kernel", "osrelease"))
	if err != nil {
		return warn("", "cannot read the kernel release: %v", err)
	}
	release := strings.TrimSpace(string(data))
	v, err := parseRelease(release)
	if err != nil {
		return warn("", "%v", err)
	}
	const upgrade = "run a kernel of %s or later (uname -r)"
	if v.less(minKernel) {
		return fail(fmt.Sprintf(upgrade, minKernel), "kernel %s is older than %s: the verifier rejects xlb's program (bpf_loop, least-conn)", release, minKernel)
	}
	if v.less(tcxKernel) {
		if f.Tunnel {
			return fail(fmt.Sprintf(upgrade, tcxKernel), "kernel %s: health checks via tunnel need tcx (%s)", release, tcxKernel)
		}
		return ok("kernel %s (xlb needs %s; health.via tunnel would need %s)", release, minKernel, tcxKernel)
	}
	return ok("kernel %s (xlb needs %s, health.via tunnel %s)", release, minKernel, tcxKernel)
}

func checkBTF(f *Facts) Result {
	path := filepath.Join(f.Sys, "kernel", "btf", "vmlinux")
	if _, err := os.Stat(path); err != nil {
		return warn("a kernel built with CONFIG_DEBUG_INFO_BTF=y",
			"no kernel BTF (/sys/kernel/btf/vmlinux): xlb's programs use no CO-RE and still load, but bpftool and pwru cannot show its maps' types")
	}
	return ok("kernel BTF at /sys/kernel/btf/vmlinux")
}

// native tells whether the driver has native XDP, and how it is known.
func native(l *Link) (yes, known bool, how string) {
	if l.XDPFeaturesKnown {
		return l.XDPFeatures&xdpActBasic != 0, true, fmt.Sprintf("xdp-features 0x%x", l.XDPFeatures)
	}
	if l.Driver == "" {
		return false, false, "driver unknown"
	}
	if slices.Contains(nativeDrivers, l.Driver) {
		return true, true, "known driver"
	}
	return false, false, "driver " + l.Driver + " not in doctor's list"
}

func checkXDPMode(f *Facts) Result {
	l := f.Link
	if l == nil {
		return skip("no interface")
	}
	yes, known, how := native(l)
	inUse := ""
	if l.XDP != nil && xlbProgs[l.XDP.Name] != "" {
		inUse = fmt.Sprintf("; xlb attached in %s mode", l.XDP.Mode)
	}
	drv := orUnknown(l.Driver)
	switch {
	case !known:
		return warn("try xdp_mode: native; if the attach fails, xdp_mode: generic", "driver %s: native XDP support unknown (%s)%s", drv, how, inUse)
	case !yes && (f.Mode == "native" || l.XDP != nil && l.XDP.Mode == "native"):
		return fail("set xdp_mode: generic in the config (or xlbd --xdp-mode generic)", "driver %s has no native XDP (%s); xlbd's native attach fails%s", drv, how, inUse)
	case !yes:
		return ok("driver %s: generic XDP only (%s); xdp_mode generic%s", drv, how, inUse)
	case f.Mode == "generic" || l.XDP != nil && l.XDP.Mode == "generic" && inUse != "":
		return warn("set xdp_mode: native (xlbd --detach, then start it again)", "driver %s has native XDP (%s) but xlb runs generic, the slow path%s", drv, how, inUse)
	}
	return ok("driver %s: native XDP (%s)%s", drv, how, inUse)
}

// xdpMTU is the largest MTU single-buffer native XDP takes on a page of
// pageSize bytes (veth and virtio_net compute exactly this).
func xdpMTU(pageSize int) int { return pageSize - xdpHeadroom - skbShinfo - ethHeader }

func checkMTU(f *Facts) Result {
	l := f.Link
	if l == nil {
		return skip("no interface")
	}
	page := f.PageSize
	if page == 0 {
		page = 4096
	}
	limit := xdpMTU(page)
	why := fmt.Sprintf("%d page - %d headroom - %d skb_shared_info - %d Ethernet", page, xdpHeadroom, skbShinfo, ethHeader)
	if f.Mode == "generic" {
		return ok("MTU %d (generic XDP has no page limit)", l.MTU)
	}
	if l.MTU > limit {
		return fail(fmt.Sprintf("ip link set dev %s mtu %d (or xdp_mode: generic)", l.Name, limit),
			"MTU %d is above native XDP's single-buffer limit %d (%s): the driver refuses the attach", l.MTU, limit, why)
	}
	note := ""
	if l.Driver != "veth" && l.Driver != "virtio_net" {
		note = "; a driver may set a lower limit of its own"
	}
	return ok("MTU %d within native XDP's %d (%s)%s", l.MTU, limit, why, note)
}

func checkOffloads(f *Facts) Result {
	l := f.Link
	if l == nil {
		return skip("no interface")
	}
	if l.FeaturesErr != nil {
		return warn("ethtool -k "+l.Name, "cannot read the offloads: %v", l.FeaturesErr)
	}
	if f.Mode == "generic" {
		return ok("generic XDP runs after the driver's offloads (lro %s, rx-gro-hw %s)", onOff(l.Features["rx-lro"]), onOff(l.Features["rx-gro-hw"]))
	}
	if l.Features["rx-lro"] {
		return fail("ethtool -K "+l.Name+" lro off", "LRO is on: native XDP cannot run on merged frames (drivers refuse the attach)")
	}
	if l.Features["rx-gro-hw"] {
		return warn("ethtool -K "+l.Name+" rx-gro-hw off", "hardware GRO is on: native XDP needs it off (some drivers refuse the attach, others turn it off)")
	}
	return ok("lro off, rx-gro-hw off (software GRO, %s, runs after XDP)", onOff(l.Features["rx-gro"]))
}

func checkXDPProgram(f *Facts) Result {
	l := f.Link
	if l == nil {
		return skip("no interface")
	}
	a := l.XDP
	if a == nil {
		return ok("no XDP program on %s", l.Name)
	}
	id := fmt.Sprintf("id %d, %s mode", a.ID, a.Mode)
	if a.Tag != "" {
		id += ", tag " + a.Tag
	}
	if a.InfoErr != nil {
		return warn("bpftool prog show id "+strconv.Itoa(int(a.ID)), "an XDP program (%s) is attached; its name is unknown: %v", id, a.InfoErr)
	}
	role := f.Role
	if role == "" {
		role = "balancer"
	}
	switch xlbProgs[a.Name] {
	case role:
		return ok("xlb's %s program %q (%s)", role, a.Name, id)
	case "":
		return fail("find its owner (bpftool net show dev "+l.Name+"), then: ip link set dev "+l.Name+" xdp off",
			"another XDP program, %q (%s), is attached: xlbd cannot attach", a.Name, id)
	}
	return warn("xlbd --role "+xlbProgs[a.Name]+" --detach --interface "+l.Name,
		"xlb's %s program %q (%s) is attached, not the %s's", xlbProgs[a.Name], a.Name, id, role)
}

// sysctl reads a net.ipv4.conf value under the proc root.
func sysctl(proc, dev, key string) (int, error) {
	data, err := os.ReadFile(filepath.Join(proc, "sys", "net", "ipv4", "conf", dev, key))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

var rpNames = map[int]string{0: "off", 1: "strict", 2: "loose"}

// checkRPFilter judges rp_filter on the interface. XDP runs before the
// IP layer, so the VIP traffic xlb forwards never meets rp_filter. What
// does: on the balancer, the answers to its health checks and ICMP from
// the backends (the tunnel's answers already carry the backend's address
// again, restored at tcx ingress); on a decapsulating backend, the
// client's inner packet. The kernel checks the source: strict (1) drops
// it unless the route back leaves by the interface it came in on, loose
// (2) unless there is some route. The value in force is the larger of
// all and the interface's.
func checkRPFilter(f *Facts) Result {
	if f.Link == nil {
		return skip("no interface")
	}
	dev := f.Iface
	all, err1 := sysctl(f.Proc, "all", "rp_filter")
	own, err2 := sysctl(f.Proc, dev, "rp_filter")
	def, err3 := sysctl(f.Proc, "default", "rp_filter")
	if err := errors.Join(err1, err2, err3); err != nil {
		return warn("", "cannot read rp_filter: %v", err)
	}
	eff := max(all, own)
	state := fmt.Sprintf("%s (all=%d, %s=%d, default=%d)", rpNames[eff], all, dev, own, def)
	fix := func(v int) string {
		return fmt.Sprintf("sysctl -w net.ipv4.conf.all.rp_filter=%d net.ipv4.conf.%s.rp_filter=%d", v, dev, v)
	}
	if f.Role == "backend" {
		switch {
		case eff == 1 && f.DefaultDev != dev:
			return fail(fix(2), "rp_filter %s: decapsulated packets carry the client's address, and the default route leaves by %q, not %s: the kernel drops them", state, f.DefaultDev, dev)
		case eff == 1:
			return warn(fix(2), "rp_filter %s: decapsulated packets from clients routed elsewhere than %s are dropped", state, dev)
		case def == 1:
			return warn("sysctl -w net.ipv4.conf.default.rp_filter=2", "rp_filter %s: tunnel devices created later (ipip0) start strict and drop decapsulated packets", state)
		}
		return ok("rp_filter %s", state)
	}
	var bad []string
	for _, b := range f.Backends {
		if !b.Addr.Is4() {
			continue // rp_filter is IPv4 only
		}
		out, found := f.Routes[b.Addr]
		switch {
		case !found:
		case out == "" && eff > 0:
			bad = append(bad, fmt.Sprintf("%s (no route)", b.Addr))
		case out != dev && eff == 1:
			bad = append(bad, fmt.Sprintf("%s (route via %s)", b.Addr, out))
		}
	}
	if len(bad) > 0 {
		v := 2
		if strings.Contains(strings.Join(bad, ""), "no route") {
			v = 0
		}
		return fail(fix(v), "rp_filter %s drops what backends send to %s (health-check answers, ICMP): the route back to %s does not leave by %s, so their checks fail",
			state, dev, strings.Join(bad, ", "), dev)
	}
	return ok("rp_filter %s: every backend routes back via %s (XDP forwards before rp_filter)", state, dev)
}

// neighOK are neighbour states whose MAC the balancer can use.
var neighOK = []string{"PERMANENT", "NOARP", "REACHABLE", "STALE", "DELAY", "PROBE"}

func checkNeighbours(f *Facts) Result {
	if f.Link == nil {
		return skip("no interface")
	}
	var known, waiting, failed, missing []string
	for _, b := range f.Backends {
		if !b.L2 {
			continue
		}
		n, found := f.Neigh[b.Addr]
		switch {
		case !found:
			missing = append(missing, b.Addr.String())
		case slices.Contains(neighOK, n.State):
			known = append(known, fmt.Sprintf("%s %s %s", b.Addr, n.State, n.MAC))
		case n.State == "FAILED":
			failed = append(failed, b.Addr.String())
		default:
			waiting = append(waiting, fmt.Sprintf("%s %s", b.Addr, n.State))
		}
	}
	dev := f.Iface
	switch {
	case len(known)+len(waiting)+len(failed)+len(missing) == 0:
		return skip("no dsr-l2 backends")
	case len(failed) > 0:
		return fail(fmt.Sprintf("check that %s are up on %s's segment and answer ARP/NDP for their own address (ip neigh show dev %s)", strings.Join(failed, " "), dev, dev),
			"no ARP/NDP answer from %s (FAILED): they get no traffic (no-mac)", strings.Join(failed, ", "))
	case len(missing)+len(waiting) > 0:
		return warn(fmt.Sprintf("xlbd solicits them while it runs; by hand: arping -I %s ADDR, then ip neigh show dev %s", dev, dev),
			"MAC not known yet for %s: no traffic until resolved", strings.Join(append(missing, waiting...), ", "))
	}
	return ok("every backend's MAC is known: %s", strings.Join(known, ", "))
}

// irqbalance reports whether a process named irqbalance runs, from the
// proc root's */comm.
func irqbalance(proc string) bool {
	comms, _ := filepath.Glob(filepath.Join(proc, "[0-9]*", "comm"))
	for _, c := range comms {
		if data, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(data)) == "irqbalance" {
			return true
		}
	}
	return false
}

func checkIRQ(f *Facts) Result {
	l := f.Link
	if l == nil {
		return skip("no interface")
	}
	running := irqbalance(f.Proc)
	ib := "irqbalance not running"
	if running {
		ib = "irqbalance running"
	}
	if l.Driver == "veth" {
		return ok("%s: a veth has no hardware queues or interrupts; XDP runs on the sender's CPU (%s)", l.Name, ib)
	}
	if l.RxQueues < f.CPUs {
		return warn(fmt.Sprintf("ethtool -L %s combined %d (if the NIC has that many queues)", l.Name, f.CPUs),
			"%d rx queues for %d CPUs: RSS spreads flows over %d CPUs only (%s)", l.RxQueues, f.CPUs, l.RxQueues, ib)
	}
	if !running {
		return warn(fmt.Sprintf("systemctl start irqbalance, or pin each queue's IRQ: grep %s /proc/interrupts; echo CPU > /proc/irq/N/smp_affinity_list", l.Name),
			"%d rx queues for %d CPUs, irqbalance not running: unless pinned, the queues' interrupts may share one CPU", l.RxQueues, f.CPUs)
	}
	return ok("%d rx queues for %d CPUs, %s", l.RxQueues, f.CPUs, ib)
}

func checkVIPARP(f *Facts) Result {
	if f.Link == nil {
		return skip("no interface")
	}
	if len(f.VIPs) == 0 {
		return skip("no VIPs")
	}
	if !f.ARPAsked {
		return skip("not asked (--arp-wait 0)")
	}
	// Name the backends by their MAC, from the neighbour table.
	byMAC := map[string][]string{}
	for _, b := range f.Backends {
		if n, found := f.Neigh[b.Addr]; found && len(n.MAC) > 0 {
			byMAC[n.MAC.String()] = append(byMAC[n.MAC.String()], b.Addr.String())
		}
	}
	var thieves, hosts []string
	fixes := map[string][]string{}
	seen := map[string]bool{}
	for _, r := range f.ARP {
		if f.Link.MAC != nil && r.MAC.String() == f.Link.MAC.String() {
			continue
		}
		key := r.VIP.String() + " " + r.MAC.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		who := "unknown host " + r.MAC.String()
		if names := byMAC[r.MAC.String()]; len(names) > 0 {
			who = "backend " + strings.Join(names, "/") + " (" + r.MAC.String() + ")"
		}
		thieves = append(thieves, fmt.Sprintf("%s answers for VIP %s", who, r.VIP))
		if fixes[who] == nil {
			hosts = append(hosts, who)
		}
		if r.VIP.Is4() {
			fixes[who] = append(fixes[who], fmt.Sprintf("ip addr del %s/32 dev <iface>; ip addr add %s/32 dev lo", r.VIP, r.VIP))
		} else {
			fixes[who] = append(fixes[who], fmt.Sprintf("ip -6 addr del %s/128 dev <iface>; ip -6 addr add %s/128 dev lo", r.VIP, r.VIP))
		}
	}
	var fix []string
	for _, who := range hosts {
		fix = append(fix, "on "+who+": "+strings.Join(fixes[who], "; ")+"; sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2")
	}
	if len(thieves) > 0 {
		return fail(strings.Join(fix, " | "), "%s: it takes the VIP's traffic from the balancer", strings.Join(thieves, "; "))
	}
	if f.ARPErr != nil {
		return warn("run it as root, in the balancer's network namespace", "cannot ask who has the VIPs: %v", f.ARPErr)
	}
	vips := make([]string, 0, len(f.VIPs))
	for _, v := range f.VIPs {
		vips = append(vips, v.String())
	}
	return ok("no other host answers ARP/NDP for %s", strings.Join(vips, ", "))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
