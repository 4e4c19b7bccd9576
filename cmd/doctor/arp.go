package doctor

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// AskVIPs asks on ifi who has each VIP, ARP who-has for IPv4 and a
// neighbour solicitation for IPv6, and collects the answers for wait. The
// balancer holds no VIP, so every answer comes from a host that would
// take the VIP's traffic: a backend with the VIP on its link instead of
// lo (or without arp_ignore), or another host using the address.
func AskVIPs(ifi *net.Interface, vips []netip.Addr, wait time.Duration) ([]ARPReply, error) {
	var v4, v6 []netip.Addr
	for _, v := range vips {
		if v.Is4() {
			v4 = append(v4, v)
		} else {
			v6 = append(v6, v)
		}
	}
	type answer struct {
		replies []ARPReply
		err     error
	}
	ch := make(chan answer, 2)
	run := func(fn func(*net.Interface, []netip.Addr, time.Duration) ([]ARPReply, error), vs []netip.Addr) {
		if len(vs) == 0 {
			ch <- answer{}
			return
		}
		r, err := fn(ifi, vs, wait)
		ch <- answer{r, err}
	}
	go run(askARP, v4)
	go run(askNDP, v6)
	var out []ARPReply
	var errs []error
	for range 2 {
		a := <-ch
		out = append(out, a.replies...)
		errs = append(errs, a.err)
	}
	return out, errors.Join(errs...)
}

func askARP(ifi *net.Interface, vips []netip.Addr, wait time.Duration) ([]ARPReply, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	for _, v := range vips {
		if err := c.Request(v); err != nil {
			return nil, err
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	var out []ARPReply
	for {
		p, _, err := c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			// A frame that is not ARP is skipped; anything else ends it.
			if _, isNet := err.(net.Error); isNet {
				return out, err
			}
			continue
		}
		if p.Operation == arp.OperationReply && slices.Contains(vips, p.SenderIP) {
			out = append(out, ARPReply{VIP: p.SenderIP, MAC: p.SenderHardwareAddr})
		}
	}
}

func askNDP(ifi *net.Interface, vips []netip.Addr, wait time.Duration) ([]ARPReply, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	for _, v := range vips {
		snm, err := ndp.SolicitedNodeMulticast(v)
		if err != nil {
			return nil, err
		}
		m := &ndp.NeighborSolicitation{TargetAddress: v, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		}}
		if err := c.WriteTo(m, nil, snm); err != nil {
			return nil, err
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	var out []ARPReply
	for {
		m, _, _, err := c.ReadFrom()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			if _, isNet := err.(net.Error); isNet {
				return out, err
			}
			continue
		}
		na, isNA := m.(*ndp.NeighborAdvertisement)
		if !isNA || !slices.Contains(vips, na.TargetAddress) {
			continue
		}
		r := ARPReply{VIP: na.TargetAddress}
		for _, o := range na.Options {
			if lla, isLLA := o.(*ndp.LinkLayerAddress); isLLA && lla.Direction == ndp.Target {
				r.MAC = lla.Addr
			}
		}
		out = append(out, r)
	}
}
