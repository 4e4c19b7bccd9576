package doctor

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree writes a fixture /proc and /sys: files maps a path under the
// root ("proc/sys/kernel/osrelease") to its content.
func tree(t *testing.T, files map[string]string) (proc, sys string) {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "proc"), filepath.Join(root, "sys")
}

// healthy is a host on which every check passes: files for tree and the
// facts of eth0.
func healthy(t *testing.T, over map[string]string) *Facts {
	t.Helper()
	files := map[string]string{
		"proc/self/mounts":                         "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n",
		"proc/sys/kernel/osrelease":                "6.18.44-fc\n",
		"proc/sys/net/ipv4/conf/all/rp_filter":     "0\n",
		"proc/sys/net/ipv4/conf/default/rp_filter": "0\n",
		"proc/sys/net/ipv4/conf/eth0/rp_filter":    "0\n",
		"proc/1/comm":                              "systemd\n",
		"proc/812/comm":                            "irqbalance\n",
		"sys/kernel/btf/vmlinux":                   "",
	}
	for k, v := range over {
		if v == "-" {
			delete(files, k)
		} else {
			files[k] = v
		}
	}
	proc, sys := tree(t, files)
	if _, found := over["proc/self/mounts"]; !found {
		// The bpf filesystem is mounted at the fixture's sys/fs/bpf.
		mounts := "sysfs /sys sysfs rw 0 0\nbpf " + filepath.Join(sys, "fs", "bpf") + " bpf rw,relatime 0 0\n"
		if err := os.WriteFile(filepath.Join(proc, "self", "mounts"), []byte(mounts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	be1, be2 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	return &Facts{
		Proc: proc, Sys: sys, Role: "balancer", Iface: "eth0", Mode: "native",
		PinDir:   filepath.Join(sys, "fs", "bpf", "xlb", "eth0"),
		VIPs:     []netip.Addr{netip.MustParseAddr("198.18.1.1")},
		Backends: []Backend{{Addr: be1, L2: true}, {Addr: be2, L2: true}},
		Link: &Link{Name: "eth0", Index: 2, MTU: 1500, MAC: mac("02:00:00:00:00:01"), Up: true, RxQueues: 4,
			Driver: "mlx5_core", XDPFeatures: 0x2b, XDPFeaturesKnown: true,
			Features: map[string]bool{"rx-gro": true}},
		Neigh: map[netip.Addr]Neigh{
			be1: {State: "REACHABLE", MAC: mac("02:00:00:00:00:11")},
			be2: {State: "STALE", MAC: mac("02:00:00:00:00:12")},
		},
		Routes:   map[netip.Addr]string{be1: "eth0", be2: "eth0"},
		ARPAsked: true,
		CPUs:     4, PageSize: 4096,
	}
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func result(t *testing.T, f *Facts, check string) Result {
	t.Helper()
	for _, r := range Run(f) {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no check %q", check)
	return Result{}
}

func TestHealthyHostPassesEveryCheck(t *testing.T) {
	f := healthy(t, nil)
	for _, r := range Run(f) {
		if r.Status != OK {
			t.Errorf("%s: %s %q (fix %q), want ok", r.Check, r.Status, r.Message, r.Fix)
		}
		if r.Message == "" {
			t.Errorf("%s: no message", r.Check)
		}
	}
}

// verdict is one row of the check tables: a change to the healthy host,
// the check's expected status, and what its message and fix must say.
type verdict struct {
	name      string
	files     map[string]string
	facts     func(f *Facts)
	check     string
	want      Status
	msg, fix  string
	notInMsgs []string
}

func TestVerdicts(t *testing.T) {
	be1, be2 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	vip := netip.MustParseAddr("198.18.1.1")
	rows := []verdict{
		{name: "interface missing", facts: func(f *Facts) { f.Link = nil }, check: "interface", want: Fail, msg: `interface "eth0" not found`, fix: "--iface"},
		{name: "interface down", facts: func(f *Facts) { f.Link.Up = false }, check: "interface", want: Warn, fix: "ip link set dev eth0 up"},
		{name: "no interface skips the rest", facts: func(f *Facts) { f.Link = nil }, check: "mtu", want: Skip},

		{name: "no bpffs", files: map[string]string{"proc/self/mounts": "sysfs /sys sysfs rw 0 0\n"}, check: "bpffs", want: Fail, msg: "no bpf filesystem", fix: "mount -t bpf bpf /sys/fs/bpf"},
		{name: "pin dir elsewhere", facts: func(f *Facts) { f.PinDir = "/var/lib/xlb/eth0" }, check: "bpffs", want: Fail, msg: "not on a bpf filesystem"},
		{name: "pins listed", facts: func(f *Facts) {
			if err := os.MkdirAll(filepath.Join(f.PinDir, "link"), 0o755); err != nil {
				panic(err)
			}
		}, check: "bpffs", want: OK, msg: "its link among them"},

		{name: "kernel too old", files: map[string]string{"proc/sys/kernel/osrelease": "5.15.0-91-generic\n"}, check: "kernel", want: Fail, msg: "older than 5.17", fix: "5.17 or later"},
		{name: "kernel 5.17", files: map[string]string{"proc/sys/kernel/osrelease": "5.17.0\n"}, check: "kernel", want: OK, msg: "health.via tunnel would need 6.6"},
		{name: "tunnel needs tcx", files: map[string]string{"proc/sys/kernel/osrelease": "6.1.0-18-amd64\n"}, facts: func(f *Facts) { f.Tunnel = true }, check: "kernel", want: Fail, msg: "need tcx (6.6)"},
		{name: "kernel release garbage", files: map[string]string{"proc/sys/kernel/osrelease": "banana\n"}, check: "kernel", want: Warn, msg: `"banana"`},
		{name: "no BTF", files: map[string]string{"sys/kernel/btf/vmlinux": "-"}, check: "btf", want: Warn, fix: "CONFIG_DEBUG_INFO_BTF=y"},

		{name: "no native XDP, native wanted", facts: func(f *Facts) { f.Link.XDPFeatures = 0 }, check: "xdp-mode", want: Fail, fix: "xdp_mode: generic"},
		{name: "no native XDP, generic", facts: func(f *Facts) { f.Link.XDPFeatures, f.Mode = 0, "generic" }, check: "xdp-mode", want: OK, msg: "generic XDP only"},
		{name: "native possible, generic in use", facts: func(f *Facts) {
			f.Mode = "generic"
			f.Link.XDP = &Attached{ID: 7, Mode: "generic", Name: "xlb"}
		}, check: "xdp-mode", want: Warn, msg: "xlb attached in generic mode", fix: "xdp_mode: native"},
		{name: "mode in use reported", facts: func(f *Facts) { f.Link.XDP = &Attached{ID: 7, Mode: "native", Name: "xlb"} }, check: "xdp-mode", want: OK, msg: "xlb attached in native mode"},
		{name: "old kernel, known driver", facts: func(f *Facts) { f.Link.XDPFeaturesKnown = false }, check: "xdp-mode", want: OK, msg: "known driver"},
		{name: "old kernel, unknown driver", facts: func(f *Facts) { f.Link.XDPFeaturesKnown, f.Link.Driver = false, "r8169" }, check: "xdp-mode", want: Warn, msg: "r8169"},

		{name: "MTU too big", facts: func(f *Facts) { f.Link.MTU = 9000 }, check: "mtu", want: Fail, msg: "MTU 9000 is above native XDP's single-buffer limit 3506", fix: "ip link set dev eth0 mtu 3506"},
		{name: "MTU at the limit", facts: func(f *Facts) { f.Link.MTU = 3506 }, check: "mtu", want: OK},
		{name: "MTU on 64k pages", facts: func(f *Facts) { f.Link.MTU, f.PageSize = 9000, 65536 }, check: "mtu", want: OK, msg: "65536 page"},
		{name: "MTU generic", facts: func(f *Facts) { f.Link.MTU, f.Mode = 9000, "generic" }, check: "mtu", want: OK},

		{name: "LRO on", facts: func(f *Facts) { f.Link.Features["rx-lro"] = true }, check: "offloads", want: Fail, msg: "LRO is on", fix: "ethtool -K eth0 lro off"},
		{name: "GRO hw on", facts: func(f *Facts) { f.Link.Features["rx-gro-hw"] = true }, check: "offloads", want: Warn, fix: "ethtool -K eth0 rx-gro-hw off"},
		{name: "features unreadable", facts: func(f *Facts) { f.Link.FeaturesErr = errors.New("operation not supported") }, check: "offloads", want: Warn, msg: "operation not supported"},

		{name: "xlb attached", facts: func(f *Facts) { f.Link.XDP = &Attached{ID: 9, Mode: "native", Name: "xlb", Tag: "abcd"} }, check: "xdp-program", want: OK, msg: `xlb's balancer program "xlb" (id 9, native mode, tag abcd)`},
		{name: "foreign program", facts: func(f *Facts) { f.Link.XDP = &Attached{ID: 9, Mode: "native", Name: "xdp_dispatcher"} }, check: "xdp-program", want: Fail, msg: `another XDP program, "xdp_dispatcher"`, fix: "ip link set dev eth0 xdp off"},
		{name: "decap on a balancer", facts: func(f *Facts) { f.Link.XDP = &Attached{ID: 9, Mode: "native", Name: "decap"} }, check: "xdp-program", want: Warn, msg: "backend program", fix: "--role backend --detach"},
		{name: "decap on a backend", facts: func(f *Facts) { f.Role = "backend"; f.Link.XDP = &Attached{ID: 9, Mode: "native", Name: "decap"} }, check: "xdp-program", want: OK},
		{name: "program unknown", facts: func(f *Facts) { f.Link.XDP = &Attached{ID: 9, Mode: "generic", InfoErr: errors.New("no such file")} }, check: "xdp-program", want: Warn, fix: "bpftool prog show id 9"},

		{name: "strict, symmetric", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "1\n"}, check: "rp_filter", want: OK, msg: "strict (all=1, eth0=0, default=0)"},
		{name: "strict, backend routed elsewhere", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "1\n"},
			facts: func(f *Facts) { f.Routes[be2] = "eth9" }, check: "rp_filter", want: Fail,
			msg: "198.18.0.12 (route via eth9)", fix: "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth0.rp_filter=2", notInMsgs: []string{"198.18.0.11"}},
		{name: "interface's value counts (max)", files: map[string]string{"proc/sys/net/ipv4/conf/eth0/rp_filter": "1\n"},
			facts: func(f *Facts) { f.Routes[be1] = "eth9" }, check: "rp_filter", want: Fail, msg: "strict (all=0, eth0=1"},
		{name: "loose, backend routed elsewhere", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "2\n"},
			facts: func(f *Facts) { f.Routes[be2] = "eth9" }, check: "rp_filter", want: OK, msg: "loose"},
		{name: "loose, no route back", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "2\n"},
			facts: func(f *Facts) { f.Routes[be2] = "" }, check: "rp_filter", want: Fail, msg: "198.18.0.12 (no route)", fix: "rp_filter=0"},
		{name: "off, backend routed elsewhere", facts: func(f *Facts) { f.Routes[be2] = "eth9" }, check: "rp_filter", want: OK},
		{name: "backend role strict, default elsewhere", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "1\n"},
			facts: func(f *Facts) { f.Role, f.DefaultDev = "backend", "eth1" }, check: "rp_filter", want: Fail, msg: "decapsulated packets", fix: "rp_filter=2"},
		{name: "backend role strict, default here", files: map[string]string{"proc/sys/net/ipv4/conf/all/rp_filter": "1\n"},
			facts: func(f *Facts) { f.Role, f.DefaultDev = "backend", "eth0" }, check: "rp_filter", want: Warn},
		{name: "backend role default strict", files: map[string]string{"proc/sys/net/ipv4/conf/default/rp_filter": "1\n"},
			facts: func(f *Facts) { f.Role = "backend" }, check: "rp_filter", want: Warn, msg: "ipip0", fix: "net.ipv4.conf.default.rp_filter=2"},
		{name: "rp_filter unreadable", files: map[string]string{"proc/sys/net/ipv4/conf/eth0/rp_filter": "-"}, check: "rp_filter", want: Warn},

		{name: "neighbour failed", facts: func(f *Facts) { f.Neigh[be2] = Neigh{State: "FAILED"} }, check: "neighbours", want: Fail, msg: "198.18.0.12 (FAILED)", notInMsgs: []string{"198.18.0.11"}},
		{name: "neighbour missing", facts: func(f *Facts) { delete(f.Neigh, be1) }, check: "neighbours", want: Warn, msg: "198.18.0.11", fix: "arping -I eth0"},
		{name: "neighbour incomplete", facts: func(f *Facts) { f.Neigh[be1] = Neigh{State: "INCOMPLETE"} }, check: "neighbours", want: Warn, msg: "198.18.0.11 INCOMPLETE"},
		{name: "tunnel backends need no MAC", facts: func(f *Facts) {
			f.Backends = []Backend{{Addr: be1}}
			f.Neigh = nil
		}, check: "neighbours", want: Skip},

		{name: "few queues", facts: func(f *Facts) { f.Link.RxQueues = 1 }, check: "irq-rss", want: Warn, msg: "1 rx queues for 4 CPUs", fix: "ethtool -L eth0 combined 4"},
		{name: "no irqbalance", files: map[string]string{"proc/812/comm": "-"}, check: "irq-rss", want: Warn, msg: "irqbalance not running", fix: "smp_affinity_list"},
		{name: "veth", facts: func(f *Facts) { f.Link.Driver, f.Link.RxQueues = "veth", 1 }, check: "irq-rss", want: OK, msg: "no hardware queues"},

		{name: "backend answers ARP", facts: func(f *Facts) {
			f.ARP = []ARPReply{{VIP: vip, MAC: mac("02:00:00:00:00:12")}, {VIP: vip, MAC: mac("02:00:00:00:00:12")}}
		}, check: "vip-arp", want: Fail, msg: "backend 198.18.0.12 (02:00:00:00:00:12) answers for VIP 198.18.1.1", fix: "arp_ignore=1", notInMsgs: []string{"198.18.0.11"}},
		{name: "unknown host answers ARP", facts: func(f *Facts) { f.ARP = []ARPReply{{VIP: vip, MAC: mac("02:00:00:00:00:99")}} }, check: "vip-arp", want: Fail, msg: "unknown host 02:00:00:00:00:99"},
		{name: "own answer ignored", facts: func(f *Facts) { f.ARP = []ARPReply{{VIP: vip, MAC: mac("02:00:00:00:00:01")}} }, check: "vip-arp", want: OK},
		{name: "IPv6 VIP answered", facts: func(f *Facts) {
			v6 := netip.MustParseAddr("2001:2:0:1::1")
			f.ARP = []ARPReply{{VIP: v6, MAC: mac("02:00:00:00:00:11")}}
		}, check: "vip-arp", want: Fail, msg: "backend 198.18.0.11", fix: "ip -6 addr add 2001:2:0:1::1/128 dev lo"},
		{name: "ARP not asked", facts: func(f *Facts) { f.ARPAsked = false }, check: "vip-arp", want: Skip},
		{name: "ARP failed", facts: func(f *Facts) { f.ARPErr = errors.New("operation not permitted") }, check: "vip-arp", want: Warn, msg: "operation not permitted"},
		{name: "no VIPs", facts: func(f *Facts) { f.VIPs = nil }, check: "vip-arp", want: Skip},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			f := healthy(t, row.files)
			if row.facts != nil {
				row.facts(f)
			}
			r := result(t, f, row.check)
			if r.Status != row.want {
				t.Errorf("status %s, want %s (%q, fix %q)", r.Status, row.want, r.Message, r.Fix)
			}
			if !strings.Contains(r.Message, row.msg) {
				t.Errorf("message %q lacks %q", r.Message, row.msg)
			}
			if !strings.Contains(r.Fix, row.fix) {
				t.Errorf("fix %q lacks %q", r.Fix, row.fix)
			}
			if (r.Status == Fail || r.Status == Warn) && r.Fix == "" && row.check != "kernel" && row.check != "rp_filter" {
				t.Errorf("%s without a fix: %q", r.Status, r.Message)
			}
			for _, s := range row.notInMsgs {
				if strings.Contains(r.Message+r.Fix, s) {
					t.Errorf("%q names %s", r.Message+r.Fix, s)
				}
			}
		})
	}
	_ = be1
}

func TestXDPMTU(t *testing.T) {
	// veth's limit on a 4 KiB page (drivers/net/veth.c: PAGE_SIZE -
	// VETH_XDP_HEADROOM - skb_shared_info, less the Ethernet header).
	if got := xdpMTU(4096); got != 3506 {
		t.Errorf("xdpMTU(4096) = %d, want 3506", got)
	}
}

func TestParseRelease(t *testing.T) {
	for in, want := range map[string]kver{"6.18.44-fc-v657": {6, 18}, "5.17": {5, 17}, "6.1.0-18-amd64": {6, 1}, "6.10-rc1": {6, 10}} {
		got, err := parseRelease(in)
		if err != nil || got != want {
			t.Errorf("parseRelease(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "6", "x.y"} {
		if _, err := parseRelease(bad); err == nil {
			t.Errorf("parseRelease(%q): no error", bad)
		}
	}
}
