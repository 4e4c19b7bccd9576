// Package loader owns the data plane's lifecycle: it loads the XDP
// collection, attaches it through a bpf_link, pins it so a restarted daemon
// can re-adopt it without dropping a flow, and reconciles desired services
// and backends into the maps. Balancer is the one object the daemon drives.
package loader
