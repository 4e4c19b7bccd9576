package lb

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ServiceKey identifies a service: VIP, port and protocol.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto Proto
}

// String formats the key as VIP:PORT/PROTO ("[2001:2::1]:80/tcp" for IPv6).
func (k ServiceKey) String() string {
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + k.Proto.String()
}

// ParseServiceKey parses VIP:PORT/PROTO, e.g. "198.18.1.1:80/tcp" or
// "[2001:2::1]:443/udp", with the checks of a config file's vip, port and
// protocol. The error names the key and what is wrong with it.
func ParseServiceKey(s string) (ServiceKey, error) {
	const want = ": want VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp or [2001:2::1]:443/udp"
	addr, proto, ok := strings.Cut(s, "/")
	host, port, err := net.SplitHostPort(addr)
	if !ok || proto == "" || err != nil || host == "" || port == "" {
		return ServiceKey{}, fmt.Errorf("service %q%s", s, want)
	}
	var k ServiceKey
	k.VIP, err = ParseAddr(host)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("service %q: vip %q: %w", s, host, err)
	}
	switch n, err := strconv.ParseUint(port, 10, 64); {
	case err != nil && !isDigits(port):
		return ServiceKey{}, fmt.Errorf("service %q: port %q: not a number (service names are not looked up)", s, port)
	case err != nil || n < 1 || n > 65535:
		return ServiceKey{}, fmt.Errorf("service %q: port %s: out of range 1-65535", s, port)
	default:
		k.Port = uint16(n)
	}
	if k.Proto, err = Protocols.Parse(proto); err != nil {
		return ServiceKey{}, fmt.Errorf("service %q: %w", s, err)
	}
	return k, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// Validate checks that the key can be a service: a unicast VIP, a port
// from 1 and tcp or udp.
func (k ServiceKey) Validate() error {
	if err := CheckUnicast(k.VIP); err != nil {
		return fmt.Errorf("vip %q: %w", k.VIP.String(), err)
	}
	if k.Port == 0 {
		return errors.New("port 0: out of range 1-65535")
	}
	if _, ok := Protocols.Lookup(k.Proto.String()); !ok {
		return fmt.Errorf("protocol %s: %s", k.Proto, Protocols.Want())
	}
	return nil
}

// ParseAddr parses an address that a VIP or a backend can have: a single
// unicast IP address. IPv4-mapped IPv6 becomes IPv4. The error says what
// is wrong without repeating the input (callers name the field and value).
func ParseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, errors.New("required (an IP address, e.g. 198.18.1.1)")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		reason := "not an IP address"
		if _, err := netip.ParsePrefix(s); err == nil {
			reason += " (give a single address, without /prefix)"
		} else if _, err := netip.ParseAddrPort(s); err == nil {
			reason += " (give the port separately)"
		}
		return netip.Addr{}, errors.New(reason)
	}
	a = a.Unmap()
	return a, CheckUnicast(a)
}

// CheckUnicast reports why a cannot be a VIP or a backend address.
func CheckUnicast(a netip.Addr) error {
	var why string
	switch {
	case !a.IsValid():
		return errors.New("required (an IP address, e.g. 198.18.1.1)")
	case a.Zone() != "":
		return errors.New("zones are not allowed")
	case a.IsUnspecified():
		why = "unspecified"
	case a.IsLoopback():
		why = "loopback"
	case a.IsMulticast():
		why = "multicast"
	case a.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = "broadcast"
	default:
		return nil
	}
	return errors.New("not a unicast address (" + why + ")")
}

// CheckBackend reports why addr cannot be a backend of the service with
// key k: it must be a unicast address of the VIP's family (dsr-l2 sends
// the client's packet unchanged, so an IPv4 packet cannot reach an IPv6
// backend) and not the VIP itself.
func (k ServiceKey) CheckBackend(addr netip.Addr) error {
	if err := CheckUnicast(addr); err != nil {
		return err
	}
	addr = addr.Unmap()
	switch {
	case addr.Is4() != k.VIP.Unmap().Is4():
		return fmt.Errorf("%s, but vip %s is %s: a backend must be of the vip's address family", family(addr), k.VIP, family(k.VIP.Unmap()))
	case addr == k.VIP.Unmap():
		return errors.New("same as the service's vip")
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// FlowKey is the client-to-VIP direction of a flow.
type FlowKey struct {
	Src, Dst netip.AddrPort
	Proto    Proto
}

// String formats the flow as "proto src -> dst".
func (k FlowKey) String() string {
	return k.Proto.String() + " " + k.Src.String() + " -> " + k.Dst.String()
}
