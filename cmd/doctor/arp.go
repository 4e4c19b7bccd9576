package doctor

import (
	"errors"
	"fmt"
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
//
// src6 is the source of the solicitations: an IPv6 address of ifi that
// is not tentative (answers to a tentative one are dropped); invalid
// without one, when IPv6 VIPs cannot be asked.
func AskVIPs(ifi *net.Interface, vips []netip.Addr, wait time.Duration, src6 netip.Addr) ([]ARPReply, error) {
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
	go run(func(ifi *net.Interface, vs []netip.Addr, wait time.Duration) ([]ARPReply, error) {
		if !src6.IsValid() {
			return nil, fmt.Errorf("no IPv6 address on %s to ask from (still tentative?)", ifi.Name)
		}
		return askNDP(ifi, vs, wait, src6)
	}, v6)
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
	ask := func() error {
		for _, v := range vips {
			if err := c.Request(v); err != nil {
				return err
			}
		}
		return nil
	}
	var out []ARPReply
	err = repeat(wait, ask, c.SetReadDeadline, func() error {
		p, _, err := c.Read()
		var netErr net.Error
		if err != nil && !errors.As(err, &netErr) {
			return nil // not an ARP frame
		}
		if err != nil {
			return err
		}
		if p.Operation == arp.OperationReply && slices.Contains(vips, p.SenderIP) {
			out = append(out, ARPReply{VIP: p.SenderIP, MAC: p.SenderHardwareAddr})
		}
		return nil
	})
	return out, err
}

func askNDP(ifi *net.Interface, vips []netip.Addr, wait time.Duration, src netip.Addr) ([]ARPReply, error) {
	c, _, err := ndp.Listen(ifi, ndp.Addr(src.WithZone("").String()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	ask := func() error {
		for _, v := range vips {
			snm, err := ndp.SolicitedNodeMulticast(v)
			if err != nil {
				return err
			}
			m := &ndp.NeighborSolicitation{TargetAddress: v, Options: []ndp.Option{
				&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
			}}
			if err := c.WriteTo(m, nil, snm); err != nil {
				return err
			}
		}
		return nil
	}
	var out []ARPReply
	err = repeat(wait, ask, c.SetReadDeadline, func() error {
		m, _, _, err := c.ReadFrom()
		var netErr net.Error
		if err != nil && !errors.As(err, &netErr) {
			return nil // not an NDP message
		}
		if err != nil {
			return err
		}
		na, isNA := m.(*ndp.NeighborAdvertisement)
		if !isNA || !slices.Contains(vips, na.TargetAddress) {
			return nil
		}
		r := ARPReply{VIP: na.TargetAddress}
		for _, o := range na.Options {
			if lla, isLLA := o.(*ndp.LinkLayerAddress); isLLA && lla.Direction == ndp.Target {
				r.MAC = lla.Addr
			}
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// askEvery is how often the questions are repeated within the wait: an
// answer lost to a neighbour's own resolution or a busy link comes again.
const askEvery = 250 * time.Millisecond

// repeat asks, then reads until the next round is due, until wait has
// passed. read's errors other than a deadline end it (a frame that does
// not parse is not an error of read's: it returns nil for it).
func repeat(wait time.Duration, ask func() error, deadline func(time.Time) error, read func() error) error {
	end := time.Now().Add(wait)
	for now := time.Now(); now.Before(end); now = time.Now() {
		if err := ask(); err != nil {
			return err
		}
		next := now.Add(askEvery)
		if next.After(end) {
			next = end
		}
		if err := deadline(next); err != nil {
			return err
		}
		for {
			err := read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
