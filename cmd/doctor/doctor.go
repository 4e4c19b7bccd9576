// Package doctor is xlbd doctor: it checks the host a balancer runs on
// (bpffs, kernel, the interface's driver, MTU and offloads, other XDP
// programs, rp_filter, neighbours, interrupts and queues, and who answers
// ARP for the VIPs) and says what is wrong and the command that fixes it.
//
// Each check is a function of Facts: what Gather read from /proc, /sys,
// netlink, ethtool and the wire. Tests build Facts by hand over fixture
// trees, so every verdict is tested without root.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
)

// Status is a check's verdict.
type Status int

// The verdicts, from good to bad. Only Fail makes doctor exit 1.
const (
	OK Status = iota
	Skip
	Warn
	Fail
)

var statusWords = [...]struct{ word, symbol string }{
	OK:   {"ok", "✓"},
	Skip: {"skip", "-"},
	Warn: {"warn", "!"},
	Fail: {"FAIL", "✗"},
}

// String is the status word: ok, skip, warn or FAIL.
func (s Status) String() string {
	if s < 0 || int(s) >= len(statusWords) {
		return fmt.Sprintf("status(%d)", int(s))
	}
	return statusWords[s].word
}

// Symbol is the one-character mark of the text output.
func (s Status) Symbol() string { return statusWords[s].symbol }

// MarshalText writes the status word in lower case ("fail").
func (s Status) MarshalText() ([]byte, error) { return []byte(strings.ToLower(s.String())), nil }

