/* Structures shared between the data plane and the Go control plane.
 *
 * Rules: no implicit padding (explicit pad fields, large fields first) so a
 * key built in Go hashes to the same bytes as one built here; addresses and
 * ports in network byte order. An IPv4 address lives in addr[0], the other
 * three words zero. bpf2go emits these as Go types (see gen.go). */
#ifndef XLB_STRUCTS_H
#define XLB_STRUCTS_H

#include "types.h"
#include "consts.h"

/* Scheduler of a service: how a new flow picks its backend. */
enum sched : __u8 {
	/* Maglev consistent hash of the 5-tuple. */
	SCHED_MAGLEV = 0,
	/* Maglev consistent hash of the client address only. */
	SCHED_SOURCE_HASH = 1,
	/* Per-CPU cursor over a smooth weighted round-robin sequence. */
	SCHED_ROUND_ROBIN = 2,
	/* Fewest active flows relative to weight ((active+1)/weight). */
	SCHED_LEAST_CONN = 3,
};

/* Forwarding mode of a service. */
enum fwd_mode : __u8 {
	/* L2 direct server return: rewrite MACs, XDP_TX. */
	FWD_DSR_L2 = 0,
	/* IPv4-in-IPv4 or IPv6-in-IPv6 to the backend, next hop from the
	 * FIB. */
	FWD_IPIP = 1,
	/* The client's packet in UDP (GUE variant 1: the IP packet is the UDP
	 * payload) to the backend, next hop from the FIB. */
	FWD_GUE = 2,
};

/* Key of the services map. */
struct svc_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 family;
};

/* Value of the services map. */
struct service {
	/* Index into maglev_tables and svc_stats; owner of its backends. */
	__u32 id;
	/* Client persistence timeout in seconds; 0: off. */
	__u32 persist_secs;
	enum sched sched;
	enum fwd_mode fwd;
	/* Reserved for F_SVC_* flags. */
	__u16 flags;
};

/* Value of the backends array, indexed by backend id. */
struct backend {
	__be32 addr[4];
	/* Id of the service this backend belongs to. */
	__u32 svc_id;
	/* Relative weight (0: drained, no new flows). */
	__u32 weight;
	__u8 mac[ETH_ALEN];
	__u8 family;
	/* F_BACKEND_* */
	__u8 flags;
};

