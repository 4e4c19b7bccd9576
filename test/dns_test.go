//go:build integration

package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/lab"
)

// The lab tests of backends named by DNS (issue 17): a real xlbd resolves
// a name through a real DNS server, dnsmasq, started by the test in the
// balancer's namespace on 127.0.0.1 with its own config, hosts file, pid
// and log in a temp dir, and stopped by its pid. dnsmasq serves the hosts
// file with a 2 s TTL (--local-ttl) and re-reads it on SIGHUP.

const (
	dnsName = "web.pool.test"
	dnsPort = 5353
	dnsTTL  = 2 * time.Second
)

// dnsmasq is one dnsmasq process of a test.
type dnsmasq struct {
	t     *testing.T
	dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	hosts string
}

// startDNSMasq runs dnsmasq in h's namespace answering web.pool.test with
// the addresses of hosts.
func startDNSMasq(t *testing.T, h *lab.Host, hosts ...*lab.Host) *dnsmasq {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if bin = "/usr/sbin/dnsmasq"; !fileExists(bin) {
			t.Fatalf("dnsmasq not installed (Debian package dnsmasq-base): %v", err)
		}
	}
	dir := t.TempDir()
	m := &dnsmasq{t: t, dir: dir, hosts: filepath.Join(dir, "hosts"), done: make(chan struct{})}
	m.setHosts(hosts...)
	m.cmd = h.NS.Command(context.Background(), bin,
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--user=root", "--group=root", // reads the test's temp dir, also on SIGHUP
		"--listen-address=127.0.0.1", "--bind-interfaces", fmt.Sprintf("--port=%d", dnsPort),
		"--addn-hosts="+m.hosts, fmt.Sprintf("--local-ttl=%d", int(dnsTTL/time.Second)),
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--log-facility="+filepath.Join(dir, "dnsmasq.log"), "--log-queries")
	out, err := os.Create(filepath.Join(dir, "dnsmasq.out"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	go func() {
		_ = m.cmd.Wait()
		_ = out.Close()
		close(m.done)
	}()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			for _, f := range []string{"dnsmasq.out", "dnsmasq.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	// Up once it answers on its port.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var up bool
		_ = h.NS.Do(func() error {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", dnsPort), time.Second)
			if err == nil {
				up = true
				_ = c.Close()
			}
			return nil
		})
		if up {
			return m
		}
		select {
		case <-m.done:
			b, _ := os.ReadFile(filepath.Join(dir, "dnsmasq.out"))
			t.Fatalf("dnsmasq exited: %s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsmasq does not listen after 10s")
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// setHosts makes the name's A records the hosts' addresses and tells a
// running dnsmasq to re-read them (SIGHUP, by its pid).
func (m *dnsmasq) setHosts(hosts ...*lab.Host) {
	m.t.Helper()
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s %s\n", h.Addr4, dnsName)
	}
	if err := os.WriteFile(m.hosts, []byte(b.String()), 0o600); err != nil {
		m.t.Fatal(err)
	}
	if m.cmd != nil {
		if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			m.t.Fatalf("SIGHUP dnsmasq: %v", err)
		}
	}
}

// stop ends dnsmasq by its pid (SIGTERM, then SIGKILL) and waits for it.
func (m *dnsmasq) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// dnsConfig is xlbd's config: one service whose only backend entry is the
// name, resolved through the lab's dnsmasq, with a tcp check.
func dnsConfig(topo *lab.Topology, port int) string {
	return fmt.Sprintf(`interface: eth0
limits: {conntrack_size: 65536, max_services: 64, max_backends: 1024}
resolvers:
  nameservers: ["127.0.0.1:%d"]
  timeout: 500ms
  attempts: 2
  min_refresh: 500ms
  max_refresh: 10s
  retry_interval: 1s
services:
  - vip: %s
    port: %d
    health: {type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}
    backends:
      - name: %s
`, dnsPort, topo.VIP4, port, dnsName)
}

// dnsLab is a lab whose xlbd resolves the service's backends through
// dnsmasq.
type dnsLab struct {
	topo *lab.Topology
	dns  *dnsmasq
	e    *daemonEnv
	key  string
	vip  netip.AddrPort
}

// newDNSLab builds a lab of n backends serving port 8080, dnsmasq naming
// the first named of them, and a started xlbd with dnsConfig.
func newDNSLab(t *testing.T, n, named int) dnsLab {
	t.Helper()
	topo := lab.NewT(t, lab.Config{Backends: n})
	serveAll(t, topo, 8080)
	l := dnsLab{topo: topo, dns: startDNSMasq(t, topo.Balancer, topo.Backends[:named]...),
		key: fmt.Sprintf("%s:8080/tcp", topo.VIP4), vip: netip.AddrPortFrom(topo.VIP4, 8080)}
	l.e = newDaemonEnv(t, topo, dnsConfig(topo, 8080))
	l.e.Start()
	return l
}

// nameOf is the name's status in service s.
func nameOf(s api.ServiceStatus) api.NameStatus {
	for _, n := range s.Names {
		if n.Name == dnsName {
			return n
		}
	}
	return api.NameStatus{}
}

// backendsUp lists the service's up backends that came from the name.
func backendsUp(s api.ServiceStatus) []string {
	var out []string
	for _, b := range s.Backends {
		if b.Name == dnsName && isUp(b) {
			out = append(out, b.Address)
		}
	}
	slices.Sort(out)
	return out
}

func addrList(hosts ...*lab.Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Addr4.String())
	}
	slices.Sort(out)
	return out
}

// reachAll opens connections to dst until every one of want answered (or
// 500 tried), and returns the servers seen.
func reachAll(t *testing.T, topo *lab.Topology, dst netip.AddrPort, want ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < 500; i++ {
		r, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, 3*time.Second)
		if err != nil {
			t.Fatalf("connection %d through the VIP: %v", i, err)
		}
		seen[r.Server]++
		all := true
		for _, w := range want {
			all = all && seen[w] > 0
		}
		if all && i >= 20 {
			break
		}
	}
	return seen
}

