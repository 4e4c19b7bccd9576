package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	stdmaps "maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// Handler is the local API, versioned under /v1. Services are named in the
// path as VIP:PORT/PROTO, path-escaped (the slash becomes %2F).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("GET /v1/services", d.handleServices)
	mux.HandleFunc("POST /v1/services", d.withBody(func(r *http.Request) error {
		s, err := config.DecodeService(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.addService(s)
	}))
	mux.HandleFunc("PUT /v1/services/{service}", d.withKey(func(r *http.Request, key lb.ServiceKey) error {
		s, err := config.DecodeService(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.setService(key, s)
	}))
	mux.HandleFunc("DELETE /v1/services/{service}", d.withKey(func(r *http.Request, key lb.ServiceKey) error {
		return d.delService(key)
	}))
	mux.HandleFunc("POST /v1/services/{service}/backends", d.withKey(func(r *http.Request, key lb.ServiceKey) error {
		b, err := config.DecodeBackend(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.addBackend(key, b)
	}))
	mux.HandleFunc("PUT /v1/services/{service}/backends", d.handleSyncBackends)
	mux.HandleFunc("PUT /v1/services/{service}/backends/{backend}", d.withBackend(func(r *http.Request, key lb.ServiceKey, addr netip.Addr) error {
		body, err := withAddress(r.Body, addr)
		if err != nil {
			return badRequest("%w", err)
		}
		b, err := config.DecodeBackend(body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.setBackend(key, addr, b)
	}))
	mux.HandleFunc("DELETE /v1/services/{service}/backends/{backend}", d.withBackend(func(r *http.Request, key lb.ServiceKey, addr netip.Addr) error {
		return d.delBackend(key, addr)
	}))
	mux.HandleFunc("POST /v1/services/{service}/backends/{backend}/drain", d.withBackend(func(r *http.Request, key lb.ServiceKey, addr netip.Addr) error {
		return d.drainBackend(key, addr)
	}))
	mux.HandleFunc("POST /v1/services/{service}/resolve", func(w http.ResponseWriter, r *http.Request) {
		key, err := lb.ParseServiceKey(r.PathValue("service"))
		if err != nil {
			writeError(w, badRequest("%w", err))
			return
		}
		// The lookups are not cut short when the client goes away: that
		// would be recorded as a DNS failure of the names.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), resolveTimeout)
		defer cancel()
		res, err := d.resolveService(ctx, key)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/config/diff", d.handleConfigDiff)
	mux.HandleFunc("GET /v1/flows", d.handleFlows)
	mux.HandleFunc("GET /v1/services/{service}/table", d.handleTable)
	mux.HandleFunc("GET /v1/services/{service}/explain", d.handleExplain)
	mux.HandleFunc("GET /v1/bgp", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.bgpStatus(r.Context()))
	})
	mux.HandleFunc("PUT /v1/bgp", d.withBGP(func(r *http.Request) error {
		b, err := config.DecodeBGP(r.Body)
		if err != nil {
			return badRequest("bgp: %w", err)
		}
		return d.setBGP(b)
	}))
	mux.HandleFunc("DELETE /v1/bgp", d.withBGP(func(*http.Request) error { return d.setBGP(nil) }))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no such endpoint: %s %s (see the README's API reference)", r.Method, r.URL.Path))
	})
	return mux
}

const maxBody = 1 << 20

// withAddress fills in a backend body's address from the path when the
// body leaves it out (PUT .../backends/ADDR {"weight": 3}).
func withAddress(r io.Reader, addr netip.Addr) (io.Reader, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil || fields == nil {
		return bytes.NewReader(data), nil // let the strict decoder explain
	}
	if _, ok := fields["address"]; !ok {
		fields["address"], _ = json.Marshal(addr.String())
		data, _ = json.Marshal(fields)
	}
	return bytes.NewReader(data), nil
}

func (d *Daemon) withBody(fn func(*http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := fn(r); err != nil {
			writeError(w, err)
			return
		}
		d.writeStatus(w, http.StatusOK)
	}
}

func (d *Daemon) withKey(fn func(*http.Request, lb.ServiceKey) error) http.HandlerFunc {
	return d.withBody(func(r *http.Request) error {
		key, err := lb.ParseServiceKey(r.PathValue("service"))
		if err != nil {
			return badRequest("%w", err)
		}
		return fn(r, key)
	})
}

func (d *Daemon) withBackend(fn func(*http.Request, lb.ServiceKey, netip.Addr) error) http.HandlerFunc {
	return d.withKey(func(r *http.Request, key lb.ServiceKey) error {
		raw := r.PathValue("backend")
		addr, err := netip.ParseAddr(raw)
		if err != nil {
			return badRequest("backend %q: not an IP address", raw)
		}
		return fn(r, key, addr.Unmap())
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The client may be gone; its next request gets the next answer.
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), api.Error{Error: err.Error()})
}

func (d *Daemon) writeStatus(w http.ResponseWriter, code int) {
	writeJSON(w, code, d.status())
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	d.writeStatus(w, http.StatusOK)
}

func (d *Daemon) handleServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.status().Services)
}

