/* Header parsing in the cursor style: every parser checks that its whole
 * header lies before data_end ("pointer plus one past the end"), advances
 * the cursor past it, and returns the next protocol or a negative PARSE_*. */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include "types.h"
#include "consts.h"
#include "structs.h"

/* Wire headers, written out here so the build needs no kernel headers. */
struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct iphdr {
	/* version (high nibble) and IHL in 32-bit words (low nibble) */
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr {
	/* version (high nibble), traffic class, flow label */
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	/* data offset in 32-bit words (high nibble) */
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__u16 check;
	__be16 urg_ptr;
};

/* The first 8 bytes of an ICMP or ICMPv6 message (the echo layout). */
struct icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be16 id;
	__be16 seq;
};

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

/* IPv6 fragment header. */
struct frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	/* offset in 8-byte units (high 13 bits), M flag (bit 0) */
	__be16 frag_off;
	__be32 identification;
};

/* Negative parser results. */
enum {
	PARSE_MALFORMED = -1,
	PARSE_FRAGMENT = -2,
	PARSE_IPV6_EXT = -3,
	PARSE_OTHER_L4 = -4,
	/* ICMP or ICMPv6: addresses parsed, p->ip and p->l4 set. */
	PARSE_ICMP = -5,
};

/* What the data plane needs to know about a frame. */
struct pkt {
	struct flow_key key;
	struct ethhdr *eth;
	/* IP header and ICMP message of an ICMP frame (PARSE_ICMP only);
	 * l4_len is the message's length as the IP header announces it. */
	void *ip;
	void *l4;
	__u32 l4_len;
	/* The IP packet's length as its header announces it (IPv4 total
	 * length; IPv6 40 + payload length): what encapsulation carries. */
	__u32 ip_len;
	__u8 ttl;
	/* TCP flags (TCP_*), 0 for UDP. */
	__u8 tcp_flags;
	/* FRAG_NONE, FRAG_FIRST or FRAG_LATER. */
	__u8 frag;
	/* IP ID of a fragment (IPv4: 16 bits, network order in the low
	 * bytes as read; IPv6: the 32-bit identification). */
	__be32 frag_id;
};

/* What part of a datagram a frame is (struct pkt.frag). */
enum {
	FRAG_NONE = 0,
	/* Offset 0, more fragments: carries the L4 header. */
	FRAG_FIRST = 1,
	/* Offset above 0: no ports. */
	FRAG_LATER = 2,
};

/* parse_eth skips Ethernet and up to MAX_VLAN_DEPTH VLAN tags and returns
 * the inner ethertype in host order. A frame with more tags than that
 * returns the VLAN ethertype, which callers treat as "not IP". */
static __always_inline int parse_eth(void **pos, void *end, struct pkt *p)
{
	struct ethhdr *eth = *pos;

	if ((void *)(eth + 1) > end)
		return PARSE_MALFORMED;
	p->eth = eth;
	*pos = eth + 1;

	__u16 proto = bpf_ntohs(eth->h_proto);
#pragma unroll
	for (int i = 0; i < MAX_VLAN_DEPTH; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		struct vlan_hdr *vh = *pos;
		if ((void *)(vh + 1) > end)
			return PARSE_MALFORMED;
		proto = bpf_ntohs(vh->encap_proto);
		*pos = vh + 1;
	}
	return proto;
}

/* parse_ipv4 honours IHL (options are legal) and the total length, sets
 * *l4_len to the bytes after the header that the total length counts, and
 * returns the L4 protocol. Fragments are reported, not parsed: only the
 * first carries the ports. */
static __always_inline int parse_ipv4(void **pos, void *end, struct pkt *p,
				      __u32 *l4_len)
{
	struct iphdr *ip = *pos;

	if ((void *)(ip + 1) > end)
		return PARSE_MALFORMED;
	if ((ip->ver_ihl >> 4) != 4)
		return PARSE_MALFORMED;
	/* Minimum length first, then the announced length: the mask keeps
	 * hlen within 60 so the verifier can bound the pointer below. */
	__u32 hlen = (ip->ver_ihl & 0x0F) * 4;
	if (hlen < sizeof(*ip))
		return PARSE_MALFORMED;
	if (*pos + hlen > end)
		return PARSE_MALFORMED;
	/* The total length must hold the header and lie within the frame; it
	 * may end before the frame does (Ethernet pads to 60 bytes). Compared
	 * as numbers, not as a pointer: verifiers that do not track byte
	 * swaps see tot as unbounded and refuse it in pointer arithmetic. */
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen || tot > (__u64)(end - *pos))
		return PARSE_MALFORMED;
	*l4_len = tot - hlen;
	p->ip_len = tot;

	p->key.family = XLB_AF_INET;
	p->key.src[0] = ip->saddr;
	p->key.dst[0] = ip->daddr;
	p->key.proto = ip->protocol;
	p->ttl = ip->ttl;
	p->ip = ip;
	*pos += hlen;
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		p->frag = FRAG_LATER;
		p->frag_id = ip->id;
		return PARSE_FRAGMENT;
	}
	if (ip->frag_off & bpf_htons(IP_MF)) {
		p->frag = FRAG_FIRST;
		p->frag_id = ip->id;
	}
	return ip->protocol;
}