// UnmarshalText reads a status word, in any case.
func (s *Status) UnmarshalText(b []byte) error {
	for i, w := range statusWords {
		if strings.EqualFold(w.word, string(b)) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("status %q: want ok, skip, warn or fail", b)
}

// Result is one check's verdict: what it found and, unless it is ok, the
// command that fixes it.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Report is a doctor run: where the interface, VIPs and backends came
// from, and every check's result in order.
type Report struct {
	// Source is "daemon", "config FILE" or "flags".
	Source    string   `json:"source"`
	Interface string   `json:"interface"`
	VIPs      []string `json:"vips"`
	Backends  []string `json:"backends"`
	Checks    []Result `json:"checks"`
	// Failed counts the checks that failed; doctor exits 1 when it is
	// above 0.
	Failed int `json:"failed"`
}

// Facts is what the checks judge, read from the host by Gather (or written
// by a test).
type Facts struct {
	// Proc and Sys are the roots of /proc and /sys ("/proc", "/sys").
	Proc, Sys string
	// Role is "balancer" or "backend" (xlbd --role).
	Role string
	// Iface is the balancer's interface.
	Iface string
	// PinDir is where xlbd pins this interface's data plane
	// (--bpffs/IFACE).
	PinDir string
	// Mode is the XDP mode xlbd runs or will run: native or generic.
	Mode string
	// Tunnel: some service's health check goes through the tunnel
	// (health.via: tunnel), which needs tcx.
	Tunnel bool
	// VIPs are the services' virtual addresses.
	VIPs []netip.Addr
	// Backends are the services' backends.
	Backends []Backend
	// Link is the interface; nil when there is none of that name.
	Link *Link
	// Neigh is the neighbour table of the interface, by address.
	Neigh map[netip.Addr]Neigh
	// Routes gives, for each IPv4 backend, the interface the route back to
	// it leaves by ("" when there is no route).
	Routes map[netip.Addr]string
	// DefaultDev is the interface of the IPv4 default route ("" none).
	DefaultDev string
	// ARP holds the answers to who-has (neighbour solicitations) for the
	// VIPs; ARPErr why they could not be asked. ARPAsked is false when
	// the probe did not run.
	ARP      []ARPReply
	ARPErr   error
	ARPAsked bool
	// CPUs is the number of online CPUs; PageSize the memory page size.
	CPUs, PageSize int
}

// Backend is one backend address and how the balancer reaches it.
type Backend struct {
	Addr netip.Addr
	// L2: dsr-l2 (the balancer needs its MAC); otherwise ipip or gue,
	// reached through the FIB.
	L2 bool
}

// Link is what netlink and ethtool tell of the interface.
type Link struct {
	Name     string
	Index    int
	MTU      int
	MAC      net.HardwareAddr
	Up       bool
	RxQueues int
	// Driver is the ethtool driver name ("veth", "mlx5_core"); DriverErr
	// why it is unknown.
	Driver    string
	DriverErr error
	// XDPFeatures is the netdev family's xdp-features bitmask (kernel
	// 6.3+); XDPFeaturesKnown is false where the kernel does not report it.
	XDPFeatures      uint64
	XDPFeaturesKnown bool
	// Features are the ethtool features by name ("rx-lro": on);
	// FeaturesErr why they could not be read.
	Features    map[string]bool
	FeaturesErr error
	// XDP is the attached XDP program; nil when there is none.
	XDP *Attached
}

// Attached is an XDP program on the interface.
type Attached struct {
	ID uint32
	// Mode is native, generic, offload or multi.
	Mode string
	// Name and Tag are the program's, InfoErr why they are unknown.
	Name, Tag string
	InfoErr   error
}

// Neigh is a neighbour entry: its state name as ip neigh prints it
// (REACHABLE, STALE, FAILED, ...) and its MAC.
type Neigh struct {
	State string
	MAC   net.HardwareAddr
}

// ARPReply is an answer to who-has VIP: the VIP and the MAC that claims it.
type ARPReply struct {
	VIP netip.Addr
	MAC net.HardwareAddr
}

// A Check judges one thing.
type Check struct {
	Name string
	Run  func(f *Facts) Result
}

// Checks is every check, in the order doctor prints them.
var Checks = []Check{
	{"interface", checkInterface},
	{"bpffs", checkBPFFS},
	{"kernel", checkKernel},
	{"btf", checkBTF},
	{"xdp-mode", checkXDPMode},
	{"mtu", checkMTU},
	{"offloads", checkOffloads},
	{"xdp-program", checkXDPProgram},
	{"rp_filter", checkRPFilter},
	{"neighbours", checkNeighbours},
	{"irq-rss", checkIRQ},
	{"vip-arp", checkVIPARP},
}

// Run runs every check on f.
func Run(f *Facts) []Result {
	out := make([]Result, 0, len(Checks))
	for _, c := range Checks {
		r := c.Run(f)
		r.Check = c.Name
		out = append(out, r)
	}
	return out
}

// Text writes the report, one line per check: symbol, status word, check,
// what was found and the fix.
func (r *Report) Text(w io.Writer) {
	fmt.Fprintf(w, "xlb doctor: interface %s (from %s)\n", r.Interface, r.Source)
	for _, c := range r.Checks {
		line := fmt.Sprintf("%s %-4s %-11s %s", c.Status.Symbol(), c.Status, c.Check, c.Message)
		if c.Fix != "" {
			line += " | fix: " + c.Fix
		}
		fmt.Fprintln(w, line)
	}
	if r.Failed > 0 {
		fmt.Fprintf(w, "%d check(s) failed\n", r.Failed)
	}
}

// JSON writes the report as one indented JSON document.
func (r *Report) JSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func ok(format string, a ...any) Result {
	return Result{Status: OK, Message: fmt.Sprintf(format, a...)}
}
func skip(format string, a ...any) Result {
	return Result{Status: Skip, Message: fmt.Sprintf(format, a...)}
}
func warn(fix, format string, a ...any) Result {
	return Result{Status: Warn, Message: fmt.Sprintf(format, a...), Fix: fix}
}
func fail(fix, format string, a ...any) Result {
	return Result{Status: Fail, Message: fmt.Sprintf(format, a...), Fix: fix}
}
