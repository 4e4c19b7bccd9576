// Package bpf holds the xlb data plane: the XDP program's C sources and the
// Go bindings bpf2go generates from them (committed, so building xlb needs
// no clang). Nothing else in the module sees C types except through here.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -type svc_key -type service -type backend -type flow_key -type flow -type global_counters -type svc_counters -type backend_counters -type persist_key -type persist_entry -type xlb_config -type vip_key -type vip -type frag_key -type frag_entry -type sched -type fwd_mode xlb xlb.c -- -Iinclude

// The backend-side decapsulator (decap.c) is a program of its own, loaded
// only by xlbd --role backend: its own stem, its own committed output.
//go:generate go tool bpf2go -tags linux -target bpfel -type addr -type config -type counters decap decap.c -- -Iinclude

// The health checks' tunnel (probe.c): two TC programs on the balancer's
// interface that carry a check's TCP connection to a VIP on one backend
// through its encapsulation. Loaded only when a service asks for it.
//go:generate go tool bpf2go -tags linux -target bpfel -type probe_key -type probe -type probe_counters probe probe.c -- -Iinclude