// status combines the desired state, what the data plane holds and the
// counters.
func (d *Daemon) status() api.Status {
	snap, err := d.dp.Snapshot()
	read := d.now()
	if err != nil {
		d.log.Error("read the data plane", "err", err)
	}
	st := d.statusOf(snap)
	st.Time = read
	d.addPeers(&st)
	return st
}

// peersTimeout bounds the read of the BGP sessions for a status.
const peersTimeout = 2 * time.Second

// addPeers fills in, for each announced service, the peers its route goes
// to: the established sessions (the speaker sends every VIP to every peer,
// both families).
func (d *Daemon) addPeers(st *api.Status) {
	if !st.BGP || !slices.ContainsFunc(st.Services, func(s api.ServiceStatus) bool { return s.Announced }) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), peersTimeout)
	defer cancel()
	peers, err := d.bgp.Peers(ctx)
	if err != nil {
		d.log.Error("bgp: read the sessions", "err", err)
		return
	}
	var up []string
	for _, p := range peers {
		if p.State == "established" {
			up = append(up, p.Address)
		}
	}
	for i := range st.Services {
		if st.Services[i].Announced {
			st.Services[i].AnnouncedTo = up
		}
	}
}

// statusOf is status from a snapshot already read.
func (d *Daemon) statusOf(snap lb.Snapshot) api.Status {
	d.mu.Lock()
	desired := d.running.Services
	origin := d.running.Origin
	names := map[lb.ServiceKey][]api.NameStatus{}
	eachNamed(d.desired, func(key lb.ServiceKey, b config.Backend) {
		names[key] = append(names[key], d.dns.nameStatus(b, d.running.Skipped[key][b.NameKey()]))
	})
	allDown := stdmaps.Clone(d.health.allDown)
	var announced []netip.Addr
	bgpOn := d.bgp != nil && d.bgpCfg != nil
	if bgpOn {
		announced = d.bgp.Announced()
	}
	d.mu.Unlock()
	st := api.Status{Role: string(lb.RoleBalancer), Interface: d.iface, XDPMode: d.xdpMode, Version: d.version, Flows: snap.Flows, BGP: bgpOn}
	for _, s := range desired {
		key, err := s.Key()
		if err != nil {
			continue
		}
		ss := api.ServiceStatus{Service: key.String(), Scheduler: s.Scheduler, Persistence: s.Persistence, Forward: s.Forward, Health: s.Health, AllDown: allDown[key],
			Announced: slices.Contains(announced, key.VIP), Names: names[key]}
		inst, ok := snap.Services[key]
		if ok {
			c := inst.Counters
			ss.Packets, ss.Bytes, ss.NewFlows, ss.DropNoBackend = c.Packets, c.Bytes, c.NewFlows, c.DropNoBackend
		}
		for _, b := range s.Backends {
			addr, _ := b.Addr()
			bs := api.BackendStatus{Address: addr.String(), Name: origin[key][addr].Name, Weight: weightOf(b)}
			if ib, found := inst.Backends[addr]; found {
				bs.Usable, bs.InTable = ib.Usable, ib.InTable
				if ib.MAC != nil {
					bs.MAC = ib.MAC.String()
				}
				bs.Packets, bs.Bytes, bs.NewFlows = ib.Counters.Packets, ib.Counters.Bytes, ib.Counters.NewFlows
				bs.ActiveFlows = ib.Active
			}
			fwd, _ := lb.ForwardModes.Parse(s.Forward)
			d.describeBackend(&bs, key, addr, s.Health, fwd.Encapsulated())
			if bs.Name != "" && bs.Weight == 0 && leavingIn(names[key], bs.Name, bs.Address) {
				bs.Reason = "gone from " + bs.Name + ": drained until its flows end"
			}
			ss.Backends = append(ss.Backends, bs)
		}
		st.Services = append(st.Services, ss)
	}
	t := snap.Timeouts
	st.Timeouts = config.Conntrack{TCPTimeout: config.Duration(t.TCP), TCPFinTimeout: config.Duration(t.TCPFin), UDPTimeout: config.Duration(t.UDP)}
	return st
}

