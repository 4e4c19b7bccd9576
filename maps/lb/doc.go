// Package lb is xlb's vocabulary: the words every layer shares, from the
// config file and the API down to the data plane.
//
// It holds service keys and flow keys, protocols, schedulers, forwarding
// modes, health-check types, every limit with its default, minimum and
// maximum, and the data plane's contract: what the daemon asks it to
// install (Service, Backend) and what it reads back (Snapshot).
//
// It is pure Go and imports nothing of xlb's and nothing of cilium/ebpf, so
// the CLI can use it without linking the data plane. Conversion to the
// wire layout of the BPF maps lives in package maps.
package lb
