package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// request is what the test server saw.
type request struct {
	Method, Path, Body string
}

// serveUnix serves h on a unix socket in a temporary directory and returns
// the socket's path.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	// The server's own TCP listener, unused: the unix socket replaces it.
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// recorder answers every request with status and body, recording it.
type recorder struct {
	mu     sync.Mutex
	got    []request
	status int
	body   string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.got = append(rec.got, request{r.Method, r.URL.EscapedPath() + query(r), string(b)})
	status, body := rec.status, rec.body
	rec.mu.Unlock()
	if ct := r.Header.Get("Content-Type"); len(b) > 0 && ct != "application/json" {
		http.Error(w, `{"error": "content type `+ct+`"}`, http.StatusUnsupportedMediaType)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write shows up as the client's error in the test.
	_, _ = io.WriteString(w, body)
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

func (rec *recorder) last(t *testing.T) request {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 1 {
		t.Fatalf("server got %d requests, want 1: %+v", len(rec.got), rec.got)
	}
	r := rec.got[0]
	rec.got = nil
	return r
}

const statusJSON = `{"interface": "eth0", "xdp_mode": "native", "version": "v1", "flows": 7,
	"services": [{"service": "198.18.1.1:80/tcp", "scheduler": "maglev", "forward": "dsr-l2",
		"backends": [{"address": "198.18.0.11", "weight": 1, "mac": "02:00:00:00:00:11", "state": "up", "usable": true, "in_table": true, "packets": 5}]}]}`

func w32(v uint32) *uint32 { return &v }

func TestClientRequests(t *testing.T) {
	rec := &recorder{status: http.StatusOK, body: statusJSON}
	c := api.NewClient(serveUnix(t, rec))
	ctx := context.Background()
	want := api.Status{Interface: "eth0", XDPMode: "native", Version: "v1", Flows: 7,
		Services: []api.ServiceStatus{{Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2",
			Backends: []api.BackendStatus{{Address: "198.18.0.11", Weight: 1, MAC: "02:00:00:00:00:11", State: "up", Usable: true, InTable: true, Packets: 5}}}}}
	const v6 = "[2001:2::1]:443/tcp"
	const v6path = "/v1/services/%5B2001:2::1%5D:443%2Ftcp"
	for _, tc := range []struct {
		name string
		call func() (api.Status, error)
		want request
	}{
		{"Status", func() (api.Status, error) { return c.Status(ctx) },
			request{"GET", "/v1/status", ""}},
		{"AddService", func() (api.Status, error) {
			return c.AddService(ctx, config.Service{VIP: "198.18.1.1", Port: 80, Protocol: "tcp", Backends: []config.Backend{{Address: "198.18.0.11", Weight: w32(2)}}})
		}, request{"POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"protocol":"tcp","scheduler":"","forward":"","backends":[{"address":"198.18.0.11","weight":2}]}`}},
		{"SetService", func() (api.Status, error) {
			return c.SetService(ctx, "198.18.1.1:80/tcp", config.Service{VIP: "198.18.1.1", Port: 80, Protocol: "tcp", Scheduler: "source-hash"})
		}, request{"PUT", "/v1/services/198.18.1.1:80%2Ftcp", `{"vip":"198.18.1.1","port":80,"protocol":"tcp","scheduler":"source-hash","forward":"","backends":null}`}},
		{"DeleteService", func() (api.Status, error) { return c.DeleteService(ctx, v6) },
			request{"DELETE", v6path, ""}},
		{"AddBackend", func() (api.Status, error) { return c.AddBackend(ctx, v6, config.Backend{Address: "2001:2::11"}) },
			request{"POST", v6path + "/backends", `{"address":"2001:2::11"}`}},
		{"SetBackend", func() (api.Status, error) { return c.SetBackend(ctx, v6, "2001:2::11", config.Backend{Weight: w32(0)}) },
			request{"PUT", v6path + "/backends/2001:2::11", `{"address":"2001:2::11","weight":0}`}},
		{"DeleteBackend", func() (api.Status, error) { return c.DeleteBackend(ctx, "198.18.1.1:53/udp", "198.18.0.11") },
			request{"DELETE", "/v1/services/198.18.1.1:53%2Fudp/backends/198.18.0.11", ""}},
		{"DrainBackend", func() (api.Status, error) { return c.DrainBackend(ctx, "198.18.1.1:53/udp", "198.18.0.11") },
			request{"POST", "/v1/services/198.18.1.1:53%2Fudp/backends/198.18.0.11/drain", ""}},
	} {
		st, err := tc.call()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := rec.last(t); got != tc.want {
			t.Errorf("%s: request\n  got  %+v\n  want %+v", tc.name, got, tc.want)
		}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("%s: status\n  got  %+v\n  want %+v", tc.name, st, want)
		}
	}
}

func TestClientLists(t *testing.T) {
	rec := &recorder{status: http.StatusOK}
	c := api.NewClient(serveUnix(t, rec))
	ctx := context.Background()

	rec.body = `[{"service": "198.18.1.1:80/tcp", "scheduler": "maglev", "forward": "dsr-l2", "backends": [], "drop_no_backend": 3}]`
	ss, err := c.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.ServiceStatus{{Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2", Backends: []api.BackendStatus{}, DropNoBackend: 3}}; !reflect.DeepEqual(ss, want) {
		t.Errorf("Services = %+v, want %+v", ss, want)
	}
	if got := rec.last(t); got != (request{"GET", "/v1/services", ""}) {
		t.Errorf("Services request %+v", got)
	}

	rec.body = `[{"protocol": "tcp", "client": "198.18.2.1:40000", "vip": "198.18.1.1:80", "backend": "198.18.0.11", "idle_seconds": 1.5}]`
	for limit, path := range map[int]string{0: "/v1/flows", 50: "/v1/flows?limit=50"} {
		fs, err := c.Flows(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		if want := []api.Flow{{Protocol: "tcp", Client: "198.18.2.1:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.11", IdleSeconds: 1.5}}; !reflect.DeepEqual(fs, want) {
			t.Errorf("Flows = %+v", fs)
		}
		if got := rec.last(t); got != (request{"GET", path, ""}) {
			t.Errorf("Flows(%d) request %+v, want GET %s", limit, got, path)
		}
	}
}

func TestClientErrors(t *testing.T) {
	rec := &recorder{}
	c := api.NewClient(serveUnix(t, rec))
	ctx := context.Background()
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{404, `{"error": "service 198.18.1.1:81/tcp: no such service"}`, "service 198.18.1.1:81/tcp: no such service"},
		{409, `{"error": "service 198.18.1.1:80/tcp already exists (use set to change it)"}`, "service 198.18.1.1:80/tcp already exists (use set to change it)"},
		{400, `{"error": "backends[0].weight 70000: out of range 0-65535"}`, "backends[0].weight 70000: out of range 0-65535"},
		{502, "bad\ngateway\n", "xlbd answered 502 Bad Gateway: bad gateway"},
		{500, ``, "xlbd answered 500 Internal Server Error"},
	} {
		rec.status, rec.body = tc.status, tc.body
		_, err := c.DeleteService(ctx, "198.18.1.1:81/tcp")
		rec.last(t)
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || err.Error() != tc.want {
			t.Errorf("%d %q: got %#v (%v), want APIError %d %q", tc.status, tc.body, err, err, tc.status, tc.want)
		}
	}

	// A 2xx answer that is not the expected JSON.
	rec.status, rec.body = 200, "<html>"
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "GET /v1/status: bad answer") {
		t.Errorf("bad JSON: %v", err)
	}
	rec.last(t)
}

func TestClientCannotConnect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing.sock")
	_, err := api.NewClient(sock).Status(context.Background())
	want := "cannot reach xlbd at " + sock + ": connect: no such file or directory (is xlbd running? is --api right? are you root?)"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if c := api.NewClient(""); c.Socket() != api.DefaultSocket {
		t.Errorf("default socket %q", c.Socket())
	}
}

func TestClientContext(t *testing.T) {
	block := make(chan struct{})
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := api.NewClient(sock).Flows(ctx, 10)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "xlbd at "+sock+": GET /v1/flows?limit=10: ") {
		t.Errorf("got %v, want a deadline error naming the request", err)
	}
}

// The JSON the client sends decodes with the daemon's strict decoders.
func TestClientBodiesDecode(t *testing.T) {
	var got []string
	var mu sync.Mutex
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if strings.HasSuffix(r.URL.Path, "/backends") {
			_, err = config.DecodeBackend(r.Body)
		} else {
			_, err = config.DecodeService(r.Body)
		}
		mu.Lock()
		got = append(got, r.URL.Path+": "+errString(err))
		mu.Unlock()
		// A failed write shows up as the client's error in the test.
		_ = json.NewEncoder(w).Encode(api.Status{})
	}))
	c := api.NewClient(sock)
	ctx := context.Background()
	h := &config.Health{Type: "http", Interval: config.Duration(time.Second), HTTP: &config.HTTPCheck{Path: "/ready"}}
	if _, err := c.AddService(ctx, config.Service{VIP: "2001:2::1", Port: 443, Health: h, Backends: []config.Backend{{Address: "2001:2::11"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddBackend(ctx, "198.18.1.1:80/tcp", config.Backend{Address: "198.18.0.11", Weight: w32(3)}); err != nil {
		t.Fatal(err)
	}
	want := []string{"/v1/services: <nil>", "/v1/services/198.18.1.1:80/tcp/backends: <nil>"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
