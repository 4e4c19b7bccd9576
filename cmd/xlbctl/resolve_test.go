package main

import (
	"context"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
)

func (f *fakeClient) ResolveService(ctx context.Context, key string) (api.ResolveResult, error) {
	f.record("ResolveService", key)
	if f.err != nil {
		return api.ResolveResult{}, f.err
	}
	return f.resolved(key), nil
}

// resolved is the fake's answer: one name that gained and lost an address.
func (f *fakeClient) resolved(key string) api.ResolveResult {
	return api.ResolveResult{Service: key, Names: []api.NameChange{{
		Name: "web.pool.example", Family: "ipv4",
		Added: []string{"198.18.0.13"}, Removed: []string{"198.18.0.12"}, Kept: []string{"198.18.0.11"},
		Error: "",
	}}}
}

func TestServiceResolve(t *testing.T) {
	r := xlbctl(t, &fakeClient{}, "service", "resolve", "198.18.1.1:80/tcp")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := "web.pool.example (ipv4): added 198.18.0.13; removed 198.18.0.12 (drained until their flows end); 1 kept\n"
	if r.stdout != want || len(r.calls) != 1 || r.calls[0] != "ResolveService 198.18.1.1:80/tcp" {
		t.Errorf("stdout %q, calls %q; want %q", r.stdout, r.calls, want)
	}
}
