package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xlb-lb/xlb/cmd/config"
)

// serveDNS runs a miekg/dns server on 127.0.0.1 (UDP and TCP on one port)
// with handler h until the test ends, and returns its address.
func serveDNS(t *testing.T, h dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		_ = pc.Close()
		t.Skipf("no TCP listener on the UDP port: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// zone answers: web.test. two A records (TTL 7 and 3) behind a CNAME (TTL
// 5), one AAAA; v4only.test. an A and no AAAA; gone.test. NXDOMAIN;
// broken.test. SERVFAIL; big.test. truncated over UDP, whole over TCP.
func zone(tcpAsked *atomic.Int32) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		rr := func(s string) dns.RR {
			x, err := dns.NewRR(s)
			if err != nil {
				panic(err)
			}
			return x
		}
		tcp := w.RemoteAddr().Network() == "tcp"
		switch {
		case q.Name == "www.web.test." && q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{rr("www.web.test. 5 IN CNAME web.test."), rr("web.test. 7 IN A 198.18.0.12"), rr("web.test. 3 IN A 198.18.0.11")}
		case q.Name == "web.test." && q.Qtype == dns.TypeAAAA:
			m.Answer = []dns.RR{rr("web.test. 60 IN AAAA 2001:2::11")}
		case q.Name == "v4only.test." && q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{rr("v4only.test. 60 IN A 198.18.0.11")}
		case q.Name == "v4only.test.":
		case q.Name == "broken.test.":
			m.Rcode = dns.RcodeServerFailure
		case q.Name == "big.test." && !tcp:
			m.Truncated = true
		case q.Name == "big.test.":
			tcpAsked.Add(1)
			for i := 1; i <= 40; i++ {
				m.Answer = append(m.Answer, rr("big.test. 30 IN A 198.18.2."+strconv.Itoa(i)))
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	}
}

// lookupDNS against a real DNS server library: TTLs (the chain's
// smallest), both families, NXDOMAIN and NODATA as answers, SERVFAIL and
// a dead server as failures, truncation retried over TCP.
func TestLookupDNS(t *testing.T) {
	var tcpAsked atomic.Int32
	server := serveDNS(t, zone(&tcpAsked))
	r := config.Resolvers{Nameservers: []string{server}, Timeout: config.Duration(500 * time.Millisecond), Attempts: 2}
	ctx := context.Background()
	look := func(name, fam string) DNSAnswer { return lookupDNS(ctx, config.NameKey{Name: name, Family: fam}, r) }

	a := look("www.web.test", "ipv4")
	if a.Err != nil || a.NoAddrs || !slices.Equal(sortedUnique(a.Addrs), ips("198.18.0.11", "198.18.0.12")) || a.TTL != 3*time.Second {
		t.Errorf("A behind a CNAME: %+v", a)
	}
	if a := look("web.test", "ipv6"); a.Err != nil || !slices.Equal(a.Addrs, ips("2001:2::11")) || a.TTL != time.Minute {
		t.Errorf("AAAA: %+v", a)
	}
	if a := look("v4only.test", "ipv6"); a.Err != nil || !a.NoAddrs || a.Rcode != "NODATA" {
		t.Errorf("NODATA: %+v", a)
	}
	if a := look("gone.test", "ipv4"); a.Err != nil || !a.NoAddrs || a.Rcode != "NXDOMAIN" {
		t.Errorf("NXDOMAIN: %+v", a)
	}
	if a := look("broken.test", "ipv4"); a.Err == nil || !strings.Contains(a.Err.Error(), "SERVFAIL") {
		t.Errorf("SERVFAIL: %+v", a)
	}
	if a := look("big.test", "ipv4"); a.Err != nil || len(a.Addrs) != 40 || tcpAsked.Load() == 0 {
		t.Errorf("truncated: %d addresses, %d TCP queries, err %v", len(a.Addrs), tcpAsked.Load(), a.Err)
	}

	// A server that answers nothing: a timeout per attempt, then a
	// failure naming it; the next server in the list answers.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	r.Nameservers = []string{dead.LocalAddr().String()}
	if a := look("www.web.test", "ipv4"); a.Err == nil || !strings.Contains(a.Err.Error(), dead.LocalAddr().String()+": timeout") {
		t.Errorf("dead server: %+v", a)
	}
	r.Nameservers = []string{dead.LocalAddr().String(), server}
	if a := look("www.web.test", "ipv4"); a.Err != nil || len(a.Addrs) != 2 {
		t.Errorf("dead server then a live one: %+v", a)
	}

	// Without nameservers: those of resolv.conf.
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	host, _, _ := net.SplitHostPort(server)
	if err := os.WriteFile(conf, []byte("nameserver "+host+"\noptions timeout:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := systemNameservers(conf)
	if err != nil || len(got) != 1 || got[0].String() != host+":53" {
		t.Errorf("resolv.conf: %v %v", got, err)
	}
}
