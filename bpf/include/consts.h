/* Limits, flags and protocol numbers of the data plane.
 *
 * Every limit can be overridden at compile time (tests shrink them) and the
 * map sizes can also be changed by the loader before load. */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

/* Number of services (VIP, port, protocol). Service ids index arrays. */
#ifndef MAX_SERVICES
#define MAX_SERVICES 4096
#endif

/* Number of (service, backend) pairs. Backend id 0 is reserved: "none". */
#ifndef MAX_BACKENDS
#define MAX_BACKENDS 65536
#endif

/* Connection-table entries (LRU: the least recently used flow is evicted). */
#ifndef CONNTRACK_SIZE
#define CONNTRACK_SIZE (1 << 20)
#endif

/* Default Maglev table size; must be prime. The loader sets the real size. */
#ifndef MAGLEV_SIZE
#define MAGLEV_SIZE 65537
#endif

/* Client-persistence entries (LRU). */
#ifndef PERSIST_SIZE
#define PERSIST_SIZE (1 << 18)
#endif

/* Backends a least-conn service may have with a weight above 0: the
 * new-flow path scans them all. */
#ifndef MAX_LC_BACKENDS
#define MAX_LC_BACKENDS 256
#endif

/* VLAN tags parsed at most (802.1Q inside 802.1ad is the common QinQ). */
#ifndef MAX_VLAN_DEPTH
#define MAX_VLAN_DEPTH 2
#endif

/* IPv6 extension headers (hop-by-hop, routing, destination options,
 * fragment) walked at most before the L4 header. */
#ifndef MAX_IPV6_EXT
#define MAX_IPV6_EXT 4
#endif

/* Entries of the fragment table ((src, dst, IP ID, protocol) -> backend). */
#ifndef HALFOPEN_SIZE
#define HALFOPEN_SIZE (1 << 18)
#endif

#ifndef FRAGS_SIZE
#define FRAGS_SIZE 4096
#endif

/* fib_cache: its slots, and how long a next hop serves before the FIB is
 * asked again (a route or neighbour change reaches encapsulated traffic
 * within this). */
#ifndef FIB_CACHE_SLOTS
#define FIB_CACHE_SLOTS 4096
#endif
#ifndef FIB_CACHE_NS
#define FIB_CACHE_NS 1000000000ULL
#endif

/* Lifetime of a fragment-table entry: later fragments that arrive after it
 * are unmatched. */
#ifndef FRAG_TIMEOUT_NS
#define FRAG_TIMEOUT_NS 3000000000ULL
#endif

/* Slots of the VIP filter (a power of two): 8 KiB of bits. With a few
 * hundred VIPs most non-VIP frames find their bit clear. */
#define VIP_FILTER_BITS 65536

/* A flow's last_seen is refreshed at most this often, to keep established
 * flows from writing the shared connection-table entry on every packet. */
#define LAST_SEEN_GRANULARITY_NS 1000000000ULL

/* Ethertypes, host order. */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_ALEN 6

/* IP protocol numbers. */
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58

/* ICMP and ICMPv6 echo types. */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

/* ICMP and ICMPv6 error types whose quote leads to a flow: ICMPv4
 * destination unreachable (every code, fragmentation needed is 4), ICMPv6
 * destination unreachable and packet too big. */
#define ICMP_DEST_UNREACH 3
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2

/* Bytes of the quoted L4 header an ICMP error must carry: its ports (RFC
 * 792 quotes 8 bytes at least). */
#define ICMP_QUOTE_L4_LEN 8

/* TTL (hop limit) of the echo replies the data plane sends. */
#define ECHO_REPLY_TTL 64

/* TCP flag bits (tcphdr.flags). */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Address families as stored in keys (Linux AF_* values). */
#define XLB_AF_INET 2
#define XLB_AF_INET6 10

/* IPv4 fragment bits (host order, in frag_off). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* Backend flags (struct backend.flags). */
/* F_BACKEND_USABLE: healthy and its MAC is known; may carry traffic.
 * Drained backends (weight 0) stay usable for their existing flows: they are
 * only left out of the Maglev table. */
#define F_BACKEND_USABLE (1U << 0)
/* F_BACKEND_FAILING: failing its health check but kept usable for its
 * established flows (drained backends keep them whatever their health); it
 * takes no persistent client. */
#define F_BACKEND_FAILING (1U << 1)
/* F_BACKEND_IPIP, F_BACKEND_GUE: the backend's service forwards by ipip
 * (gue): the backend is reached by its address through the FIB, not by its
 * MAC. Copied from the service so every forwarding path knows it from the
 * backend alone. */
#define F_BACKEND_IPIP (1U << 2)
#define F_BACKEND_GUE (1U << 3)

/* Flow flags (struct flow.flags). */
/* F_FLOW_CLOSING: the client sent FIN or RST; the flow no longer counts as
 * active and expires after the TCP closing timeout. */
#define F_FLOW_CLOSING (1U << 0)

/* Runtime flags (struct xlb_config.flags). */
/* F_CFG_NO_ICMP_ECHO: echo requests to a VIP go to the kernel instead of
 * being answered here. Off (0) is the default, so a config entry of zeros
 * answers them. */
#define F_CFG_NO_ICMP_ECHO (1U << 0)
/* F_CFG_NO_ICMP_FORWARD: ICMP errors to a VIP go to the kernel (as not for
 * a service) instead of to the backend of the flow they quote. */
#define F_CFG_NO_ICMP_FORWARD (1U << 1)

/* Bytes of the GUE-over-IPv6 checksum summed per step (csum_packet), and
 * the steps: packets up to 16 KiB. */
#define CSUM_CHUNK 256
#define CSUM_MAX_CHUNKS 64

#endif
