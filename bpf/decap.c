//go:build ignore

/* xlb backend-side decapsulator: one XDP entry on a backend host that
 * strips the outer header of the balancer's ipip (IPv4/IPv6 in IPv4/IPv6)
 * and gue (variant 1: the inner IP packet straight after UDP) packets
 * addressed to this host for a VIP it serves, and hands the inner packet to
 * the local stack (XDP_PASS), so the service on the VIP (on lo) sees the
 * client's address. Everything else passes untouched: this program never
 * drops and never rewrites a frame it does not decapsulate. */

#include "include/types.h"
#include "include/consts.h"
#include "include/parse.h"

/* VIPs this host serves: inner destinations that are decapsulated. */
#ifndef DECAP_MAX_VIPS
#define DECAP_MAX_VIPS 4096
#endif

/* Outer destinations accepted: the host's own addresses. */
#ifndef DECAP_MAX_ADDRS
#define DECAP_MAX_ADDRS 256
#endif

/* Tunnel protocols (the balancer's side may define them too). */
#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif
#ifndef IPPROTO_IPV6
#define IPPROTO_IPV6 41
#endif

/* ECN codepoints (low two bits of the TOS / traffic class). */
#define ECN_MASK 3
#define ECN_CE 3

/* Ethernet header and the VLAN tags we keep in front of the inner packet. */
#define MAX_L2_LEN (14 + 4 * MAX_VLAN_DEPTH)

/* An address as a map key: IPv6, or IPv4 mapped (::ffff:a.b.c.d), so one
 * map holds both families; no padding. */
struct addr {
	__be32 a[4];
};

/* Settings that change at runtime (the one entry of decap_config). */
struct config {
	/* UDP destination port of gue packets, network order. */
	__be16 gue_port;
	__u16 pad;
	__u32 pad2;
};

/* Per-CPU counters: every frame is counted once in rx_packets and once in
 * exactly one decap_* or pass_* field (ecn_ce is counted besides). */
struct counters {
	__u64 rx_packets;
	/* Decapsulated, by mode and inner-in-outer family. */
	__u64 decap_ipip_4in4;
	__u64 decap_ipip_6in6;
	__u64 decap_ipip_6in4;
	__u64 decap_ipip_4in6;
	__u64 decap_gue_4in4;
	__u64 decap_gue_6in6;
	__u64 decap_gue_6in4;
	__u64 decap_gue_4in6;
	/* Not IP, or IP but neither ipip nor UDP (IPv6 extension headers
	 * included). */
	__u64 pass_other;
	/* ipip or UDP to an outer destination not in decap_addrs. */
	__u64 pass_not_local;
	/* UDP to this host, not to the gue port. */
	__u64 pass_wrong_port;
	/* Outer IPv4 fragment (the kernel reassembles; we never see the
	 * datagram whole). */
	__u64 pass_fragment;
	/* gue payload whose first nibble is neither 4 nor 6. */
	__u64 pass_not_ip;
	/* Inner destination not in decap_vips. */
	__u64 pass_not_vip;
	/* A header cut short, or a length field that does not hold. */
	__u64 pass_malformed;
	/* bpf_xdp_adjust_head failed: the frame passes unchanged. */
	__u64 pass_error;
	/* The outer header was CE-marked and the inner ECN-capable: the
	 * inner packet leaves marked CE (RFC 6040). */
	__u64 ecn_ce;
};

/* VIPs served on this host (on lo); value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_MAX_VIPS);
	__type(key, struct addr);
	__type(value, __u8);
} decap_vips SEC(".maps");

/* The host's addresses that encapsulated packets may be sent to. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_MAX_ADDRS);
	__type(key, struct addr);
	__type(value, __u8);
} decap_addrs SEC(".maps");

/* Runtime settings: one struct config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} decap_config SEC(".maps");

/* Counters: one struct counters per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} decap_stats SEC(".maps");

/* What the parse of the outer and inner headers found. */
struct decap_job {
	/* Bytes of outer IP (and UDP) header to strip. */
	__u32 strip;
	/* Ethernet header plus VLAN tags in front of the outer IP header. */
	__u32 l2_len;
	/* ECN of the outer header. */
	__u8 outer_ecn;
	/* 4 or 6. */
	__u8 outer_v;
	__u8 inner_v;
	/* 1: gue, 0: ipip. */
	__u8 gue;
};

