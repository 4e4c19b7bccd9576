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

#endif
