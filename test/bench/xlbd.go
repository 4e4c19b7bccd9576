package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/maps"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/lab"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// AddTiming is how long `xlbctl backend add` takes to take effect.
type AddTiming struct {
	Reps      int    `json:"repetitions"`
	CommandMs Series `json:"command_ms"`
	TableMs   Series `json:"in_table_ms"`
	TrafficMs Series `json:"first_connection_ms"`
}

// HealthTiming is the time from a backend's death to its removal.
type HealthTiming struct {
	Interval string `json:"interval"`
	Timeout  string `json:"timeout"`
	Fall     int    `json:"fall"`
	Rise     int    `json:"rise"`
	Reps     int    `json:"repetitions"`
	// RemovalMs: server stopped until the backend is out of the table;
	// RecoveryMs: server restarted until it is back in.
	RemovalMs  Series `json:"removal_ms"`
	RecoveryMs Series `json:"recovery_ms"`
}

// Memory is xlbd's footprint with a large config.
type Memory struct {
	Services           int     `json:"services"`
	BackendsPerService int     `json:"backends_per_service"`
	MaglevSize         uint32  `json:"maglev_size"`
	VmRSSMiB           float64 `json:"vm_rss_mib"`
	VmHWMMiB           float64 `json:"vm_hwm_mib"`
	BPFMapMiB          float64 `json:"bpf_maps_mib"`
	// StartupMs is from starting xlbd until every service was in the
	// data plane; Installed counts those that were when memory was read.
	StartupMs    float64 `json:"startup_ms"`
	Installed    int     `json:"services_installed"`
	NotInstalled string  `json:"not_installed,omitempty"`
}

// startDaemon starts xlbd with config on the balancer's eth0; it returns
// once the API answers, or at once with noWait.
func startDaemon(topo *lab.Topology, bins *xlbdproc.Binaries, config string, noWait bool) (*xlbdproc.Daemon, error) {
	d, err := xlbdproc.New(xlbdproc.Options{Bins: bins, Lab: topo, Config: config,
		Args: []string{"--log-level", "warn"}, StartTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	if noWait {
		err = d.Launch()
	} else {
		err = d.Start(context.Background())
	}
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// stopDaemon closes d, logging what it could not clean up.
func stopDaemon(o options, d *xlbdproc.Daemon) {
	if err := d.Close(); err != nil {
		o.log.Warn("clean up after xlbd", "err", err)
	}
}

// pinned opens the daemon's pinned maps.
type pinned struct {
	services, backends, tables *ebpf.Map
}

func openPins(d *xlbdproc.Daemon) (*pinned, error) {
	p := &pinned{}
	for _, x := range []struct {
		name string
		m    **ebpf.Map
	}{{bpf.MapServices, &p.services}, {bpf.MapBackends, &p.backends}, {bpf.MapMaglevTables, &p.tables}} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(d.PinDir(), x.name), nil)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("open pinned %s: %w", x.name, err)
		}
		*x.m = m
	}
	return p, nil
}

func (p *pinned) close() {
	for _, m := range []*ebpf.Map{p.services, p.backends, p.tables} {
		if m != nil {
			m.Close()
		}
	}
}

// installed counts the services in the data plane and reports whether
// each has a table whose every slot holds a backend.
func (p *pinned) installed() (int, bool, error) {
	svcs, err := maps.NewServices(p.services).All()
	if err != nil {
		return 0, false, err
	}
	full := true
	for _, svc := range svcs {
		var id ebpf.MapID
		if err := p.tables.Lookup(svc.ID, &id); err != nil {
			full = false
			break
		}
	}
	if full && len(svcs) > 0 {
		// Spot check: the highest service id's table is filled.
		var top uint32
		for _, svc := range svcs {
			top = max(top, svc.ID)
		}
		t, err := maps.NewSchedTables(p.tables, &ebpf.MapSpec{}).Get(top)
		if err != nil {
			return len(svcs), false, nil
		}
		for _, v := range t {
			if v == 0 {
				full = false
				break
			}
		}
	}
	return len(svcs), full, nil
}

// tableID returns the map id of service key's installed Maglev table (it
// changes with every swap).
func (p *pinned) tableID(key lb.ServiceKey) (ebpf.MapID, uint32, error) {
	svcs, err := maps.NewServices(p.services).All()
	if err != nil {
		return 0, 0, err
	}
	svc, ok := svcs[key]
	if !ok {
		return 0, 0, fmt.Errorf("service %s not installed", key)
	}
	var id ebpf.MapID
	if err := p.tables.Lookup(svc.ID, &id); err != nil {
		return 0, 0, err
	}
	return id, svc.ID, nil
}

