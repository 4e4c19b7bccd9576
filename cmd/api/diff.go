package api

import (
	"context"
	"net/http"
)

// ConfigFile is the body of POST /v1/config/diff: a config file's text.
type ConfigFile struct {
	// Config is the YAML text, as xlbd would read it from its file.
	Config string `json:"config"`
}

// ConfigDiff is what a reload with a config file would change in the
// running desired state (file and API changes). Every list is sorted.
type ConfigDiff struct {
	// Added and Removed are service keys, VIP:PORT/PROTO.
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	// Changed are the services in both whose settings or backends differ.
	Changed []ServiceDiff `json:"changed"`
	// BGP is the bgp section's change, nil when it stays the same.
	BGP *Change `json:"bgp,omitempty"`
	// Unchanged counts the services that stay as they are.
	Unchanged int `json:"unchanged"`
}

// ServiceDiff is one changed service.
type ServiceDiff struct {
	Service string `json:"service"`
	// Settings are the service's own fields that change: scheduler,
	// persistence, forward, health.
	Settings []Change `json:"settings,omitempty"`
	// BackendsAdded and BackendsRemoved are backends with their weight.
	BackendsAdded   []BackendWeight `json:"backends_added,omitempty"`
	BackendsRemoved []BackendWeight `json:"backends_removed,omitempty"`
	// BackendsChanged are the backends in both whose weight differs.
	BackendsChanged []BackendChange `json:"backends_changed,omitempty"`
}

// Change is one setting's value before and after, as text.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// BackendWeight is a backend address and its weight.
type BackendWeight struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
}

// BackendChange is a backend whose weight changes.
type BackendChange struct {
	Address string `json:"address"`
	From    uint32 `json:"weight_from"`
	To      uint32 `json:"weight_to"`
}

// Empty reports whether the reload would change nothing.
func (d ConfigDiff) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0 && d.BGP == nil
}

// DiffConfig asks xlbd what a reload with the config file text would
// change, validating it as a reload would; nothing is applied.
func (c *Client) DiffConfig(ctx context.Context, text []byte) (ConfigDiff, error) {
	var d ConfigDiff
	err := c.do(ctx, http.MethodPost, "/v1/config/diff", ConfigFile{Config: string(text)}, &d)
	return d, err
}