// TestDNSRecordGainsAddress: the name's record gains an address; xlbd
// picks it up at its refresh (the 2 s TTL), checks it, and new connections
// reach it.
func TestDNSRecordGainsAddress(t *testing.T) {
	l := newDNSLab(t, 3, 2)
	topo, dns, e, key, vip := l.topo, l.dns, l.e, l.key, l.vip
	be1, be2, be3 := topo.Backends[0], topo.Backends[1], topo.Backends[2]

	e.waitService(key, "both resolved backends up", func(s api.ServiceStatus) bool {
		return slices.Equal(backendsUp(s), addrList(be1, be2)) && nameOf(s).State == api.NameOK
	})
	if seen := reachAll(t, topo, vip, be1.Name, be2.Name); seen[be3.Name] > 0 {
		t.Fatalf("be3 answered before its record existed: %v", seen)
	}

	changed := time.Now()
	dns.setHosts(be1, be2, be3)
	s := e.waitService(key, "be3 resolved and up", func(s api.ServiceStatus) bool {
		return slices.Equal(backendsUp(s), addrList(be1, be2, be3))
	})
	t.Logf("be3 up %s after the record changed (TTL %s, refresh within [500ms, 10s], then one tcp check); name: %+v",
		time.Since(changed).Round(10*time.Millisecond), dnsTTL, nameOf(s))
	seen := reachAll(t, topo, vip, be1.Name, be2.Name, be3.Name)
	if seen[be3.Name] == 0 {
		t.Fatalf("no new connection reached be3: %v", seen)
	}
	t.Logf("new connections after the change: %v", seen)
}

// TestDNSRecordLosesAddress: the record loses the address of the backend
// holding an open connection; that connection still completes a request
// after the change, new connections avoid the backend, and it leaves the
// service once the connection is closed.
func TestDNSRecordLosesAddress(t *testing.T) {
	l := newDNSLab(t, 3, 3)
	topo, dns, e, key, vip := l.topo, l.dns, l.e, l.key, l.vip
	e.waitService(key, "all three resolved backends up", func(s api.ServiceStatus) bool {
		return slices.Equal(backendsUp(s), addrList(topo.Backends...))
	})

	c, err := topo.Client.Dial(netip.AddrPort{}, vip, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	rd := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	greeting, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	r, err := lab.ParseReply(greeting)
	if err != nil {
		t.Fatal(err)
	}
	var gone *lab.Host
	var stay []*lab.Host
	for _, h := range topo.Backends {
		if h.Name == r.Server {
			gone = h
		} else {
			stay = append(stay, h)
		}
	}
	if gone == nil {
		t.Fatalf("greeting %q names no backend", greeting)
	}

	dns.setHosts(stay...)
	e.waitService(key, gone.Name+" leaving (drained)", func(s api.ServiceStatus) bool {
		return slices.Contains(nameOf(s).Leaving, gone.Addr4.String()) && slices.Equal(nameOf(s).Addresses, addrList(stay...))
	})
	b := e.waitBackend(key, gone.Addr4, "drained", func(b api.BackendStatus) bool { return b.State == api.StateDrain && !b.InTable })
	t.Logf("leaving backend: %+v", b)

	// The established connection completes a request after the change.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, "after the change"); err != nil {
		t.Fatalf("write on the leaving backend's connection: %v", err)
	}
	if got, err := rd.ReadString('\n'); err != nil || got != "echo after the change\n" {
		t.Fatalf("echo on the leaving backend's connection: %q, %v", got, err)
	}
	// New connections avoid it.
	seen := reachAll(t, topo, vip, stay[0].Name, stay[1].Name)
	if seen[gone.Name] > 0 {
		t.Fatalf("new connections reached the leaving backend %s: %v", gone.Name, seen)
	}
	t.Logf("new connections after the change: %v", seen)

	// The client closes: the backend leaves the service.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	e.waitService(key, gone.Name+" removed once its flow ended", func(s api.ServiceStatus) bool {
		for _, b := range s.Backends {
			if b.Address == gone.Addr4.String() {
				return false
			}
		}
		return len(nameOf(s).Leaving) == 0
	})
}