// tableHas reports whether backend addr of service key is in the service's
// installed Maglev table.
func (p *pinned) tableHas(key lb.ServiceKey, addr netip.Addr) (bool, error) {
	_, svcID, err := p.tableID(key)
	if err != nil {
		return false, err
	}
	bes, err := maps.NewBackends(p.backends).All()
	if err != nil {
		return false, err
	}
	id := uint32(0)
	for i, be := range bes {
		if be.Addr == addr && be.ServiceID == svcID {
			id = i
		}
	}
	if id == 0 {
		return false, nil
	}
	table, err := maps.NewSchedTables(p.tables, &ebpf.MapSpec{}).Get(svcID)
	if err != nil {
		return false, err
	}
	for _, v := range table {
		if v == id {
			return true, nil
		}
	}
	return false, nil
}

// waitTable polls until service key's table was swapped away from old and
// the new one has (want) or lacks (!want) addr. It returns when that was
// first seen.
func (p *pinned) waitTable(key lb.ServiceKey, old ebpf.MapID, addr netip.Addr, want bool, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	seen := old
	for time.Now().Before(deadline) {
		id, _, err := p.tableID(key)
		if err != nil {
			return time.Time{}, err
		}
		if id != seen {
			at := time.Now()
			seen = id
			has, err := p.tableHas(key, addr)
			if err != nil {
				return time.Time{}, err
			}
			if has == want {
				return at, nil
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Time{}, fmt.Errorf("service %s: backend %s not %s the Maglev table after %v", key, addr, map[bool]string{true: "in", false: "out of"}[want], limit)
}

// measureBackendAdd times `xlbctl backend add` against a running xlbd.
func measureBackendAdd(o options, bins *xlbdproc.Binaries) (_ *AddTiming, err error) {
	reps := 5
	if o.quick {
		reps = 3
	}
	topo, err := lab.New(lab.Config{Backends: 3, ClientAddrs: -1})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	const port = 8080
	for _, h := range topo.Backends {
		if _, err := h.Serve(h.Name, port); err != nil {
			return nil, err
		}
	}
	be1, be2, be3 := topo.Backends[0], topo.Backends[1], topo.Backends[2]
	cfg := fmt.Sprintf("services:\n  - vip: %s\n    port: %d\n    backends:\n      - address: %s\n      - address: %s\n", topo.VIP4, port, be1.Addr4, be2.Addr4)
	d, err := startDaemon(topo, bins, cfg, false)
	if err != nil {
		return nil, err
	}
	defer stopDaemon(o, d)
	pins, err := openPins(d)
	if err != nil {
		return nil, err
	}
	defer pins.close()
	key := lb.ServiceKey{VIP: topo.VIP4, Port: port, Proto: lb.TCP}
	svc := key.String()
	vip := netip.AddrPortFrom(topo.VIP4, port)

	// The service answers through xlb before the clock starts.
	if r, err := topo.Client.Query("tcp", netip.AddrPort{}, vip, 3*time.Second); err != nil {
		return nil, fmt.Errorf("service does not answer before the change: %w", err)
	} else if r.Server == be3.Name {
		return nil, fmt.Errorf("%s answered before it was added", be3.Name)
	}

	var cmdMs, tableMs, trafficMs []float64
	for r := 0; r < reps; r++ {
		// Connections in a loop from fresh ports: the first one that
		// reaches be3 marks the moment traffic flows to it.
		var stop atomic.Bool
		var first atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					rep, err := topo.Client.Query("tcp", netip.AddrPort{}, vip, time.Second)
					if err == nil && rep.Server == be3.Name {
						first.CompareAndSwap(0, int64(time.Since(t0)))
						return
					}
				}
			}()
		}
		halt := func() { stop.Store(true); wg.Wait() }
		old, _, err := pins.tableID(key)
		if err != nil {
			halt()
			return nil, err
		}
		// The table is watched from before the command starts.
		type seen struct {
			at  time.Time
			err error
		}
		inTable := make(chan seen, 1)
		go func() {
			at, err := pins.waitTable(key, old, be3.Addr4, true, 10*time.Second)
			inTable <- seen{at, err}
		}()
		_, err = d.Ctl("backend", "add", svc, be3.Addr4.String())
		cmdMs = append(cmdMs, ms(time.Since(t0)))
		in := <-inTable
		if err == nil {
			err = in.err
		}
		if err != nil {
			halt()
			return nil, err
		}
		tableMs = append(tableMs, ms(in.at.Sub(t0)))
		deadline := time.Now().Add(10 * time.Second)
		for first.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		halt()
		if first.Load() == 0 {
			return nil, errors.New("no connection reached the added backend within 10s")
		}
		trafficMs = append(trafficMs, ms(time.Duration(first.Load())))
		old, _, err = pins.tableID(key)
		if err != nil {
			return nil, err
		}
		if _, err := d.Ctl("backend", "del", svc, be3.Addr4.String()); err != nil {
			return nil, err
		}
		if _, err := pins.waitTable(key, old, be3.Addr4, false, 10*time.Second); err != nil {
			return nil, err
		}
	}
	return &AddTiming{Reps: reps, CommandMs: NewSeries(cmdMs), TableMs: NewSeries(tableMs), TrafficMs: NewSeries(trafficMs)}, nil
}

