package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// miniXlbd serves xlbd's API routes from memory, with xlbd's validation
// (the api package's decoders) and error texts.
type miniXlbd struct {
	mu       sync.Mutex
	svcs     []config.Service
	requests []string
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func (m *miniXlbd) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		m.reply(w, r, func() (any, error) { return m.status(), nil })
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		m.reply(w, r, func() (any, error) { return m.status().Services, nil })
	})
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		m.reply(w, r, func() (any, error) {
			return []api.Flow{{Protocol: "tcp", Client: "198.18.2.10:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.12", IdleSeconds: 3.2}}, nil
		})
	})
	mux.HandleFunc("POST /v1/services", func(w http.ResponseWriter, r *http.Request) {
		m.mutate(w, r, func() error {
			s, err := config.DecodeService(r.Body)
			if err != nil {
				return &httpError{400, err.Error()}
			}
			k, _ := s.Key()
			if m.find(k) >= 0 {
				return &httpError{409, fmt.Sprintf("service %s already exists (use set to change it)", k)}
			}
			m.svcs = append(m.svcs, s)
			return nil
		})
	})
	mux.HandleFunc("PUT /v1/services/{service}", func(w http.ResponseWriter, r *http.Request) {
		m.withService(w, r, func(i int) error {
			s, err := config.DecodeService(r.Body)
			if err != nil {
				return &httpError{400, err.Error()}
			}
			m.svcs[i] = s
			return nil
		})
	})
	mux.HandleFunc("DELETE /v1/services/{service}", func(w http.ResponseWriter, r *http.Request) {
		m.withService(w, r, func(i int) error {
			m.svcs = slices.Delete(m.svcs, i, i+1)
			return nil
		})
	})
	mux.HandleFunc("POST /v1/services/{service}/backends", func(w http.ResponseWriter, r *http.Request) {
		m.withService(w, r, func(i int) error {
			b, err := config.DecodeBackend(r.Body)
			if err != nil {
				return &httpError{400, err.Error()}
			}
			k, _ := m.svcs[i].Key()
			if m.findBackend(i, b.Address) >= 0 {
				return &httpError{409, fmt.Sprintf("service %s: backend %s already exists (use set to change it)", k, b.Address)}
			}
			m.svcs[i].Backends = append(m.svcs[i].Backends, b)
			return nil
		})
	})
	mux.HandleFunc("PUT /v1/services/{service}/backends/{backend}", func(w http.ResponseWriter, r *http.Request) {
		m.withBackend(w, r, func(i, j int) error {
			b, err := config.DecodeBackend(r.Body)
			if err != nil {
				return &httpError{400, err.Error()}
			}
			m.svcs[i].Backends[j] = b
			return nil
		})
	})
	mux.HandleFunc("DELETE /v1/services/{service}/backends/{backend}", func(w http.ResponseWriter, r *http.Request) {
		m.withBackend(w, r, func(i, j int) error {
			m.svcs[i].Backends = slices.Delete(m.svcs[i].Backends, j, j+1)
			return nil
		})
	})
	mux.HandleFunc("POST /v1/services/{service}/backends/{backend}/drain", func(w http.ResponseWriter, r *http.Request) {
		m.withBackend(w, r, func(i, j int) error {
			zero := uint32(0)
			m.svcs[i].Backends[j].Weight = &zero
			return nil
		})
	})
	return mux
}

