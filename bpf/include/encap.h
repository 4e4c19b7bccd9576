/* Encapsulated forwarding (ipip, gue): the client's IP packet, unchanged,
 * inside a new IP header (and a UDP header for gue) addressed to the
 * backend, which unwraps it and answers the client directly. */
#ifndef XLB_ENCAP_H
#define XLB_ENCAP_H

#include "types.h"
#include "consts.h"
#include "parse.h"
#include "structs.h"
#include "hash.h"

#define IPPROTO_IPIP 4
#define IPPROTO_IPV6 41
#define IP_DF 0x4000
#define ENCAP_TTL 64
#define ETH_HLEN 14

/* Outer header sizes. */
#define OUTER4_LEN 20
#define OUTER6_LEN 40
#define GUE_UDP_LEN 8

/* csum_fold16 folds a 32-bit one's complement sum to 16 bits. */
static __always_inline __u16 csum_fold16(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* ipv4_hdr_csum is the checksum of a 20-byte IPv4 header whose check field
 * is zero. */
static __always_inline __u16 ipv4_hdr_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 s = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	return ~csum_fold16(s);
}

/* csum_packet sums len bytes of the frame from off (the one's complement
 * sum, not folded), CSUM_CHUNK bytes at a time through buf (CSUM_CHUNK + 4
 * bytes); bit 63 set on failure. Zeros pad an odd tail, the Internet
 * checksum's rule (chunks are even, so only the last can be odd). */
static __always_inline __u64 csum_packet(struct xdp_md *ctx, __u32 off,
					 __u32 len, __u8 *buf)
{
	__u64 sum = 0;

	if (len > CSUM_MAX_CHUNKS * CSUM_CHUNK)
		return 1ULL << 63;
	for (__u32 i = 0; i < CSUM_MAX_CHUNKS; i++) {
		__u32 done = i * CSUM_CHUNK;
		if (done >= len)
			break;
		__u32 words = CSUM_CHUNK;
		if (len - done >= CSUM_CHUNK) {
			if (bpf_xdp_load_bytes(ctx, off + done, buf,
					       CSUM_CHUNK))
				return 1ULL << 63;
		} else {
			__u64 m = len - done;
			/* In asm: clang drops a mask it can prove redundant,
			 * and the verifier then sees a length it cannot
			 * bound. */
			asm volatile("%[m] &= %[k]"
				     : [m] "+r"(m)
				     : [k] "i"(CSUM_CHUNK - 1));
			*(__u32 *)(buf + (m & ~3ULL)) = 0;
			if (m == 0 ||
			    bpf_xdp_load_bytes(ctx, off + done, buf, m))
				return 1ULL << 63;
			/* The verifier bounds this loosely: buf has 4 spare
			 * bytes. */
			words = ((m + 3) >> 2) << 2;
		}
		__s64 s = bpf_csum_diff(0, 0, (void *)buf, words, 0);
		if (s < 0)
			return 1ULL << 63;
		sum += (__u32)s;
	}
	return sum;
}

/* encap_src fills the outer source of a flow with hash h from the config:
 * the configured address with its last bits replaced by the hash. */
static __always_inline void encap_src(const struct xlb_config *c, int v6,
				      __u32 h, __be32 src[4])
{
	if (!v6) {
		__u32 bits = c->encap_src4_bits;
		__u32 a = bpf_ntohl(c->encap_src4);
		if (bits > 0 && bits <= 16)
			a = (a & ~((1U << bits) - 1)) |
			    (h & ((1U << bits) - 1));
		src[0] = bpf_htonl(a);
		return;
	}
	src[0] = c->encap_src6[0];
	src[1] = c->encap_src6[1];
	src[2] = c->encap_src6[2];
	__u32 bits = c->encap_src6_bits;
	__u32 a = bpf_ntohl(c->encap_src6[3]);
	if (bits > 0 && bits <= 32) {
		__u32 mask = bits == 32 ? 0xffffffffU : (1U << bits) - 1;
		a = (a & ~mask) | (h & mask);
	}
	src[3] = bpf_htonl(a);
}

#endif
