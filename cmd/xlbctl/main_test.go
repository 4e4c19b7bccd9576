package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// fakeClient records the requests of a command and answers them.
type fakeClient struct {
	mu     sync.Mutex
	calls  []string
	status api.Status
	flows  []api.Flow
	bgp    api.BGPStatus
	err    error
}

var _ Client = (*fakeClient)(nil)

// record logs a call as "Name arg..." with structs as JSON.
func (f *fakeClient) record(name string, args ...any) {
	parts := []string{name}
	for _, a := range args {
		if s, ok := a.(string); ok {
			parts = append(parts, s)
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			panic(err)
		}
		parts = append(parts, string(b))
	}
	f.mu.Lock()
	f.calls = append(f.calls, strings.Join(parts, " "))
	f.mu.Unlock()
}

func (f *fakeClient) mutation(name string, args ...any) (api.Status, error) {
	f.record(name, args...)
	if f.err != nil {
		return api.Status{}, f.err
	}
	return f.status, nil
}

func (f *fakeClient) BGP(ctx context.Context) (api.BGPStatus, error) {
	f.record("BGP")
	return f.bgp, f.err
}

func (f *fakeClient) Status(ctx context.Context) (api.Status, error) {
	return f.mutation("Status")
}

func (f *fakeClient) Services(ctx context.Context) ([]api.ServiceStatus, error) {
	st, err := f.mutation("Services")
	return st.Services, err
}

func (f *fakeClient) AddService(ctx context.Context, s config.Service) (api.Status, error) {
	return f.mutation("AddService", s)
}

func (f *fakeClient) SetService(ctx context.Context, key string, s config.Service) (api.Status, error) {
	return f.mutation("SetService", key, s)
}

func (f *fakeClient) DeleteService(ctx context.Context, key string) (api.Status, error) {
	return f.mutation("DeleteService", key)
}

func (f *fakeClient) AddBackend(ctx context.Context, key string, b config.Backend) (api.Status, error) {
	return f.mutation("AddBackend", key, b)
}

func (f *fakeClient) SetBackend(ctx context.Context, key, addr string, b config.Backend) (api.Status, error) {
	return f.mutation("SetBackend", key, addr, b)
}

func (f *fakeClient) DeleteBackend(ctx context.Context, key, addr string) (api.Status, error) {
	return f.mutation("DeleteBackend", key, addr)
}

func (f *fakeClient) DrainBackend(ctx context.Context, key, addr string) (api.Status, error) {
	return f.mutation("DrainBackend", key, addr)
}

func (f *fakeClient) Flows(ctx context.Context, limit int) ([]api.Flow, error) {
	f.record("Flows", limit)
	if f.err != nil {
		return nil, f.err
	}
	return f.flows, nil
}

// testNow is the fake clock of every test.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// result is what one run of xlbctl did.
type result struct {
	code           int
	stdout, stderr string
	calls          []string
}

// xlbctl runs the command line args against fc.
func xlbctl(t *testing.T, fc *fakeClient, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{Stdout: &out, Stderr: &errOut, Client: fc, Now: func() time.Time { return testNow }}
	code := run(context.Background(), e, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String(), calls: fc.calls}
}

// mustRun runs args and fails unless they succeed silently on stderr.
func mustRun(t *testing.T, fc *fakeClient, args ...string) result {
	t.Helper()
	r := xlbctl(t, fc, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("xlbctl %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

func sampleStatus() api.Status {
	return api.Status{
		Interface: "eth0", XDPMode: "native", Version: "v0.3.0", Flows: 42,
		Timeouts: config.Conntrack{TCPTimeout: config.Duration(900 * time.Second), TCPFinTimeout: config.Duration(120 * time.Second), UDPTimeout: config.Duration(300 * time.Second)},
		Services: []api.ServiceStatus{
			{
				Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2",
				Health: &config.Health{
					Type: "http", Interval: config.Duration(2 * time.Second), Timeout: config.Duration(time.Second),
					Rise: 2, Fall: 3, AllDown: "drop",
					HTTP: &config.HTTPCheck{Method: "GET", Path: "/healthz", ExpectStatus: "200-399"},
				},
				Packets: 1500, Bytes: 1258291, NewFlows: 30, DropNoBackend: 2,
				Backends: []api.BackendStatus{
					{Address: "198.18.0.11", Weight: 1, MAC: "02:00:00:00:00:11", State: "up", Usable: true, InTable: true,
						Since: testNow.Add(-192 * time.Second), Packets: 1000, Bytes: 838860, NewFlows: 20, ActiveFlows: 12,
						Check: &api.CheckResult{OK: true, Reason: "http 200", At: testNow.Add(-time.Second), Seconds: 0.002}},
					{Address: "198.18.0.12", Weight: 0, MAC: "02:00:00:00:00:12", State: "drain", Usable: true,
						Reason: "drained; http check failed: http 503",
						Since:  testNow.Add(-(2*time.Hour + 5*time.Minute)), Packets: 500, Bytes: 419431, NewFlows: 10, ActiveFlows: 3,
						Check: &api.CheckResult{Reason: "http 503", At: testNow.Add(-time.Second), Seconds: 0.001}},
					{Address: "198.18.0.13", Weight: 2, State: "no-mac", Reason: "MAC not resolved yet (ARP/NDP)"},
				},
			},
			{Service: "[2001:2::1]:53/udp", Scheduler: "source-hash", Forward: "dsr-l2", Packets: 7, Bytes: 700, DropNoBackend: 7},
		},
	}
}

// indentJSON is v as xlbctl prints it with -o json.
func indentJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func sameLines(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n--- got\n%s--- want\n%s", what, got, want)
	}
}
