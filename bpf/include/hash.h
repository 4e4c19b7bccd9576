/* Flow hashing for the schedulers.
 *
 * A 32-bit MurmurHash3-style mix over the key words with a fixed seed. The
 * seed is fixed on purpose: every balancer node behind the same ECMP group
 * must pick the same backend for the same flow. maps.FlowHash in Go is the
 * reference twin of these functions (tests compare them). */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include "types.h"
#include "structs.h"

#define XLB_HASH_SEED 0x786c6221U /* "xlb!" */

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 hash_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51U;
	k = rotl32(k, 15);
	k *= 0x1b873593U;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64U;
}

static __always_inline __u32 hash_final(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

/* hash_flow hashes the whole 5-tuple (maglev scheduler). */
static __always_inline __u32 hash_flow(const struct flow_key *k)
{
	__u32 h = XLB_HASH_SEED;

	h = hash_mix(h, k->src[0]);
	h = hash_mix(h, k->src[1]);
	h = hash_mix(h, k->src[2]);
	h = hash_mix(h, k->src[3]);
	h = hash_mix(h, k->dst[0]);
	h = hash_mix(h, k->dst[1]);
	h = hash_mix(h, k->dst[2]);
	h = hash_mix(h, k->dst[3]);
	h = hash_mix(h, ((__u32)k->sport << 16) | k->dport);
	h = hash_mix(h, ((__u32)k->family << 8) | k->proto);
	return hash_final(h, 40);
}

/* hash_src hashes the client address only (source-hash scheduler). */
static __always_inline __u32 hash_src(const struct flow_key *k)
{
	__u32 h = XLB_HASH_SEED;

	h = hash_mix(h, k->src[0]);
	h = hash_mix(h, k->src[1]);
	h = hash_mix(h, k->src[2]);
	h = hash_mix(h, k->src[3]);
	h = hash_mix(h, k->family);
	return hash_final(h, 20);
}

/* vip_slot is the VIP filter's slot of a destination address: its four
 * words (as loaded: zero beyond an IPv4 address's first) folded into
 * VIP_FILTER_BITS. maps.VIPSlot is its Go twin. */
static __always_inline __u32 vip_slot(const __be32 addr[4])
{
	__u32 x = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];

	x ^= x >> 16;
	return x & (VIP_FILTER_BITS - 1);
}

#endif
