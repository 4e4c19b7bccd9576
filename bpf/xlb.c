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

/* schedule returns the backend id the service's Maglev table gives for the
 * flow, 0 if the table is missing or the slot empty. */
static __always_inline __u32 schedule(const struct service *svc,
				      const struct flow_key *key)
{
	__u32 h = svc->sched == SCHED_SOURCE_HASH ? hash_src(key) :
							 hash_flow(key);
	__u32 svc_id = svc->id;
	void *table = bpf_map_lookup_elem(&maglev_tables, &svc_id);

	if (!table)
		return 0;
	__u32 slot = h % maglev_size;
	__u32 *id = bpf_map_lookup_elem(table, &slot);
	return id ? *id : 0;
}

static __always_inline int process(struct xdp_md *ctx, struct global_counters *gs)
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

	__u64 now = bpf_ktime_get_ns();
	struct backend *be = NULL;
	__u32 bid = 0;
	struct flow *f = bpf_map_lookup_elem(&conntrack, &p.key);
	if (f) {
		bid = f->backend_id;
		be = usable_backend(bid, svc_id);
		if (be) {
			gs->conntrack_hits++;
			if (now - f->last_seen > LAST_SEEN_GRANULARITY_NS)
				f->last_seen = now;
		} else {
			gs->reschedules++;
		}
	}
	if (!be) {
		bid = schedule(svc, &p.key);
		be = usable_backend(bid, svc_id);
		if (!be) {
			gs->drop_no_backend++;
			ss->drop_no_backend++;
			return XDP_DROP;
		}
		if (f) {
			/* Rescheduled: keep the entry, move it. */
			f->backend_id = bid;
			f->last_seen = now;
		} else {
			struct flow nf = {};
			nf.backend_id = bid;
			nf.last_seen = now;
			if (bpf_map_update_elem(&conntrack, &p.key, &nf,
						BPF_ANY))
				gs->conntrack_insert_errors++;
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
	if (!f)
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
