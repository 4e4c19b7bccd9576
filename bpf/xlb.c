//go:build ignore

/* xlb data plane: one XDP entry that matches frames to services, picks a
 * backend (connection table first, then the service's scheduler) and
 * forwards without proxying. Everything that is not for a service goes to
 * the kernel untouched. */

#include "include/types.h"
#include "include/consts.h"
#include "include/structs.h"
#include "include/maps.h"
#include "include/parse.h"
#include "include/hash.h"
#include "include/rewrite.h"

/* Slots in every Maglev table; set by the loader to the inner map size. */
const volatile __u32 maglev_size = MAGLEV_SIZE;

/* usable_backend returns backend id's entry if it belongs to service svc_id
 * and may carry traffic, NULL otherwise (id 0 is never usable). */
static __always_inline struct backend *usable_backend(__u32 id, __u32 svc_id)
{
	struct backend *be = bpf_map_lookup_elem(&backends, &id);

	if (!be || !(be->flags & F_BACKEND_USABLE) || be->svc_id != svc_id)
		return NULL;
	return be;
}

/* active_add adds d to backend id's active-flow count (atomic: flows of
 * one backend arrive on every CPU). */
static __always_inline void active_add(__u32 id, __s64 d)
{
	__s64 *a = bpf_map_lookup_elem(&backend_active, &id);

	if (a)
		__sync_fetch_and_add(a, d);
}

/* State of a least-conn scan, passed to lc_step by bpf_loop. */
struct lc_scan {
	void *table;
	__u32 svc_id;
	__u32 n;
	__u32 start;
	__u32 best;
	__u64 best_load;
	__u64 best_w;
};

/* lc_step looks at the i-th candidate of the scan: a usable backend of the
 * service with weight above 0 whose (active+1)/weight is below the best so
 * far (compared by cross-multiplication) becomes the best. */
static long lc_step(__u32 i, void *ctx)
{
	struct lc_scan *sc = ctx;
	__u32 slot = sc->start + i;

	if (slot >= sc->n)
		slot -= sc->n;
	slot++;
	__u32 *idp = bpf_map_lookup_elem(sc->table, &slot);
	if (!idp)
		return 0;
	__u32 id = *idp;
	struct backend *be = bpf_map_lookup_elem(&backends, &id);
	if (!be || !(be->flags & F_BACKEND_USABLE) ||
	    be->svc_id != sc->svc_id || be->weight == 0)
		return 0;
	__s64 *ap = bpf_map_lookup_elem(&backend_active, &id);
	__s64 a = ap ? *ap : 0;
	/* Counts can dip below 0 between a close and the daemon's next
	 * correction. */
	__u64 load = a > 0 ? (__u64)a + 1 : 1;
	__u64 w = be->weight;
	if (!sc->best || load * sc->best_w < sc->best_load * w) {
		sc->best = id;
		sc->best_load = load;
		sc->best_w = w;
	}
	return 0;
}

/* least_conn scans the n candidates in slots 1..n of a least-conn table,
 * starting at a slot derived from the flow hash h so that ties spread, and
 * returns the least loaded one; 0 if none is usable. bpf_loop keeps the
 * verifier from walking every iteration of the scan. */
static __always_inline __u32 least_conn(void *table, __u32 svc_id, __u32 h)
{
	__u32 zero = 0;
	__u32 *np = bpf_map_lookup_elem(table, &zero);

	if (!np)
		return 0;
	__u32 n = *np;
	if (n == 0)
		return 0;
	if (n > MAX_LC_BACKENDS)
		n = MAX_LC_BACKENDS;
	struct lc_scan sc = {};
	sc.table = table;
	sc.svc_id = svc_id;
	sc.n = n;
	sc.start = h % n;
	bpf_loop(n, lc_step, &sc, 0);
	return sc.best;
}

/* schedule returns the backend id the service's scheduler gives a new
 * flow, 0 if the table is missing or has no backend for it. */
