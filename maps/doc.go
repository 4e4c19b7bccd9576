// Package maps holds typed Go views of the data plane's BPF maps and the
// pure-Go Maglev table builder.
//
// It is the only place where net/netip values meet the wire layout of the
// BPF structs: addresses and ports are kept in network byte order in the
// maps, and every conversion between the two happens here.
package maps
