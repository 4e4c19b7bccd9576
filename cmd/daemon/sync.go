package daemon

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// A bulk sync replaces a service's whole backend set in one step. It is no
// state transition of its own: replaceBackends builds the next desired
// state (the current one with one service's backend list replaced), and
// commit applies it exactly as it applies an API change or a reload. So
// the backends that stay keep their flows (the loader keeps a backend's id
// while its address stays in its service, and the connection table points
// at ids), their health checks run on undisturbed (a check is keyed by
// service and address, and an unchanged check is not restarted), new ones
// join and start as any added backend does, and the ones that go leave as
// a deleted backend does: their flows move on their next packet. Anything
// else that replaces a service's backends (a DNS name re-resolved, say)
// belongs here too, so every path shares these semantics.

// replaceBackends returns svcs with the backends of service key replaced
// by set, validated with the service as a whole (each bad entry named as
// backends[i] with its value), and what changes. svcs is modified in
// place: pass a copy (Daemon.desiredCopy). A set that leaves the service
// without a backend is refused unless allowEmpty.
func replaceBackends(svcs []config.Service, key lb.ServiceKey, set []config.Backend, allowEmpty bool) ([]config.Service, api.BackendSync, error) {
	res := api.BackendSync{Service: key.String()}
	i := findService(svcs, key)
	if i < 0 {
		return nil, res, notFound("service %s: no such service", key)
	}
	if len(set) == 0 && !allowEmpty {
		return nil, res, badRequest("service %s: backends: the set is empty, which would leave the service with no backend (set allow_empty to mean it)", key)
	}
	next := svcs[i].Clone()
	next.Backends = (config.Service{Backends: set}).Clone().Backends
	if err := next.Normalize(); err != nil {
		return nil, res, badRequest("service %s: %w", key, err)
	}
	sd := diffService(key.String(), svcs[i], next)
	res.Added, res.Removed, res.Changed = nonNil(sd.BackendsAdded), nonNil(sd.BackendsRemoved), nonNil(sd.BackendsChanged)
	res.Kept = []api.BackendWeight{}
	was := entryWeights(svcs[i])
	for a, w := range entryWeights(next) {
		if ow, ok := was[a]; ok && ow == w {
			res.Kept = append(res.Kept, api.BackendWeight{Address: a, Weight: w})
		}
	}
	slices.SortFunc(res.Kept, func(a, b api.BackendWeight) int { return compareAddr(a.Address, b.Address) })
	svcs[i] = next
	return svcs, res, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// syncBackends replaces the backends of service key with set: validated
// whole, then committed through the same path as every API change and
// reload (persisted in the state file), or nothing. A set that changes
// nothing commits nothing, so repeating a sync disturbs nothing; with
// dryRun it only answers what would change.
func (d *Daemon) syncBackends(key lb.ServiceKey, set []config.Backend, allowEmpty, dryRun bool) (api.BackendSync, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, res, err := replaceBackends(d.desiredCopy(), key, set, allowEmpty)
	if err != nil {
		return res, err
	}
	if !allowEmpty {
		if err := d.checkGivesBackends(next, key); err != nil {
			return api.BackendSync{Service: key.String()}, err
		}
	}
	res.DryRun = dryRun
	if dryRun || res.Unchanged() {
		return res, nil
	}
	if err := d.commit(desiredState{next, d.bgpCfg}, d.configHash); err != nil {
		return res, err
	}
	res.Applied = true
	d.log.Info("backends synced", "service", key, "added", len(res.Added), "removed", len(res.Removed),
		"reweighted", len(res.Changed), "kept", len(res.Kept))
	return res, nil
}

// checkGivesBackends refuses a next state in which service key would have
// no backend: a set of names not resolved yet (or whose addresses are all
// skipped) is as empty as an empty set. Callers hold d.mu.
func (d *Daemon) checkGivesBackends(next []config.Service, key lb.ServiceKey) error {
	i := findService(next, key)
	if i < 0 || len(expandServices(next[i:i+1], d.dns.names).Services[0].Backends) > 0 {
		return nil
	}
	var names []string
	for _, b := range next[i].Backends {
		if b.Named() {
			nk := b.NameKey()
			names = append(names, nk.Name+" ("+nk.Family+")")
		}
	}
	return badRequest("service %s: backends: no address yet from %s, which would leave the service with no backend (set allow_empty to mean it)", key, strings.Join(names, ", "))
}

// handleSyncBackends answers PUT /v1/services/{service}/backends.
func (d *Daemon) handleSyncBackends(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	key, err := lb.ParseServiceKey(r.PathValue("service"))
	if err != nil {
		writeError(w, badRequest("%w", err))
		return
	}
	var flags [2]bool
	for i, name := range []string{"allow_empty", "dry_run"} {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		if flags[i], err = strconv.ParseBool(v); err != nil {
			writeError(w, badRequest("query parameter %s %q: want true or false", name, v))
			return
		}
	}
	body, err := config.DecodeBackendSet(r.Body)
	if err != nil {
		writeError(w, badRequest("%w", err))
		return
	}
	res, err := d.syncBackends(key, body.Backends, flags[0] || body.AllowEmpty, flags[1])
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
