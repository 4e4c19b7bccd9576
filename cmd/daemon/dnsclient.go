package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/xlb-lb/xlb/cmd/config"
)

// ResolvConf is where the default nameservers come from.
const ResolvConf = "/etc/resolv.conf"

// lookupDNS asks the nameservers of r (those of ResolvConf when it names
// none) for k's A or AAAA records with miekg/dns, which gives the TTLs the
// standard resolver hides. Queries go round the nameservers, one at a time,
// up to r's attempts; a truncated answer is asked again over TCP. Only an
// answer (addresses, NXDOMAIN, NODATA) ends the lookup early.
func lookupDNS(ctx context.Context, k config.NameKey, r config.Resolvers) DNSAnswer {
	e := r.Effective()
	servers := e.NameserverAddrs()
	if len(servers) == 0 {
		var err error
		if servers, err = systemNameservers(ResolvConf); err != nil {
			return DNSAnswer{Err: err}
		}
	}
	qtype := dns.TypeA
	if k.Family == config.FamilyIPv6 {
		qtype = dns.TypeAAAA
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(k.Name), qtype)
	m.RecursionDesired = true
	var errs []string
	for i := range e.Attempts {
		server := servers[i%len(servers)].String()
		ans, err := exchange(ctx, m, server, time.Duration(e.Timeout))
		if err == nil {
			return ans
		}
		errs = append(errs, server+": "+err.Error())
		if ctx.Err() != nil {
			break
		}
	}
	// One line: status and logs show it as is.
	return DNSAnswer{Err: errors.New(strings.Join(errs, "; "))}
}

// exchange sends one query; an error is a failure to get an answer.
func exchange(ctx context.Context, m *dns.Msg, server string, timeout time.Duration) (DNSAnswer, error) {
	c := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return DNSAnswer{}, fmt.Errorf("timeout after %s", timeout)
		}
		return DNSAnswer{}, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return DNSAnswer{NoAddrs: true, Rcode: "NXDOMAIN"}, nil
	default:
		return DNSAnswer{}, fmt.Errorf("answer %s", dns.RcodeToString[in.Rcode])
	}
	var ans DNSAnswer
	ttl := uint32(0)
	first := true
	for _, rr := range in.Answer {
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(v.AAAA.To16())
		case *dns.CNAME:
		default:
			continue
		}
		if first || rr.Header().Ttl < ttl {
			ttl, first = rr.Header().Ttl, false
		}
		if a.IsValid() && rr.Header().Rrtype == m.Question[0].Qtype {
			ans.Addrs = append(ans.Addrs, a.Unmap())
		}
	}
	if len(ans.Addrs) == 0 {
		return DNSAnswer{NoAddrs: true, Rcode: "NODATA"}, nil
	}
	ans.TTL = time.Duration(ttl) * time.Second
	return ans, nil
}

// systemNameservers reads the nameservers of a resolv.conf.
func systemNameservers(path string) ([]netip.AddrPort, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("no nameserver: %w", err)
	}
	port, _ := strconv.ParseUint(cc.Port, 10, 16)
	if port == 0 {
		port = 53
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", path)
	}
	return out, nil
}
