// Command demo shows xlb's data plane doing its job on a lab it builds in
// network namespaces: three backends behind one VIP, a client with two
// addresses, the XDP balancer forwarding by L2 direct server return.
// Everything it creates is removed on exit, on Ctrl-C and on failure.
//
// Run it as root: sudo make demo
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/test/lab"
)

const port = 80

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(w io.Writer, n int, title string) {
	fmt.Fprintf(w, "\n\033[1m%d. %s\033[0m\n", n, title)
}

func run(ctx context.Context, w io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces and XDP): run sudo make demo")
	}
	if err := lab.CheckPrivileged(); err != nil {
		return err
	}
	step(w, 1, "Build the lab: a client, a one-armed balancer and 3 backends on one L2 segment")
	topo, err := lab.New(lab.Config{Backends: 3, ClientAddrs: 2})
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	defer func() {
		topo.Close()
		fmt.Fprintln(w, "\nTorn down: namespaces, links and programs removed.")
	}()
	for _, h := range topo.Backends {
		srv, err := h.Serve(h.Name, port)
		if err != nil {
			return err
		}
		defer srv.Stop()
		fmt.Fprintf(w, "   backend %-4s %-14s mac %s  (VIP %s on lo)\n", h.Name, h.Addr4, h.MAC, topo.VIP4)
	}
	fmt.Fprintf(w, "   balancer     %-14s mac %s\n", topo.Balancer.Addr4, topo.Balancer.MAC)
	fmt.Fprintf(w, "   client       %s, %s\n", topo.Client.Extra4[0], topo.Client.Extra4[1])

	step(w, 2, "Attach the XDP data plane to the balancer's interface and add the service")
	var bal *loader.Balancer
	if err := topo.Balancer.NS.Do(func() error {
		bal, err = loader.Open(loader.Options{Interface: lab.LinkName, MaxServices: 16, MaxBackends: 64, ConntrackSize: 1 << 16})
		return err
	}); err != nil {
		return fmt.Errorf("start balancer: %w", err)
	}
	defer bal.Close()
	svc := maps.ServiceKey{VIP: topo.VIP4, Port: port, Proto: maps.TCP}
	var bes []loader.Backend
	for _, h := range topo.Backends {
		bes = append(bes, loader.Backend{Addr: h.Addr4, MAC: h.MAC, Weight: 1})
	}
	if err := bal.SetService(loader.Service{Key: svc, Scheduler: maps.Maglev, Backends: bes}); err != nil {
		return err
	}
	fmt.Fprintf(w, "   service %s  scheduler maglev  forwarding dsr-l2  backends %d\n", svc, len(bes))

	step(w, 3, "Requests from two client addresses: who answered, and whom did the backend see?")
	dst := netip.AddrPortFrom(topo.VIP4, port)
	fmt.Fprintf(w, "   %-3s %-22s %-8s %-22s\n", "#", "client", "backend", "client seen by backend")
	for i := 0; i < 8; i++ {
		src := netip.AddrPortFrom(topo.Client.Extra4[i%2], uint16(30000+i))
		r, err := topo.Client.Query("tcp", src, dst, 2*time.Second)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		fmt.Fprintf(w, "   %-3d %-22s %-8s %-22s\n", i+1, src, r.Server, r.Client)
	}

	const n = 600
	fmt.Fprintf(w, "\n   %d more connections ", n)
	counts, err := spread(ctx, w, topo, dst, n, 31000)
	if err != nil {
		return err
	}
	printShares(w, topo, counts, n)

	step(w, 4, "Drain be1 (weight 0): its open connection keeps working, new ones avoid it")
	var held []*heldConn
	for i := 0; len(held) == 0 || held[len(held)-1].server != "be1"; i++ {
		c, err := hold(topo, netip.AddrPortFrom(topo.Client.Extra4[0], uint16(40000+i)), dst)
		if err != nil {
			return err
		}
		held = append(held, c)
		if i > 50 {
			return errors.New("no connection reached be1")
		}
	}
	be1 := held[len(held)-1]
	defer func() {
		for _, c := range held {
			c.conn.Close()
		}
	}()
	bes[0].Weight = 0
	if err := bal.SetService(loader.Service{Key: svc, Scheduler: maps.Maglev, Backends: bes}); err != nil {
		return err
	}
	if err := be1.ping("still here after the drain"); err != nil {
		return fmt.Errorf("connection to drained be1 broke: %w", err)
	}
	fmt.Fprintf(w, "   open connection %s -> be1 answered after the drain\n", be1.local)
	fmt.Fprintf(w, "   %d new connections ", n)
	counts, err = spread(ctx, w, topo, dst, n, 32000)
	if err != nil {
		return err
	}
	printShares(w, topo, counts, n)
	if counts["be1"] != 0 {
		return fmt.Errorf("drained be1 got %d new connections", counts["be1"])
	}

	step(w, 5, "Data plane counters")
	g, err := bal.Stats().Global()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   packets seen %d, forwarded %d, new flows %d, connection-table hits %d, passed to kernel %d, dropped %d\n",
		g.RxPackets, g.TxPackets, g.NewFlows, g.ConntrackHits,
		g.PassNotIp+g.PassNotVip+g.PassMalformed+g.PassFragment+g.PassIpv6Ext+g.PassTtl+g.PassOtherHost,
		g.DropNoBackend+g.DropInternal)
	fmt.Fprintln(w, "\nDemo complete: every request succeeded and every backend saw the real client address.")
	return nil
}

// spread opens n connections from the client's addresses and counts the
// answering backends, printing a dot per 60 as progress.
func spread(ctx context.Context, w io.Writer, topo *lab.Topology, dst netip.AddrPort, n int, firstPort int) (map[string]int, error) {
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		src := netip.AddrPortFrom(topo.Client.Extra4[i%2], uint16(firstPort+i))
		r, err := topo.Client.Query("tcp", src, dst, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connection %s: %w", src, err)
		}
		if r.Client != src {
			return nil, fmt.Errorf("backend %s saw %s, not the client %s", r.Server, r.Client, src)
		}
		counts[r.Server]++
		if i%60 == 59 {
			fmt.Fprint(w, ".")
		}
	}
	fmt.Fprintln(w, " all succeeded")
	return counts, nil
}

func printShares(w io.Writer, topo *lab.Topology, counts map[string]int, n int) {
	names := make([]string, 0, len(topo.Backends))
	for _, h := range topo.Backends {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		share := 100 * float64(counts[name]) / float64(n)
		fmt.Fprintf(w, "   %-4s %4d  %5.1f%%  %s\n", name, counts[name], share, strings.Repeat("#", int(share/2)))
	}
}

type heldConn struct {
	conn   interface{ Close() error }
	rw     *bufio.ReadWriter
	server string
	local  netip.AddrPort
}

// hold opens a long-lived connection and reads the greeting.
func hold(topo *lab.Topology, src, dst netip.AddrPort) (*heldConn, error) {
	c, err := topo.Client.Dial(src, dst, 2*time.Second)
	if err != nil {
		return nil, err
	}
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := rw.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	r, err := lab.ParseReply(line)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return &heldConn{conn: c, rw: rw, server: r.Server, local: src}, nil
}

func (h *heldConn) ping(msg string) error {
	if d, ok := h.conn.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Now().Add(2 * time.Second))
	}
	if _, err := h.rw.WriteString(msg + "\n"); err != nil {
		return err
	}
	if err := h.rw.Flush(); err != nil {
		return err
	}
	line, err := h.rw.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(line, msg) {
		return fmt.Errorf("echo %q, want %q", line, msg)
	}
	return nil
}