static __always_inline void addr4(struct addr *k, __be32 a)
{
	k->a[0] = 0;
	k->a[1] = 0;
	k->a[2] = bpf_htonl(0xffff);
	k->a[3] = a;
}

static __always_inline void addr6(struct addr *k, const __be32 *a)
{
	k->a[0] = a[0];
	k->a[1] = a[1];
	k->a[2] = a[2];
	k->a[3] = a[3];
}

/* parse_l2 skips Ethernet and up to MAX_VLAN_DEPTH tags; it returns the
 * ethertype in host order, or -1 when the frame ends inside them. */
static __always_inline int parse_l2(void **pos, void *end)
{
	struct ethhdr *eth = *pos;

	if ((void *)(eth + 1) > end)
		return -1;
	*pos = eth + 1;
	__u16 proto = bpf_ntohs(eth->h_proto);
#pragma unroll
	for (int i = 0; i < MAX_VLAN_DEPTH; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		struct vlan_hdr *vh = *pos;
		if ((void *)(vh + 1) > end)
			return -1;
		proto = bpf_ntohs(vh->encap_proto);
		*pos = vh + 1;
	}
	return proto;
}

/* inner_ok checks the inner packet at pos: its IP version is v, its
 * header lies in the frame and its own length holds its header and fits
 * in the len bytes the outer header carries. Bytes the outer header carries
 * past the inner packet's end (the client frame's Ethernet padding, which
 * a balancer may encapsulate with the packet) stay behind it after
 * decapsulation, for the stack to trim as it trims any padding. It returns
 * 1, or 0 for malformed; *dst gets its destination. */
