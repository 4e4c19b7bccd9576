package daemon

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// handleConfigDiff answers POST /v1/config/diff: what a reload with the
// posted config file would change, after the checks a reload makes that
// need no data plane. Nothing is applied.
func (d *Daemon) handleConfigDiff(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var f api.ConfigFile
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, badRequest("request: %v", err))
		return
	}
	diff, err := d.diffConfig([]byte(f.Config))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, diff)
}

// diffConfig validates a config file's text as Reload would, then
// compares it with the desired state.
func (d *Daemon) diffConfig(data []byte) (api.ConfigDiff, error) {
	cfg, err := config.ParseConfig(data)
	if err != nil {
		return api.ConfigDiff{}, badRequest("config: %w", err)
	}
	if cfg.Interface != "" && cfg.Interface != d.iface {
		return api.ConfigDiff{}, badRequest("config: interface %q differs from the running %q (restart to change it)", cfg.Interface, d.iface)
	}
	if cfg.BGP != nil && d.bgp == nil {
		return api.ConfigDiff{}, badRequest("bgp: this xlbd has no BGP speaker")
	}
	if err := CheckConfig(cfg, d.ifaceAddrs); err != nil {
		return api.ConfigDiff{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := diffServices(d.desired, cfg.Services)
	if jsonText(d.bgpCfg) != jsonText(cfg.BGP) {
		// Shown as GET /v1/bgp shows it: passwords hidden.
		from, to := jsonText(hidePasswords(d.bgpCfg)), jsonText(hidePasswords(cfg.BGP))
		field := "bgp"
		if from == to {
			field = "bgp (a peer password)"
		}
		out.BGP = &api.Change{Field: field, From: from, To: to}
	}
	return out, nil
}

// diffServices compares two normalised service lists.
func diffServices(old, next []config.Service) api.ConfigDiff {
	out := api.ConfigDiff{Added: []string{}, Removed: []string{}, Changed: []api.ServiceDiff{}}
	byKey := func(svcs []config.Service) map[string]config.Service {
		m := make(map[string]config.Service, len(svcs))
		for _, s := range svcs {
			if k, err := s.Key(); err == nil {
				m[k.String()] = s
			}
		}
		return m
	}
	was, will := byKey(old), byKey(next)
	for k, n := range will {
		o, ok := was[k]
		if !ok {
			out.Added = append(out.Added, k)
			continue
		}
		sd := diffService(k, o, n)
		if len(sd.Settings)+len(sd.BackendsAdded)+len(sd.BackendsRemoved)+len(sd.BackendsChanged) == 0 {
			out.Unchanged++
			continue
		}
		out.Changed = append(out.Changed, sd)
	}
	for k := range was {
		if _, ok := will[k]; !ok {
			out.Removed = append(out.Removed, k)
		}
	}
	slices.Sort(out.Added)
	slices.Sort(out.Removed)
	slices.SortFunc(out.Changed, func(a, b api.ServiceDiff) int { return cmp.Compare(a.Service, b.Service) })
	return out
}

func diffService(key string, o, n config.Service) api.ServiceDiff {
	sd := api.ServiceDiff{Service: key}
	for _, f := range []struct {
		name     string
		from, to string
	}{
		{"scheduler", o.Scheduler, n.Scheduler},
		{"persistence", o.Persistence.String(), n.Persistence.String()},
		{"forward", o.Forward, n.Forward},
		{"health", jsonText(o.Health), jsonText(n.Health)},
	} {
		if f.from != f.to {
			sd.Settings = append(sd.Settings, api.Change{Field: f.name, From: f.from, To: f.to})
		}
	}
	was, will := entryWeights(o), entryWeights(n)
	for a, w := range will {
		ow, ok := was[a]
		switch {
		case !ok:
			sd.BackendsAdded = append(sd.BackendsAdded, api.BackendWeight{Address: a, Weight: w})
		case ow != w:
			sd.BackendsChanged = append(sd.BackendsChanged, api.BackendChange{Address: a, From: ow, To: w})
		}
	}
	for a, w := range was {
		if _, ok := will[a]; !ok {
			sd.BackendsRemoved = append(sd.BackendsRemoved, api.BackendWeight{Address: a, Weight: w})
		}
	}
	slices.SortFunc(sd.BackendsAdded, func(a, b api.BackendWeight) int { return compareAddr(a.Address, b.Address) })
	slices.SortFunc(sd.BackendsRemoved, func(a, b api.BackendWeight) int { return compareAddr(a.Address, b.Address) })
	slices.SortFunc(sd.BackendsChanged, func(a, b api.BackendChange) int { return compareAddr(a.Address, b.Address) })
	return sd
}

// compareAddr orders normalised addresses as addresses, not as text.
func compareAddr(a, b string) int {
	pa, errA := netip.ParseAddr(a)
	pb, errB := netip.ParseAddr(b)
	if errA != nil || errB != nil {
		return cmp.Compare(a, b)
	}
	return pa.Compare(pb)
}

// jsonText is v as compact JSON ("none" for nil), to compare and show a
// nested setting.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if string(b) == "null" {
		return "none"
	}
	return string(b)
}

// hidePasswords is a copy of b with each set peer password "(set)".
func hidePasswords(b *config.BGP) *config.BGP {
	if b == nil {
		return nil
	}
	c := b.Clone()
	for i := range c.Peers {
		if c.Peers[i].Password != "" {
			c.Peers[i].Password = "(set)"
		}
	}
	return c
}

// entryWeights maps each backend entry of s to its weight: an address by
// itself, a DNS name by NAME/FAMILY (the entry, not its addresses: a
// reload or a sync keeps them).
func entryWeights(s config.Service) map[string]uint32 {
	m := make(map[string]uint32, len(s.Backends))
	for _, b := range s.Backends {
		if b.Named() {
			m[b.NameKey().String()] = weightOf(b)
			continue
		}
		m[b.Address] = weightOf(b)
	}
	return m
}
