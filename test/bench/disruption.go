package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/xlb-lb/xlb/bpf"
	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
)

// Disruption is section 4: how many existing flows change backend when
// the backend set changes, measured through the real data plane
// (BPF_PROG_TEST_RUN, one packet per flow).
type Disruption struct {
	Flows int              `json:"flows"`
	Cases []DisruptionCase `json:"cases"`
}

// DisruptionCase is one change of the backend set.
type DisruptionCase struct {
	Change   string `json:"change"`
	Backends int    `json:"backends_before"`
	// Ideal is the least fraction any scheme must move: the removed
	// backend's share (1/N), or the new backend's (1/(N+1)).
	Ideal float64 `json:"ideal"`
	// OnRemoved is the fraction of flows that were on the removed backend.
	OnRemoved float64 `json:"on_removed_backend"`
	// WithConntrack is the fraction that moved with the connection table
	// in place; MovedOthers counts moved flows that were not on the
	// removed backend (the target: 0).
	WithConntrack float64 `json:"moved_with_conntrack"`
	MovedOthers   int     `json:"moved_not_on_removed_with_conntrack"`
	// WithoutConntrack is the fraction that moved with an empty connection
	// table (Maglev alone).
	WithoutConntrack float64 `json:"moved_without_conntrack"`
}

func measureDisruption(o options) (_ *Disruption, err error) {
	flows, sizes := 20000, []int{10, 100}
	if o.quick {
		flows, sizes = 5000, []int{10}
	}
	bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 1024, ConntrackSize: 1 << 17})
	if err != nil {
		return nil, fmt.Errorf("load xlb: %w", err)
	}
	defer func() { err = errors.Join(err, bal.Close()) }()
	// The flow state: a flow's first frame (these are mid-stream ACKs) is
	// half-open, its second promotes it to the connection table; both are
	// emptied, or a case would start with the previous case's flows.
	ct, err := progMap(bal.Program(), bpf.MapConntrack)
	if err != nil {
		return nil, err
	}
	defer ct.Close()
	ho, err := progMap(bal.Program(), bpf.MapHalfOpen)
	if err != nil {
		return nil, err
	}
	defer ho.Close()
	clearState := func() error { return errors.Join(clearMap(ct), clearMap(ho)) }

	key := lb.ServiceKey{VIP: netip.MustParseAddr("198.18.1.1"), Port: 80, Proto: lb.TCP}
	frames := make([][]byte, flows)
	for i := range frames {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(10000+i%50000))
		frames[i] = frame.MustBuild(frame.Spec{SrcMAC: ppClientMAC, DstMAC: ppLBMAC, Src: src,
			Dst: netip.AddrPortFrom(key.VIP, key.Port)})
	}
	backendsN := func(n int) []lb.Backend {
		out := make([]lb.Backend, n)
		for i := range out {
			out[i] = lb.Backend{Addr: netip.AddrFrom4([4]byte{198, 18, byte(2 + i/200), byte(1 + i%200)}),
				MAC: net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)}, Weight: 1}
		}
		return out
	}
	// send passes every flow's packet and returns the index of the backend
	// (by MAC) each went to.
	send := func() ([]int, error) {
		out := make([]int, flows)
		buf := make([]byte, 256)
		for i, fr := range frames {
			opts := &ebpf.RunOptions{Data: fr, DataOut: buf}
			ret, err := bal.Program().Run(opts)
			if err != nil {
				return nil, err
			}
			if ret != xdpTX {
				return nil, fmt.Errorf("flow %d: %s, want XDP_TX", i, verdictName(ret))
			}
			dst := opts.DataOut[:6]
			if dst[0] != 0x02 || dst[1] != 0xbe {
				return nil, fmt.Errorf("flow %d: sent to MAC %s, not a backend's", i, net.HardwareAddr(dst))
			}
			out[i] = int(dst[4])<<8 | int(dst[5])
		}
		return out, nil
	}
	set := func(bes []lb.Backend) error {
		return bal.SetService(lb.Service{Key: key, Backends: bes})
	}
	d := &Disruption{Flows: flows}
	for _, n := range sizes {
		for _, change := range []string{"remove", "add"} {
			if err := clearState(); err != nil {
				return nil, err
			}
			all := backendsN(n + 1)
			if err := set(all[:n]); err != nil {
				return nil, err
			}
			base, err := send()
			if err != nil {
				return nil, err
			}
			c := DisruptionCase{Backends: n}
			removed := -1
			if change == "remove" {
				removed = n / 2
				c.Change = fmt.Sprintf("remove 1 of %d", n)
				c.Ideal = 1 / float64(n)
				next := append(append([]lb.Backend{}, all[:removed]...), all[removed+1:n]...)
				if err := set(next); err != nil {
					return nil, err
				}
			} else {
				c.Change = fmt.Sprintf("add 1 to %d", n)
				c.Ideal = 1 / float64(n+1)
				if err := set(all); err != nil {
					return nil, err
				}
			}
			withCT, err := send()
			if err != nil {
				return nil, err
			}
			if err := clearState(); err != nil {
				return nil, err
			}
			noCT, err := send()
			if err != nil {
				return nil, err
			}
			var onRemoved, moved, others, movedNo int
			for i := range base {
				if base[i] == removed {
					onRemoved++
				}
				if withCT[i] != base[i] {
					moved++
					if base[i] != removed {
						others++
					}
				}
				if noCT[i] != base[i] {
					movedNo++
				}
			}
			c.OnRemoved = float64(onRemoved) / float64(flows)
			c.WithConntrack = float64(moved) / float64(flows)
			c.MovedOthers = others
			c.WithoutConntrack = float64(movedNo) / float64(flows)
			if change == "remove" && moved != onRemoved+others {
				return nil, fmt.Errorf("%s: %d flows moved, %d were on the removed backend, %d others: inconsistent", c.Change, moved, onRemoved, others)
			}
			d.Cases = append(d.Cases, c)
		}
	}
	return d, nil
}

