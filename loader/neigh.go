package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Neighbors follows the kernel's neighbour table (ARP and NDP) on one
// interface, so dsr-l2 backends are addressed by the MAC the kernel
// resolved for them: a backend whose MAC is unknown is not used, and a
// changed MAC (a replaced NIC, a moved address) is followed live.
type Neighbors struct {
	ifindex  int
	onChange func()

	mu   sync.Mutex
	macs map[netip.Addr]net.HardwareAddr
	want map[netip.Addr]time.Time // address -> last resolution attempt

	done chan struct{}
	wg   sync.WaitGroup
}

// usableState: states in which the kernel's lladdr is trustworthy enough to
// forward to (STALE and DELAY still hold the last confirmed address).
const usableState = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// WatchNeighbors starts following the neighbour table of interface
// ifindex in the caller's network namespace. onChange is called (from a
// background goroutine) whenever a wanted address's MAC appears, changes
// or disappears. Resolution retries run on background goroutines, so the
// process as a whole must live in the interface's namespace (as xlbd does).
func WatchNeighbors(ifindex int, onChange func()) (*Neighbors, error) {
	n := &Neighbors{
		ifindex:  ifindex,
		onChange: onChange,
		macs:     make(map[netip.Addr]net.HardwareAddr),
		want:     make(map[netip.Addr]time.Time),
		done:     make(chan struct{}),
	}
	updates := make(chan netlink.NeighUpdate, 256)
	errs := make(chan error, 1)
	if err := netlink.NeighSubscribeWithOptions(updates, n.done, netlink.NeighSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("subscribe to neighbour updates: %w", err)
	}
	// Read the table now, after subscribing (so no change is missed), so
	// that callers see every known MAC as soon as this returns.
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := netlink.NeighList(ifindex, fam)
		if err != nil {
			close(n.done)
			return nil, fmt.Errorf("list neighbours: %w", err)
		}
		for _, e := range list {
			if addr, ok := netip.AddrFromSlice(e.IP); ok && e.State&usableState != 0 && len(e.HardwareAddr) == 6 {
				n.macs[addr.Unmap()] = append(net.HardwareAddr(nil), e.HardwareAddr...)
			}
		}
	}
	n.wg.Add(2)
	go n.follow(updates)
	go n.retry()
	return n, nil
}

func (n *Neighbors) follow(updates <-chan netlink.NeighUpdate) {
	defer n.wg.Done()
	for u := range updates {
		if u.LinkIndex != n.ifindex || u.IP == nil {
			continue
		}
		addr, ok := netip.AddrFromSlice(u.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		var mac net.HardwareAddr
		if u.Type == unix.RTM_NEWNEIGH && u.State&usableState != 0 && len(u.HardwareAddr) == 6 {
			mac = u.HardwareAddr
		}
		if n.set(addr, mac) && n.onChange != nil {
			n.onChange()
		}
	}
}

// set records addr's MAC and reports whether a wanted address changed.
func (n *Neighbors) set(addr netip.Addr, mac net.HardwareAddr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.macs[addr]
	if mac == nil {
		delete(n.macs, addr)
	} else {
		n.macs[addr] = append(net.HardwareAddr(nil), mac...)
	}
	_, wanted := n.want[addr]
	return wanted && old.String() != mac.String()
}

// Lookup returns addr's MAC, nil while unknown.
func (n *Neighbors) Lookup(addr netip.Addr) net.HardwareAddr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.macs[addr.Unmap()]
}

// Want sets the addresses whose MACs are needed and asks the kernel to
// resolve those it does not know yet. If a newly wanted address's MAC is
// already known (it may have arrived between the caller's Lookup and this
// call), onChange fires so the caller picks it up.
func (n *Neighbors) Want(addrs []netip.Addr) {
	n.mu.Lock()
	want := make(map[netip.Addr]time.Time, len(addrs))
	var resolve []netip.Addr
	known := false
	for _, a := range addrs {
		a = a.Unmap()
		last, was := n.want[a]
		want[a] = last
		if n.macs[a] == nil {
			resolve = append(resolve, a)
			want[a] = time.Now()
		} else if !was {
			known = true
		}
	}
	n.want = want
	n.mu.Unlock()
	if known && n.onChange != nil {
		n.onChange()
	}
	for _, a := range resolve {
		solicit(a)
	}
}

// retry asks again, every second, for wanted addresses still unknown.
func (n *Neighbors) retry() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		n.mu.Lock()
		var resolve []netip.Addr
		for a, last := range n.want {
			if n.macs[a] == nil && time.Since(last) >= time.Second {
				resolve = append(resolve, a)
				n.want[a] = time.Now()
			}
		}
		n.mu.Unlock()
		for _, a := range resolve {
			solicit(a)
		}
	}
}

// solicit makes the kernel resolve addr: sending one datagram to the
// discard port needs the neighbour entry, so the kernel sends ARP or NDP.
// The datagram itself is harmless (discard, or an ICMP unreachable back).
func solicit(addr netip.Addr) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
	if err != nil {
		return
	}
	// Best effort: a failed send means the kernel could not resolve
	// either, and the next retry tries again.
	_, _ = c.Write([]byte{0})
	_ = c.Close()
}

// Close stops following the table.
func (n *Neighbors) Close() error {
	select {
	case <-n.done:
		return errors.New("neighbours: already closed")
	default:
	}
	close(n.done)
	n.wg.Wait()
	return nil
}
