//go:build integration

package test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// TestEncapEndToEnd: a real xlbd balancer with ipip (TCP) and gue (UDP)
// services of both families, and real xlbd --role backend decapsulators on
// the two backends: clients' TCP connections and UDP queries through the
// VIPs reach both backends, which see the clients' own addresses and
// answer them directly; the balancer counts the frames it encapsulated
// and each backend those it unwrapped. (The backends share the balancer's
// segment here; the FIB gives their next hop all the same.)
func TestEncapEndToEnd(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2, ClientAddrs: 8})
	serveAll(t, topo, 8080)
	serveAll(t, topo, 9090)
	// The balancer's interface forwards: bpf_fib_lookup answers only then.
	if err := topo.Balancer.NS.Do(func() error {
		for _, k := range []string{"/proc/sys/net/ipv4/conf/eth0/forwarding", "/proc/sys/net/ipv6/conf/eth0/forwarding"} {
			if err := os.WriteFile(k, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var backends []*xlbdproc.T
	for _, be := range topo.Backends {
		d := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Host: be, Metrics: xlbdproc.DefaultMetrics, Args: []string{"--role", "backend"},
			Config: fmt.Sprintf("interface: eth0\ndecap:\n  vips: [%s, '%s']\n", topo.VIP4, topo.VIP6)})
		d.Start()
		backends = append(backends, d)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nlimits: {conntrack_size: 65536, max_services: 64, max_backends: 1024}\nservices:\n")
	for _, s := range []struct {
		vip   netip.Addr
		port  int
		proto string
		fwd   string
	}{{topo.VIP4, 8080, "tcp", "ipip"}, {topo.VIP6, 8080, "tcp", "ipip"}, {topo.VIP4, 9090, "udp", "gue"}, {topo.VIP6, 9090, "udp", "gue"}} {
		fmt.Fprintf(&b, "  - {vip: '%s', port: %d, protocol: %s, forward: %s, backends: [", s.vip, s.port, s.proto, s.fwd)
		for i, h := range topo.Backends {
			addr := h.Addr4
			if s.vip.Is6() {
				addr = h.Addr6
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{address: '%s'}", addr)
		}
		b.WriteString("]}\n")
	}
	lbd := xlbdproc.NewT(t, xlbdproc.Options{Bins: bins, Lab: topo, Config: b.String(), Metrics: xlbdproc.DefaultMetrics})
	lbd.Start()

	c := topo.Client
	for _, q := range []struct {
		network string
		vip     netip.Addr
		port    uint16
		srcs    []netip.Addr
	}{{"tcp", topo.VIP4, 8080, c.Extra4}, {"tcp", topo.VIP6, 8080, c.Extra6}, {"udp", topo.VIP4, 9090, c.Extra4}, {"udp", topo.VIP6, 9090, c.Extra6}} {
		seen := map[string]int{}
		for i := 0; i < 40; i++ {
			src := netip.AddrPortFrom(q.srcs[i%len(q.srcs)], uint16(30000+i))
			r, err := c.Query(q.network, src, netip.AddrPortFrom(q.vip, q.port), 3*time.Second)
			if err != nil {
				t.Fatalf("%s to %s from %s: %v", q.network, q.vip, src, err)
			}
			if r.Client != src {
				t.Fatalf("%s to %s: backend %s saw %s, want %s", q.network, q.vip, r.Server, r.Client, src)
			}
			seen[r.Server]++
		}
		if len(seen) != len(topo.Backends) {
			t.Errorf("%s to %s: answers from %v, want every backend", q.network, q.vip, seen)
		}
	}

	ctx := context.Background()
	m := lbd.Metrics()
	if !strings.Contains(m, "xlb_encap_packets_total ") || strings.Contains(m, "xlb_encap_packets_total 0\n") {
		t.Errorf("balancer metrics: no encapsulated packets counted")
	}
	for i, d := range backends {
		st, err := d.Client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		if st.Decap != nil {
			for _, v := range st.Decap.Decapsulated {
				n += v
			}
		}
		if n == 0 {
			t.Errorf("backend %s: status %+v, want decapsulated packets", topo.Backends[i].Name, st.Decap)
		}
	}
}