static __always_inline __u32 schedule(const struct service *svc,
				      const struct flow_key *key)
{
	__u32 svc_id = svc->id;
	__u8 sched = svc->sched;
	void *table = bpf_map_lookup_elem(&maglev_tables, &svc_id);
	__u32 slot;

	if (!table)
		return 0;
	if (sched == SCHED_LEAST_CONN)
		return least_conn(table, svc_id, hash_flow(key));
	if (sched == SCHED_ROUND_ROBIN) {
		__u32 *cur = bpf_map_lookup_elem(&rr_cursor, &svc_id);
		if (!cur)
			return 0;
		slot = *cur;
		if (slot >= maglev_size)
			slot = 0;
		*cur = slot + 1;
	} else {
		__u32 h = sched == SCHED_SOURCE_HASH ? hash_src(key) :
						       hash_flow(key);
		slot = h % maglev_size;
	}
	__u32 *id = bpf_map_lookup_elem(table, &slot);
	return id ? *id : 0;
}

/* persist_key_of fills the persistence key of the flow's client. */
static __always_inline void persist_key_of(struct persist_key *pk, __u32 svc_id,
					   const struct flow_key *key)
{
	__builtin_memcpy(pk->addr, key->src, sizeof(pk->addr));
	pk->svc_id = svc_id;
	pk->family = key->family;
}

/* persisted returns the backend the client was last sent to if that was
 * within the service's persistence timeout and the backend is still usable
 * and not failing its health check (drained included: a drained backend
 * keeps its clients while it is healthy), else 0. */
static __always_inline __u32 persisted(const struct persist_key *pk,
				       __u32 svc_id, __u32 secs, __u64 now)
{
	struct persist_entry *pe = bpf_map_lookup_elem(&persist, pk);

	if (!pe)
		return 0;
	if ((__s64)(now - pe->last_seen) > (__s64)secs * 1000000000LL)
		return 0;
	__u32 id = pe->backend_id;
	struct backend *be = usable_backend(id, svc_id);
	return be && !(be->flags & F_BACKEND_FAILING) ? id : 0;
}

/* flow_expired reports whether a flow has been idle beyond its timeout.
 * Signed: another CPU may have stamped last_seen after our now. */
static __always_inline int flow_expired(__u64 last_seen, __u32 fflags,
					__u8 proto, __u64 now)
{
	__u32 zero = 0;
	struct xlb_config *c = bpf_map_lookup_elem(&config, &zero);

	if (!c)
		return 0;
	__u64 to = c->tcp_timeout_ns;
	if (proto == IPPROTO_UDP)
		to = c->udp_timeout_ns;
	else if (fflags & F_FLOW_CLOSING)
		to = c->tcp_fin_timeout_ns;
	return to && (__s64)(now - last_seen) > (__s64)to;
}

