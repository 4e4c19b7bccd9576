// Package benchbpf holds the XDP programs of `make bench` that are not part
// of xlb: the MAC-swap and L2-forward baselines, the live-frames traffic
// generator, the counting sink and the fresh-flow mutator (see bench.c).
// Their bpf2go output is committed like the data plane's.
package benchbpf

//go:generate go tool bpf2go -tags linux -target bpfel -type gen_state -type sink_counters -type restore_frame -type spread_cfg bench bench.c -- -I.
