package main

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartPath is where the chart goes: BENCH_CHART, or bench.png beside
// the JSON file.
func chartPath(jsonPath string) string {
	return envOr("BENCH_CHART", filepath.Join(filepath.Dir(jsonPath), "bench.png"))
}

// WriteChart draws the per-packet cost of every case beside its
// baseline (grouped horizontal bars) and the veth throughput of xlb
// (dsr-l2, ipip) and the baseline for each number of generator CPUs
// (grouped bars) into one PNG at path. A section the run did not measure
// is left out; with neither, there is nothing to draw (an error).
func (r *Report) WriteChart(path string) error {
	var panels []*plot.Plot
	var weights []float64
	if r.PerPacket != nil && len(r.PerPacket.Cases) > 0 {
		p, err := perPacketPlot(r.PerPacket)
		if err != nil {
			return err
		}
		panels, weights = append(panels, p), append(weights, float64(len(r.PerPacket.Cases))+4)
	}
	if r.Throughput != nil && len(r.Throughput.Runs) > 0 {
		p, err := throughputPlot(r.Throughput)
		if err != nil {
			return err
		}
		panels, weights = append(panels, p), append(weights, 10)
	}
	if len(panels) == 0 {
		return errors.New("chart: neither per-packet nor throughput figures in this run")
	}
	width := 11 * vg.Inch
	var total float64
	for _, w := range weights {
		total += w
	}
	height := vg.Length(total) * 0.45 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))
	dc := draw.New(img)
	// Panels top to bottom, each a slice of the height by its weight.
	top := vg.Length(0)
	for i, p := range panels {
		h := height * vg.Length(weights[i]/total)
		c := draw.Crop(dc, 0.1*vg.Inch, -0.2*vg.Inch, height-top-h+0.1*vg.Inch, -top-0.1*vg.Inch)
		p.Draw(c)
		top += h
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return errors.Join(fmt.Errorf("chart: write %s: %w", path, err), f.Close())
	}
	return f.Close()
}

// perPacketPlot: one group of two horizontal bars per case, xlb and the
// baseline, ns per packet (medians).
func perPacketPlot(pp *PerPacket) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Per-packet cost (BPF_PROG_TEST_RUN, median ns per packet)"
	p.X.Label.Text = "ns per packet"
	n := len(pp.Cases)
	xs, bs := make(plotter.Values, n), make(plotter.Values, n)
	names := make([]string, n)
	// Top to bottom in the report's order: the nominal axis counts up.
	for i, c := range pp.Cases {
		j := n - 1 - i
		xs[j], bs[j], names[j] = c.Xlb.Median, c.Baseline.Median, c.Name
	}
	w := vg.Points(7)
	bx, err := plotter.NewBarChart(xs, w)
	if err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	bb, err := plotter.NewBarChart(bs, w)
	if err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	for i, b := range []*plotter.BarChart{bx, bb} {
		b.Horizontal = true
		b.LineStyle.Width = 0
		b.Color = barColor(i)
	}
	bx.Offset, bb.Offset = w/2, -w/2
	p.Add(bx, bb, plotter.NewGrid())
	p.Legend.Add("xlb", bx)
	p.Legend.Add("baseline (MAC swap)", bb)
	p.Legend.Top = true
	p.NominalY(names...)
	// Room right of the longest bar, and for the legend above the top one.
	p.X.Min, p.X.Max = 0, 1.1*maxOf(xs, bs)
	p.Y.Max = float64(n) + 0.8
	return p, nil
}

// throughputPlot: one group per number of generator CPUs, bars for xlb
// dsr-l2, xlb ipip and the baseline, received Mpps (medians).
func throughputPlot(t *Throughput) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("veth throughput, %d-byte UDP (median received Mpps)", t.FrameLen)
	p.Y.Label.Text = "Mpps"
	var groups []string
	vals := [3]plotter.Values{}
	for _, r := range t.Runs {
		groups = append(groups, fmt.Sprintf("%d generator CPU(s)", len(r.GenCPUs)))
		vals[0] = append(vals[0], r.Xlb.RxMpps.Median)
		vals[1] = append(vals[1], r.IPIP.RxMpps.Median)
		vals[2] = append(vals[2], r.Base.RxMpps.Median)
	}
	w := vg.Points(30)
	for i, name := range []string{"xlb (dsr-l2)", "xlb (ipip)", "baseline (l2fwd)"} {
		b, err := plotter.NewBarChart(vals[i], w)
		if err != nil {
			return nil, fmt.Errorf("chart: %w", err)
		}
		b.LineStyle.Width = 0
		b.Color = barColor(i)
		b.Offset = vg.Length(i-1) * w
		p.Add(b)
		p.Legend.Add(name, b)
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.8, float64(len(groups))-0.2
	p.Y.Min, p.Y.Max = 0, 1.3*maxOf(vals[:]...)
	return p, nil
}

// maxOf is the largest of all values (0 for none).
func maxOf(vs ...plotter.Values) float64 {
	m := 0.0
	for _, v := range vs {
		for _, x := range v {
			m = max(m, x)
		}
	}
	return m
}

// barColor is the i-th colour of the Okabe-Ito palette, told apart with
// every common colour-vision deficiency (and by lightness in grey): blue,
// orange, bluish green, vermillion.
func barColor(i int) color.Color {
	p := []color.RGBA{{0x00, 0x72, 0xB2, 0xFF}, {0xE6, 0x9F, 0x00, 0xFF}, {0x00, 0x9E, 0x73, 0xFF}, {0xD5, 0x5E, 0x00, 0xFF}}
	return p[i%len(p)]
}
