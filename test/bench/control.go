package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/maps/table"
)

// Control is section 3: control-plane timings and memory.
type Control struct {
	Maglev        []MaglevTiming `json:"maglev"`
	BackendAdd    *AddTiming     `json:"xlbctl_backend_add,omitempty"`
	HealthRemoval *HealthTiming  `json:"health_removal,omitempty"`
	Memory        *Memory        `json:"xlbd_memory,omitempty"`
	// NotMeasured says why a figure is missing.
	NotMeasured map[string]string `json:"not_measured,omitempty"`
}

// MaglevTiming is building and installing one service's table.
type MaglevTiming struct {
	Backends int    `json:"backends"`
	Size     uint32 `json:"table_size"`
	// BuildMs is table.Maglev alone; InstallMs is Balancer.SetService
	// for a new service: validation, ids, build, backend entries, a fresh
	// inner map filled and swapped in.
	BuildMs   Series `json:"build_ms"`
	InstallMs Series `json:"build_and_install_ms"`
}

func measureMaglev(o options) ([]MaglevTiming, error) {
	reps := 5
	if o.quick {
		reps = 3
	}
	var out []MaglevTiming
	for _, size := range []uint32{lb.TableSize.Default, 655373} {
		if !lb.IsPrime(size) {
			return nil, fmt.Errorf("table size %d is not prime", size)
		}
		bal, err := loader.Open(loader.Options{TableSize: size, MaxServices: 64, MaxBackends: 1 << 16, ConntrackSize: 1024})
		if err != nil {
			return nil, fmt.Errorf("load xlb with table size %d: %w", size, err)
		}
		for _, n := range []int{10, 100, 1000, 4096} {
			bes := make([]lb.Backend, n)
			in := make([]table.Backend, n)
			for i := range bes {
				a := netip.AddrFrom4([4]byte{198, 18, byte(8 + i/250), byte(1 + i%250)})
				bes[i] = lb.Backend{Addr: a, MAC: net.HardwareAddr{2, 0xbe, 0, 0, byte(i >> 8), byte(i)}, Weight: 1}
				in[i] = table.Backend{ID: uint32(i + 1), Key: a.String(), Weight: 1}
			}
			mt := MaglevTiming{Backends: n, Size: size}
			var build, install []float64
			for r := 0; r < reps; r++ {
				t0 := time.Now()
				tbl, err := table.Maglev(in, size)
				build = append(build, ms(time.Since(t0)))
				if err != nil {
					return nil, errors.Join(err, bal.Close())
				}
				if len(tbl) != int(size) {
					return nil, errors.Join(fmt.Errorf("maglev table of %d slots, want %d", len(tbl), size), bal.Close())
				}
				key := lb.ServiceKey{VIP: netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + r)}), Port: uint16(n), Proto: lb.TCP}
				t0 = time.Now()
				err = bal.SetService(lb.Service{Key: key, Backends: bes})
				install = append(install, ms(time.Since(t0)))
				if err != nil {
					return nil, errors.Join(fmt.Errorf("install %d backends, table %d: %w", n, size, err), bal.Close())
				}
				// The table really is in the data plane, every slot used.
				st, _ := bal.Service(key)
				got, err := bal.Tables().Get(st.ID)
				if err != nil {
					return nil, errors.Join(err, bal.Close())
				}
				for i, id := range got {
					if id == 0 {
						return nil, errors.Join(fmt.Errorf("installed table has empty slot %d", i), bal.Close())
					}
				}
				if err := bal.DeleteService(key); err != nil {
					return nil, errors.Join(err, bal.Close())
				}
			}
			mt.BuildMs, mt.InstallMs = NewSeries(build), NewSeries(install)
			out = append(out, mt)
		}
		if err := bal.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// Markdown renders section 3.
func (c *Control) Markdown() string {
	var b strings.Builder
	b.WriteString("### 3. Control plane\n\n")
	var rows [][]string
	for _, m := range c.Maglev {
		rows = append(rows, []string{fmt.Sprint(m.Backends), fmt.Sprint(m.Size), f(m.BuildMs.Median, 2), f(m.InstallMs.Median, 2), pct(m.InstallMs.Spread, 0)})
	}
	b.WriteString(mdTable([]string{"backends", "table size M", "build ms (median)", "build + install ms (median)", "spread"}, rows))
	b.WriteString("\nInstall = Balancer.SetService of a new service: validate, allocate ids, build the table, write the backend entries, fill a fresh inner map (one batch update) and swap it in.\n\n")
	rows = nil
	if a := c.BackendAdd; a != nil {
		rows = append(rows, []string{"`xlbctl backend add` until the command returns", f(a.CommandMs.Median, 1) + " ms", pct(a.CommandMs.Spread, 0)},
			[]string{"`xlbctl backend add` until the backend is in the data plane's Maglev table", f(a.TableMs.Median, 1) + " ms", pct(a.TableMs.Spread, 0)},
			[]string{"`xlbctl backend add` until a new connection reaches the new backend", f(a.TrafficMs.Median, 1) + " ms", pct(a.TrafficMs.Spread, 0)})
	}
	if h := c.HealthRemoval; h != nil {
		rows = append(rows,
			[]string{fmt.Sprintf("backend's server stopped until it is out of the Maglev table (xlbd, tcp check every %s, timeout %s, fall %d)", h.Interval, h.Timeout, h.Fall), f(h.RemovalMs.Median, 0) + " ms", pct(h.RemovalMs.Spread, 0)},
			[]string{fmt.Sprintf("server restarted until the backend is back in the table (rise %d)", h.Rise), f(h.RecoveryMs.Median, 0) + " ms", pct(h.RecoveryMs.Spread, 0)})
	}
	if m := c.Memory; m != nil {
		rows = append(rows,
			[]string{fmt.Sprintf("xlbd RSS with %d services x %d backends (VmRSS / VmHWM)", m.Services, m.BackendsPerService), fmt.Sprintf("%.0f MiB / %.0f MiB", m.VmRSSMiB, m.VmHWMMiB), ""},
			[]string{"BPF maps of that data plane (memlock, incl. inner Maglev tables)", fmt.Sprintf("%.0f MiB", m.BPFMapMiB), ""},
			[]string{"xlbd start with that config until every service is in the data plane", startup(m), ""})
	}
	for k, v := range c.NotMeasured {
		rows = append(rows, []string{k, v, ""})
	}
	if len(rows) > 0 {
		b.WriteString(mdTable([]string{"measurement", "median", "spread"}, rows))
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Report) maglevTarget() Target {
	t := target("Maglev table for 1000 backends built and installed", "< 100 ms", false, "", false)
	if r.Control == nil {
		return t
	}
	for _, m := range r.Control.Maglev {
		if m.Backends == 1000 && m.Size == lb.TableSize.Default {
			return target(t.Name, t.Want+fmt.Sprintf(" (M=%d)", m.Size), true, f(m.InstallMs.Median, 1)+" ms", m.InstallMs.Median < 100)
		}
	}
	return t
}

func startup(m *Memory) string {
	if m.NotInstalled != "" {
		return m.NotInstalled
	}
	return f(m.StartupMs, 0) + " ms"
}