func (m *miniXlbd) reply(w http.ResponseWriter, r *http.Request, fn func() (any, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, r.Method+" "+r.URL.RequestURI())
	v, err := fn()
	code := http.StatusOK
	if err != nil {
		var he *httpError
		code = http.StatusInternalServerError
		if errors.As(err, &he) {
			code = he.code
		}
		v = api.Error{Error: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (m *miniXlbd) mutate(w http.ResponseWriter, r *http.Request, fn func() error) {
	m.reply(w, r, func() (any, error) {
		if err := fn(); err != nil {
			return nil, err
		}
		return m.status(), nil
	})
}

func (m *miniXlbd) withService(w http.ResponseWriter, r *http.Request, fn func(i int) error) {
	m.mutate(w, r, func() error {
		k, err := lb.ParseServiceKey(r.PathValue("service"))
		if err != nil {
			return &httpError{400, err.Error()}
		}
		i := m.find(k)
		if i < 0 {
			return &httpError{404, fmt.Sprintf("service %s: no such service", k)}
		}
		return fn(i)
	})
}

func (m *miniXlbd) withBackend(w http.ResponseWriter, r *http.Request, fn func(i, j int) error) {
	m.withService(w, r, func(i int) error {
		raw := r.PathValue("backend")
		a, err := netip.ParseAddr(raw)
		if err != nil {
			return &httpError{400, fmt.Sprintf("backend %q: not an IP address", raw)}
		}
		j := m.findBackend(i, a.String())
		if j < 0 {
			k, _ := m.svcs[i].Key()
			return &httpError{404, fmt.Sprintf("service %s: no backend %s", k, a)}
		}
		return fn(i, j)
	})
}

func (m *miniXlbd) find(k lb.ServiceKey) int {
	return slices.IndexFunc(m.svcs, func(s config.Service) bool { sk, _ := s.Key(); return sk == k })
}

func (m *miniXlbd) findBackend(i int, addr string) int {
	return slices.IndexFunc(m.svcs[i].Backends, func(b config.Backend) bool { return b.Address == addr })
}

func (m *miniXlbd) status() api.Status {
	st := api.Status{Interface: "eth0", XDPMode: "native", Version: "test", Flows: 1}
	for _, s := range m.svcs {
		k, _ := s.Key()
		ss := api.ServiceStatus{Service: k.String(), Scheduler: s.Scheduler, Persistence: s.Persistence, Forward: s.Forward, Health: s.Health}
		for _, b := range s.Backends {
			bs := api.BackendStatus{Address: b.Address, Weight: *b.Weight, MAC: "02:00:00:00:00:01", State: api.StateUp, Usable: true, InTable: true,
				Since: testNow.Add(-time.Minute)}
			if bs.Weight == 0 {
				bs.State, bs.InTable = api.StateDrain, false
			}
			ss.Backends = append(ss.Backends, bs)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// TestEndToEnd drives the real client over a unix socket through a
// session of an operator.
func TestEndToEnd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	m := &miniXlbd{}
	srv := httptest.NewUnstartedServer(m.routes())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	const svc = "198.18.1.1:80/tcp"
	steps := []struct {
		args   []string
		code   int
		stdout string // or, with code != 0, stderr
	}{
		{[]string{"service", "add", svc, "--backend", "198.18.0.11", "--backend", "198.18.0.12=2", "--check", "http", "--http-path", "/healthz"},
			0, "added service 198.18.1.1:80/tcp with 2 backends\n"},
		{[]string{"service", "add", svc},
			1, "xlbctl: service add: service 198.18.1.1:80/tcp already exists (use set to change it)\n"},
		{[]string{"backend", "add", svc, "198.18.0.13", "--weight", "3"},
			0, "added backend 198.18.0.13 to 198.18.1.1:80/tcp with weight 3\n"},
		{[]string{"backend", "add", svc, "198.18.0.13"},
			1, "xlbctl: backend add: service 198.18.1.1:80/tcp: backend 198.18.0.13 already exists (use set to change it)\n"},
		{[]string{"backend", "drain", svc, "198.18.0.11"},
			0, "draining backend 198.18.0.11 of 198.18.1.1:80/tcp: weight 0, its flows continue, new flows go to the others\n"},
		{[]string{"backend", "set", svc, "198.18.0.12", "--weight", "5"},
			0, "set backend 198.18.0.12 of 198.18.1.1:80/tcp to weight 5\n"},
		{[]string{"backend", "set", svc, "198.18.0.99", "--weight", "5"},
			1, "xlbctl: backend set: service 198.18.1.1:80/tcp: no backend 198.18.0.99\n"},
		{[]string{"service", "set", svc, "--scheduler", "wlc", "--persistence", "300s", "--rise", "4"},
			0, "changed service 198.18.1.1:80/tcp\n"},
		{[]string{"service", "set", svc, "--persistence", "1500ms"},
			2, "xlbctl: service set: persistence 1.5s: must be whole seconds (e.g. 300s)\n"},
		{[]string{"backend", "list", svc}, 0, `ADDRESS      WEIGHT  STATE  LAST-CHECK  MAC                ACTIVE  PACKETS  NEW-FLOWS  REASON  SINCE
198.18.0.11  0       drain  -           02:00:00:00:00:01  0       0        0          -       1m0s
198.18.0.12  5       up     -           02:00:00:00:00:01  0       0        0          -       1m0s
198.18.0.13  3       up     -           02:00:00:00:00:01  0       0        0          -       1m0s
`},
		{[]string{"service", "list"}, 0, `SERVICE            SCHEDULER   PERSISTENCE  FORWARD  CHECK  BACKENDS  UP
198.18.1.1:80/tcp  least-conn  5m           dsr-l2   http   3         2
`},
		{[]string{"backend", "del", svc, "198.18.0.13"}, 0, "deleted backend 198.18.0.13 from 198.18.1.1:80/tcp\n"},
		{[]string{"flows", "--limit", "5"}, 0, `PROTO  CLIENT             VIP            BACKEND      IDLE
tcp    198.18.2.10:40000  198.18.1.1:80  198.18.0.12  3s
`},
		{[]string{"service", "add", "[2001:2::1]:53/udp", "--backend", "[2001:2::11]"}, 0, "added service [2001:2::1]:53/udp with 1 backend\n"},
		{[]string{"backend", "drain", "[2001:2::1]:53/udp", "2001:2::11"}, 0,
			"draining backend 2001:2::11 of [2001:2::1]:53/udp: weight 0, its flows continue, new flows go to the others\n"},
		{[]string{"service", "del", "[2001:2::1]:53/udp"}, 0, "deleted service [2001:2::1]:53/udp\n"},
		{[]string{"service", "del", "[2001:2::1]:53/udp"}, 1, "xlbctl: service del: service [2001:2::1]:53/udp: no such service\n"},
	}
	for _, s := range steps {
		var out, errOut bytes.Buffer
		args := append([]string{"--api", sock}, s.args...)
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Now: func() time.Time { return testNow }}, args)
		got := out.String()
		if s.code != 0 {
			got = errOut.String()
		}
		if code != s.code || got != s.stdout {
			t.Errorf("xlbctl %s:\n  exit %d, stdout %q, stderr %q\n  want exit %d, %q", strings.Join(s.args, " "), code, out.String(), errOut.String(), s.code, s.stdout)
		}
	}

	// The state xlbd ends up with, as status -o json shows it.
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out}, []string{"status", "-o", "json", "--api", sock}); code != 0 {
		t.Fatalf("status: %d %s", code, out.String())
	}
	var st api.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 {
		t.Fatalf("services: %+v", st.Services)
	}
	s := st.Services[0]
	if s.Scheduler != "least-conn" || s.Persistence != config.Duration(300*time.Second) || s.Health == nil || s.Health.Rise != 4 || s.Health.Type != "http" || s.Health.HTTP.Path != "/healthz" || len(s.Backends) != 2 {
		t.Errorf("service after the session: %+v, health %+v", s, s.Health)
	}

	// The requests, escaped as the API wants.
	m.mu.Lock()
	reqs := m.requests
	m.mu.Unlock()
	for _, want := range []string{
		"PUT /v1/services/198.18.1.1:80%2Ftcp",
		"POST /v1/services/198.18.1.1:80%2Ftcp/backends/198.18.0.11/drain",
		"GET /v1/flows?limit=5",
		"DELETE /v1/services/%5B2001:2::1%5D:53%2Fudp",
	} {
		if !slices.Contains(reqs, want) {
			t.Errorf("no request %q in %q", want, reqs)
		}
	}

	// No xlbd at the socket.
	var errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "none.sock")
	code := run(context.Background(), env{Stdout: &out, Stderr: &errOut}, []string{"--api", missing, "status"})
	want := "xlbctl: status: cannot reach xlbd at " + missing + ": connect: no such file or directory (is xlbd running? is --api right? are you root?)\n"
	if code != 1 || errOut.String() != want {
		t.Errorf("no xlbd: exit %d, stderr %q, want %q", code, errOut.String(), want)
	}
}