// describeBackend fills in a backend's state, the reason for it, its
// latest check and the time of its last health transition.
func (d *Daemon) describeBackend(bs *api.BackendStatus, key lb.ServiceKey, addr netip.Addr, hc *config.Health, encap bool) {
	cfg, checked := healthConfig(hc)
	healthy, why := true, ""
	if checked {
		st, ok := d.health.checker.State(checkID(key, addr))
		healthy = ok && st.Up
		if ok {
			bs.Since = st.Since
		}
		switch {
		case ok && st.Checked:
			bs.Check = &api.CheckResult{OK: st.Last.OK, Reason: st.Last.Reason, At: st.Last.At, Seconds: st.Last.Duration.Seconds()}
			if !st.Up && st.Last.OK {
				why = fmt.Sprintf("rising: %d of %d checks passed", st.Successes, cfg.Rise)
			} else if !st.Up {
				why = fmt.Sprintf("%s check failed: %s", cfg.Type, st.Last.Reason)
			}
		case !healthy:
			why = "waiting for its first " + string(cfg.Type) + " check"
		}
	}
	switch {
	case bs.MAC == "" && !encap:
		bs.State, bs.Reason = api.StateNoMAC, "MAC not resolved yet (ARP/NDP)"
	case bs.Weight == 0:
		bs.State = api.StateDrain
		if !healthy {
			bs.Reason = "drained; " + why
		}
	case !healthy:
		bs.State, bs.Reason = api.StateDown, why
		if bs.Usable {
			bs.Reason = "kept by all_down keep-last; " + why
		}
	case !bs.Usable:
		bs.State, bs.Reason = api.StateDown, "not installed yet"
	default:
		bs.State = api.StateUp
	}
}

func (d *Daemon) handleFlows(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			writeError(w, badRequest("limit %q: want a number from 1 to 1000000", v))
			return
		}
		limit = n
	}
	entries, err := d.dp.Flows(limit, monotonicNow())
	if err != nil {
		writeError(w, err)
		return
	}
	flows := make([]api.Flow, 0, len(entries))
	for _, e := range entries {
		f := api.Flow{Protocol: e.Key.Proto.String(), Client: e.Key.Src.String(), VIP: e.Key.Dst.String(), IdleSeconds: e.Idle.Seconds()}
		if e.Backend.IsValid() {
			f.Backend = e.Backend.String()
		}
		flows = append(flows, f)
	}
	writeJSON(w, http.StatusOK, flows)
}

// withBGP runs a change of the bgp section and answers with the BGP status.
func (d *Daemon) withBGP(fn func(*http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := fn(r); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d.bgpStatus(r.Context()))
	}
}

// setBGP replaces the bgp section (nil: off), all or nothing, kept in the
// state file like every API change.
func (d *Daemon) setBGP(b *config.BGP) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.commit(desiredState{d.desired, b}, d.configHash)
}

// bgpStatus is the speaker's sessions and announcements.
func (d *Daemon) bgpStatus(ctx context.Context) api.BGPStatus {
	d.mu.Lock()
	c := d.bgpCfg.Clone()
	d.mu.Unlock()
	st := api.BGPStatus{Enabled: c != nil, Announced: []string{}, Peers: []api.BGPPeer{}}
	if c == nil || d.bgp == nil {
		return st
	}
	if sc, err := speakerConfig(c, d.ifaceAddrs); err == nil {
		st.RouterID = sc.RouterID.String()
	}
	st.ASN = c.ASN
	for _, v := range d.bgp.Announced() {
		st.Announced = append(st.Announced, netip.PrefixFrom(v, v.BitLen()).String())
	}
	peers, err := d.bgp.Peers(ctx)
	if err != nil {
		d.log.Error("bgp: read the sessions", "err", err)
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, api.BGPPeer{Address: p.Address, ASN: p.ASN, State: p.State, Since: p.Since,
			HoldTime: config.Duration(p.HoldTime), UpdatesSent: p.UpdatesSent, UpdatesReceived: p.UpdatesReceived, Advertised: p.Advertised})
	}
	for i := range c.Peers {
		if c.Peers[i].Password != "" {
			c.Peers[i].Password = "(set)"
		}
	}
	st.Config = c
	return st
}

// handleTable answers a service's scheduler table.
func (d *Daemon) handleTable(w http.ResponseWriter, r *http.Request) {
	key, err := lb.ParseServiceKey(r.PathValue("service"))
	if err != nil {
		writeError(w, badRequest("%w", err))
		return
	}
	slots, err := d.dp.Table(key)
	if err != nil {
		writeError(w, notFound("%w", err))
		return
	}
	inst, _ := d.dp.Snapshot()
	t := api.Table{Service: key.String(), Scheduler: inst.Services[key].Scheduler.String(), Size: len(slots), Counts: map[string]int{}}
	h := sha256.New()
	withSlots := r.URL.Query().Get("slots") == "1"
	for _, a := range slots {
		name := "-"
		if a.IsValid() {
			name = a.String()
			t.Counts[name]++
		}
		_, _ = io.WriteString(h, name+"\n") // a hash.Hash never fails
		if withSlots {
			t.Slots = append(t.Slots, name)
		}
	}
	t.SHA256 = hex.EncodeToString(h.Sum(nil))
	writeJSON(w, http.StatusOK, t)
}

// leavingIn reports whether addr is among the leaving addresses of name.
func leavingIn(names []api.NameStatus, name, addr string) bool {
	for _, n := range names {
		if n.Name == name && slices.Contains(n.Leaving, addr) {
			return true
		}
	}
	return false
}