// progMap finds the map called name of a loaded xlb program.
func progMap(prog *ebpf.Program, name string) (*ebpf.Map, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, errors.New("program info lists no map ids")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, err
		}
		mi, err := m.Info()
		if err == nil && mi.Name == name {
			return m, nil
		}
		m.Close()
	}
	return nil, fmt.Errorf("xlb program has no %s map", name)
}

// clearMap deletes every entry of a hash map.
func clearMap(m *ebpf.Map) error {
	var keys [][]byte
	k := make([]byte, m.KeySize())
	it := m.Iterate()
	v := make([]byte, m.ValueSize())
	for it.Next(&k, &v) {
		keys = append(keys, bytes.Clone(k))
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m, err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return nil
}

// Markdown renders section 4.
func (d *Disruption) Markdown() string {
	var b strings.Builder
	b.WriteString("### 4. Disruption (flows that change backend)\n\n")
	fmt.Fprintf(&b, "%d flows through the real data plane (one BPF_PROG_TEST_RUN packet each), before and after the change; \"without\" empties the connection and half-open tables first (Maglev alone).\n\n", d.Flows)
	var rows [][]string
	for _, c := range d.Cases {
		rows = append(rows, []string{c.Change, pct(c.Ideal, 2), pct(c.WithConntrack, 2), fmt.Sprint(c.MovedOthers), pct(c.WithoutConntrack, 2), pct(c.OnRemoved, 2)})
	}
	b.WriteString(mdTable([]string{"change", "ideal (1/N)", "moved, with connection table", "of which not on the removed backend", "moved, without", "flows on removed backend"}, rows))
	b.WriteString("\n")
	return b.String()
}

func (r *Report) disruptionTarget() Target {
	t := Target{Name: "disruption with connection table", Want: "only the removed backend's flows move", Status: "not measured"}
	if r.Disruption == nil || len(r.Disruption.Cases) == 0 {
		return t
	}
	met := true
	var got []string
	for _, c := range r.Disruption.Cases {
		bad := c.MovedOthers
		if strings.HasPrefix(c.Change, "add") {
			bad = int(c.WithConntrack*float64(r.Disruption.Flows) + 0.5)
		}
		if bad != 0 {
			met = false
		}
		got = append(got, fmt.Sprintf("%s: %d other flows moved", c.Change, bad))
	}
	return target(t.Name, t.Want, true, strings.Join(got, "; "), met)
}
