package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	stdmaps "maps"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps"
)

// routes is the local API, versioned under /v1. Services are named in the
// path as VIP:PORT/PROTO, path-escaped (the slash becomes %2F).
func (d *daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("GET /v1/services", d.handleServices)
	mux.HandleFunc("POST /v1/services", d.withBody(func(r *http.Request) error {
		s, err := api.DecodeService(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.addService(s)
	}))
	mux.HandleFunc("PUT /v1/services/{service}", d.withKey(func(r *http.Request, key maps.ServiceKey) error {
		s, err := api.DecodeService(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.setService(key, s)
	}))
	mux.HandleFunc("DELETE /v1/services/{service}", d.withKey(func(r *http.Request, key maps.ServiceKey) error {
		return d.delService(key)
	}))
	mux.HandleFunc("POST /v1/services/{service}/backends", d.withKey(func(r *http.Request, key maps.ServiceKey) error {
		b, err := api.DecodeBackend(r.Body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.addBackend(key, b)
	}))
	mux.HandleFunc("PUT /v1/services/{service}/backends/{backend}", d.withBackend(func(r *http.Request, key maps.ServiceKey, addr netip.Addr) error {
		body, err := withAddress(r.Body, addr)
		if err != nil {
			return badRequest("%w", err)
		}
		b, err := api.DecodeBackend(body)
		if err != nil {
			return badRequest("%w", err)
		}
		return d.setBackend(key, addr, b)
	}))
	mux.HandleFunc("DELETE /v1/services/{service}/backends/{backend}", d.withBackend(func(r *http.Request, key maps.ServiceKey, addr netip.Addr) error {
		return d.delBackend(key, addr)
	}))
	mux.HandleFunc("POST /v1/services/{service}/backends/{backend}/drain", d.withBackend(func(r *http.Request, key maps.ServiceKey, addr netip.Addr) error {
		return d.drainBackend(key, addr)
	}))
	mux.HandleFunc("GET /v1/flows", d.handleFlows)
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

func (d *daemon) withBody(fn func(*http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := fn(r); err != nil {
			writeError(w, err)
			return
		}
		d.writeStatus(w, http.StatusOK)
	}
}

func (d *daemon) withKey(fn func(*http.Request, maps.ServiceKey) error) http.HandlerFunc {
	return d.withBody(func(r *http.Request) error {
		key, err := api.ParseServiceKey(r.PathValue("service"))
		if err != nil {
			return badRequest("%w", err)
		}
		return fn(r, key)
	})
}

func (d *daemon) withBackend(fn func(*http.Request, maps.ServiceKey, netip.Addr) error) http.HandlerFunc {
	return d.withKey(func(r *http.Request, key maps.ServiceKey) error {
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
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), api.Error{Error: err.Error()})
}

func (d *daemon) writeStatus(w http.ResponseWriter, code int) {
	writeJSON(w, code, d.status())
}

func (d *daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	d.writeStatus(w, http.StatusOK)
}

func (d *daemon) handleServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.status().Services)
}

// status combines the desired state, what the data plane holds and the
// counters.
func (d *daemon) status() api.Status {
	d.mu.Lock()
	desired := d.desired
	allDown := stdmaps.Clone(d.health.allDown)
	d.mu.Unlock()
	st := api.Status{Interface: d.iface, XDPMode: d.xdpMode, Version: version}
	stats := d.bal.Stats()
	for _, s := range desired {
		key, err := s.Key()
		if err != nil {
			continue
		}
		ss := api.ServiceStatus{Service: key.String(), Scheduler: s.Scheduler, Persistence: s.Persistence, Forward: s.Forward, Health: s.Health, AllDown: allDown[key]}
		inst, ok := d.bal.Service(key)
		if ok {
			if c, err := stats.Service(inst.ID); err == nil {
				ss.Packets, ss.Bytes, ss.NewFlows, ss.DropNoBackend = c.Packets, c.Bytes, c.NewFlows, c.DropNoBackend
			}
		}
		for _, b := range s.Backends {
			addr, _ := b.Addr()
			bs := api.BackendStatus{Address: addr.String(), Weight: weightOf(b)}
			var ib loader.BackendStatus
			found := false
			for _, x := range inst.Backends {
				if x.Addr == addr {
					ib, found = x, true
				}
			}
			if found {
				bs.Usable, bs.InTable = ib.Usable, ib.InTable
				if ib.MAC != nil {
					bs.MAC = ib.MAC.String()
				}
				if c, err := stats.Backend(ib.ID); err == nil {
					bs.Packets, bs.Bytes, bs.NewFlows = c.Packets, c.Bytes, c.NewFlows
				}
				if n, err := d.bal.Active().Get(ib.ID); err == nil && n > 0 {
					bs.ActiveFlows = uint64(n)
				}
			}
			d.describeBackend(&bs, key, addr, s.Health)
			ss.Backends = append(ss.Backends, bs)
		}
		st.Services = append(st.Services, ss)
	}
	if n, err := d.bal.Conntrack().Count(); err == nil {
		st.Flows = n
	}
	if t, err := d.bal.Timeouts(); err == nil {
		st.Timeouts = api.Conntrack{TCPTimeout: api.Duration(t.TCP), TCPFinTimeout: api.Duration(t.TCPFin), UDPTimeout: api.Duration(t.UDP)}
	}
	return st
}

// describeBackend fills in a backend's state, the reason for it, its
// latest check and the time of its last health transition.
func (d *daemon) describeBackend(bs *api.BackendStatus, key maps.ServiceKey, addr netip.Addr, hc *api.Health) {
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
	case bs.MAC == "":
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

func (d *daemon) handleFlows(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			writeError(w, badRequest("limit %q: want a number from 1 to 1000000", v))
			return
		}
		limit = n
	}
	backends := map[uint32]string{}
	for _, s := range d.bal.Services() {
		for _, b := range s.Backends {
			backends[b.ID] = b.Addr.String()
		}
	}
	now := monotonicNow()
	flows := []api.Flow{}
	err := d.bal.Conntrack().Iterate(func(k maps.FlowKey, f maps.Flow) bool {
		flows = append(flows, api.Flow{
			Protocol: k.Proto.String(), Client: k.Src.String(), VIP: k.Dst.String(),
			Backend:     backends[f.BackendID],
			IdleSeconds: time.Duration(now - f.LastSeen).Seconds(),
		})
		return len(flows) < limit
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, flows)
}