// TestDNSServerStopped: the DNS server goes away; xlbd keeps the set,
// status and metrics show the failure, and traffic still flows to every
// backend.
func TestDNSServerStopped(t *testing.T) {
	l := newDNSLab(t, 2, 2)
	topo, dns, e, key, vip := l.topo, l.dns, l.e, l.key, l.vip
	all := addrList(topo.Backends...)
	e.waitService(key, "both resolved backends up", func(s api.ServiceStatus) bool {
		return slices.Equal(backendsUp(s), all)
	})

	dns.stop()
	s := e.waitService(key, "the name failing", func(s api.ServiceStatus) bool {
		n := nameOf(s)
		return n.State == api.NameFailing && n.LastError != ""
	})
	n := nameOf(s)
	t.Logf("name after the DNS server stopped: %+v", n)
	if !slices.Equal(n.Addresses, all) || !slices.Equal(backendsUp(s), all) {
		t.Fatalf("the set was not kept: name %+v, up %v", n, backendsUp(s))
	}
	// Several more failed lookups later, still the same set.
	e.waitStatus("three more failed lookups", func(api.Status) bool {
		return metricAtLeast(e.Metrics(), `xlb_dns_resolutions_total{result="error"}`, 4)
	})
	s = e.waitService(key, "still failing", func(s api.ServiceStatus) bool { return nameOf(s).State == api.NameFailing })
	if !slices.Equal(backendsUp(s), all) {
		t.Fatalf("backends up after repeated failures: %v", backendsUp(s))
	}
	seen := reachAll(t, topo, vip, topo.Backends[0].Name, topo.Backends[1].Name)
	t.Logf("connections with the DNS server down: %v", seen)
	m := e.Metrics()
	for _, want := range []string{
		fmt.Sprintf(`xlb_dns_name_failing{family="ipv4",name="%s"} 1`, dnsName),
		fmt.Sprintf(`xlb_dns_backends{name="%s",service="%s"} 2`, dnsName, key),
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestDNSRestartDuringOutage: xlbd restarts (kill -9, then a new xlbd
// over the re-adopted data plane) while the DNS server is down; the names'
// last good sets, kept in the state file, serve from the first moment:
// the status says restored, then failing, and traffic reaches every
// backend throughout.
func TestDNSRestartDuringOutage(t *testing.T) {
	l := newDNSLab(t, 2, 2)
	topo, e, key := l.topo, l.e, l.key
	all := addrList(topo.Backends...)
	e.waitService(key, "both resolved backends up", func(s api.ServiceStatus) bool {
		return slices.Equal(backendsUp(s), all)
	})
	l.dns.stop()
	e.Kill()
	e.Start()
	st, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	var first api.ServiceStatus
	for _, s := range st.Services {
		if s.Service == key {
			first = s
		}
	}
	n := nameOf(first)
	t.Logf("name at the first status after the restart: %+v", n)
	if !slices.Equal(n.Addresses, all) || (n.State != api.NameRestored && n.State != api.NameFailing) {
		t.Fatalf("after the restart the name has %v (%s), want the saved %v", n.Addresses, n.State, all)
	}
	s := e.waitService(key, "the name failing, its set kept", func(s api.ServiceStatus) bool {
		return nameOf(s).State == api.NameFailing && slices.Equal(backendsUp(s), all)
	})
	t.Logf("then: %+v", nameOf(s))
	seen := reachAll(t, topo, l.vip, topo.Backends[0].Name, topo.Backends[1].Name)
	t.Logf("connections after the restart with the DNS server down: %v", seen)
}

// metricAtLeast reports whether the sample line name (with labels) is at
// least v.
func metricAtLeast(metrics, name string, v float64) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			var got float64
			if _, err := fmt.Sscan(rest, &got); err == nil {
				return got >= v
			}
		}
	}
	return false
}
