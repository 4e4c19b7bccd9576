package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// Result is the outcome of one probe.
type Result struct {
	OK bool
	// Timeout: the probe failed by running out of time.
	Timeout bool
	// Reason says what happened, for people: "http 200", "connect
	// refused", "timeout", "http 503", ...
	Reason   string
	Duration time.Duration
	At       time.Time
}

// Prober runs one probe; it returns by ctx's deadline.
type Prober func(ctx context.Context, t Target) Result

// probers builds the probe function of each check type.
type probers struct {
	dialer net.Dialer
	ping   *pinger
	tunnel TunnelDialer
}

// targetKey carries a probe's Target in its context, to the HTTP
// transport's dial.
type targetKey struct{}

// dial connects to t: through its tunnel when it has a Via, else
// directly.
func (p *probers) dial(ctx context.Context, t Target) (net.Conn, error) {
	if !t.Via.IsValid() {
		return p.dialer.DialContext(ctx, "tcp", t.String())
	}
	if p.tunnel == nil {
		return nil, errors.New("no tunnel to " + t.Via.String())
	}
	return p.tunnel(ctx, t)
}

func (p *probers) forConfig(c Config) Prober {
	switch c.Type {
	case TCP:
		return p.tcp
	case HTTP:
		return p.http(c.HTTP)
	case ICMP:
		return p.icmp
	default:
		return func(context.Context, Target) Result { return Result{OK: true, Reason: "no check"} }
	}
}

func (p *probers) tcp(ctx context.Context, t Target) Result {
	c, err := p.dial(ctx, t)
	if err != nil {
		return failure(ctx, err)
	}
	_ = c.Close() // the connect was the check
	return Result{OK: true, Reason: "connect ok"}
}

func (p *probers) http(h HTTPConfig) Prober {
	method := h.Method
	if method == "" {
		method = http.MethodGet
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	scheme := "http"
	if h.HTTPS {
		scheme = "https"
	}
	tr := &http.Transport{
		// The target, not the URL's address: a tunnelled check's URL
		// names the VIP, which only its tunnel leads to.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if t, ok := ctx.Value(targetKey{}).(Target); ok {
				return p.dial(ctx, t)
			}
			return p.dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true, // one connection per probe, like a client arriving
		TLSClientConfig:   &tls.Config{ServerName: h.Host, InsecureSkipVerify: h.InsecureSkipVerify},
		// A proxy from the environment would test the proxy, not the backend.
		Proxy: nil,
	}
	client := &http.Client{
		Transport: tr,
		// The answer itself is judged (3xx is good by default), not where
		// it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context, t Target) Result {
		url := scheme + "://" + netip.AddrPortFrom(t.Addr, t.Port).String() + path
		req, err := http.NewRequestWithContext(context.WithValue(ctx, targetKey{}, t), method, url, nil)
		if err != nil {
			return Result{Reason: "bad request: " + err.Error()}
		}
		if h.Host != "" {
			req.Host = h.Host
		}
		req.Header.Set("User-Agent", "xlb-health-check")
		resp, err := client.Do(req)
		if err != nil {
			return failure(ctx, err)
		}
		defer func() { _ = resp.Body.Close() }() // what was read is the answer
		status := "http " + strconv.Itoa(resp.StatusCode)
		if !h.expects(resp.StatusCode) {
			return Result{Reason: status}
		}
		if h.ExpectBody != "" {
			body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
			if err != nil {
				r := failure(ctx, err)
				r.Reason = status + ": reading body: " + r.Reason
				return r
			}
			if !bytes.Contains(body, []byte(h.ExpectBody)) {
				return Result{Reason: fmt.Sprintf("%s: body lacks %q", status, h.ExpectBody)}
			}
		}
		return Result{OK: true, Reason: status}
	}
}

func (p *probers) icmp(ctx context.Context, t Target) Result {
	if err := p.ping.ping(ctx, t.Addr); err != nil {
		return failure(ctx, err)
	}
	return Result{OK: true, Reason: "echo reply"}
}

// failure turns a probe error into a short reason.
func failure(ctx context.Context, err error) Result {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return Result{Timeout: true, Reason: "timeout"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return Result{Reason: "connect refused"}
	case errors.Is(err, syscall.EHOSTUNREACH):
		return Result{Reason: "host unreachable"}
	case errors.Is(err, syscall.ENETUNREACH):
		return Result{Reason: "network unreachable"}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Result{Reason: "connection reset"}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Result{Reason: "connection closed"}
	}
	// The innermost message, without Go's "dial tcp a:p: " context.
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return Result{Reason: err.Error()}
}
