//go:build ignore

/* xlb health probes through the tunnel: two TC programs (tcx) on the
 * balancer's interface that let a health check's ordinary kernel TCP
 * socket reach a service's VIP on one given backend, by the path clients'
 * packets take (encapsulated, as the data plane sends them), as vc5 does.
 *
 * The checker connects to the backend's own address on the VIP's port,
 * after registering the socket's local port in probes. probe_out (egress)
 * turns each of the socket's packets into what the data plane would send:
 * the inner destination becomes the VIP, and the packet goes inside an
 * outer IPv4/IPv6 header (ipip) or header and UDP (gue) to the backend,
 * through the next hop the kernel already chose for the backend's address.
 * The backend's decapsulator hands it to the service on the VIP, which
 * answers directly (DSR) from the VIP; probe_in (ingress) gives those
 * answers the backend's address again, so the socket takes them. Every
 * other packet passes untouched: these programs act on registered
 * connections only, and never drop one. */

#include "include/types.h"
#include "include/consts.h"
#include "include/parse.h"
#include "include/encap.h"

/* UAPI values of TC programs. */
#define TC_ACT_OK 0
#define BPF_ADJ_ROOM_MAC 1
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 (1ULL << 2)
#define BPF_F_ADJ_ROOM_ENCAP_L4_UDP (1ULL << 4)
#define BPF_F_PSEUDO_HDR (1ULL << 4)

#ifndef PROBE_MAX
#define PROBE_MAX 4096
#endif

#define PROBE_OUT 1
#define PROBE_IN 2

/* A registered probe connection, as one direction's packets show it. */
struct probe_key {
	/* out: the backend (the socket's peer); in: the VIP answering. An
	 * IPv4 address in the first word, the rest zero. */
	__be32 peer[4];
	/* The socket's own port, and the port probed. */
	__be16 lport;
	__be16 rport;
	__u8 family; /* XLB_AF_INET or XLB_AF_INET6 */
	__u8 dir;    /* PROBE_OUT or PROBE_IN */
	__u8 pad[2];
};

/* What to make of it. */
struct probe {
	/* out: the VIP (the new inner destination); in: the backend (the new
	 * source, the socket's peer). */
	__be32 addr[4];
	/* out: the outer source. */
	__be32 src[4];
	/* out: 0 for ipip, else gue to this UDP port (network order). */
	__be16 gue_port;
	__u8 pad[6];
};

/* Per-CPU counters. */
struct probe_counters {
	/* Packets encapsulated to a backend (probe_out). */
	__u64 out;
	/* Answers given back the backend's address (probe_in). */
	__u64 in;
	/* Registered packets a helper failed on (passed as they were). */
	__u64 errors;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROBE_MAX);
	__type(key, struct probe_key);
	__type(value, struct probe);
} probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_counters);
} probe_stats SEC(".maps");

/* A TCP packet's headers as the programs read them. */
struct seen {
	struct probe_key key;
	union {
		struct iphdr ip4;
		struct ipv6hdr ip6;
	};
	__u32 ip_len; /* the IP packet's length */
	__u32 l4_off; /* the TCP header's offset */
};

/* parse reads an untagged IPv4 (no options, not a fragment) or IPv6 (TCP
 * next) TCP packet's headers into s and its key for dir (out: the
 * destination and ports as sent; in: the source, ports swapped); 0 if it
 * is none. */