static __always_inline int inner_ok(void *pos, void *end, __u8 v, __u32 len,
				    struct addr *dst)
{
	if (v == 4) {
		struct iphdr *ip = pos;
		if ((void *)(ip + 1) > end)
			return 0;
		__u32 hlen = (ip->ver_ihl & 0xf) * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if ((ip->ver_ihl >> 4) != 4 || hlen < sizeof(*ip))
			return 0;
		if (pos + hlen > end || tot < hlen || tot > len)
			return 0;
		addr4(dst, ip->daddr);
		return 1;
	}
	struct ipv6hdr *ip6 = pos;
	if ((void *)(ip6 + 1) > end)
		return 0;
	if ((bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6)
		return 0;
	if (sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > len)
		return 0;
	addr6(dst, ip6->daddr);
	return 1;
}

/* count_decap counts a decapsulated frame by mode and families. */
static __always_inline void count_decap(struct counters *c,
					const struct decap_job *j)
{
	if (j->gue) {
		if (j->outer_v == 4)
			j->inner_v == 4 ? c->decap_gue_4in4++ :
					  c->decap_gue_6in4++;
		else
			j->inner_v == 6 ? c->decap_gue_6in6++ :
					  c->decap_gue_4in6++;
		return;
	}
	if (j->outer_v == 4)
		j->inner_v == 4 ? c->decap_ipip_4in4++ : c->decap_ipip_6in4++;
	else
		j->inner_v == 6 ? c->decap_ipip_6in6++ : c->decap_ipip_4in6++;
}

/* csum_replace2 updates an Internet checksum for a changed 16-bit word
 * (RFC 1624). */
static __always_inline void decap_csum_replace2(__u16 *sum, __u16 old,
						__u16 new)
{
	__u32 s = (__u16) ~*sum + (__u16)~old + new;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*sum = ~s;
}

/* ecn_decap marks the inner packet at pos CE when the outer one was and
 * the inner is ECN-capable, as the kernel's own tunnels do (RFC 6040; the
 * ECT(1)-over-ECT(0) refinement is not applied, as there). A Not-ECT inner
 * packet under a CE outer one is left as it is (RFC 6040 would drop it; we
 * pass it, as the program never drops). Returns 1 if it marked. */
static __always_inline int ecn_decap(void *pos, void *end,
				     const struct decap_job *j)
{
	if (j->outer_ecn != ECN_CE)
		return 0;
	if (j->inner_v == 4) {
		struct iphdr *ip = pos;
		/* Checked before the move; the verifier needs it again. */
		if ((void *)(ip + 1) > end)
			return 0;
		__u8 ecn = ip->tos & ECN_MASK;
		if (ecn == 0 || ecn == ECN_CE)
			return 0;
		__u16 old = *(__u16 *)ip;
		ip->tos |= ECN_CE;
		decap_csum_replace2(&ip->check, old, *(__u16 *)ip);
		return 1;
	}
	struct ipv6hdr *ip6 = pos;
	if ((void *)(ip6 + 1) > end)
		return 0;
	/* Traffic class bits 20-27 of the first word; ECN is bits 20-21. */
	__u32 w = bpf_ntohl(ip6->ver_tc_flow);
	__u32 ecn = (w >> 20) & ECN_MASK;
	if (ecn == 0 || ecn == ECN_CE)
		return 0;
	ip6->ver_tc_flow = bpf_htonl(w | (ECN_CE << 20));
	return 1;
}

/* strip moves the Ethernet header (and VLAN tags) forward over the outer
 * header, sets its ethertype to the inner family's, drops the bytes in
 * front with bpf_xdp_adjust_head and applies ecn_decap. Returns ecn_decap's
 * result (0 or 1), or -1 if adjust_head failed (the frame is then
 * unchanged). */
static __always_inline int strip(struct xdp_md *ctx, const struct decap_job *j)
{
	__u8 l2[MAX_L2_LEN] = {};
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	/* Constant-size copies: the verifier wants bounded accesses, and
	 * l2_len is one of three values. */
	if (data + MAX_L2_LEN > end)
		return -1; /* cannot happen: the outer IP header follows */
	__builtin_memcpy(l2, data, MAX_L2_LEN);
	__u16 et = bpf_htons(j->inner_v == 4 ? ETH_P_IP : ETH_P_IPV6);
	if (j->l2_len == 14)
		*(__u16 *)&l2[12] = et;
	else if (j->l2_len == 18)
		*(__u16 *)&l2[16] = et;
	else
		*(__u16 *)&l2[20] = et;

	if (bpf_xdp_adjust_head(ctx, (int)j->strip))
		return -1;
	/* adjust_head invalidated every packet pointer: reload, recheck. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + MAX_L2_LEN > end)
		return -1;
	/* Constant offsets again, so the inner header's is known too. */
	void *ip;
	if (j->l2_len == 14) {
		__builtin_memcpy(data, l2, 14);
		ip = data + 14;
	} else if (j->l2_len == 18) {
		__builtin_memcpy(data, l2, 18);
		ip = data + 18;
	} else {
		__builtin_memcpy(data, l2, MAX_L2_LEN);
		ip = data + MAX_L2_LEN;
	}
	return ecn_decap(ip, end, j);
}

static __always_inline int process(struct xdp_md *ctx, struct counters *c)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *pos = data;
	struct decap_job j = {};
	struct addr dst = {};
	void *payload;
	__u32 plen;
	__u8 proto;

	int et = parse_l2(&pos, end);
	if (et < 0) {
		c->pass_malformed++;
		return XDP_PASS;
	}
	j.l2_len = pos - data;

