package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/lab"
)

// Proxy is section 5: xlb against HAProxy in TCP mode on the same lab.
type Proxy struct {
	NotRun  string    `json:"not_run,omitempty"`
	HAProxy string    `json:"haproxy_version,omitempty"`
	Client  string    `json:"client,omitempty"`
	Reps    int       `json:"repetitions,omitempty"`
	Seconds float64   `json:"seconds_per_repetition"`
	Xlb     ProxySide `json:"xlb"`
	HAP     ProxySide `json:"haproxy"`
	Ratio   float64   `json:"ratio"`
}

// ProxySide is one balancer's connection rate.
type ProxySide struct {
	CPS    Series `json:"connections_per_second"`
	Errors int    `json:"failed_connections"`
	// ClientIP: whether the backend saw the client's own address.
	ClientIP bool   `json:"backend_sees_client_ip"`
	SeenAs   string `json:"backend_saw_client_as"`
}

const proxyPort = 8080

// haproxyBinary finds haproxy, installing the Debian package if missing.
func haproxyBinary(o options) (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", errors.New("haproxy is not installed and there is no apt-get")
	}
	o.log.Info("installing haproxy (apt-get)")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "haproxy")
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		up := exec.CommandContext(ctx, "apt-get", "update", "-qq")
		up.Env = env
		if out, err := up.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get update: %v: %s", err, lastLine(out))
		}
		if out, err := install(); err != nil {
			return "", fmt.Errorf("apt-get install haproxy: %v: %s", err, lastLine(out))
		}
	}
	return exec.LookPath("haproxy")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func measureProxy(o options) (_ *Proxy, err error) {
	reps, secs, workers := 3, 3.0, 16
	if o.quick {
		reps, secs = 2, 1.0
	}
	hap, err := haproxyBinary(o)
	if err != nil {
		return &Proxy{NotRun: err.Error()}, nil
	}
	p := &Proxy{Reps: reps, Seconds: secs}
	if out, err := exec.Command(hap, "-v").Output(); err == nil {
		p.HAProxy = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	p.Client = fmt.Sprintf("closed loop, %d concurrent connections from the client netns: connect to the VIP, read the backend's greeting line, close with RST (no TIME_WAIT), repeat", workers)

	topo, err := lab.New(lab.Config{Backends: 3, ClientAddrs: -1})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	for _, h := range topo.Backends {
		if _, err := h.Serve(h.Name, proxyPort); err != nil {
			return nil, err
		}
	}
	balancer := topo.Balancer
	vip := netip.AddrPortFrom(topo.VIP4, proxyPort)

	// HAProxy listens on the VIP, held on the balancer's lo; while xlb is
	// attached its XDP program takes the VIP's packets before the stack.
	dir, err := os.MkdirTemp("", "xlb-bench-haproxy-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	var servers strings.Builder
	for _, h := range topo.Backends {
		fmt.Fprintf(&servers, "    server %s %s:%d\n", h.Name, h.Addr4, proxyPort)
	}
	cfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    option nolinger
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend vip
    bind %s
    default_backend real
backend real
    balance roundrobin
%s`, vip, servers.String())
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	err = balancer.NS.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(topo.VIP4.AsSlice()), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return fmt.Errorf("add VIP to the balancer's lo: %w", err)
		}
		// HAProxy's side of each proxied connection needs a port.
		return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("1024 65535"), 0o644)
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hcmd := balancer.NS.Command(ctx, hap, "-f", cfgPath, "-db")
	var hlog strings.Builder
	hcmd.Stdout, hcmd.Stderr = &hlog, &hlog
	if err := hcmd.Start(); err != nil {
		return &Proxy{NotRun: fmt.Sprintf("start haproxy: %v", err)}, nil
	}
	hdone := make(chan struct{})
	// Killed by cancel on the way out: its exit status says nothing, and
	// hlog has what it said when it failed.
	go func() { _ = hcmd.Wait(); close(hdone) }()
	defer func() { cancel(); <-hdone }()
	up := time.Now().Add(10 * time.Second)
	for {
		if _, err := topo.Client.Query("tcp", netip.AddrPort{}, vip, time.Second); err == nil {
			break
		}
		select {
		case <-hdone:
			return nil, fmt.Errorf("haproxy exited: %s", strings.TrimSpace(hlog.String()))
		default:
		}
		if time.Now().After(up) {
			return nil, fmt.Errorf("haproxy does not answer on %s: %s", vip, strings.TrimSpace(hlog.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}

	bal, err := loader.Open(loader.Options{MAC: balancer.MAC, MaxServices: 16, MaxBackends: 64, ConntrackSize: 1 << 18})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	var bes []lb.Backend
	for _, h := range topo.Backends {
		bes = append(bes, lb.Backend{Addr: h.Addr4, MAC: h.MAC, Weight: 1})
	}
	if err := bal.SetService(lb.Service{Key: lb.ServiceKey{VIP: topo.VIP4, Port: proxyPort, Proto: lb.TCP}, Backends: bes}); err != nil {
		return nil, err
	}
	attach := func() (link.Link, error) {
		var l link.Link
		err := balancer.NS.Do(func() error {
			var err error
			l, err = link.AttachXDP(link.XDPOptions{Program: bal.Program(), Interface: balancer.Ifindex, Flags: link.XDPDriverMode})
			return err
		})
		return l, err
	}

	type result struct {
		cps    float64
		errs   int
		seenAs map[netip.Addr]int
	}
	load := func() result {
		var stop atomic.Bool
		var n, failed atomic.Int64
		var mu sync.Mutex
		seen := map[netip.Addr]int{}
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := map[netip.Addr]int{}
				for !stop.Load() {
					r, err := topo.Client.Query("tcp", netip.AddrPort{}, vip, 2*time.Second)
					if err != nil {
						failed.Add(1)
						continue
					}
					n.Add(1)
					local[r.Client.Addr()]++
				}
				mu.Lock()
				for k, v := range local {
					seen[k] += v
				}
				mu.Unlock()
			}()
		}
		time.Sleep(time.Duration(secs * float64(time.Second)))
		stop.Store(true)
		wg.Wait()
		return result{cps: float64(n.Load()) / time.Since(start).Seconds(), errs: int(failed.Load()), seenAs: seen}
	}
	var xs, hs []float64
	xseen, hseen := map[netip.Addr]int{}, map[netip.Addr]int{}
	for r := 0; r < reps; r++ {
		order := []bool{true, false}
		if r%2 == 1 {
			order = []bool{false, true}
		}
		for _, useXlb := range order {
			var l link.Link
			if useXlb {
				if l, err = attach(); err != nil {
					return nil, fmt.Errorf("attach xlb: %w", err)
				}
			}
			g0, _ := bal.Stats().Global()
			res := load()
			g1, _ := bal.Stats().Global()
			if l != nil {
				l.Close()
			}
			nf := counterDelta(g0, g1)["NewFlows"]
			if useXlb {
				if nf == 0 {
					return nil, errors.New("xlb saw no new flows while attached")
				}
				xs = append(xs, res.cps)
				p.Xlb.Errors += res.errs
				for k, v := range res.seenAs {
					xseen[k] += v
				}
			} else {
				if nf != 0 {
					return nil, fmt.Errorf("xlb counted %d new flows while detached", nf)
				}
				hs = append(hs, res.cps)
				p.HAP.Errors += res.errs
				for k, v := range res.seenAs {
					hseen[k] += v
				}
			}
		}
	}
	describe := func(s map[netip.Addr]int) (bool, string) {
		var parts []string
		only := len(s) > 0
		for a, n := range s {
			parts = append(parts, fmt.Sprintf("%s (%d)", a, n))
			if a != topo.Client.Addr4 {
				only = false
			}
		}
		return only, strings.Join(parts, ", ")
	}
	p.Xlb.CPS, p.HAP.CPS = NewSeries(xs), NewSeries(hs)
	p.Xlb.ClientIP, p.Xlb.SeenAs = describe(xseen)
	p.HAP.ClientIP, p.HAP.SeenAs = describe(hseen)
	p.Ratio = ratio(p.Xlb.CPS.Median, p.HAP.CPS.Median)
	return p, nil
}

// Markdown renders section 5.
func (p *Proxy) Markdown() string {
	var b strings.Builder
	b.WriteString("### 5. Versus a proxy (HAProxy, TCP mode)\n\n")
	if p.NotRun != "" {
		b.WriteString("not run: " + p.NotRun + "\n\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%s on the balancer in place of xlb (same lab, same 3 backends, VIP on the balancer's lo), %d repetitions of %.0f s each, alternating. Client: %s.\n\n", p.HAProxy, p.Reps, p.Seconds, p.Client)
	yes := map[bool]string{true: "yes", false: "no"}
	row := func(name string, s ProxySide) []string {
		return []string{name, f(s.CPS.Median, 0), pct(s.CPS.Spread, 0), fmt.Sprint(s.Errors), yes[s.ClientIP] + " (" + s.SeenAs + ")"}
	}
	b.WriteString(mdTable([]string{"balancer", "connections/s (median)", "spread", "failed", "backend sees the client IP"},
		[][]string{row("xlb (dsr-l2)", p.Xlb), row("HAProxy (tcp mode)", p.HAP)}))
	fmt.Fprintf(&b, "\nxlb / HAProxy: %.2fx. Both are limited here by the client and backends on the same 2 CPUs; HAProxy also spends CPU on both connections of every proxied flow.\n\n", p.Ratio)
	return b.String()
}
