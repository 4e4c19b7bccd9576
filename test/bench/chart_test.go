package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteChart(t *testing.T) {
	r := &Report{
		PerPacket: &PerPacket{Cases: []PacketCase{
			{Name: caseEstablished, Xlb: NewSeries([]float64{60, 62}), Baseline: NewSeries([]float64{24})},
			{Name: caseNewFlow, Xlb: NewSeries([]float64{400}), Baseline: NewSeries([]float64{25})},
		}},
		Throughput: &Throughput{FrameLen: 64, Runs: []ThroughputRun{
			{GenCPUs: []int{1}, Xlb: Side{RxMpps: NewSeries([]float64{2})}, IPIP: Side{RxMpps: NewSeries([]float64{1.5})}, Base: Side{RxMpps: NewSeries([]float64{3})}},
			{GenCPUs: []int{0, 1}, Xlb: Side{RxMpps: NewSeries([]float64{3})}, IPIP: Side{RxMpps: NewSeries([]float64{2.5})}, Base: Side{RxMpps: NewSeries([]float64{5})}},
		}},
	}
	path := filepath.Join(t.TempDir(), "sub", "bench.png")
	if err := r.WriteChart(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X < 800 || sz.Y < 400 {
		t.Errorf("chart of %v pixels", sz)
	}
	// One section alone draws too; none is an error.
	r.Throughput = nil
	if err := r.WriteChart(path); err != nil {
		t.Errorf("per-packet only: %v", err)
	}
	if err := (&Report{}).WriteChart(path); err == nil {
		t.Error("nothing to draw: no error")
	}
}

func TestChartPath(t *testing.T) {
	t.Setenv("BENCH_CHART", "")
	if got := chartPath("out/bench.json"); got != "out/bench.png" {
		t.Errorf("chartPath = %s", got)
	}
	t.Setenv("BENCH_CHART", "/tmp/x.png")
	if got := chartPath("out/bench.json"); got != "/tmp/x.png" {
		t.Errorf("chartPath with BENCH_CHART = %s", got)
	}
}