static __always_inline int parse(struct __sk_buff *skb, struct seen *s,
				 __u8 dir)
{
	struct ethhdr eth;
	__be16 ports[2];

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return 0;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &s->ip4, sizeof(s->ip4)))
			return 0;
		if (s->ip4.ver_ihl != 0x45 || s->ip4.protocol != IPPROTO_TCP ||
		    (s->ip4.frag_off & bpf_htons(0x3FFF)))
			return 0;
		s->key.family = XLB_AF_INET;
		s->key.peer[0] = dir == PROBE_OUT ? s->ip4.daddr : s->ip4.saddr;
		s->ip_len = bpf_ntohs(s->ip4.tot_len);
		s->l4_off = ETH_HLEN + sizeof(struct iphdr);
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &s->ip6, sizeof(s->ip6)))
			return 0;
		if (s->ip6.nexthdr != IPPROTO_TCP)
			return 0;
		s->key.family = XLB_AF_INET6;
		__builtin_memcpy(s->key.peer,
				 dir == PROBE_OUT ? s->ip6.daddr : s->ip6.saddr,
				 16);
		s->ip_len =
			sizeof(struct ipv6hdr) + bpf_ntohs(s->ip6.payload_len);
		s->l4_off = ETH_HLEN + sizeof(struct ipv6hdr);
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, s->l4_off, ports, sizeof(ports)))
		return 0;
	s->key.dir = dir;
	s->key.lport = dir == PROBE_OUT ? ports[0] : ports[1];
	s->key.rport = dir == PROBE_OUT ? ports[1] : ports[0];
	return 1;
}

/* readdress replaces the packet's destination (out) or source (in)
 * address with addr, fixing the IPv4 header checksum and the TCP
 * checksum's pseudo-header (whether the kernel completes it later or it is
 * complete), and the copy in s. */
static __always_inline int readdress(struct __sk_buff *skb, struct seen *s,
				     const __be32 addr[4], __u8 dir)
{
	__u32 csum_off = s->l4_off + 16;

	if (s->key.family == XLB_AF_INET) {
		__u32 off = ETH_HLEN + (dir == PROBE_OUT ? 16 : 12);
		__be32 *old = dir == PROBE_OUT ? &s->ip4.daddr : &s->ip4.saddr;
		if (bpf_l4_csum_replace(skb, csum_off, *old, addr[0],
					BPF_F_PSEUDO_HDR | 4) ||
		    bpf_l3_csum_replace(skb, ETH_HLEN + 10, *old, addr[0], 4) ||
		    bpf_skb_store_bytes(skb, off, &addr[0], 4, 0))
			return -1;
		*old = addr[0];
		return 0;
	}
	__u32 off = ETH_HLEN + (dir == PROBE_OUT ? 24 : 8);
	__be32 *old = dir == PROBE_OUT ? s->ip6.daddr : s->ip6.saddr;
	__s64 diff = bpf_csum_diff(old, 16, (__be32 *)addr, 16, 0);
	if (diff < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR) ||
	    bpf_skb_store_bytes(skb, off, addr, 16, 0))
		return -1;
	__builtin_memcpy(old, addr, 16);
	return 0;
}

/* registered returns the probes entry of the packet's connection in
 * direction dir (its headers read into s) and the counters (*c); NULL for
 * a packet of no registered connection. */
static __always_inline struct probe *registered(struct __sk_buff *skb,
						struct seen *s, __u8 dir,
						struct probe_counters **c)
{
	__u32 zero = 0;

	if (!parse(skb, s, dir))
		return NULL;
	struct probe *p = bpf_map_lookup_elem(&probes, &s->key);
	if (!p)
		return NULL;
	*c = bpf_map_lookup_elem(&probe_stats, &zero);
	return *c ? p : NULL;
}

/* sum16 adds n 32-bit words to a one's complement sum. */
static __always_inline __u64 sum16(const __be32 *w, int n)
{
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < n)
			s += (w[i] & 0xffff) + (w[i] >> 16);
	return s;
}

/* The outer header probe_out writes: IPv4 or IPv6, and UDP for gue. */
union outer {
	struct {
		struct iphdr ip;
		struct udphdr u;
	} v4;
	struct {
		struct ipv6hdr ip;
		struct udphdr u;
	} v6;
};

