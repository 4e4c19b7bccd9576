package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

// DefaultSocket is where xlbd serves its local API by default.
const DefaultSocket = "/run/xlb/xlb.sock"

// ClientTimeout bounds each request of a Client, connecting included.
const ClientTimeout = 10 * time.Second

// Client talks to xlbd's local API (HTTP/JSON over a unix socket). Its
// methods are safe for concurrent use. Services are named by their key,
// VIP:PORT/PROTO (as lb.ServiceKey.String formats it), backends by their
// IP address.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the API socket at socket (DefaultSocket
// if empty). It does not connect until the first request.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	c := &Client{socket: socket}
	c.http = &http.Client{
		Timeout: ClientTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
				if err != nil {
					return nil, &connectError{socket: socket, err: err}
				}
				return conn, nil
			},
			MaxIdleConns:    1,
			IdleConnTimeout: 30 * time.Second,
		},
	}
	return c
}

// Socket returns the API socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// APIError is an answer of xlbd other than 2xx.
type APIError struct {
	// Status is the HTTP status code: 400 bad request, 404 no such
	// service or backend, 409 already exists, 500 internal error.
	Status int
	// Message is xlbd's explanation, one line.
	Message string
}

// Error returns the message.
func (e *APIError) Error() string { return e.Message }

// connectError is a failure to connect to the socket.
type connectError struct {
	socket string
	err    error
}

func (e *connectError) Error() string {
	reason := e.err.Error()
	// "dial unix /run/xlb/xlb.sock: connect: no such file or directory"
	// names the socket once more than needed: keep "connect: ...".
	var op *net.OpError
	if errors.As(e.err, &op) && op.Err != nil {
		reason = op.Err.Error()
	}
	return fmt.Sprintf("cannot reach xlbd at %s: %s (is xlbd running? is --api right? are you root?)", e.socket, reason)
}

func (e *connectError) Unwrap() error { return e.err }

// Status returns the daemon's status: interface, mode, services with their
// backends and counters, and the number of flows.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Services returns the installed services.
func (c *Client) Services(ctx context.Context) ([]ServiceStatus, error) {
	var ss []ServiceStatus
	err := c.do(ctx, http.MethodGet, "/v1/services", nil, &ss)
	return ss, err
}

// AddService creates a service; it fails with status 409 if the service
// exists.
func (c *Client) AddService(ctx context.Context, s config.Service) (Status, error) {
	return c.mutate(ctx, http.MethodPost, "/v1/services", s)
}

// SetService replaces the service key (VIP:PORT/PROTO) with s, backends
// included; it fails with status 404 if there is no such service.
func (c *Client) SetService(ctx context.Context, key string, s config.Service) (Status, error) {
	return c.mutate(ctx, http.MethodPut, servicePath(key), s)
}

// DeleteService removes the service key.
func (c *Client) DeleteService(ctx context.Context, key string) (Status, error) {
	return c.mutate(ctx, http.MethodDelete, servicePath(key), nil)
}

// AddBackend adds b to the service key.
func (c *Client) AddBackend(ctx context.Context, key string, b config.Backend) (Status, error) {
	return c.mutate(ctx, http.MethodPost, servicePath(key)+"/backends", b)
}

// SetBackend replaces backend addr of the service key with b; an empty
// b.Address is addr.
func (c *Client) SetBackend(ctx context.Context, key, addr string, b config.Backend) (Status, error) {
	if b.Address == "" {
		b.Address = addr
	}
	return c.mutate(ctx, http.MethodPut, backendPath(key, addr), b)
}

// DeleteBackend removes backend addr from the service key.
func (c *Client) DeleteBackend(ctx context.Context, key, addr string) (Status, error) {
	return c.mutate(ctx, http.MethodDelete, backendPath(key, addr), nil)
}

// DrainBackend sets the weight of backend addr of the service key to 0:
// its flows continue, it gets no new ones.
func (c *Client) DrainBackend(ctx context.Context, key, addr string) (Status, error) {
	return c.mutate(ctx, http.MethodPost, backendPath(key, addr)+"/drain", nil)
}

// Flows returns up to limit entries of the connection table; limit 0
// takes the daemon's default (1000).
func (c *Client) Flows(ctx context.Context, limit int) ([]Flow, error) {
	path := "/v1/flows"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var fs []Flow
	err := c.do(ctx, http.MethodGet, path, nil, &fs)
	return fs, err
}

// BGP returns the BGP sessions and announcements.
func (c *Client) BGP(ctx context.Context) (BGPStatus, error) {
	var st BGPStatus
	err := c.do(ctx, http.MethodGet, "/v1/bgp", nil, &st)
	return st, err
}

// SetBGP replaces the bgp section (nil: BGP off), all or nothing.
func (c *Client) SetBGP(ctx context.Context, b *config.BGP) (BGPStatus, error) {
	var st BGPStatus
	var err error
	if b == nil {
		err = c.do(ctx, http.MethodDelete, "/v1/bgp", nil, &st)
	} else {
		err = c.do(ctx, http.MethodPut, "/v1/bgp", b, &st)
	}
	return st, err
}

// Table returns a service's scheduler table; slots: with every slot.
func (c *Client) Table(ctx context.Context, key string, slots bool) (Table, error) {
	path := servicePath(key) + "/table"
	if slots {
		path += "?slots=1"
	}
	var t Table
	err := c.do(ctx, http.MethodGet, path, nil, &t)
	return t, err
}

// Explain says which backend the flow from client (IP:PORT) to the
// service goes to and why.
func (c *Client) Explain(ctx context.Context, key, client string) (Explain, error) {
	var e Explain
	err := c.do(ctx, http.MethodGet, servicePath(key)+"/explain?client="+url.QueryEscape(client), nil, &e)
	return e, err
}

func servicePath(key string) string { return "/v1/services/" + url.PathEscape(key) }

func backendPath(key, addr string) string {
	return servicePath(key) + "/backends/" + url.PathEscape(addr)
}

func (c *Client) mutate(ctx context.Context, method, path string, body any) (Status, error) {
	var st Status
	err := c.do(ctx, method, path, body, &st)
	return st, err
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// do sends one request and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://xlbd"+path, r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ce *connectError
		if errors.As(err, &ce) {
			return ce
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("xlbd at %s: %s %s: %w", c.socket, method, path, err)
	}
	defer func() { _ = resp.Body.Close() }() // read whole or not at all: nothing to report
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("xlbd at %s: %s %s: bad answer: %w", c.socket, method, path, err)
	}
	return nil
}

// readError turns an error answer into an *APIError.
func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e Error
	msg := ""
	if json.Unmarshal(data, &e) == nil {
		msg = e.Error
	}
	if msg == "" {
		msg = fmt.Sprintf("xlbd answered %s", resp.Status)
		if text := strings.TrimSpace(string(data)); text != "" {
			msg += ": " + text
		}
	}
	// One line, whatever the daemon sent.
	msg = strings.Join(strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }), " ")
	return &APIError{Status: resp.StatusCode, Message: msg}
}

// ResolveService looks the DNS names of the service key up again now and
// applies what changed (POST /v1/services/{service}/resolve).
func (c *Client) ResolveService(ctx context.Context, key string) (ResolveResult, error) {
	var r ResolveResult
	err := c.do(ctx, http.MethodPost, servicePath(key)+"/resolve", nil, &r)
	return r, err
}
