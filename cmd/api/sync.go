package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/xlb-lb/xlb/cmd/config"
)

// BackendSync is the answer to a bulk sync: what it changed (or, with
// dry_run, would change). Every list is sorted by address.
type BackendSync struct {
	Service string `json:"service"`
	// Added joined the service, health-checked as any new backend.
	Added []BackendWeight `json:"added"`
	// Removed left it, as DELETE of a backend does: their flows move.
	Removed []BackendWeight `json:"removed"`
	// Changed stay with another weight; their flows and health stay.
	Changed []BackendChange `json:"changed"`
	// Kept stay as they were: flows, health, weight.
	Kept []BackendWeight `json:"kept"`
	// Applied says the change was committed (and persisted); false for a
	// dry run and for a set that changes nothing.
	Applied bool `json:"applied"`
	// DryRun echoes the dry_run query parameter.
	DryRun bool `json:"dry_run,omitempty"`
}

// Unchanged reports whether the sync changes nothing.
func (s BackendSync) Unchanged() bool {
	return len(s.Added) == 0 && len(s.Removed) == 0 && len(s.Changed) == 0
}

// SyncOptions are the query parameters of a bulk sync.
type SyncOptions struct {
	// AllowEmpty accepts an empty set (the service then has no backend).
	AllowEmpty bool
	// DryRun validates and answers the change without applying it.
	DryRun bool
}

// SyncBackends replaces the backends of the service key with set, all or
// nothing: backends that stay keep their flows and health state.
func (c *Client) SyncBackends(ctx context.Context, key string, set []config.Backend, o SyncOptions) (BackendSync, error) {
	q := url.Values{}
	if o.AllowEmpty {
		q.Set("allow_empty", "true")
	}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	path := servicePath(key) + "/backends"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if set == nil {
		set = []config.Backend{}
	}
	var out BackendSync
	err := c.do(ctx, http.MethodPut, path, config.BackendSet{Backends: set, AllowEmpty: o.AllowEmpty}, &out)
	return out, err
}
