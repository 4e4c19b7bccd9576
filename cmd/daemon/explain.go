package daemon

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// handleExplain answers which backend the flow from ?client=IP:PORT to the
// service goes to and why: the data plane's entries for it, read key by
// key, judged by lb.ExplainFlow as the data plane judges them, with the
// state of each backend they name.
func (d *Daemon) handleExplain(w http.ResponseWriter, r *http.Request) {
	x, err := d.explain(r.PathValue("service"), r.URL.Query().Get("client"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

// parseClient checks the explained flow's client against the service.
func parseClient(raw string, key lb.ServiceKey) (netip.AddrPort, error) {
	const want = "want IP:PORT, e.g. 198.18.2.10:40000 or [2001:2::10]:40000"
	if raw == "" {
		return netip.AddrPort{}, badRequest("client: missing (%s)", want)
	}
	c, err := netip.ParseAddrPort(raw)
	switch {
	case err != nil || c.Addr().Zone() != "":
		return c, badRequest("client %q: %s", raw, want)
	case c.Port() == 0:
		return c, badRequest("client %q: port 0: out of range 1-65535", raw)
	case c.Addr().Unmap().Is4() != key.VIP.Unmap().Is4():
		return c, badRequest("client %q: %s, but vip %s is %s: a flow stays within one address family", raw, familyName(c.Addr().Unmap()), key.VIP, familyName(key.VIP.Unmap()))
	}
	return netip.AddrPortFrom(c.Addr().Unmap(), c.Port()), nil
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func (d *Daemon) explain(rawKey, rawClient string) (api.Explain, error) {
	key, err := lb.ParseServiceKey(rawKey)
	if err != nil {
		return api.Explain{}, badRequest("%w", err)
	}
	client, err := parseClient(rawClient, key)
	if err != nil {
		return api.Explain{}, err
	}
	// Not d.status(): its snapshot counts the connection table, and
	// explain reads single keys only.
	// The running services: backends named by DNS as their addresses.
	d.mu.Lock()
	desired := d.running.Services
	d.mu.Unlock()
	i := slices.IndexFunc(desired, func(s config.Service) bool { k, err := s.Key(); return err == nil && k == key })
	if i < 0 {
		return api.Explain{}, notFound("service %s: no such service", key)
	}
	svc := desired[i]
	facts, err := d.dp.FlowFacts(key, client, monotonicNow())
	if err != nil {
		return api.Explain{}, fmt.Errorf("read the data plane: %w", err)
	}
	e := lb.ExplainFlow(facts)
	out := api.Explain{Service: key.String(), Client: client.String(), Scheduler: svc.Scheduler, Persistence: svc.Persistence, Backends: []api.ExplainBackend{}}
	var named []uint32
	name := func(id uint32) string {
		if id == 0 {
			return ""
		}
		if !slices.Contains(named, id) {
			named = append(named, id)
		}
		b := facts.Backends[id]
		switch {
		case !b.Addr.IsValid():
			return fmt.Sprintf("id %d (no backend)", id)
		case !b.OfService:
			return b.Addr.String() + " (another service's)"
		}
		return b.Addr.String()
	}
	entry := func(x *lb.EntryExplanation) *api.ExplainEntry {
		if x == nil {
			return nil
		}
		return &api.ExplainEntry{Backend: name(x.Backend), AgeSeconds: x.Age.Seconds(), Timeout: config.Duration(x.Timeout), State: x.State, Used: x.Used, Ignored: x.Ignored}
	}
	place := func(p lb.Placement) api.ExplainPlacement {
		out := api.ExplainPlacement{Backend: name(p.Backend), By: p.By, Drop: p.Drop, Why: p.Why}
		for _, c := range p.Choices {
			out.Choices = append(out.Choices, name(c))
		}
		return out
	}
	out.Conntrack, out.HalfOpen, out.PersistenceEntry = entry(e.Conntrack), entry(e.HalfOpen), entry(e.Persist)
	s := e.Scheduler
	out.Slot = api.ExplainScheduler{How: s.How, HashOf: s.HashOf, Size: s.Size, Backend: name(s.Backend)}
	if s.HashOf != "" {
		out.Slot.Hash = fmt.Sprintf("%#08x", s.Hash)
	}
	if s.Scheduler == lb.Maglev || s.Scheduler == lb.SourceHash {
		out.Slot.Slot = &s.Slot
	}
	for cpu, c := range s.Cursors {
		out.Slot.Cursors = append(out.Slot.Cursors, api.ExplainCursor{CPU: cpu, Slot: c.Slot, Backend: name(c.Backend)})
	}
	for _, c := range s.Candidates {
		out.Slot.Candidates = append(out.Slot.Candidates, api.ExplainCandidate{Backend: name(c.Backend), Active: c.Active, Weight: c.Weight, Eligible: c.Eligible})
	}
	out.NextPacket, out.NewFlow, out.OtherPort = place(e.Next), place(e.NewFlow), place(e.OtherPort)
	for _, id := range named {
		b := facts.Backends[id]
		eb := api.ExplainBackend{Address: name(id), Weight: b.Weight, Usable: b.Usable && b.OfService}
		j := slices.IndexFunc(svc.Backends, func(cb config.Backend) bool { a, err := cb.Addr(); return err == nil && a == b.Addr })
		switch {
		case !b.Addr.IsValid():
			eb.State, eb.Reason = "gone", "no backend holds this id: its service or the backend was removed"
		case !b.OfService:
			eb.State, eb.Reason = "other-service", "the id was given to a backend of another service"
		case j < 0:
			eb.State, eb.Reason = "gone", "not in the desired state any more"
		default:
			bs := api.BackendStatus{Address: b.Addr.String(), Weight: weightOf(svc.Backends[j]), Usable: b.Usable}
			if b.MAC != nil {
				bs.MAC = b.MAC.String()
			}
			fwd, _ := lb.ForwardModes.Parse(svc.Forward)
			d.describeBackend(&bs, key, b.Addr, svc.Health, fwd.Encapsulated())
			eb.Weight, eb.State, eb.Reason = bs.Weight, bs.State, bs.Reason
		}
		out.Backends = append(out.Backends, eb)
	}
	return out, nil
}
