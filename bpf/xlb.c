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
#include "include/encap.h"

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

/* hash_slot is the Maglev table slot of a flow of a maglev (5-tuple) or
 * source-hash (client address) service. */
static __always_inline __u32 hash_slot(__u8 sched, const struct flow_key *key)
{
	__u32 h = sched == SCHED_SOURCE_HASH ? hash_src(key) : hash_flow(key);

	return h % maglev_size;
}

/* hashed_backend returns the backend id in a maglev or source-hash
 * service's slot for the flow, 0 if none: schedule() for those schedulers,
 * which write nothing. */
static __always_inline __u32 hashed_backend(const struct service *svc,
					    const struct flow_key *key)
{
	__u32 svc_id = svc->id;
	void *table = bpf_map_lookup_elem(&maglev_tables, &svc_id);

	if (!table)
		return 0;
	__u32 slot = hash_slot(svc->sched, key);
	__u32 *id = bpf_map_lookup_elem(table, &slot);
	return id ? *id : 0;
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
		slot = hash_slot(sched, key);
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
 * keeps its clients while it is healthy), else 0; with its entry in *pep
 * when it returns one (pep may be NULL). */
static __always_inline __u32 persisted(const struct persist_key *pk,
				       __u32 svc_id, __u32 secs, __u64 now,
				       struct persist_entry **pep)
{
	struct persist_entry *pe = bpf_map_lookup_elem(&persist, pk);

	if (!pe)
		return 0;
	if ((__s64)(now - pe->last_seen) > (__s64)secs * 1000000000LL)
		return 0;
	__u32 id = pe->backend_id;
	struct backend *be = usable_backend(id, svc_id);
	if (!be || (be->flags & F_BACKEND_FAILING))
		return 0;
	if (pep)
		*pep = pe;
	return id;
}

/* hashed_placement is the backend id new_flow would give a flow of a
 * maglev or source-hash service, without its writes: the client's
 * persistent backend, else the scheduler's slot. For ICMP errors and
 * fragments, which must go where their flow's packets go but may not
 * create state. */
