//go:build integration

package test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/test/lab"
)

// TestNeighbors resolves backend MACs through the kernel (ARP and NDP, no
// static entries) and follows a MAC that changes.
func TestNeighbors(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2, ClientAddrs: -1, NoStaticNeigh: true})
	changed := make(chan struct{}, 64)
	var nb *loader.Neighbors
	if err := topo.Balancer.NS.Do(func() error {
		var err error
		nb, err = loader.WatchNeighbors(topo.Balancer.Ifindex, func() { changed <- struct{}{} })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := nb.Close(); err != nil {
			t.Errorf("stop watching neighbours: %v", err)
		}
	}()

	var addrs []netip.Addr
	for _, h := range topo.Backends {
		addrs = append(addrs, h.Addr4, h.Addr6)
	}
	// Want runs inside the namespace: its solicitations must leave eth0.
	if err := topo.Balancer.NS.Do(func() error { nb.Want(addrs); return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !ok() {
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	for _, h := range topo.Backends {
		for _, a := range []netip.Addr{h.Addr4, h.Addr6} {
			waitFor("MAC of "+a.String(), func() bool { return nb.Lookup(a).String() == h.MAC.String() })
		}
	}

	// The kernel's entry changes (as when a backend's NIC is replaced):
	// the new MAC is followed.
	newMAC := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 0x77}
	be := topo.Backends[0]
	if err := topo.Balancer.NS.Do(func() error {
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: topo.Balancer.Ifindex, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: be.Addr4.AsSlice(), HardwareAddr: newMAC})
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("changed MAC", func() bool { return nb.Lookup(be.Addr4).String() == newMAC.String() })

	// Deleted: unknown again.
	if err := topo.Balancer.NS.Do(func() error {
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: topo.Balancer.Ifindex, Family: netlink.FAMILY_V4, IP: be.Addr4.AsSlice()})
	}); err != nil {
		t.Fatal(err)
	}
	waitFor("forgotten MAC", func() bool { return nb.Lookup(be.Addr4) == nil || nb.Lookup(be.Addr4).String() == be.MAC.String() })
}