static __always_inline int process(struct xdp_md *ctx,
				   struct global_counters *gs)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *pos = data;
	struct pkt p = {};
	int proto;

	proto = parse_eth(&pos, end, &p);
	if (proto == PARSE_MALFORMED) {
		gs->pass_malformed++;
		return XDP_PASS;
	}
	if (proto == ETH_P_IP) {
		proto = parse_ipv4(&pos, end, &p);
	} else if (proto == ETH_P_IPV6) {
		proto = parse_ipv6(&pos, end, &p);
	} else {
		gs->pass_not_ip++;
		return XDP_PASS;
	}
	if (proto >= 0)
		proto = parse_l4(pos, end, proto, &p);
	switch (proto) {
	case 0:
		break;
	case PARSE_FRAGMENT:
		gs->pass_fragment++;
		return XDP_PASS;
	case PARSE_IPV6_EXT:
		gs->pass_ipv6_ext++;
		return XDP_PASS;
	case PARSE_OTHER_L4:
		gs->pass_not_vip++;
		return XDP_PASS;
	default:
		gs->pass_malformed++;
		return XDP_PASS;
	}

	struct svc_key sk = {};
	__builtin_memcpy(sk.addr, p.key.dst, sizeof(sk.addr));
	sk.port = p.key.dport;
	sk.proto = p.key.proto;
	sk.family = p.key.family;
	struct service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc) {
		gs->pass_not_vip++;
		return XDP_PASS;
	}
	if (!addressed_to_us(p.eth)) {
		gs->pass_other_host++;
		return XDP_PASS;
	}
	if (p.ttl <= 1) {
		gs->pass_ttl++;
		return XDP_PASS;
	}

	__u32 svc_id = svc->id;
	struct svc_counters *ss = bpf_map_lookup_elem(&svc_stats, &svc_id);
	if (!ss) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	__u64 len = end - data;
	ss->packets++;
	ss->bytes += len;

	/* The coarse clock (the last tick) is enough for second-scale timeouts
	 * and costs a fraction of bpf_ktime_get_ns() on every packet. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct backend *be = NULL;
	__u32 bid = 0;
	/* A flow is new when it has no entry, its entry expired, or a SYN
	 * reuses the tuple of a closed one; it is rescheduled when its
	 * backend became unusable. */
	int is_new = 1;
	__u32 fflags = 0;
	struct flow *f = bpf_map_lookup_elem(&conntrack, &p.key);
	if (f) {
		bid = f->backend_id;
		fflags = f->flags;
		__u64 last = f->last_seen;
		if (flow_expired(last, fflags, p.key.proto, now)) {
			gs->expired_flows++;
		} else if ((fflags & F_FLOW_CLOSING) &&
			   (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			/* port reuse after a close: a new connection */
		} else {
			is_new = 0;
			be = usable_backend(bid, svc_id);
			if (be) {
				gs->conntrack_hits++;
				if (now - last > LAST_SEEN_GRANULARITY_NS) {
					f->last_seen = now;
					if (svc->persist_secs) {
						struct persist_key pk = {};
						persist_key_of(&pk, svc_id,
							       &p.key);
						struct persist_entry *pe =
							bpf_map_lookup_elem(
								&persist, &pk);
						if (pe && pe->backend_id == bid)
							pe->last_seen = now;
					}
				}
				if ((p.tcp_flags & (TCP_FIN | TCP_RST)) &&
				    !(fflags & F_FLOW_CLOSING)) {
					f->flags = fflags | F_FLOW_CLOSING;
					active_add(bid, -1);
					gs->closed_flows++;
				}
			} else {
				gs->reschedules++;
			}
		}
	}
	if (!be) {
		__u32 persist_secs = svc->persist_secs;
		struct persist_key pk = {};
		__u32 old = bid;
		bid = 0;
		if (persist_secs) {
			persist_key_of(&pk, svc_id, &p.key);
			bid = persisted(&pk, svc_id, persist_secs, now);
			if (bid)
				gs->persist_hits++;
		}
		if (!bid)
			bid = schedule(svc, &p.key);
		be = usable_backend(bid, svc_id);
		if (!be) {
			gs->drop_no_backend++;
			ss->drop_no_backend++;
			return XDP_DROP;
		}
		if (persist_secs) {
			struct persist_entry pv = {};
			pv.backend_id = bid;
			pv.last_seen = now;
			bpf_map_update_elem(&persist, &pk, &pv, BPF_ANY);
		}
		__u32 closing = (p.tcp_flags & (TCP_FIN | TCP_RST)) ?
					F_FLOW_CLOSING :
					0;
		if (f) {
			/* Keep the entry, move it. */
			if (!(fflags & F_FLOW_CLOSING))
				active_add(old, -1);
			f->backend_id = bid;
			f->last_seen = now;
			f->flags = closing;
		} else {
			struct flow nf = {};
			nf.backend_id = bid;
			nf.last_seen = now;
			nf.flags = closing;
			if (bpf_map_update_elem(&conntrack, &p.key, &nf,
						BPF_ANY))
				gs->conntrack_insert_errors++;
		}
		if (!closing)
			active_add(bid, 1);
		if (is_new) {
			gs->new_flows++;
			ss->new_flows++;
		}
	}

	struct backend_counters *bs = bpf_map_lookup_elem(&backend_stats, &bid);
	if (!bs) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	bs->packets++;
	bs->bytes += len;
	if (is_new)
		bs->new_flows++;

	rewrite_dsr_l2(p.eth, be);
	gs->tx_packets++;
	return XDP_TX;
}

SEC("xdp")
int xlb(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct global_counters *gs = bpf_map_lookup_elem(&stats, &zero);

	/* Cannot miss (one-entry array), but the verifier needs the check. */
	if (!gs)
		return XDP_PASS;
	gs->rx_packets++;
	return process(ctx, gs);
}

char _license[] SEC("license") = "Dual BSD/GPL";