// measureMemory starts xlbd with services x perService backends and
// reads its memory and its BPF maps' memory.
func measureMemory(o options, bins *xlbdproc.Binaries) (_ *Memory, err error) {
	services, perService := 1000, 100
	if o.quick {
		services = 100
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_MEM_SERVICES")); err == nil && v > 0 && v <= 1000 {
		services = v // for looking into how xlbd scales
	}
	topo, err := lab.New(lab.Config{Backends: -1, ClientAddrs: -1})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	// The same 100 backends behind every service, as on an edge host;
	// static neighbour entries give them MACs, so every backend is usable
	// and in its tables.
	backends := make([]netip.Addr, perService)
	err = topo.Balancer.NS.Do(func() error {
		for i := range backends {
			backends[i] = netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
			n := &netlink.Neigh{LinkIndex: topo.Balancer.Ifindex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
				IP: net.IP(backends[i].AsSlice()), HardwareAddr: net.HardwareAddr{2, 0xbe, 0, 0, 0, byte(i)}}
			if err := netlink.NeighSet(n); err != nil {
				return fmt.Errorf("neighbour %s: %w", backends[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	// One slot is reserved: MaxBackends-1 pairs fit.
	fmt.Fprintf(&b, "limits:\n  max_services: %d\n  max_backends: %d\nservices:\n", 1024, 131072)
	for s := 0; s < services; s++ {
		fmt.Fprintf(&b, "  - vip: 198.18.%d.%d\n    port: 80\n    backends:\n", 4+s/250, 1+s%250)
		for _, a := range backends {
			fmt.Fprintf(&b, "      - address: %s\n", a)
		}
	}
	d, err := startDaemon(topo, bins, b.String(), true)
	if err != nil {
		return nil, err
	}
	defer stopDaemon(o, d)
	// Up = every service in the data plane with a full table. Read from
	// the pins: the API waits while xlbd holds its lock for a long sync.
	var pins *pinned
	for pinWait := time.Now().Add(30 * time.Second); ; {
		if pins, err = openPins(d); err == nil {
			break
		}
		if time.Now().After(pinWait) {
			return nil, fmt.Errorf("xlbd pinned no maps within 30s: %w (log: %s)", err, strings.TrimSpace(d.Log()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer pins.close()
	limit := 300 * time.Second
	if o.quick {
		limit = 60 * time.Second
	}
	m := &Memory{Services: services, BackendsPerService: perService, MaglevSize: lb.TableSize.Default}
	deadline := time.Now().Add(limit)
	for {
		n, full, err := pins.installed()
		if err != nil {
			return nil, err
		}
		m.Installed = n
		if n == services && full {
			m.StartupMs = ms(time.Since(d.Started()))
			break
		}
		if time.Now().After(deadline) {
			m.NotInstalled = fmt.Sprintf("after %v only %d of %d services were in the data plane with a full table; memory read at that point", limit, n, services)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	o.log.Info("xlbd with the large config", "installed_after", time.Duration(m.StartupMs*1e6), "installed", m.Installed)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			m.VmRSSMiB = kb / 1024
		case "VmHWM":
			m.VmHWMMiB = kb / 1024
		case "Name":
			if strings.TrimSpace(v) != "xlbd" {
				return nil, fmt.Errorf("pid %d is %q, not xlbd", d.PID(), strings.TrimSpace(v))
			}
		}
	}
	mem, err := pinnedMapMemory(d.PinDir())
	if err != nil {
		return nil, err
	}
	m.BPFMapMiB = float64(mem) / (1 << 20)
	return m, nil
}

// pinnedMapMemory sums the memlock of every map pinned in dir and of
// every inner map of the maglev_tables map-in-map.
func pinnedMapMemory(dir string) (uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total uint64
	add := func(m *ebpf.Map) error {
		info, err := m.Info()
		if err != nil {
			return err
		}
		ml, ok := info.Memlock()
		if !ok {
			return fmt.Errorf("map %s: kernel reports no memlock", m)
		}
		total += ml
		return nil
	}
	for _, e := range ents {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue // the pinned link
		}
		if err := add(m); err != nil {
			m.Close()
			return 0, err
		}
		if e.Name() == bpf.MapMaglevTables {
			var k uint32
			var id ebpf.MapID
			it := m.Iterate()
			for it.Next(&k, &id) {
				inner, err := ebpf.NewMapFromID(id)
				if err != nil {
					m.Close()
					return 0, err
				}
				err = add(inner)
				inner.Close()
				if err != nil {
					m.Close()
					return 0, err
				}
			}
			if err := it.Err(); err != nil {
				m.Close()
				return 0, err
			}
		}
		m.Close()
	}
	return total, nil
}

// measureHealthRemoval kills a backend's server under a running xlbd with
// a tcp health check and times how long until the backend is out of the
// data plane's Maglev table (and, after a restart, back in).
func measureHealthRemoval(o options, bins *xlbdproc.Binaries) (_ *HealthTiming, err error) {
	reps := 5
	if o.quick {
		reps = 3
	}
	h := &HealthTiming{Interval: "200ms", Timeout: "100ms", Fall: 3, Rise: 2, Reps: reps}
	topo, err := lab.New(lab.Config{Backends: 3, ClientAddrs: -1})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	const port = 8080
	servers := map[string]*lab.Server{}
	for _, b := range topo.Backends {
		s, err := b.Serve(b.Name, port)
		if err != nil {
			return nil, err
		}
		servers[b.Name] = s
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "services:\n  - vip: %s\n    port: %d\n    health:\n      type: tcp\n      interval: %s\n      timeout: %s\n      rise: %d\n      fall: %d\n    backends:\n",
		topo.VIP4, port, h.Interval, h.Timeout, h.Rise, h.Fall)
	for _, b := range topo.Backends {
		fmt.Fprintf(&cfg, "      - address: %s\n", b.Addr4)
	}
	d, err := startDaemon(topo, bins, cfg.String(), false)
	if err != nil {
		return nil, err
	}
	defer stopDaemon(o, d)
	pins, err := openPins(d)
	if err != nil {
		return nil, err
	}
	defer pins.close()
	key := lb.ServiceKey{VIP: topo.VIP4, Port: port, Proto: lb.TCP}
	victim := topo.Backends[1]
	waitIn := func(want bool, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			in, err := pins.tableHas(key, victim.Addr4)
			if err == nil && in == want {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return fmt.Errorf("backend %s not %s the table after %v", victim.Addr4, map[bool]string{true: "in", false: "out of"}[want], limit)
	}
	// Every backend passes its checks first (new backends start down).
	if err := waitIn(true, 15*time.Second); err != nil {
		return nil, err
	}
	var removal, recovery []float64
	for r := 0; r < reps; r++ {
		old, _, err := pins.tableID(key)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		servers[victim.Name].Stop() // connects are refused from now on
		at, err := pins.waitTable(key, old, victim.Addr4, false, 30*time.Second)
		if err != nil {
			return nil, err
		}
		removal = append(removal, ms(at.Sub(t0)))
		old, _, err = pins.tableID(key)
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		s, err := victim.Serve(victim.Name, port)
		if err != nil {
			return nil, err
		}
		servers[victim.Name] = s
		at, err = pins.waitTable(key, old, victim.Addr4, true, 30*time.Second)
		if err != nil {
			return nil, err
		}
		recovery = append(recovery, ms(at.Sub(t1)))
	}
	h.RemovalMs, h.RecoveryMs = NewSeries(removal), NewSeries(recovery)
	return h, nil
}
