/* Maps of the data plane. Sizes are defaults: the loader resizes them. */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include "types.h"
#include "consts.h"
#include "structs.h"

/* Services by (VIP, port, protocol, family). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct service);
} services SEC(".maps");

/* VIP addresses (of any service, any port): what an ICMP echo request is
 * answered for, ICMP errors and later fragments are matched against.
 * Derived from services by the loader, which rebuilds it on every start
 * (not pinned). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct vip_key);
	__type(value, struct vip);
} vips SEC(".maps");

/* VIP addresses as a bitmap (struct vip_filter), one entry: what TCP and
 * UDP frames are checked against first. Rebuilt by the loader from the
 * services on every start, before the program takes traffic, and on every
 * change (not pinned). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vip_filter);
} vip_filter SEC(".maps");

/* Backends by id (0 is never used: it marks an empty Maglev slot). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* The key of each backend's service, by backend id: a connection-table
 * hit is checked against it (the flow's VIP, port, protocol and family),
 * so established flows need no services lookup. The loader writes an
 * id's entry before its backends entry and rebuilds the map on every
 * start (not pinned: a missing entry only sends the flow's frames down
 * the slow path, which looks the service up). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct svc_key);
} backend_svc SEC(".maps");

/* One service's scheduler table, replaced whole, never edited in place, so
 * packets never see a half-written table. maglev and source-hash: slot ->
 * backend id; round-robin: the weighted sequence, slot by slot; least-conn:
 * slot 0 holds the number n of candidates, slots 1..n their ids. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

/* Scheduler tables by service id (map-in-map: the swap is one atomic
 * update). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev_tables SEC(".maps");

/* Connection table: flow -> backend, least recently used evicted first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNTRACK_SIZE);
	__type(key, struct flow_key);
	__type(value, struct flow);
} conntrack SEC(".maps");

/* Half-open TCP flows: a client's SYN (without ACK) is scheduled and
 * recorded here, not in conntrack, and moves to conntrack when the
 * handshake's next packet comes. A SYN flood churns this LRU only, so it
 * cannot evict established flows. Entries live tcp_fin_timeout. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HALFOPEN_SIZE);
	__type(key, struct flow_key);
	__type(value, struct flow);
} halfopen SEC(".maps");

/* Client persistence: (service, client address) -> backend, LRU. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PERSIST_SIZE);
	__type(key, struct persist_key);
	__type(value, struct persist_entry);
} persist SEC(".maps");

/* Fragmented datagrams: (src, dst, IP ID, protocol) -> backend of the
 * first fragment, for the later ones (LRU, FRAG_TIMEOUT_NS lifetime). Not
 * pinned: its entries live seconds. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAGS_SIZE);
	__type(key, struct frag_key);
	__type(value, struct frag_entry);
} frags SEC(".maps");

/* Active flows by backend id: added to on new flows, taken from on a
 * client's FIN/RST and on reschedules (atomically); the daemon rewrites it
 * from the connection table to correct evictions and idle expiry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __s64);
} backend_active SEC(".maps");

/* Round-robin cursor by service id, one per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} rr_cursor SEC(".maps");

/* encap_forward's state, one per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	/* A size, not a type: bpf2go need not mirror the UAPI FIB struct. */
	__uint(value_size, sizeof(struct encap_scratch));
} scratch_encap SEC(".maps");

/* Next hops of encapsulated backends, one cache per CPU (no locks, no
 * torn reads), slot = backend id modulo FIB_CACHE_SLOTS; an entry serves
 * FIB_CACHE_NS, then the next packet looks the route up again. Not pinned:
 * it refills itself. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FIB_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct fib_hop);
} fib_cache SEC(".maps");

/* Runtime settings, one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_config);
} config SEC(".maps");

/* Global counters, one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct global_counters);
} stats SEC(".maps");

/* Per-service counters by service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct svc_counters);
} svc_stats SEC(".maps");

/* Per-backend counters by backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_counters);
} backend_stats SEC(".maps");

#endif
