/* Frame rewrites of the forwarding modes. */
#ifndef XLB_REWRITE_H
#define XLB_REWRITE_H

#include "types.h"
#include "consts.h"
#include "parse.h"
#include "structs.h"

/* Source MAC for forwarded frames: the interface's MAC, set by the loader
 * before load. All zero means "use the MAC the frame was addressed to". */
const volatile __u8 iface_mac[ETH_ALEN] = {};

/* iface_mac_set is read byte by byte: clang may fold a memcpy of a
 * const volatile array into constant zeros. */
static __always_inline int iface_mac_set(void)
{
	return iface_mac[0] | iface_mac[1] | iface_mac[2] | iface_mac[3] |
	       iface_mac[4] | iface_mac[5];
}

/* addressed_to_us reports whether a frame's destination MAC is ours, so
 * frames for other hosts seen in promiscuous mode are left to the kernel
 * (which drops them) rather than forwarded. */
static __always_inline int addressed_to_us(const struct ethhdr *eth)
{
	if (!iface_mac_set())
		return !(eth->h_dest[0] & 1); /* any unicast */
	return eth->h_dest[0] == iface_mac[0] &&
	       eth->h_dest[1] == iface_mac[1] &&
	       eth->h_dest[2] == iface_mac[2] &&
	       eth->h_dest[3] == iface_mac[3] &&
	       eth->h_dest[4] == iface_mac[4] && eth->h_dest[5] == iface_mac[5];
}

/* rewrite_dsr_l2 readdresses the frame to the backend at layer 2 only: the
 * IP and L4 headers stay as the client sent them, so the backend sees the
 * real client address and answers it directly. */
static __always_inline void rewrite_dsr_l2(struct ethhdr *eth,
					   const struct backend *be)
{
	if (iface_mac_set()) {
		eth->h_source[0] = iface_mac[0];
		eth->h_source[1] = iface_mac[1];
		eth->h_source[2] = iface_mac[2];
		eth->h_source[3] = iface_mac[3];
		eth->h_source[4] = iface_mac[4];
		eth->h_source[5] = iface_mac[5];
	} else {
		__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	}
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
}

/* csum_replace2 updates an Internet checksum for a 16-bit word of the
 * covered data changing from old to new (RFC 1624, eqn. 3: HC' = ~(~HC +
 * ~m + m')). The words are taken as stored: one's complement sums do not
 * depend on byte order. */
static __always_inline void csum_replace2(__u16 *sum, __u16 old, __u16 new)
{
	__u32 s = (__u16) ~*sum;

	s += (__u16)~old;
	s += new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*sum = ~s;
}

/* swap_macs sends a frame back where it came from at layer 2. */
static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* rewrite_echo_reply4 turns an ICMP echo request, whose IPv4 header and
 * 8-byte ICMP header the caller has bounds-checked, into its reply: MACs
 * and addresses swapped (neither checksum covers an order of addresses),
 * TTL reset, type 0; both checksums updated incrementally. The id,
 * sequence number and data stay. */
static __always_inline void
rewrite_echo_reply4(struct ethhdr *eth, struct iphdr *ip, struct icmphdr *ih)
{
	__be32 a = ip->saddr;
	__u16 old;

	swap_macs(eth);
	ip->saddr = ip->daddr;
	ip->daddr = a;
	/* TTL and protocol are one 16-bit word of the header. */
	old = *(__u16 *)&ip->ttl;
	ip->ttl = ECHO_REPLY_TTL;
	csum_replace2(&ip->check, old, *(__u16 *)&ip->ttl);
	old = *(__u16 *)ih;
	ih->type = ICMP_ECHOREPLY;
	csum_replace2(&ih->checksum, old, *(__u16 *)ih);
}

/* rewrite_echo_reply6 is rewrite_echo_reply4 for ICMPv6: the pseudo-header
 * the checksum covers holds both addresses, so swapping them leaves it
 * alone; only the type (128 to 129) is accounted for. */
static __always_inline void
rewrite_echo_reply6(struct ethhdr *eth, struct ipv6hdr *ip6, struct icmphdr *ih)
{
	__be32 a[4];
	__u16 old;

	swap_macs(eth);
	__builtin_memcpy(a, ip6->saddr, sizeof(a));
	__builtin_memcpy(ip6->saddr, ip6->daddr, sizeof(a));
	__builtin_memcpy(ip6->daddr, a, sizeof(a));
	ip6->hop_limit = ECHO_REPLY_TTL;
	old = *(__u16 *)ih;
	ih->type = ICMPV6_ECHO_REPLY;
	csum_replace2(&ih->checksum, old, *(__u16 *)ih);
}

#endif
