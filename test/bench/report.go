package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Report is every figure of one run; the JSON file is this struct.
type Report struct {
	Date    string  `json:"date"`
	Command string  `json:"command"`
	Quick   bool    `json:"quick"`
	Elapsed string  `json:"elapsed"`
	Machine Machine `json:"machine"`

	PerPacket  *PerPacket  `json:"per_packet,omitempty"`
	Throughput *Throughput `json:"throughput,omitempty"`
	Control    *Control    `json:"control_plane,omitempty"`
	Disruption *Disruption `json:"disruption,omitempty"`
	Proxy      *Proxy      `json:"proxy,omitempty"`

	Targets  []Target `json:"targets"`
	Failures []string `json:"failures,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	LoadAvg   string `json:"loadavg_at_start"`
	MemTotal  string `json:"mem_total"`
	Hostname  string `json:"hostname,omitempty"`
	SharedCPU string `json:"note,omitempty"`
}

func describeMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close() // read only: nothing to lose
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// Target is one goal of an issue, printed as met or not met. Targets are
// not assertions: the bench does not fail on them.
type Target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // "met", "not met", "not measured"
	// Issue is the issue that set the target (15: "line rate"; 0: an
	// earlier one, still checked).
	Issue int `json:"issue,omitempty"`
}

func target(name, want string, measured bool, got string, met bool) Target {
	t := Target{Name: name, Want: want, Got: got, Status: "not measured"}
	if measured {
		t.Status = "not met"
		if met {
			t.Status = "met"
		}
	}
	return t
}

// evaluateTargets sets r.Targets: those of issue 15 first, in the issue's
// order, then the earlier ones the bench still checks.
func (r *Report) evaluateTargets() {
	r.Targets = nil
	for _, t := range []Target{
		r.ratioTarget("established flow (TCP or UDP, IPv4 or IPv6) / MAC swap", 2.5, caseEstablished, caseUDP, caseEstablished6),
		r.ratioTarget("new flow, maglev / MAC swap", 8, caseNewFlow),
		r.ratioTarget("new flow with persistence / MAC swap", 12, r.caseNames("persistence")...),
		r.ratioTarget("non-VIP traffic / MAC swap", 1.3, caseNonVIP),
		r.throughputTarget(),
		r.startupTarget(),
		r.rssTarget(),
		r.addTarget(),
	} {
		t.Issue = 15
		r.Targets = append(r.Targets, t)
	}
	r.Targets = append(r.Targets, r.floodTarget(), r.disruptionTarget(), r.maglevTarget())
}

// caseNames lists the per-packet rows whose name contains sub.
func (r *Report) caseNames(sub string) []string {
	var out []string
	if r.PerPacket != nil {
		for _, c := range r.PerPacket.Cases {
			if strings.Contains(c.Name, sub) {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

// ratioTarget: every named per-packet row at most limit times its
// baseline. The figure is each row's ratio; the worst decides.
func (r *Report) ratioTarget(name string, limit float64, cases ...string) Target {
	want := fmt.Sprintf("≤ %gx", limit)
	byName := map[string]*PacketCase{}
	if r.PerPacket != nil {
		for i := range r.PerPacket.Cases {
			byName[r.PerPacket.Cases[i].Name] = &r.PerPacket.Cases[i]
		}
	}
	if len(cases) == 0 {
		return target(name, want, false, "", false)
	}
	var got []string
	met := true
	for _, n := range cases {
		c := byName[n]
		if c == nil {
			return target(name, want, false, "", false)
		}
		met = met && c.Ratio <= limit
		got = append(got, fmt.Sprintf("%s %.2fx", n, c.Ratio))
	}
	return target(name, want, true, strings.Join(got, "; "), met)
}

// startupTarget: xlbd's first start with 1000 services x 100 backends
// until every service is in the data plane. A quick run starts it with
// fewer services: shown, but not measured against the target.
func (r *Report) startupTarget() Target {
	const name, want = "first start with 1000 services x 100 backends until all are in the data plane", "< 3 s"
	if r.Control == nil || r.Control.Memory == nil {
		return target(name, want, false, "", false)
	}
	m := r.Control.Memory
	got := fmt.Sprintf("%s s", f(m.StartupMs/1000, 2))
	if m.NotInstalled != "" {
		got = m.NotInstalled
	}
	if m.Services != 1000 || m.BackendsPerService != 100 {
		return target(name, want, false, fmt.Sprintf("%s with %d services x %d backends (quick run)", got, m.Services, m.BackendsPerService), false)
	}
	return target(name, want, true, got, m.NotInstalled == "" && m.StartupMs < 3000)
}

// rssTarget: xlbd's resident memory with that config (VmRSS once every
// service is in; the peak, VmHWM, shown beside it).
func (r *Report) rssTarget() Target {
	const name, want = "xlbd RSS with that config", "≤ 150 MiB"
	if r.Control == nil || r.Control.Memory == nil {
		return target(name, want, false, "", false)
	}
	m := r.Control.Memory
	got := fmt.Sprintf("%.0f MiB (peak %.0f MiB)", m.VmRSSMiB, m.VmHWMMiB)
	if m.Services != 1000 || m.BackendsPerService != 100 {
		return target(name, want, false, fmt.Sprintf("%s with %d services x %d backends (quick run)", got, m.Services, m.BackendsPerService), false)
	}
	return target(name, want, true, got, m.NotInstalled == "" && m.VmRSSMiB <= 150)
}

// addTarget: `xlbctl backend add` until a new connection reaches the
// backend (median).
func (r *Report) addTarget() Target {
	const name, want = "`xlbctl backend add` until a new connection reaches the backend", "≤ 10 ms"
	if r.Control == nil || r.Control.BackendAdd == nil {
		return target(name, want, false, "", false)
	}
	a := r.Control.BackendAdd
	return target(name, want, true, fmt.Sprintf("%s ms (median of %d)", f(a.TrafficMs.Median, 1), a.Reps), a.TrafficMs.Median <= 10)
}

// floodTarget: no established connection broken by a flood of spoofed
// packets ten times the connection table.
func (r *Report) floodTarget() Target {
	t := target("established connections broken by a 10× spoofed flood, backends added mid-flood", "0", false, "", false)
	if r.PerPacket == nil || r.PerPacket.Flood == nil {
		return t
	}
	broken, all := 0, 0
	for _, row := range r.PerPacket.Flood.Rows {
		broken += row.Broken
		all += r.PerPacket.Flood.Established
	}
	return target(t.Name, t.Want, true, fmt.Sprintf("%d of %d", broken, all), broken == 0)
}

// f formats a float with d decimals; NaN as "n/a".
func f(v float64, d int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", d, v)
}

// pct formats a fraction as a percentage.
func pct(v float64, d int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f%%", d, 100*v)
}

// table renders a markdown table.
func mdTable(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(head, " | ") + " |\n")
	seps := make([]string, len(head))
	for i := range seps {
		seps[i] = "---"
	}
	b.WriteString("|" + strings.Join(seps, "|") + "|\n")
	for _, r := range rows {
		cells := make([]string, len(head))
		copy(cells, r)
		for i := range cells {
			cells[i] = strings.ReplaceAll(cells[i], "|", "\\|")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// Markdown renders the whole report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## xlb benchmark, %s\n\n", r.Date)
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, Linux %s, %s, load average at start %s. Command: `%s`. Took %s.\n",
		m.CPU, m.Cores, m.Kernel, m.Go, m.LoadAvg, r.Command, r.Elapsed)
	b.WriteString("Every ratio is against a baseline measured in the same run, alternating with xlb; spread = (max-min)/median over the repetitions.\n\n")
	if r.PerPacket != nil {
		b.WriteString(r.PerPacket.Markdown())
	}
	if r.Throughput != nil {
		b.WriteString(r.Throughput.Markdown())
	}
	if r.Control != nil {
		b.WriteString(r.Control.Markdown())
	}
	if r.Disruption != nil {
		b.WriteString(r.Disruption.Markdown())
	}
	if r.Proxy != nil {
		b.WriteString(r.Proxy.Markdown())
	}
	b.WriteString(r.targetsMarkdown())
	if len(r.Failures) > 0 {
		b.WriteString("\n### Failed sections\n\n")
		for _, s := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	return b.String()
}

// targetsMarkdown is the summary: each measure with its figure, its
// target and whether it is met, issue 15's first.
func (r *Report) targetsMarkdown() string {
	var b strings.Builder
	var now, earlier [][]string
	met, all := 0, 0
	for _, t := range r.Targets {
		row := []string{t.Name, t.Got, t.Want, t.Status}
		if t.Issue == 15 {
			now = append(now, row)
			all++
			if t.Status == "met" {
				met++
			}
		} else {
			earlier = append(earlier, row)
		}
	}
	head := []string{"measure", "figure", "target", "status"}
	fmt.Fprintf(&b, "### Targets of issue 15 (line rate): %d of %d met\n\n", met, all)
	b.WriteString(mdTable(head, now))
	if len(earlier) > 0 {
		b.WriteString("\nTargets of earlier issues, still checked:\n\n")
		b.WriteString(mdTable(head, earlier))
	}
	return b.String()
}

// Markdown renders section 1.
func (p *PerPacket) Markdown() string {
	var b strings.Builder
	b.WriteString("### 1. Per-packet cost (BPF_PROG_TEST_RUN)\n\n")
	fmt.Fprintf(&b, "Baseline: %s. %d rounds of %d iterations each (new flow: %d).\n\n", p.Baseline, p.Rounds, p.Repeat, p.NewFlowR)
	var rows [][]string
	for _, c := range p.Cases {
		rows = append(rows, []string{c.Name, f(c.Xlb.Median, 1), pct(c.Xlb.Spread, 0), f(c.Baseline.Median, 1), pct(c.Baseline.Spread, 0), f(c.Ratio, 2) + "x", c.Path})
	}
	b.WriteString(mdTable([]string{"case", "xlb ns/pkt", "spread", "baseline ns/pkt", "spread", "ratio", "path (verdict and counters checked after every run)"}, rows))
	// Rows timed through a mutator share its method: say it once, then
	// each row's raw medians.
	method := ""
	for _, c := range p.Cases {
		if c.Method == "" {
			continue
		}
		if c.Method != method {
			method = c.Method
			fmt.Fprintf(&b, "\nTimed through a mutator: %s. Raw medians (mutator->xlb, mutator->baseline):\n\n", method)
		}
		fmt.Fprintf(&b, "- %s: %s ns, %s ns\n", c.Name, f(c.FreshXlb.Median, 1), f(c.FreshBase.Median, 1))
	}
	b.WriteString("\n")
	lead := "The full tables, around each full-table row:\n\n"
	for _, c := range p.Cases {
		if t := c.Table; t != nil {
			b.WriteString(lead)
			lead = ""
			fmt.Fprintf(&b, "- %s: %s filled to %d of %d entries with other flows (batch updates); after %d inserts by the measurement it held %d, %d fillers evicted, %d measured flows in it.\n",
				c.Name, t.Map, t.Before, t.Capacity, t.Inserted, t.After, t.FillersBefore-t.FillersAfter, t.NewAfter-t.NewBefore)
		}
	}
	b.WriteString("\n")
	if len(p.Previous) > 0 {
		fmt.Fprintf(&b, "Before issue 15 and now: today's object (\"now\") against %s (\"before\"), on the same frames, alternating round by round; the new flow through fresh, its cost subtracted as above.\n\n", p.PreviousObject)
		rows = rows[:0]
		for _, c := range p.Previous {
			rows = append(rows, []string{c.Name, f(c.Xlb.Median, 1), pct(c.Xlb.Spread, 0), f(c.Baseline.Median, 1), pct(c.Baseline.Spread, 0), f(c.Ratio, 2) + "x"})
		}
		b.WriteString(mdTable([]string{"case", "now ns/pkt", "spread", "before ns/pkt", "spread", "now / before"}, rows))
		b.WriteString("\n")
	}
	if p.Flood != nil {
		b.WriteString(p.Flood.Markdown())
	}
	return b.String()
}

// WriteJSON writes the report to path, creating its directory.
func (r *Report) WriteJSON(path string) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