/* ipv6_ext_len is the length of extension header nh at h (hop-by-hop,
 * routing, destination options: (hdrlen + 1) * 8; fragment: 8), 0 for a
 * header that is not walked. */
static __always_inline __u32 ipv6_ext_len(__u8 nh, __u8 hdrlen)
{
	switch (nh) {
	case 0:  /* hop-by-hop options */
	case 43: /* routing */
	case 60: /* destination options */
		return ((__u32)hdrlen + 1) * 8;
	case 44: /* fragment */
		return sizeof(struct frag_hdr);
	default:
		return 0;
	}
}

/* ipv6_other is the result for a next header that is not walked: an
 * extension header left to the kernel, or another L4 protocol. */
static __always_inline int ipv6_other(__u8 nh)
{
	switch (nh) {
	case 50:  /* ESP */
	case 51:  /* AH */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return PARSE_IPV6_EXT;
	default:
		return PARSE_OTHER_L4;
	}
}

/* What ipv6_ext_walk is given and finds. */
struct ipv6_ext_res {
	/* In: offset of the first extension header from the frame's start;
	 * out: of the header after the walked ones. */
	__u32 off;
	/* Payload bytes from off on. */
	__u32 plen;
	/* Identification of a fragment header (FRAG_FIRST, FRAG_LATER). */
	__be32 frag_id;
	/* In: type of the first extension header; out: the next header after
	 * the walked ones (a later fragment's: its fragment header's). */
	__u8 nh;
	/* FRAG_* */
	__u8 frag;
	__u8 pad[2];
};

/* Largest offset of an IPv6 header from the frame's start: Ethernet, the
 * VLAN tags and the fixed header. */
#define IPV6_EXT_MAX_START (14 + 4 * MAX_VLAN_DEPTH + 40)

/* ipv6_ext_walk walks up to MAX_IPV6_EXT hop-by-hop, routing, destination
 * options and fragment headers from r->off, each within the frame and the
 * payload length (else PARSE_MALFORMED). It returns the L4 protocol
 * (TCP, UDP, ICMPv6) with r->off and r->plen at its header, PARSE_FRAGMENT
 * for a later fragment, PARSE_IPV6_EXT for a header that is not walked or
 * one header too many, PARSE_OTHER_L4 for another protocol. A global
 * function: the verifier checks it once, and its caller sees one state
 * with an L4 offset of unknown value, not one per number of headers. */
__attribute__((noinline)) int ipv6_ext_walk(struct xdp_md *ctx,
					    struct ipv6_ext_res *r)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (!r)
		return PARSE_MALFORMED;
	__u32 off = r->off;
	__u32 plen = r->plen;
	__u8 nh = r->nh;
	if (off > IPV6_EXT_MAX_START)
		return PARSE_MALFORMED;
	int i;
#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP ||
		    nh == IPPROTO_ICMPV6)
			break;
		if (!ipv6_ext_len(nh, 0))
			return ipv6_other(nh);
		__u8 *h = data + off;
		if ((void *)(h + 2) > end || plen < 2)
			return PARSE_MALFORMED;
		__u32 len = ipv6_ext_len(nh, h[1]);
		if (len > plen || (void *)h + len > end)
			return PARSE_MALFORMED;
		if (nh == 44) {
			struct frag_hdr *fh = (void *)h;
			if ((void *)(fh + 1) > end)
				return PARSE_MALFORMED;
			if (fh->frag_off & bpf_htons(0xFFF9)) {
				r->frag_id = fh->identification;
				r->frag = FRAG_FIRST;
				if (fh->frag_off & bpf_htons(0xFFF8)) {
					r->frag = FRAG_LATER;
					r->nh = fh->nexthdr;
					return PARSE_FRAGMENT;
				}
			}
		}
		nh = h[0];
		off += len;
		plen -= len;
	}
	/* More extension headers than MAX_IPV6_EXT. */
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP && nh != IPPROTO_ICMPV6)
		return ipv6_ext_len(nh, 0) ? PARSE_IPV6_EXT : ipv6_other(nh);
	r->off = off;
	r->plen = plen;
	r->nh = nh;
	return nh;
}