/* Key of the connection table: the client-to-VIP direction of a flow. */
struct flow_key {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* Value of the connection table. */
struct flow {
	/* bpf_ktime_get_coarse_ns() of the latest packet,
	 * LAST_SEEN_GRANULARITY_NS. */
	__u64 last_seen;
	/* Backend the flow is pinned to. */
	__u32 backend_id;
	/* F_FLOW_* */
	__u32 flags;
};

/* Key of the persistence table: one client address of one service. */
struct persist_key {
	__be32 addr[4];
	__u32 svc_id;
	__u8 family;
	__u8 pad[3];
};

/* Value of the persistence table. */
struct persist_entry {
	/* bpf_ktime_get_coarse_ns() of the client's latest new flow (or of a
	 * packet of one of its flows, LAST_SEEN_GRANULARITY_NS). */
	__u64 last_seen;
	__u32 backend_id;
	__u32 pad;
};

/* Key of the fragment table: one fragmented datagram. */
struct frag_key {
	__be32 src[4];
	__be32 dst[4];
	/* IPv4: the 16-bit ID in the first two bytes, then zeros; IPv6: the
	 * fragment header's identification. */
	__be32 id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* Value of the fragment table. */
struct frag_entry {
	/* bpf_ktime_get_coarse_ns() of the first fragment. */
	__u64 created;
	__u32 backend_id;
	__u32 svc_id;
};

/* Settings that may change while the program runs (one-entry array).
 * An idle timeout of 0 means "never expires". */
struct xlb_config {
	/* Idle timeout of an established TCP flow. */
	__u64 tcp_timeout_ns;
	/* Idle timeout of a TCP flow after a FIN or RST from the client. */
	__u64 tcp_fin_timeout_ns;
	/* Idle timeout of a UDP flow. */
	__u64 udp_timeout_ns;
	/* F_CFG_* */
	__u32 flags;
	__u32 pad;
	/* Outer source of encapsulated packets (ipip, gue): encap_src4 and
	 * encap_src6, whose last encap_src4_bits (encap_src6_bits) bits are
	 * replaced by the flow's hash, so that backends' NICs spread the
	 * flows (0: the address as is). */
	__be32 encap_src6[4];
	__be32 encap_src4;
	__u8 encap_src4_bits;
	__u8 encap_src6_bits;
	/* UDP destination port of gue (network order). */
	__be16 gue_port;
};

/* Key of the vips map: an address that is the VIP of at least one
 * service. */
struct vip_key {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

/* Value of the vips map. */
struct vip {
	/* Number of services on the address (any port, any protocol). */
	__u32 services;
	/* Port of the address's only TCP (UDP) service when that service is
	 * source-hash, else 0: fragments that come before their first go to
	 * its source-hash backend (frag_follow). */
	__be16 frag_port_tcp;
	__be16 frag_port_udp;
};

/* Value of the vip_filter array: one bit per VIP_FILTER_BITS slot, set
 * when a VIP's address folds to it (vip_slot). A clear bit proves a
 * TCP or UDP frame is for no service, before any hash lookup; a set one
 * may be a collision, which the lookups then settle. */
struct vip_filter {
	__u64 bits[VIP_FILTER_BITS / 64];
};

/* Global counters: one named field per outcome (per-CPU). */
struct global_counters {
	/* Every frame the program saw. */
	__u64 rx_packets;
	/* Frames forwarded to a backend (XDP_TX). */
	__u64 tx_packets;
	/* XDP_PASS: not IPv4/IPv6 (ARP, LLDP, ...). */
	__u64 pass_not_ip;
	/* XDP_PASS: IP but not TCP/UDP to a service (incl. other L4). */
	__u64 pass_not_vip;
	/* XDP_PASS: frame too short for a header it announces, a bad header,
	 * or a length field that lies (IPv4 IHL/total length, IPv6 payload
	 * length, TCP data offset, UDP length); creates no state. */
	__u64 pass_malformed;
	/* XDP_PASS: a later fragment not to a VIP, or an ICMP fragment. */
	__u64 pass_fragment;
	/* XDP_PASS: an IPv6 extension header that is not walked (ESP, AH,
	 * mobility, HIP, shim6), more than MAX_IPV6_EXT of them, or one
	 * before ICMPv6. */
	__u64 pass_ipv6_ext;
	/* XDP_PASS: TTL/hop limit 0 or 1 on service traffic. */
	__u64 pass_ttl;
	/* XDP_PASS: frame to another host's MAC (promiscuous mode). */
	__u64 pass_other_host;
	/* XDP_DROP: service has no usable backend. */
	__u64 drop_no_backend;
	/* XDP_DROP: internal inconsistency (missing map entry). */
	__u64 drop_internal;
	/* Connection-table hits and new flows scheduled. */
	__u64 conntrack_hits;
	__u64 new_flows;
	/* Flows whose backend became unusable and were moved. */
	__u64 reschedules;
	/* Connection-table inserts that failed (flow still forwarded). */
	__u64 conntrack_insert_errors;
	/* Flows found idle beyond their timeout and scheduled afresh. */
	__u64 expired_flows;
	/* TCP flows that saw a FIN or RST from the client. */
	__u64 closed_flows;
	/* New flows sent to their client's persistent backend. */
	__u64 persist_hits;
	/* ICMP/ICMPv6 echo requests to a VIP answered here (XDP_TX). */
	__u64 icmp_echo_replies;
	/* ICMP destination unreachable and ICMPv6 packet too big or
	 * destination unreachable for a VIP, sent to the backend of the flow
	 * they quote (XDP_TX; not in tx_packets). */
	__u64 icmp_errors_forwarded;
	/* XDP_PASS: an ICMP error quoting a service's packet whose flow has
	 * no connection-table entry (or a stale one) and whose service's
	 * scheduler cannot place it again (round-robin, least-conn). */
	__u64 icmp_errors_unmatched;
	/* First fragments (offset 0, more to come) scheduled and remembered
	 * in the fragment table. */
	__u64 frag_first;
	/* Later fragments sent to their first fragment's backend (XDP_TX). */
	__u64 frag_forwarded;
	/* XDP_PASS: a later fragment to a VIP with no live fragment-table
	 * entry (it came before its first fragment, or too late) that could
	 * not be placed by source hash either. */
	__u64 frag_unmatched;
	/* Later fragments that came before their first, sent to the client's
	 * source-hash backend (also in frag_forwarded). */
	__u64 frag_early;
	/* New TCP flows whose first packet (a SYN, or any packet of a flow
	 * first seen mid-stream) was recorded in the half-open table (also in
	 * new_flows). */
	__u64 halfopen_new;
	/* Half-open flows moved to the connection table by their next packet
	 * (the handshake's ACK). */
	__u64 halfopen_promoted;
	/* Frames encapsulated (ipip, gue) and sent to their backend (also in
	 * tx_packets). */
	__u64 encap_packets;
	/* XDP_PASS: an encapsulated backend the FIB has no route or neighbour
	 * for (the kernel resolves the neighbour; later packets go). */
	__u64 encap_fib_miss;
	/* XDP_DROP: encapsulated, the frame would exceed the egress MTU. */
	__u64 encap_too_big;
	/* XDP_DROP: the encapsulated frame could not be built (a helper
	 * failed, or an inner packet the encapsulation cannot carry). */
	__u64 encap_errors;
	/* Of encap_too_big: answered with ICMP fragmentation needed (a DF
	 * IPv4 packet) or ICMPv6 packet too big (XDP_TX, to the client). */
	__u64 encap_icmp_too_big;
	/* FIB lookups made to fill or refresh fib_cache (the rest of
	 * encap_packets used a cached next hop). */
	__u64 encap_fib_lookups;
};

/* Per-service counters (per-CPU, indexed by service id). */
struct svc_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 drop_no_backend;
};

/* Per-backend counters (per-CPU, indexed by backend id). */
struct backend_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/* A backend's next hop as the FIB last gave it (fib_cache): where to send
 * its encapsulated frames, and the egress MTU. */
struct fib_hop {
	/* When it was looked up (bpf_ktime_get_coarse_ns). */
	__u64 at;
	/* For which backend (id and address), from which ingress interface:
	 * the slot is shared by ids equal modulo FIB_CACHE_SLOTS. */
	__be32 addr[4];
	__u32 bid;
	__u32 iif;
	/* The egress interface and its MTU for this route. */
	__u32 ifindex;
	__u32 mtu;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
};

/* encap_forward's state, one per CPU (off the stack, which a call chain's
 * frames share). */
struct encap_scratch {
	struct bpf_fib_lookup fib;
	__be32 src[4];
	/* The caller's bpf_ktime_get_coarse_ns. */
	__u64 now;
	__u32 ip_off;
	__u32 len;
	__u32 after;
	__u32 over;
	__u32 h;
	/* The backend's id, and a map key for encap_forward. */
	__u32 bid;
	__u32 key;
	__be16 df;
	__u8 v6;
	__u8 gue;
	__u8 tos;
	/* The packet may be answered with ICMP too big (not an ICMP error). */
	__u8 answer;
	__u8 pad[2];
	struct fib_hop hop;
	/* csum_packet's buffer: a chunk and 4 spare bytes. */
	__u8 buf[CSUM_CHUNK + 4];
};

#endif