static __always_inline __u32 hashed_placement(const struct service *svc,
					      const struct flow_key *key,
					      __u64 now)
{
	__u32 persist_secs = svc->persist_secs;
	__u32 bid = 0;

	if (persist_secs) {
		struct persist_key pk = {};
		persist_key_of(&pk, svc->id, key);
		bid = persisted(&pk, svc->id, persist_secs, now, NULL);
	}
	return bid ? bid : hashed_backend(svc, key);
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

/* What parse_frame found. */
enum {
	/* For the kernel; the reason is counted. */
	FRAME_PASS = 0,
	/* TCP or UDP: ports parsed, a service may match. */
	FRAME_L4 = 1,
	/* ICMP or ICMPv6 (addresses parsed): for the echo responder. */
	FRAME_ICMP = 2,
	/* A later fragment (addresses, protocol and ID parsed, no ports). */
	FRAME_FRAG = 3,
};

/* parse_frame parses Ethernet (with VLAN tags), IPv4 or IPv6 and the TCP or
 * UDP ports into p. Returns FRAME_PASS when the frame is not one a service
 * could match: it then goes to the kernel, the reason counted, before any
 * map is touched (IPv6 extension headers that are not walked, ICMP
 * fragments). A later fragment is FRAME_FRAG, for frag_follow. A length field
 * that does not hold is malformed: no port is ever read from bytes past the IP
 * packet's end. */
static __always_inline int parse_frame(struct xdp_md *ctx, void *data,
				       void *end, struct pkt *p,
				       struct global_counters *gs)
{
	void *pos = data;
	/* L4 bytes the IP header announces. */
	__u32 l4_len = 0;
	int proto;

	proto = parse_eth(&pos, end, p);
	if (proto == PARSE_MALFORMED) {
		gs->pass_malformed++;
		return FRAME_PASS;
	}
	if (proto == ETH_P_IP) {
		proto = parse_ipv4(&pos, end, p, &l4_len);
	} else if (proto == ETH_P_IPV6) {
		proto = parse_ipv6(ctx, data, &pos, end, p, &l4_len);
	} else {
		gs->pass_not_ip++;
		return FRAME_PASS;
	}
	if (proto >= 0)
		proto = parse_l4(pos, end, l4_len, proto, p);
	switch (proto) {
	case 0:
		return FRAME_L4;
	case PARSE_ICMP:
		/* A fragmented ICMP message is the kernel's. */
		if (p->frag) {
			gs->pass_fragment++;
			return FRAME_PASS;
		}
		return FRAME_ICMP;
	case PARSE_FRAGMENT:
		return FRAME_FRAG;
	case PARSE_IPV6_EXT:
		gs->pass_ipv6_ext++;
		return FRAME_PASS;
	case PARSE_OTHER_L4:
		gs->pass_not_vip++;
		return FRAME_PASS;
	default:
		gs->pass_malformed++;
		return FRAME_PASS;
	}
}

/* service_of looks up the service the frame is addressed to (destination
 * address, port, protocol and family), NULL if none. The checks that send
 * service traffic to the kernel stay in process(): inside a helper, clang
 * merged their counters into one computed-offset increment on every path. */
static __always_inline struct service *service_of(const struct pkt *p)
{
	struct svc_key sk = {};

	__builtin_memcpy(sk.addr, p->key.dst, sizeof(sk.addr));
	sk.port = p->key.dport;
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	return bpf_map_lookup_elem(&services, &sk);
}

/* Where a frame's flow stands: filled by flow_lookup, completed by
 * new_flow when the connection table could not place the frame. */
struct flow_state {
	/* The flow's connection-table entry, NULL if it has none. */
	struct flow *f;
	/* Backend the frame goes to; NULL until one is known. */
	struct backend *be;
	/* Its id: the entry's backend until new_flow picks another. */
	__u32 bid;
	/* The entry's F_FLOW_* flags as read, 0 without an entry. */
	__u32 fflags;
	/* 1 for a new flow, 0 for a known one (kept or rescheduled). */
	int is_new;
};

/* refresh_flow stamps an established flow's entry with now and, under
 * persistence, its client's entry too, but only while that entry still
 * names this flow's backend (a newer flow of the client may have been
 * placed elsewhere since, and that choice must not be kept alive). */
static __always_inline void refresh_flow(struct flow *f, const struct pkt *p,
					 __u32 persist_secs, __u32 svc_id,
					 __u32 bid, __u64 now)
{
	f->last_seen = now;
	if (persist_secs) {
		struct persist_key pk = {};
		persist_key_of(&pk, svc_id, &p->key);
		struct persist_entry *pe = bpf_map_lookup_elem(&persist, &pk);
		if (pe && pe->backend_id == bid)
			pe->last_seen = now;
	}
}

/* flow_lookup judges the flow's connection-table entry f (NULL: none) on
 * the slow path, with the service looked up. An entry that has not
 * expired, is not a closed flow's tuple reused by a new SYN, and whose
 * backend may still carry traffic keeps its backend (st->be set): last_seen
 * is refreshed and a client's first FIN or RST marks the flow closing.
 * Otherwise st->be stays NULL for new_flow: the flow is new when it has no
 * entry, its entry expired, or a SYN reuses a closed flow's tuple; it is
 * rescheduled (not new) when its backend became unusable. */
static __always_inline void flow_lookup(struct flow_state *st, struct flow *f,
					const struct pkt *p,
					const struct service *svc, __u32 svc_id,
					__u64 now, struct global_counters *gs)
{
	struct backend *be = NULL;
	__u32 bid = 0;
	int is_new = 1;
	__u32 fflags = 0;

	if (f) {
		bid = f->backend_id;
		fflags = f->flags;
		__u64 last = f->last_seen;
		if (flow_expired(last, fflags, p->key.proto, now)) {
			gs->expired_flows++;
		} else if ((fflags & F_FLOW_CLOSING) &&
			   (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			/* SYN without ACK on a closing tuple: the client
			 * reused the port after a close, a new connection. */
		} else {
			is_new = 0;
			be = usable_backend(bid, svc_id);
			if (be) {
				gs->conntrack_hits++;
				/* Not on every packet: established flows on
				 * every CPU would write the shared entry. */
				if (now - last > LAST_SEEN_GRANULARITY_NS)
					refresh_flow(f, p, svc->persist_secs,
						     svc_id, bid, now);
				/* Once per flow: a retransmitted FIN must not
				 * take the active count down again. */
				if ((p->tcp_flags & (TCP_FIN | TCP_RST)) &&
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
	st->f = f;
	st->be = be;
	st->bid = bid;
	st->fflags = fflags;
	st->is_new = is_new;
}

/* pick returns the backend id a new flow of the service goes to (its entry
 * in *bep): the client's persistent backend if the service has persistence
 * and one is still good (its persistence entry in *pep, else *pep is
 * left NULL), else the scheduler's pick. 0 when the service has none
 * usable (counted; the caller drops: VIP traffic that cannot be served). */
static __always_inline __u32 pick(const struct pkt *p,
				  const struct service *svc, __u32 svc_id,
				  struct svc_counters *ss, __u64 now,
				  struct global_counters *gs,
				  struct backend **bep,
				  struct persist_entry **pep)
{
	__u32 bid = 0;

	*pep = NULL;
	if (svc->persist_secs) {
		struct persist_key pk = {};
		persist_key_of(&pk, svc_id, &p->key);
		bid = persisted(&pk, svc_id, svc->persist_secs, now, pep);
		if (bid)
			gs->persist_hits++;
	}
	if (!bid)
		bid = schedule(svc, &p->key);
	/* The scheduler's table may name a backend that stopped being usable
	 * (or none: id 0) until the daemon replaces it. */
	*bep = usable_backend(bid, svc_id);
	if (!*bep) {
		gs->drop_no_backend++;
		ss->drop_no_backend++;
		return 0;
	}
	return bid;
}

/* remember_client records a new flow's backend as its client's, under
 * persistence. A client sent to its persistent backend again (pe, its
 * entry, from pick) has that entry's time stamped in place: the value
 * is the one an update would write, without the update's new LRU node
 * (an allocation, and under pressure an eviction) for a key that is
 * already there. */
static __always_inline void remember_client(const struct pkt *p,
					    const struct service *svc,
					    __u32 svc_id, __u32 bid, __u64 now,
					    struct persist_entry *pe)
{
	if (pe && pe->backend_id == bid) {
		pe->last_seen = now;
		return;
	}
	if (svc->persist_secs) {
		struct persist_key pk = {};
		struct persist_entry pv = {};
		persist_key_of(&pk, svc_id, &p->key);
		pv.backend_id = bid;
		pv.last_seen = now;
		bpf_map_update_elem(&persist, &pk, &pv, BPF_ANY);
	}
}

/* track gives a flow placed on backend bid its connection-table entry
 * (moving st->f, the flow's stale entry, rather than inserting) and keeps
 * the active-flow counts. A flow that starts (or moves) on a FIN or RST is
 * closing at once and never counts as active. */
static __always_inline void track(const struct flow_state *st,
				  const struct pkt *p, __u32 bid, __u64 now,
				  struct global_counters *gs)
{
	__u32 closing =
		(p->tcp_flags & (TCP_FIN | TCP_RST)) ? F_FLOW_CLOSING : 0;

	if (st->f) {
		/* Keep the entry, move it; the old backend loses the flow
		 * unless it had already stopped counting it. */
		if (!(st->fflags & F_FLOW_CLOSING))
			active_add(st->bid, -1);
		st->f->backend_id = bid;
		st->f->last_seen = now;
		st->f->flags = closing;
	} else {
		struct flow nf = {};
		nf.backend_id = bid;
		nf.last_seen = now;
		nf.flags = closing;
		/* A failed insert (LRU under pressure) still forwards this
		 * frame; the next one is scheduled again. */
		if (bpf_map_update_elem(&conntrack, &p->key, &nf, BPF_ANY))
			gs->conntrack_insert_errors++;
	}
	if (!closing)
		active_add(bid, 1);
}

/* new_flow places a flow the connection table could not and tracks it:
 * UDP, and TCP that is neither a SYN nor a half-open flow's (a flow that
 * began before a restart, or on another balancer). Returns the backend,
 * NULL to drop. */
static __always_inline struct backend *
new_flow(struct flow_state *st, const struct pkt *p, const struct service *svc,
	 __u32 svc_id, struct svc_counters *ss, __u64 now,
	 struct global_counters *gs)
{
	struct backend *be;
	struct persist_entry *pe;
	__u32 bid = pick(p, svc, svc_id, ss, now, gs, &be, &pe);

	if (!bid)
		return NULL;
	remember_client(p, svc, svc_id, bid, now, pe);
	track(st, p, bid, now, gs);
	st->bid = bid;
	st->be = be;
	if (st->is_new) {
		gs->new_flows++;
		ss->new_flows++;
	}
	return be;
}

/* What halfopen_flow did. */
enum {
	/* Nothing: the frame is for new_flow. */
	HALFOPEN_NONE = 0,
	/* Placed: st holds the backend. */
	HALFOPEN_PLACED = 1,
	/* No backend: drop. */
	HALFOPEN_DROP = 2,
};

/* halfopen_flow keeps floods of spoofed TCP packets away from the
 * connection table: a TCP flow earns its conntrack entry with its second
 * packet. The first packet of a flow with no conntrack entry is scheduled
 * (pick, remember_client) and recorded in the halfopen LRU instead: a bare
 * SYN (SYN without ACK, a connection attempt), or any other packet of a
 * flow first seen mid-stream (begun before a restart, or on another
 * balancer). Spoofed packets, one per tuple (SYN, ACK, RST floods), churn
 * that table only and cannot evict an established flow. A bare SYN also
 * removes a stale conntrack entry of its tuple (expired, closed, or on a
 * backend that went), so the handshake's next packet does not find it; any
 * other packet with a stale entry goes to new_flow, which moves the entry
 * (no insert, so no eviction). A retransmitted SYN finds its half-open
 * entry and keeps its backend. A packet other than a bare SYN whose flow
 * is half-open promotes it: conntrack entry (track), half-open entry
 * deleted; so round-robin and least-conn keep the first packet's pick.
 * Half-open entries live tcp_fin_timeout and count neither as active flows
 * nor as hits. */
static __always_inline int halfopen_flow(struct flow_state *st,
					 const struct pkt *p,
					 const struct service *svc,
					 __u32 svc_id, struct svc_counters *ss,
					 __u64 now, struct global_counters *gs)
{
	struct flow *h = bpf_map_lookup_elem(&halfopen, &p->key);
	struct backend *be = NULL;
	__u32 bid = 0;

	if (h &&
	    !flow_expired(h->last_seen, F_FLOW_CLOSING, IPPROTO_TCP, now)) {
		bid = h->backend_id;
		be = usable_backend(bid, svc_id);
	}
	if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN) {
		if (be) {
			track(st, p, bid, now, gs);
			bpf_map_delete_elem(&halfopen, &p->key);
			gs->halfopen_promoted++;
			st->bid = bid;
			st->be = be;
			st->is_new = 0;
			return HALFOPEN_PLACED;
		}
		if (st->f)
			return HALFOPEN_NONE;
	} else if (st->f) {
		if (!(st->fflags & F_FLOW_CLOSING))
			active_add(st->bid, -1);
		bpf_map_delete_elem(&conntrack, &p->key);
		st->f = NULL;
	}
	if (be) {
		st->is_new = 0;
	} else {
		struct persist_entry *pe;
		bid = pick(p, svc, svc_id, ss, now, gs, &be, &pe);
		if (!bid)
			return HALFOPEN_DROP;
		remember_client(p, svc, svc_id, bid, now, pe);
		struct flow nf = {};
		nf.backend_id = bid;
		nf.last_seen = now;
		if (bpf_map_update_elem(&halfopen, &p->key, &nf, BPF_ANY))
			gs->conntrack_insert_errors++;
		st->is_new = 1;
		gs->new_flows++;
		ss->new_flows++;
		gs->halfopen_new++;
	}
	st->bid = bid;
	st->be = be;
	return HALFOPEN_PLACED;
}

/* encap_forward's verdict when it answered the client itself (ICMP too
 * big): XDP_TX for the caller, with none of the forwarded frame's
 * counters. Not an XDP action. */
#define ENCAP_ANSWERED 0x40

/* too_big answers a packet that, encapsulated, would exceed the egress MTU
 * (mtu) with ICMP fragmentation needed (IPv4, DF set) or ICMPv6 packet too
 * big to its source, from the VIP it was sent to, as Katran does: the frame
 * is turned around (MACs swapped, VLAN tags kept), its IP packet replaced
 * by the error quoting the packet's IP header and 8 bytes of L4 (IPv6:
 * the 40-byte header), announcing the MTU less the encapsulation's
 * overhead (IPv6: at least 1280), so the client sends smaller packets and
 * path MTU discovery works through the tunnel. */
static __always_inline int too_big(struct xdp_md *ctx, struct encap_scratch *e,
				   __u32 mtu, struct global_counters *gs)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 ip_off = e->ip_off;
	__u32 hlen = e->v6 ? OUTER6_LEN : OUTER4_LEN;
	__u32 qlen = OUTER6_LEN + 8;
	__u8 *b = e->buf;

	if (ip_off > 64)
		goto err;
	if (!e->v6) {
		struct iphdr *ip = data + ip_off;
		if ((void *)(ip + 1) > end)
			goto err;
		qlen = (ip->ver_ihl & 0x0F) * 4 + 8;
	}
	/* 28 to 68 bytes (IPv4), 48 (IPv6); a packet over the MTU is longer. */
	if (qlen > e->len || qlen > 68)
		goto err;
	if (bpf_xdp_load_bytes(ctx, ip_off, b + 8, qlen))
		goto err;
	__u32 adv = mtu > e->over ? mtu - e->over : 0;
	__builtin_memset(b, 0, 8);
	if (e->v6) {
		if (adv < 1280)
			adv = 1280;
		b[0] = ICMPV6_PKT_TOOBIG;
		*(__be32 *)(b + 4) = bpf_htonl(adv);
	} else {
		if (adv < 68)
			adv = 68;
		b[0] = ICMP_DEST_UNREACH;
		b[1] = 4; /* fragmentation needed */
		*(__be16 *)(b + 6) = bpf_htons(adv);
	}
	__u32 icmp_len = 8 + qlen;
	/* The checksum: the message, and for ICMPv6 the pseudo-header. */
	__u64 sum = 0;
	__s64 s = bpf_csum_diff(0, 0, (void *)b, (icmp_len + 3) & 0x7c, 0);
	if (s < 0)
		goto err;
	sum = (__u32)s;
	if (e->v6) {
		__be32 *q = (__be32 *)(b + 8);
#pragma unroll
		for (int i = 2; i < 10; i++) /* source and destination */
			sum += (q[i] & 0xffff) + (q[i] >> 16);
		sum += bpf_htons(icmp_len) + bpf_htons(IPPROTO_ICMPV6);
	}
	__u16 ck = ~csum_fold16(sum);
	*(__u16 *)(b + 2) = ck;

	/* The frame: Ethernet and tags as they came, the new IP header, the
	 * message. */
	int delta = (int)(ip_off + hlen + icmp_len) - (int)(end - data);
	if (delta > 0 || bpf_xdp_adjust_tail(ctx, delta))
		goto err;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		goto err;
	/* Swapped through registers: this frame's stack is spent. */
	__u32 d0 = *(__u32 *)eth->h_dest;
	__u16 d1 = *(__u16 *)(eth->h_dest + 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	*(__u32 *)eth->h_source = d0;
	*(__u16 *)(eth->h_source + 4) = d1;
	if (e->v6) {
		struct ipv6hdr *o = data + ip_off;
		if ((void *)(o + 1) > end)
			goto err;
		__be32 *q = (__be32 *)(b + 8);
		o->ver_tc_flow = bpf_htonl(6U << 28);
		o->payload_len = bpf_htons(icmp_len);
		o->nexthdr = IPPROTO_ICMPV6;
		o->hop_limit = ENCAP_TTL;
		/* From the VIP (the quote's destination) to the client. */
		__builtin_memcpy(o->saddr, q + 6, 16);
		__builtin_memcpy(o->daddr, q + 2, 16);
	} else {
		struct iphdr *o = data + ip_off;
		if ((void *)(o + 1) > end)
			goto err;
		__be32 *q = (__be32 *)(b + 8);
		o->ver_ihl = 0x45;
		o->tos = 0xc0; /* internetwork control, as Linux sends errors */
		o->tot_len = bpf_htons(OUTER4_LEN + icmp_len);
		o->id = 0;
		o->frag_off = 0;
		o->ttl = ENCAP_TTL;
		o->protocol = IPPROTO_ICMP;
		o->check = 0;
		o->saddr = q[4];
		o->daddr = q[3];
		o->check = ipv4_hdr_csum(o);
	}
	if (bpf_xdp_store_bytes(ctx, ip_off + hlen, b, icmp_len))
		goto err;
	gs->encap_icmp_too_big++;
	return XDP_TX;
err:
	gs->encap_errors++;
	return XDP_DROP;
}

/* next_hop returns backend be's next hop from this CPU's fib_cache, looking
 * it up in the kernel's FIB (bpf_fib_lookup, as output from the outer
 * source e->src, from the ingress interface) when the cached one is
 * missing, older than FIB_CACHE_NS, or another backend's (the slot is
 * shared modulo FIB_CACHE_SLOTS, and ids are reused) or another
 * interface's. The route's MTU comes with it: the kernel reports it on
 * success (recent kernels), else a second lookup with the largest length
 * makes it say. NULL: no route or neighbour, not cached, so the next
 * packet asks again. */
static __always_inline const struct fib_hop *
next_hop(struct xdp_md *ctx, struct encap_scratch *e, const struct backend *be,
	 struct global_counters *gs)
{
	/* Keys in the scratch value, off encap_forward's stack. */
	e->key = e->bid & (FIB_CACHE_SLOTS - 1);
	struct fib_hop *hop = bpf_map_lookup_elem(&fib_cache, &e->key);
	__u64 now = e->now;

	if (!hop)
		return NULL;
	if (hop->at && now - hop->at < FIB_CACHE_NS && hop->bid == e->bid &&
	    hop->iif == ctx->ingress_ifindex && hop->addr[0] == be->addr[0] &&
	    hop->addr[1] == be->addr[1] && hop->addr[2] == be->addr[2] &&
	    hop->addr[3] == be->addr[3])
		return hop;

	struct bpf_fib_lookup *fib = &e->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = e->v6 ? AF_INET6 : AF_INET;
	fib->l4_protocol =
		e->gue ? IPPROTO_UDP : (e->v6 ? IPPROTO_IPV6 : IPPROTO_IPIP);
	fib->ifindex = ctx->ingress_ifindex;
	if (e->v6) {
		__builtin_memcpy(fib->ipv6_src, e->src, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, be->addr,
				 sizeof(fib->ipv6_dst));
	} else {
		fib->ipv4_src = e->src[0];
		fib->ipv4_dst = be->addr[0];
	}
	gs->encap_fib_lookups++;
	if (bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT) !=
	    BPF_FIB_LKUP_RET_SUCCESS)
		return NULL;
	hop->at = now;
	hop->bid = e->bid;
	hop->iif = ctx->ingress_ifindex;
	__builtin_memcpy(hop->addr, be->addr, sizeof(hop->addr));
	hop->ifindex = fib->ifindex;
	__builtin_memcpy(hop->smac, fib->smac, ETH_ALEN);
	__builtin_memcpy(hop->dmac, fib->dmac, ETH_ALEN);
	/* tot_len was 0: a kernel that reports the MTU on success wrote it
	 * over it (they share a union). */
	hop->mtu = fib->mtu_result;
	if (hop->mtu)
		return hop;
	fib->ifindex = ctx->ingress_ifindex;
	fib->tot_len = 0xFFFF;
	long r = bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	if (r == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		hop->mtu = fib->mtu_result;
	else if (r == BPF_FIB_LKUP_RET_SUCCESS)
		hop->mtu = 0xFFFF;
	if (!hop->mtu) {
		/* The route changed between the two lookups: ask again. */
		hop->at = 0;
		return NULL;
	}
	return hop;
}

/* encap_forward sends the frame's IP packet (at e->ip_off in the frame,
 * e->len bytes; any Ethernet padding and VLAN tags dropped) to backend be
 * (id e->bid) inside an outer IPv4 or IPv6 header of the packet's family
 * (ipip: protocol 4 / next header 41; gue: UDP to the configured port,
 * whose payload is the packet), from the configured source (its last bits
 * from the flow hash e->h) to the backend's address, with the inner DSCP
 * and ECN (and, for IPv4, DF) and TTL 64. The next hop comes from the
 * kernel's FIB through a per-CPU cache (next_hop): a route or neighbour it
 * lacks is encap_fib_miss, for the kernel (XDP_PASS, frame untouched); an
 * outer packet over the route's MTU is encap_too_big, answered with ICMP
 * when e->answer allows (too_big), else dropped. Sent with XDP_TX on the
 * interface it came in by, else XDP_REDIRECT. The UDP checksum is left 0
 * over IPv4 (RFC 768) and computed over IPv6 (RFC 8200). Callers count the
 * frame's own counters when it was sent (encap_sent). Not inlined
 * (verified once for its three callers); its state lives in a per-CPU
 * scratch value, as the frames of a call chain share 512 bytes. */
static __attribute__((noinline)) int encap_forward(struct xdp_md *ctx,
						   const struct backend *be,
						   struct global_counters *gs,
						   struct encap_scratch *e)
{
	/* The key in the scratch value: this frame's stack is tight. */
	e->key = 0;
	struct xlb_config *c = bpf_map_lookup_elem(&config, &e->key);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (!c)
		goto err;
	e->v6 = be->family == XLB_AF_INET6;
	e->gue = (be->flags & F_BACKEND_GUE) != 0;
	e->over =
		(e->v6 ? OUTER6_LEN : OUTER4_LEN) + (e->gue ? GUE_UDP_LEN : 0);
	e->df = 0;
	/* At most Ethernet and two VLAN tags before the IP header. */
	if (e->ip_off > 64)
		goto err;
	void *ip = data + e->ip_off;
	if (ip > end || e->len > (__u64)(end - ip))
		goto err;
	e->after = end - ip;
	/* What the outer header copies, read before the frame moves. */
	if (e->v6) {
		struct ipv6hdr *ip6 = ip;
		if ((void *)(ip6 + 1) > end)
			goto err;
		e->tos = bpf_ntohl(ip6->ver_tc_flow) >> 20;
	} else {
		struct iphdr *ip4 = ip;
		if ((void *)(ip4 + 1) > end)
			goto err;
		e->tos = ip4->tos;
		e->df = ip4->frag_off & bpf_htons(IP_DF);
	}
	encap_src(c, e->v6, e->h, e->src);
	/* No source of the family configured. */
	if (!(e->src[0] | e->src[1] | e->src[2] | e->src[3]))
		goto err;

	const struct fib_hop *hop = next_hop(ctx, e, be, gs);
	if (!hop) {
		gs->encap_fib_miss++;
		return XDP_PASS;
	}
	if (e->len + e->over > hop->mtu) {
		gs->encap_too_big++;
		/* A non-DF IPv4 packet could be fragmented, which XDP cannot
		 * do: dropped (documented); so is an ICMP error (no error
		 * about an error). */
		if (!e->answer || (!e->v6 && !e->df))
			return XDP_DROP;
		return too_big(ctx, e, hop->mtu, gs) == XDP_TX ?
			       ENCAP_ANSWERED :
			       XDP_DROP;
	}
	e->hop = *hop;

	if (e->after > e->len &&
	    bpf_xdp_adjust_tail(ctx, -(int)(e->after - e->len)))
		goto err;
	if (bpf_xdp_adjust_head(ctx,
				(int)e->ip_off - (int)(ETH_HLEN + e->over)))
		goto err;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		goto err;
	__builtin_memcpy(eth->h_dest, e->hop.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, e->hop.smac, ETH_ALEN);
	struct udphdr *u;
	__u64 sum = 0;
	if (e->v6) {
		struct ipv6hdr *o = (void *)(eth + 1);
		if ((void *)(o + 1) > end)
			goto err;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		o->ver_tc_flow = bpf_htonl((6U << 28) | ((__u32)e->tos << 20) |
					   (e->h & 0xFFFFF));
		o->payload_len = bpf_htons(e->len + (e->gue ? GUE_UDP_LEN : 0));
		o->nexthdr = e->gue ? IPPROTO_UDP : IPPROTO_IPV6;
		o->hop_limit = ENCAP_TTL;
		__builtin_memcpy(o->saddr, e->src, sizeof(o->saddr));
		__builtin_memcpy(o->daddr, be->addr, sizeof(o->daddr));
		if (!e->gue)
			goto sent;
		u = (void *)(o + 1);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			sum += (o->saddr[i] & 0xffff) + (o->saddr[i] >> 16);
			sum += (o->daddr[i] & 0xffff) + (o->daddr[i] >> 16);
		}
	} else {
		struct iphdr *o = (void *)(eth + 1);
		if ((void *)(o + 1) > end)
			goto err;
		eth->h_proto = bpf_htons(ETH_P_IP);
		o->ver_ihl = 0x45;
		o->tos = e->tos;
		o->tot_len = bpf_htons(e->len + e->over);
		/* A DF datagram needs no unique ID (RFC 6864); a non-DF one
		 * takes bits of the flow hash. */
		o->id = e->df ? 0 : (__be16)(e->h >> 16);
		o->frag_off = e->df;
		o->ttl = ENCAP_TTL;
		o->protocol = e->gue ? IPPROTO_UDP : IPPROTO_IPIP;
		o->check = 0;
		o->saddr = e->src[0];
		o->daddr = be->addr[0];
		o->check = ipv4_hdr_csum(o);
		if (!e->gue)
			goto sent;
		u = (void *)(o + 1);
	}
	if ((void *)(u + 1) > end)
		goto err;
	/* The flow hash in an ephemeral source port, for the backends' RSS. */
	u->source = bpf_htons(0xC000 | (e->h & 0x3FFF));
	u->dest = c->gue_port;
	u->len = bpf_htons(GUE_UDP_LEN + e->len);
	u->check = 0;
	if (e->v6) {
		sum += u->len + bpf_htons(IPPROTO_UDP) + u->source + u->dest +
		       u->len;
		__u64 inner =
			csum_packet(ctx, ETH_HLEN + OUTER6_LEN + GUE_UDP_LEN,
				    e->len, e->buf);
		if (inner >> 63)
			goto err;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		u = data + ETH_HLEN + OUTER6_LEN;
		if ((void *)(u + 1) > end)
			goto err;
		__u16 ck = ~csum_fold16(sum + inner);
		u->check = ck ? ck : 0xffff;
	}
sent:
	gs->encap_packets++;
	if (e->hop.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	/* A known verdict, not the helper's long: callers compare it. */
	if (bpf_redirect(e->hop.ifindex, 0) != XDP_REDIRECT)
		goto err;
	return XDP_REDIRECT;
err:
	gs->encap_errors++;
	return XDP_DROP;
}

/* encapsulated reports whether backend be is reached by encapsulation. */
static __always_inline int encapsulated(const struct backend *be)
{
	return be->flags & (F_BACKEND_IPIP | F_BACKEND_GUE);
}

/* encap_sent reports whether encap_forward's verdict sent the frame. */
static __always_inline int encap_sent(int v)
{
	return v == XDP_TX || v == XDP_REDIRECT;
}

/* encap encapsulates the frame's IP packet to backend be, id bid
 * (encap_forward), telling it through the per-CPU scratch where the packet
 * lies in the frame and its length, whether it may be answered with ICMP
 * too big, the flow's hash (outer source, flow label, GUE source port) and
 * the caller's clock reading (the next-hop cache's age). */
static __always_inline int encap(struct xdp_md *ctx, const struct pkt *p,
				 const struct backend *be, __u32 bid,
				 struct global_counters *gs, int answer,
				 __u64 now)
{
	__u32 zero = 0;
	struct encap_scratch *e = bpf_map_lookup_elem(&scratch_encap, &zero);

	if (!e) {
		gs->encap_errors++;
		return XDP_DROP;
	}
	e->ip_off = (__u32)(p->ip - (void *)(long)ctx->data);
	e->len = p->ip_len;
	e->bid = bid;
	e->answer = answer;
	e->now = now;
	e->h = hash_flow(&p->key);
	return encap_forward(ctx, be, gs, e);
}

/* forward sends a frame to backend be by its service's mode: encapsulated
 * (encap_forward), or readdressed at layer 2 (dsr-l2: MACs only,
 * XDP_TX). */
static __always_inline int forward(struct xdp_md *ctx, const struct pkt *p,
				   const struct backend *be, __u32 bid,
				   struct global_counters *gs, int answer,
				   __u64 now)
{
	if (encapsulated(be))
		return encap(ctx, p, be, bid, gs, answer, now);
	rewrite_dsr_l2(p->eth, be);
	return XDP_TX;
}

/* count_and_forward counts the frame against its backend, readdresses it
 * (DSR at layer 2: MACs only) and sends it back out with XDP_TX. tx_packets
 * is counted before the rewrite rather than after: same counts and bytes,
 * but clang then keeps the drop and forward exits apart instead of merging
 * their counter updates into one computed-offset increment, which cost the
 * established path instructions. */
static __always_inline int
count_and_forward(struct xdp_md *ctx, const struct pkt *p,
		  const struct flow_state *st, __u64 len,
		  struct global_counters *gs, __u64 now)
{
	__u32 bid = st->bid;
	struct backend_counters *bs = bpf_map_lookup_elem(&backend_stats, &bid);

	/* Cannot miss (backend ids index backend_stats, sized like backends),
	 * but the verifier needs the check; VIP traffic, so drop. */
	if (!bs) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	if (encapsulated(st->be)) {
		int v = encap(ctx, p, st->be, bid, gs, 1, now);
		if (v == ENCAP_ANSWERED)
			return XDP_TX;
		if (!encap_sent(v))
			return v;
		gs->tx_packets++;
		bs->packets++;
		bs->bytes += len;
		if (st->is_new)
			bs->new_flows++;
		return v;
	}
	bs->packets++;
	bs->bytes += len;
	if (st->is_new)
		bs->new_flows++;

	gs->tx_packets++;
	rewrite_dsr_l2(p->eth, st->be);
	return XDP_TX;
}

/* icmp_echo answers an ICMP or ICMPv6 echo request to a VIP with XDP_TX,
 * as Katran does, unless F_CFG_NO_ICMP_ECHO is set. Everything else goes to
 * the kernel as before, counted as not for a service: other ICMP types,
 * echo to another address, a message too short to show its type. An echo
 * request to a VIP too short for its 8-byte header (by the frame or by the
 * IP length) is malformed; one for another host's MAC or with TTL 0 goes
 * to the kernel too. TTL 1 is answered: the VIP is the destination. */
static __always_inline int icmp_echo(struct pkt *p, void *end,
				     struct global_counters *gs)
{
	__u32 zero = 0;
	struct xlb_config *c = bpf_map_lookup_elem(&config, &zero);
	struct icmphdr *ih = p->l4;
	__u8 req = ICMPV6_ECHO_REQUEST;
	struct vip_key vk = {};

	if (p->key.family == XLB_AF_INET)
		req = ICMP_ECHO;
	if (!c || (c->flags & F_CFG_NO_ICMP_ECHO))
		goto not_vip;
	if (p->l4_len < 1 || (void *)&ih->type + 1 > end || ih->type != req)
		goto not_vip;
	__builtin_memcpy(vk.addr, p->key.dst, sizeof(vk.addr));
	vk.family = p->key.family;
	if (!bpf_map_lookup_elem(&vips, &vk))
		goto not_vip;
	if (p->l4_len < sizeof(*ih) || (void *)(ih + 1) > end) {
		gs->pass_malformed++;
		return XDP_PASS;
	}
	if (ih->code != 0)
		goto not_vip;
	if (!addressed_to_us(p->eth)) {
		gs->pass_other_host++;
		return XDP_PASS;
	}
	if (p->ttl == 0) {
		gs->pass_ttl++;
		return XDP_PASS;
	}
	/* The IP header lay before the ICMP one, so it is within the frame;
	 * the verifier wants to see that again. */
	if (p->key.family == XLB_AF_INET) {
		struct iphdr *ip = p->ip;
		if ((void *)(ip + 1) > end)
			goto internal;
		rewrite_echo_reply4(p->eth, ip, ih);
	} else {
		struct ipv6hdr *ip6 = p->ip;
		if ((void *)(ip6 + 1) > end)
			goto internal;
		rewrite_echo_reply6(p->eth, ip6, ih);
	}
	gs->icmp_echo_replies++;
	return XDP_TX;
not_vip:
	gs->pass_not_vip++;
	return XDP_PASS;
internal:
	gs->drop_internal++;
	return XDP_DROP;
}

/* icmp_error's answer for a message that is not one of the errors it
 * handles: the echo responder has it. */
#define ICMP_NOT_ERROR -1

/* icmp_error sends an ICMP destination unreachable (fragmentation needed
 * above all) or ICMPv6 packet too big / destination unreachable addressed
 * to a VIP to the backend of the flow it quotes, so the backend learns the
 * path MTU: the MACs are rewritten as for the flow's own packets, nothing
 * else. The quote is the backend's reply, VIP -> client, so the flow is
 * the quote reversed. It is found in the connection table (read only: no
 * entry is created or refreshed) or, for maglev and source-hash services,
 * placed again as a new flow would be (the client's persistent backend,
 * else the scheduler). Returns ICMP_NOT_ERROR for any other message (or
 * one too short to show its type), else the verdict, its reason counted:
 * an error to a non-VIP, a quote that is not IPv4 in ICMP (IPv6 in
 * ICMPv6), not TCP/UDP, not from the VIP the error is addressed to or of
 * no service is pass_not_vip; a message or quote whose headers (the IP
 * header with its options and 8 bytes of L4) do not lie within both the
 * frame and the outer IP length is pass_malformed; a quote with an IPv6
 * extension header is pass_ipv6_ext, of a later IPv4 fragment
 * pass_fragment; a flow the table and the scheduler cannot place is
 * icmp_errors_unmatched: passed, never sprayed. With F_CFG_NO_ICMP_FORWARD
 * set, errors to a VIP are pass_not_vip, for the kernel. */
static __always_inline int icmp_error(struct xdp_md *ctx, struct pkt *p,
				      void *end, struct global_counters *gs)
{
	__u8 *msg = p->l4;
	__u32 len = p->l4_len;
	struct vip_key vk = {};
	struct flow_key key = {};
	struct svc_key sk = {};
	__be16 *ports;
	__u32 hlen;

	if (len < 1 || (void *)(msg + 1) > end)
		return ICMP_NOT_ERROR;
	if (p->key.family == XLB_AF_INET) {
		if (msg[0] != ICMP_DEST_UNREACH)
			return ICMP_NOT_ERROR;
	} else if (msg[0] != ICMPV6_DEST_UNREACH &&
		   msg[0] != ICMPV6_PKT_TOOBIG) {
		return ICMP_NOT_ERROR;
	}
	__builtin_memcpy(vk.addr, p->key.dst, sizeof(vk.addr));
	vk.family = p->key.family;
	if (!bpf_map_lookup_elem(&vips, &vk))
		goto not_vip;
	__u32 zero = 0;
	struct xlb_config *c = bpf_map_lookup_elem(&config, &zero);
	if (!c || (c->flags & F_CFG_NO_ICMP_FORWARD))
		goto not_vip;
	/* The 8-byte ICMP header, then the quote's first byte: its version
	 * tells a quote from whatever else a sender put there. */
	__u8 *q = msg + sizeof(struct icmphdr);
	if (len < sizeof(struct icmphdr) + 1 || (void *)(q + 1) > end)
		goto malformed;
	len -= sizeof(struct icmphdr);
	if (p->key.family == XLB_AF_INET) {
		struct iphdr *qip = (void *)q;
		if ((q[0] >> 4) != 4)
			goto not_vip;
		if (len < sizeof(*qip) || (void *)(qip + 1) > end)
			goto malformed;
		/* Minimum first, then the announced length. */
		hlen = (qip->ver_ihl & 0x0F) * 4;
		if (hlen < sizeof(*qip))
			goto malformed;
		if (qip->frag_off & bpf_htons(IP_OFFSET)) {
			gs->pass_fragment++;
			return XDP_PASS;
		}
		key.src[0] = qip->daddr;
		key.dst[0] = qip->saddr;
		key.proto = qip->protocol;
	} else {
		struct ipv6hdr *qip6 = (void *)q;
		if ((q[0] >> 4) != 6)
			goto not_vip;
		if (len < sizeof(*qip6) || (void *)(qip6 + 1) > end)
			goto malformed;
		hlen = sizeof(*qip6);
		switch (qip6->nexthdr) {
		case IPPROTO_TCP:
		case IPPROTO_UDP:
			break;
		case 0:   /* hop-by-hop options */
		case 43:  /* routing */
		case 44:  /* fragment */
		case 50:  /* ESP */
		case 51:  /* AH */
		case 60:  /* destination options */
		case 135: /* mobility */
		case 139: /* HIP */
		case 140: /* shim6 */
			gs->pass_ipv6_ext++;
			return XDP_PASS;
		default:
			goto not_vip;
		}
		__builtin_memcpy(key.src, qip6->daddr, sizeof(key.src));
		__builtin_memcpy(key.dst, qip6->saddr, sizeof(key.dst));
		key.proto = qip6->nexthdr;
	}
	/* The quoted ports: within the frame and the IP length both. */
	ports = (void *)q + hlen;
	if (len < hlen + ICMP_QUOTE_L4_LEN ||
	    (void *)ports + ICMP_QUOTE_L4_LEN > end)
		goto malformed;
	if (key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP)
		goto not_vip;
	key.sport = ports[1];
	key.dport = ports[0];
	key.family = p->key.family;
	/* The quoted packet came from the VIP the error is addressed to. */
	if (key.dst[0] != p->key.dst[0] || key.dst[1] != p->key.dst[1] ||
	    key.dst[2] != p->key.dst[2] || key.dst[3] != p->key.dst[3])
		goto not_vip;
	__builtin_memcpy(sk.addr, key.dst, sizeof(sk.addr));
	sk.port = key.dport;
	sk.proto = key.proto;
	sk.family = key.family;
	struct service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		goto not_vip;
	if (!addressed_to_us(p->eth)) {
		gs->pass_other_host++;
		return XDP_PASS;
	}
	if (p->ttl <= 1) {
		gs->pass_ttl++;
		return XDP_PASS;
	}

	__u64 now = bpf_ktime_get_coarse_ns();
	struct backend *be = NULL;
	__u32 bid = 0;
	struct flow *f = bpf_map_lookup_elem(&conntrack, &key);
	if (f && !flow_expired(f->last_seen, f->flags, key.proto, now)) {
		bid = f->backend_id;
		be = usable_backend(bid, svc->id);
	}
	if (!be &&
	    (svc->sched == SCHED_MAGLEV || svc->sched == SCHED_SOURCE_HASH)) {
		bid = hashed_placement(svc, &key, now);
		be = usable_backend(bid, svc->id);
	}
	if (!be) {
		gs->icmp_errors_unmatched++;
		return XDP_PASS;
	}
	int v = forward(ctx, p, be, bid, gs, 0, now);
	if (encap_sent(v))
		gs->icmp_errors_forwarded++;
	return v;
not_vip:
	gs->pass_not_vip++;
	return XDP_PASS;
malformed:
	gs->pass_malformed++;
	return XDP_PASS;
}

/* frag_key_of fills the fragment-table key of the frame's datagram. */
static __always_inline void frag_key_of(struct frag_key *fk,
					const struct pkt *p)
{
	__builtin_memcpy(fk->src, p->key.src, sizeof(fk->src));
	__builtin_memcpy(fk->dst, p->key.dst, sizeof(fk->dst));
	fk->id = p->frag_id;
	fk->proto = p->key.proto;
	fk->family = p->key.family;
}

/* frag_remember records the backend a first fragment went to, for the
 * later fragments of its datagram. A failed insert loses them only. */
static __always_inline void frag_remember(const struct pkt *p, __u32 bid,
					  __u32 svc_id, __u64 now)
{
	struct frag_key fk = {};
	struct frag_entry fe = {};

	frag_key_of(&fk, p);
	fe.created = now;
	fe.backend_id = bid;
	fe.svc_id = svc_id;
	bpf_map_update_elem(&frags, &fk, &fe, BPF_ANY);
}

/* early_fragment places a later fragment that came before its first (no
 * fragment-table entry) when its VIP's only service of its protocol is
 * source-hash: the client's address is all that scheduler needs, so the
 * fragment goes where the first one will (the persistent backend, else
 * the slot; read only). Returns the backend id, 0 if the service cannot
 * be told. */
static __always_inline __u32 early_fragment(const struct pkt *p,
					    const struct vip *v, __u64 now,
					    __u32 *svc_id)
{
	struct svc_key sk = {};

	sk.port = p->key.proto == IPPROTO_TCP ? v->frag_port_tcp :
						v->frag_port_udp;
	if (!sk.port)
		return 0;
	__builtin_memcpy(sk.addr, p->key.dst, sizeof(sk.addr));
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	struct service *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc || svc->sched != SCHED_SOURCE_HASH)
		return 0;
	*svc_id = svc->id;
	return hashed_placement(svc, &p->key, now);
}

/* frag_follow sends a later fragment (no ports) to the backend its first
 * fragment went to, found in the fragment table, counted as that
 * service's and backend's traffic. A fragment not to a VIP, or of
 * another protocol than TCP and UDP, is the kernel's (pass_fragment). One to a
 * VIP with no entry younger than FRAG_TIMEOUT_NS came before its first:
 * early_fragment places it when the VIP's only service of its protocol is
 * source-hash; otherwise, or when the backend is no longer usable, it is passed
 * and counted frag_unmatched: without ports its service cannot be told (the
 * kernel is not its destination, so it is lost). */
static __always_inline int frag_follow(struct xdp_md *ctx, const struct pkt *p,
				       __u64 len, struct global_counters *gs)
{
	struct vip_key vk = {};
	struct frag_key fk = {};

	__builtin_memcpy(vk.addr, p->key.dst, sizeof(vk.addr));
	vk.family = p->key.family;
	struct vip *v = bpf_map_lookup_elem(&vips, &vk);
	/* Not to a VIP, or of a protocol no service has (an ICMP message's
	 * later fragment: its first went to the kernel too). */
	if (!v ||
	    (p->key.proto != IPPROTO_TCP && p->key.proto != IPPROTO_UDP)) {
		gs->pass_fragment++;
		return XDP_PASS;
	}
	if (!addressed_to_us(p->eth)) {
		gs->pass_other_host++;
		return XDP_PASS;
	}
	if (p->ttl <= 1) {
		gs->pass_ttl++;
		return XDP_PASS;
	}
	frag_key_of(&fk, p);
	struct frag_entry *fe = bpf_map_lookup_elem(&frags, &fk);
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 bid = 0, svc_id = 0;
	int early = 0;
	if (fe && (__s64)(now - fe->created) <= (__s64)FRAG_TIMEOUT_NS) {
		bid = fe->backend_id;
		svc_id = fe->svc_id;
	} else {
		bid = early_fragment(p, v, now, &svc_id);
		early = 1;
	}
	struct backend *be = usable_backend(bid, svc_id);
	if (!be) {
		gs->frag_unmatched++;
		return XDP_PASS;
	}
	struct svc_counters *ss = bpf_map_lookup_elem(&svc_stats, &svc_id);
	struct backend_counters *bs = bpf_map_lookup_elem(&backend_stats, &bid);
	if (!ss || !bs) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	int verdict = forward(ctx, p, be, bid, gs, 1, now);
	if (verdict == ENCAP_ANSWERED)
		return XDP_TX;
	if (!encap_sent(verdict))
		return verdict;
	ss->packets++;
	ss->bytes += len;
	bs->packets++;
	bs->bytes += len;
	gs->tx_packets++;
	gs->frag_forwarded++;
	if (early)
		gs->frag_early++;
	return verdict;
}

/* maybe_vip reports whether the frame's destination may be a VIP: its
 * vip_filter bit is set. A clear bit proves it is not one. */
static __always_inline int maybe_vip(const struct pkt *p)
{
	__u32 zero = 0;
	struct vip_filter *vf = bpf_map_lookup_elem(&vip_filter, &zero);
	__u32 slot = vip_slot(p->key.dst);

	/* Cannot miss (one-entry array); if it did, the lookups decide. */
	if (!vf)
		return 1;
	return (vf->bits[slot / 64] >> (slot % 64)) & 1;
}

/* of_service reports whether backend id belongs to the service the flow
 * key is addressed to (its VIP, port, protocol and family), by its
 * backend_svc entry. */
static __always_inline int of_service(__u32 id, const struct flow_key *k)
{
	struct svc_key *sk = bpf_map_lookup_elem(&backend_svc, &id);

	return sk && sk->addr[0] == k->dst[0] && sk->addr[1] == k->dst[1] &&
	       sk->addr[2] == k->dst[2] && sk->addr[3] == k->dst[3] &&
	       sk->port == k->dport && sk->proto == k->proto &&
	       sk->family == k->family;
}

/* send remembers a first fragment's backend and counts and forwards the
 * frame (count_and_forward): the last step of both paths. */
static __always_inline int send(struct xdp_md *ctx, const struct pkt *p,
				const struct flow_state *st, __u32 svc_id,
				__u64 len, struct global_counters *gs,
				__u64 now)
{
	if (p->frag == FRAG_FIRST) {
		frag_remember(p, st->bid, svc_id, now);
		gs->frag_first++;
	}
	return count_and_forward(ctx, p, st, len, gs, now);
}

/* established is the fast path of a frame whose flow has a connection-table
 * entry f: when the entry stands as flow_lookup would judge it (not
 * expired, not a closed flow's tuple reused by a bare SYN) and its backend
 * may carry traffic and belongs to the service the frame is addressed to
 * (backend_svc, an array: no services lookup), the
 * frame is forwarded with exactly the slow path's checks, counters and
 * writes (the services map is read only to refresh a persistent client,
 * at most once a second). Otherwise it returns NOT_ESTABLISHED having
 * written nothing, and the slow path (process) takes the frame. */
#define NOT_ESTABLISHED -1
static __always_inline int established(struct xdp_md *ctx, struct pkt *p,
				       struct flow *f, struct flow_state *st,
				       __u64 len, __u64 now,
				       struct global_counters *gs)
{
	__u32 bid = f->backend_id;
	__u32 fflags = f->flags;
	__u64 last = f->last_seen;
	struct backend *be = bpf_map_lookup_elem(&backends, &bid);

	if (!be || !(be->flags & F_BACKEND_USABLE) || !of_service(bid, &p->key))
		return NOT_ESTABLISHED;
	if (flow_expired(last, fflags, p->key.proto, now))
		return NOT_ESTABLISHED;
	if ((fflags & F_FLOW_CLOSING) &&
	    (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return NOT_ESTABLISHED;
	/* Service traffic: the slow path's checks, in its order. */
	if (!addressed_to_us(p->eth)) {
		gs->pass_other_host++;
		return XDP_PASS;
	}
	if (p->ttl <= 1) {
		gs->pass_ttl++;
		return XDP_PASS;
	}
	__u32 svc_id = be->svc_id;
	struct svc_counters *ss = bpf_map_lookup_elem(&svc_stats, &svc_id);
	if (!ss) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	ss->packets++;
	ss->bytes += len;
	gs->conntrack_hits++;
	if (now - last > LAST_SEEN_GRANULARITY_NS) {
		struct service *svc = service_of(p);
		refresh_flow(f, p, svc ? svc->persist_secs : 0, svc_id, bid,
			     now);
	}
	if ((p->tcp_flags & (TCP_FIN | TCP_RST)) &&
	    !(fflags & F_FLOW_CLOSING)) {
		f->flags = fflags | F_FLOW_CLOSING;
		active_add(bid, -1);
		gs->closed_flows++;
	}
	st->f = f;
	st->be = be;
	st->bid = bid;
	st->fflags = fflags;
	st->is_new = 0;
	return send(ctx, p, st, svc_id, len, gs, now);
}

/* process runs one frame through the steps: parse; leave what is for no
 * VIP to the kernel (vip_filter); a connection-table hit takes the fast
 * path (established); otherwise find its service (or leave it to the
 * kernel), judge its entry, place a new flow, count and forward. */
static __always_inline int process(struct xdp_md *ctx,
				   struct global_counters *gs)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt p = {};
	int kind = parse_frame(ctx, data, end, &p, gs);

	if (kind == FRAME_PASS)
		return XDP_PASS;
	if (kind == FRAME_ICMP) {
		int v = icmp_error(ctx, &p, end, gs);
		if (v != ICMP_NOT_ERROR)
			return v;
		return icmp_echo(&p, end, gs);
	}
	if (kind == FRAME_FRAG)
		return frag_follow(ctx, &p, end - data, gs);
	if (!maybe_vip(&p)) {
		gs->pass_not_vip++;
		return XDP_PASS;
	}
	__u64 len = end - data;
	/* The coarse clock (the last tick) is enough for second-scale timeouts
	 * and costs a fraction of bpf_ktime_get_ns() on every packet. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct flow_state st = {};
	struct service *svc = NULL;
	/* A bare SYN, which almost always opens a flow, looks its service up
	 * first, as before the fast path: its two cold reads, the connection
	 * table's bucket and then the half-open table's, stay close together
	 * and the CPU overlaps the misses. */
	int opening = (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	if (opening) {
		svc = service_of(&p);
		if (!svc) {
			gs->pass_not_vip++;
			return XDP_PASS;
		}
	}
	struct flow *f = bpf_map_lookup_elem(&conntrack, &p.key);
	if (f) {
		int v = established(ctx, &p, f, &st, len, now, gs);
		if (v != NOT_ESTABLISHED)
			return v;
	}
	if (!opening)
		svc = service_of(&p);
	if (!svc) {
		gs->pass_not_vip++;
		return XDP_PASS;
	}
	/* Service traffic still goes to the kernel when it was seen in
	 * promiscuous mode for another host, or when forwarding would take its
	 * TTL to 0 (the kernel answers with ICMP time exceeded). */
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
	/* Cannot miss (service ids index svc_stats, sized like services), but
	 * the verifier needs the check; VIP traffic, so drop. */
	if (!ss) {
		gs->drop_internal++;
		return XDP_DROP;
	}
	ss->packets++;
	ss->bytes += len;

	flow_lookup(&st, f, &p, svc, svc_id, now, gs);
	if (!st.be) {
		int h = HALFOPEN_NONE;
		if (p.key.proto == IPPROTO_TCP)
			h = halfopen_flow(&st, &p, svc, svc_id, ss, now, gs);
		if (h == HALFOPEN_DROP)
			return XDP_DROP;
		if (h == HALFOPEN_NONE &&
		    !new_flow(&st, &p, svc, svc_id, ss, now, gs))
			return XDP_DROP;
	}
	return send(ctx, &p, &st, svc_id, len, gs, now);
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