/* parse_ipv6 handles the fixed header and sets *l4_len to the payload
 * length. Extension headers are walked by ipv6_ext_walk; ICMPv6 behind one
 * goes to the kernel (the echo responder and ICMP errors read the message
 * right after the fixed header). A later fragment is reported as
 * PARSE_FRAGMENT with its addresses, protocol and identification set. */
static __always_inline int parse_ipv6(struct xdp_md *ctx, void *data,
				      void **pos, void *end, struct pkt *p,
				      __u32 *l4_len)
{
	struct ipv6hdr *ip6 = *pos;

	if ((void *)(ip6 + 1) > end)
		return PARSE_MALFORMED;
	if ((bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6)
		return PARSE_MALFORMED;
	/* The payload must lie within the frame (it may end before); compared
	 * as numbers, as the IPv4 total length is. */
	__u32 plen = bpf_ntohs(ip6->payload_len);
	if (plen > (__u64)(end - (void *)(ip6 + 1)))
		return PARSE_MALFORMED;

	p->key.family = XLB_AF_INET6;
	__builtin_memcpy(p->key.src, ip6->saddr, sizeof(p->key.src));
	__builtin_memcpy(p->key.dst, ip6->daddr, sizeof(p->key.dst));
	p->ttl = ip6->hop_limit;
	p->ip = ip6;
	p->ip_len = sizeof(*ip6) + plen;

	__u8 nh = ip6->nexthdr;
	if (nh == IPPROTO_TCP || nh == IPPROTO_UDP || nh == IPPROTO_ICMPV6) {
		*l4_len = plen;
		p->key.proto = nh;
		*pos = ip6 + 1;
		return nh;
	}
	if (!ipv6_ext_len(nh, 0))
		return ipv6_other(nh);

	struct ipv6_ext_res r = {};
	r.off = (void *)(ip6 + 1) - data;
	r.plen = plen;
	r.nh = nh;
	int ret = ipv6_ext_walk(ctx, &r);
	p->frag = r.frag;
	p->frag_id = r.frag_id;
	/* The verifier knows nothing of what a global function returns: each
	 * result is named again here (PARSE_ICMP must never come out). */
	if (ret == PARSE_FRAGMENT) {
		p->key.proto = r.nh;
		return PARSE_FRAGMENT;
	}
	if (ret == PARSE_MALFORMED)
		return PARSE_MALFORMED;
	if (ret == PARSE_OTHER_L4)
		return PARSE_OTHER_L4;
	if (ret < 0)
		return PARSE_IPV6_EXT;
	if (r.nh != IPPROTO_TCP && r.nh != IPPROTO_UDP)
		return PARSE_IPV6_EXT;
	/* Cannot be larger (MAX_IPV6_EXT headers of at most 2048 bytes), but
	 * the verifier sees an unknown value. */
	__u32 off = r.off;
	if (off > IPV6_EXT_MAX_START + MAX_IPV6_EXT * 2048)
		return PARSE_IPV6_EXT;
	*l4_len = r.plen;
	p->key.proto = r.nh;
	*pos = data + off;
	return r.nh;
}

/* parse_l4 reads the ports of a TCP or UDP header that lies whole within
 * both the frame and the l4_len bytes the IP header announces (which lie
 * within the frame), its own length field consistent with both. ICMP
 * (ICMPv6 over IPv6) is only located, for the echo responder. */
static __always_inline int parse_l4(void *pos, void *end, __u32 l4_len,
				    int proto, struct pkt *p)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = pos;
		if ((void *)(th + 1) > end)
			return PARSE_MALFORMED;
		/* Minimum first, then the announced length: the header with
		 * its options must fit inside the IP packet (which lies
		 * within the frame), so no port is read from padding. */
		__u32 doff = (th->doff_res >> 4) * 4;
		if (doff < sizeof(*th) || doff > l4_len)
			return PARSE_MALFORMED;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->tcp_flags = th->flags;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = pos;
		if ((void *)(uh + 1) > end)
			return PARSE_MALFORMED;
		/* The UDP length covers at least its header and at most the
		 * IP payload. */
		__u32 ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh) || l4_len < sizeof(*uh))
			return PARSE_MALFORMED;
		/* A first fragment carries part of the datagram only. */
		if (ulen > l4_len && p->frag == FRAG_NONE)
			return PARSE_MALFORMED;
		p->key.sport = uh->source;
		p->key.dport = uh->dest;
		return 0;
	}
	if ((proto == IPPROTO_ICMP && p->key.family == XLB_AF_INET) ||
	    (proto == IPPROTO_ICMPV6 && p->key.family == XLB_AF_INET6)) {
		/* Nothing read yet: icmp_echo checks the message's length
		 * once it knows the frame is an echo request to a VIP. */
		p->l4 = pos;
		p->l4_len = l4_len;
		return PARSE_ICMP;
	}
	return PARSE_OTHER_L4;
}

#endif