SEC("tc")
int probe_out(struct __sk_buff *skb)
{
	struct seen s;
	union outer o;

	struct probe_counters *c;
	struct probe *p = registered(skb, &s, PROBE_OUT, &c);
	if (!p)
		return TC_ACT_OK;
	int v6 = s.key.family == XLB_AF_INET6;
	if (readdress(skb, &s, p->addr, PROBE_OUT))
		goto err;

	__u32 hlen = v6 ? OUTER6_LEN : OUTER4_LEN;
	__u32 ulen = p->gue_port ? GUE_UDP_LEN : 0;
	__u64 flags = v6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 :
			   BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	if (p->gue_port)
		flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	if (bpf_skb_adjust_room(skb, hlen + ulen, BPF_ADJ_ROOM_MAC, flags))
		goto err;

	__builtin_memset(&o, 0, sizeof(o));
	__u8 proto =
		p->gue_port ? IPPROTO_UDP : (v6 ? IPPROTO_IPV6 : IPPROTO_IPIP);
	if (v6) {
		__u32 tc = (bpf_ntohl(s.ip6.ver_tc_flow) >> 20) & 0xff;
		o.v6.ip.ver_tc_flow = bpf_htonl((6U << 28) | (tc << 20) |
						bpf_ntohs(s.key.lport));
		o.v6.ip.payload_len = bpf_htons(s.ip_len + ulen);
		o.v6.ip.nexthdr = proto;
		o.v6.ip.hop_limit = ENCAP_TTL;
		__builtin_memcpy(o.v6.ip.saddr, p->src, 16);
		__builtin_memcpy(o.v6.ip.daddr, s.key.peer, 16);
	} else {
		o.v4.ip.ver_ihl = 0x45;
		o.v4.ip.tos = s.ip4.tos;
		o.v4.ip.tot_len = bpf_htons(s.ip_len + hlen + ulen);
		o.v4.ip.frag_off = s.ip4.frag_off & bpf_htons(IP_DF);
		o.v4.ip.ttl = ENCAP_TTL;
		o.v4.ip.protocol = proto;
		o.v4.ip.saddr = p->src[0];
		o.v4.ip.daddr = s.key.peer[0];
		o.v4.ip.check = ipv4_hdr_csum(&o.v4.ip);
	}
	if (p->gue_port) {
		struct udphdr *u = v6 ? &o.v6.u : &o.v4.u;
		u->source =
			bpf_htons(0xC000 | (bpf_ntohs(s.key.lport) & 0x3FFF));
		u->dest = p->gue_port;
		u->len = bpf_htons(s.ip_len + GUE_UDP_LEN);
		if (v6) {
			/* The sum of a TCP segment whose checksum is right is
			 * the complement of its pseudo-header's: the segment's
			 * checksum need not be final yet (the kernel may
			 * complete it later) for the outer one to be. */
			__u64 inner = sum16(s.ip6.saddr, 4) +
				      sum16(s.ip6.daddr, 4) +
				      bpf_htons(s.ip_len - sizeof(s.ip6)) +
				      bpf_htons(IPPROTO_TCP);
			__u64 sum = sum16(o.v6.ip.saddr, 4) +
				    sum16(o.v6.ip.daddr, 4) + u->len +
				    bpf_htons(IPPROTO_UDP) + u->source +
				    u->dest + u->len;
			__s64 h = bpf_csum_diff(0, 0, (__be32 *)&s.ip6,
						sizeof(s.ip6), 0);
			if (h < 0)
				goto err;
			sum += (__u32)h + (__u16)~csum_fold16(inner);
			__u16 ck = ~csum_fold16(sum);
			u->check = ck ? ck : 0xffff;
		}
	}
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &o, hlen + ulen, 0))
		goto err;
	c->out++;
	return TC_ACT_OK;
err:
	c->errors++;
	return TC_ACT_OK;
}

SEC("tc")
int probe_in(struct __sk_buff *skb)
{
	struct seen s;

	struct probe_counters *c;
	struct probe *p = registered(skb, &s, PROBE_IN, &c);
	if (!p)
		return TC_ACT_OK;
	if (readdress(skb, &s, p->addr, PROBE_IN)) {
		c->errors++;
		return TC_ACT_OK;
	}
	c->in++;
	return TC_ACT_OK;
}

char __license[] SEC("license") = "GPL";