	if (et == ETH_P_IP) {
		struct iphdr *ip = pos;
		if ((void *)(ip + 1) > end) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		__u32 hlen = (ip->ver_ihl & 0xf) * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		/* IHL: the minimum first, then the bytes; the total length
		 * must hold the header and lie within the frame (it may end
		 * before: Ethernet padding). */
		if ((ip->ver_ihl >> 4) != 4 || hlen < sizeof(*ip) ||
		    pos + hlen > end || tot < hlen || pos + tot > end) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		proto = ip->protocol;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 &&
		    proto != IPPROTO_UDP) {
			c->pass_other++;
			return XDP_PASS;
		}
		addr4(&dst, ip->daddr);
		if (!bpf_map_lookup_elem(&decap_addrs, &dst)) {
			c->pass_not_local++;
			return XDP_PASS;
		}
		if (bpf_ntohs(ip->frag_off) & (IP_MF | IP_OFFSET)) {
			c->pass_fragment++;
			return XDP_PASS;
		}
		j.outer_v = 4;
		j.outer_ecn = ip->tos & ECN_MASK;
		j.strip = hlen;
		payload = pos + hlen;
		plen = tot - hlen;
	} else if (et == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = pos;
		if ((void *)(ip6 + 1) > end) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		plen = bpf_ntohs(ip6->payload_len);
		if ((bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6 ||
		    (void *)(ip6 + 1) + plen > end) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		/* Extension headers in front of the tunnel are not walked:
		 * the balancer sends none. */
		proto = ip6->nexthdr;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 &&
		    proto != IPPROTO_UDP) {
			c->pass_other++;
			return XDP_PASS;
		}
		addr6(&dst, ip6->daddr);
		if (!bpf_map_lookup_elem(&decap_addrs, &dst)) {
			c->pass_not_local++;
			return XDP_PASS;
		}
		j.outer_v = 6;
		j.outer_ecn = (bpf_ntohl(ip6->ver_tc_flow) >> 20) & ECN_MASK;
		j.strip = sizeof(*ip6);
		payload = ip6 + 1;
	} else {
		c->pass_other++;
		return XDP_PASS;
	}

	void *inner = payload;
	__u32 ilen = plen;
	if (proto == IPPROTO_UDP) {
		__u32 key = 0;
		struct config *cfg = bpf_map_lookup_elem(&decap_config, &key);
		if (!cfg) {
			c->pass_error++;
			return XDP_PASS;
		}
		struct udphdr *udp = payload;
		if ((void *)(udp + 1) > end || plen < sizeof(*udp)) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		if (udp->dest != cfg->gue_port) {
			c->pass_wrong_port++;
			return XDP_PASS;
		}
		/* The UDP length must hold its header and lie within the
		 * IP payload; the source port (a flow hash) and the checksum
		 * (may be 0 over IPv4) are not checked. */
		__u32 ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || ulen > plen) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		inner = udp + 1;
		ilen = ulen - sizeof(*udp);
		j.strip += sizeof(*udp);
		j.gue = 1;
		__u8 *first = inner;
		if ((void *)(first + 1) > end || ilen < 1) {
			c->pass_malformed++;
			return XDP_PASS;
		}
		j.inner_v = *first >> 4;
		if (j.inner_v != 4 && j.inner_v != 6) {
			c->pass_not_ip++;
			return XDP_PASS;
		}
	} else {
		j.inner_v = proto == IPPROTO_IPIP ? 4 : 6;
	}

	if (!inner_ok(inner, end, j.inner_v, ilen, &dst)) {
		c->pass_malformed++;
		return XDP_PASS;
	}
	if (!bpf_map_lookup_elem(&decap_vips, &dst)) {
		c->pass_not_vip++;
		return XDP_PASS;
	}

	int marked = strip(ctx, &j);
	if (marked < 0) {
		c->pass_error++;
		return XDP_PASS;
	}
	if (marked)
		c->ecn_ce++;
	count_decap(c, &j);
	return XDP_PASS;
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&decap_stats, &zero);

	/* A per-CPU array lookup cannot miss, but the verifier wants it
	 * checked. */
	if (!c)
		return XDP_PASS;
	c->rx_packets++;
	return process(ctx, c);
}

char _license[] SEC("license") = "Dual BSD/GPL";
