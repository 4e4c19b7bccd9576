package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// socket creates a non-blocking, close-on-exec socket inside the namespace
// (on its worker thread). Everything after creation — bind, connect,
// listen, I/O — uses the socket's own namespace, whatever thread runs it.
func (n *NS) socket(domain, typ int) (int, error) {
	fd := -1
	err := n.run(func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("socket in %s: %w", n.Name, err)
	}
	return fd, nil
}

func domainOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

// fileFD wraps fd in an *os.File that owns it (non-blocking fds are
// registered with the runtime poller).
func fileFD(fd int, name string) *os.File {
	return os.NewFile(uintptr(fd), name)
}

// listenTCP creates a TCP listener on ap inside n. IPv6 listeners are
// IPv6-only, so IPv4 and IPv6 listeners can share a port.
func (n *NS) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	fd, err := n.socket(domainOf(ap.Addr()), unix.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "tcp-listener")
	// net.FileListener dups fd; close(2) frees ours whatever it returns.
	defer func() { _ = f.Close() }()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, err
	}
	if ap.Addr().Is6() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, err
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return nil, fmt.Errorf("bind tcp %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", ap, err)
	}
	return net.FileListener(f)
}

// listenUDP creates a UDP socket bound to ap inside n that reports each
// datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO), so
// replies can be sent from the address the client targeted.
func (n *NS) listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	fd, err := n.socket(domainOf(ap.Addr()), unix.SOCK_DGRAM)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "udp-listener")
	// net.FilePacketConn dups fd; close(2) frees ours whatever it returns.
	defer func() { _ = f.Close() }()
	if ap.Addr().Is6() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return nil, err
		}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			return nil, err
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return nil, fmt.Errorf("bind udp %s: %w", ap, err)
	}
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// dial creates a socket of type typ inside n, binds it to src (if valid),
// connects it to dst before deadline and returns it as a net.Conn. The
// connect wait happens on the caller's goroutine, not the namespace worker.
func (n *NS) dial(typ int, src, dst netip.AddrPort, deadline time.Time) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.IsValid() {
		return nil, fmt.Errorf("invalid destination %s", dst)
	}
	if src.IsValid() {
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if src.Addr().Is4() != dst.Addr().Is4() {
			return nil, fmt.Errorf("source %s and destination %s are of different families", src, dst)
		}
	}
	fd, err := n.socket(domainOf(dst.Addr()), typ)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "dial")
	// net.FileConn dups fd; close(2) frees ours whatever it returns.
	defer func() { _ = f.Close() }()
	if src.IsValid() {
		if src.Port() != 0 {
			// Allow re-using a fixed source port while an earlier
			// connection from it lingers in TIME_WAIT.
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return nil, err
			}
		} else {
			// Pick the port at connect time, per 4-tuple, not at bind.
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		}
		if err := unix.Bind(fd, sockaddr(src)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", src, err)
		}
	}
	err = unix.Connect(fd, sockaddr(dst))
	switch {
	case err == nil:
	case errors.Is(err, unix.EINPROGRESS):
		if err := waitConnected(f, deadline); err != nil {
			return nil, fmt.Errorf("connect %s: %w", dst, err)
		}
	default:
		return nil, fmt.Errorf("connect %s: %w", dst, err)
	}
	return net.FileConn(f)
}

// waitConnected waits for a non-blocking connect on f to finish.
func waitConnected(f *os.File, deadline time.Time) error {
	if err := f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = err
			return true
		}
		switch unix.Errno(v) {
		case 0:
			if _, err := unix.Getpeername(int(fd)); err == nil {
				return true
			}
			return false // still in progress: wait for writability
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		default:
			cerr = unix.Errno(v)
			return true
		}
	})
	if err != nil {
		return err
	}
	return cerr
}
