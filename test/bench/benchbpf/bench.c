//go:build ignore

/* Programs of `make bench`, none of them part of xlb:
 *
 *  - macswap: the per-packet baseline: swap the MACs, XDP_TX.
 *  - l2fwd:   the throughput baseline: destination MAC := the backend's,
 *             source MAC := the balancer's, XDP_TX. What xlb's dsr-l2 does
 *             to a frame, without looking at it.
 *  - gen:     traffic generator for BPF_F_TEST_XDP_LIVE_FRAMES: writes a
 *             whole Ethernet/IPv4/UDP frame for the next flow, XDP_TX.
 *  - sink:    counts (per CPU) and drops what reaches a backend.
 *  - l2switch: for the lab's bridge ports: frames for a MAC in switch_fdb
 *             are redirected (XDP, no skb) to that MAC's port; everything
 *             else is passed to the kernel bridge.
 *  - fresh:   gives a TCP frame a new source address and port on every
 *             run, then tail-calls the measured program, so BPF_PROG_TEST_RUN
 *             with repeat really inserts a new flow on each iteration.
 *  - restore: puts a frame back as it was (length and bytes) before each
 *             run, optionally with fresh's new source, then tail-calls the
 *             measured program: with repeat, each iteration otherwise sees
 *             the previous one's output, which an encapsulating program
 *             has grown by an outer header.
 *  - spread:  gives a TCP or UDP frame the tuple of one of N known flows
 *             on every run, in a scattered order, then tail-calls the
 *             measured program: established flows that are not all one
 *             hot entry in the connection table.
 * The sink also records the latency of stamped frames (see lat_hist). */

#include "bench.h"

/* ---- baselines ---- */

SEC("xdp")
int macswap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* MACs of l2fwd, set before load. Read byte by byte: clang may fold a
 * memcpy of a const volatile array into constant zeros. */
const volatile __u8 fwd_dst_mac[ETH_ALEN] = {};
const volatile __u8 fwd_src_mac[ETH_ALEN] = {};

SEC("xdp")
int l2fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = fwd_dst_mac[i];
		eth->h_source[i] = fwd_src_mac[i];
	}
	return XDP_TX;
}

/* ---- traffic generator ---- */

/* Generator settings, set before load (network byte order where __be). */
const volatile __u8 gen_dst_mac[ETH_ALEN] = {};
const volatile __u8 gen_src_mac[ETH_ALEN] = {};
const volatile __be32 gen_saddr = 0; /* first source address */
const volatile __be32 gen_daddr = 0; /* the VIP */
const volatile __u16 gen_dport = 0;  /* host order */
const volatile __u16 gen_sport = 0;  /* first source port, host order */
const volatile __u32 gen_flows = 1;  /* distinct flows, cycled */
const volatile __u32 gen_ports = 1;  /* source ports per source address */

struct gen_state {
	__u64 seq;          /* frames written on this CPU */
	__u64 sent;         /* frames returned with XDP_TX */
	__u64 short_frames; /* frames too short for the headers */
};

/* Per-CPU generator state and counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_state);
} gen_stats SEC(".maps");

static __always_inline __u16 ip_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_state *st = bpf_map_lookup_elem(&gen_stats, &zero);

	/* Cannot miss (one-entry array), but the verifier needs the check. */
	if (!st)
		return XDP_ABORTED;

	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end) {
		st->short_frames++;
		return XDP_DROP;
	}
	__u32 flows = gen_flows ? gen_flows : 1;
	__u32 ports = gen_ports ? gen_ports : 1;
	__u32 flow = (__u32)(st->seq % flows);
	st->seq++;

	/* Live frames come back with the previous run's edits: write every
	 * header field the path relies on, for every frame. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = gen_dst_mac[i];
		eth->h_source[i] = gen_src_mac[i];
	}
	eth->h_proto = bpf_htons(ETH_P_IP);

	__u16 len = (__u16)(end - (void *)ip);
	ip->ver_ihl = 0x45;
	ip->tos = 0;
	ip->tot_len = bpf_htons(len);
	ip->id = bpf_htons((__u16)flow);
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = bpf_htonl(bpf_ntohl(gen_saddr) + flow / ports);
	ip->daddr = gen_daddr;
	ip->check = ip_csum(ip);

	udp->source = bpf_htons((__u16)(gen_sport + flow % ports));
	udp->dest = bpf_htons(gen_dport);
	udp->len = bpf_htons(len - sizeof(*ip));
	udp->check = 0; /* optional for IPv4 */

	st->sent++;
	return XDP_TX;
}

/* ---- sink ---- */

/* The VIP the sink counts as "ours". */
const volatile __be32 sink_daddr = 0;

struct sink_counters {
	__u64 packets; /* every frame */
	__u64 ours;    /* IPv4 UDP frames for sink_daddr */
	__u64 bytes;   /* bytes of those */
};

/* Per-CPU sink counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_counters);
} sink_stats SEC(".maps");

/* Latency histogram: frames whose UDP payload starts with LAT_MAGIC carry
 * the sender's CLOCK_MONOTONIC (what bpf_ktime_get_ns reads) in the next 8
 * bytes, host order; the sink counts now - stamp in bucket lat_bucket(). */
#define LAT_MAGIC 0x31302d74616c626cULL /* "lblat-01" read little endian */
#define LAT_FINE_NS 50                  /* bucket width below LAT_FINE_END */
#define LAT_FINE_END 100000             /* 100 us: 2000 buckets of 50 ns */
#define LAT_COARSE_NS 10000             /* bucket width up to LAT_END */
#define LAT_END 10000000                /* 10 ms: 990 buckets of 10 us */
#define LAT_BUCKETS                                                            \
	(LAT_FINE_END / LAT_FINE_NS +                                          \
	 (LAT_END - LAT_FINE_END) / LAT_COARSE_NS + 2)
/* The last two buckets: LAT_END or more, and a stamp in the future. */

/* Per-CPU latency counts by bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LAT_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} lat_hist SEC(".maps");

struct lat_stamp {
	__u64 magic;
	__u64 mono_ns;
};

static __always_inline __u32 lat_bucket(__u64 now, __u64 stamp)
{
	if (stamp > now)
		return LAT_BUCKETS - 1;
	__u64 d = now - stamp;
	if (d < LAT_FINE_END)
		return (__u32)(d / LAT_FINE_NS);
	if (d < LAT_END)
		return (__u32)(LAT_FINE_END / LAT_FINE_NS +
			       (d - LAT_FINE_END) / LAT_COARSE_NS);
	return LAT_BUCKETS - 2;
}

/* record_latency counts a stamped UDP datagram (udp: its header). */
static __always_inline void record_latency(void *udp, void *end)
{
	struct lat_stamp *st = udp + sizeof(struct udphdr);

	if ((void *)(st + 1) > end || st->magic != LAT_MAGIC)
		return;
	__u32 b = lat_bucket(bpf_ktime_get_ns(), st->mono_ns);
	__u64 *n = bpf_map_lookup_elem(&lat_hist, &b);
	if (n)
		*n += 1;
}

SEC("xdp")
int sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct sink_counters *c = bpf_map_lookup_elem(&sink_stats, &zero);

	/* Cannot miss (one-entry array), but the verifier needs the check. */
	if (!c)
		return XDP_DROP;
	c->packets++;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_DROP;
	if (ip->protocol == IPPROTO_UDP && ip->daddr == sink_daddr) {
		c->ours++;
		c->bytes += end - data;
		if (ip->ver_ihl == 0x45)
			record_latency((void *)(ip + 1), end);
		return XDP_DROP;
	}
	/* ipip (an encapsulating balancer): the inner packet's. */
	struct iphdr *in = (void *)(ip + 1);
	if (ip->protocol == 4 && (void *)(in + 1) <= end &&
	    in->protocol == IPPROTO_UDP && in->daddr == sink_daddr) {
		c->ours++;
		c->bytes += end - data;
	}
	return XDP_DROP;
}

/* ---- XDP switch for the lab's bridge ports ---- */

/* Destination MAC (in the low 6 bytes, rest zero) -> switch_ports slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
} switch_fdb SEC(".maps");

/* Ports by slot (ifindex values, for bpf_redirect_map). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} switch_ports SEC(".maps");

SEC("xdp")
int l2switch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 mac = 0;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_dest[0] & 1) /* broadcast and multicast: the bridge's job */
		return XDP_PASS;
	__builtin_memcpy(&mac, eth->h_dest, ETH_ALEN);
	__u32 *slot = bpf_map_lookup_elem(&switch_fdb, &mac);
	if (!slot)
		return XDP_PASS;
	return bpf_redirect_map(&switch_ports, *slot, XDP_PASS);
}

/* ---- fresh flows for BPF_PROG_TEST_RUN ---- */

/* The program fresh hands each frame to (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fresh_next SEC(".maps");

/* Per-CPU count of frames fresh rewrote. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fresh_seq SEC(".maps");

/* renew writes the low 16 bits of the source address and the source port
 * from the per-CPU sequence number seq (advanced) and the CPU. */
static __always_inline void renew(struct iphdr *ip, struct tcpports *tcp,
				  __u64 *seq)
{
	/* The sequence is per CPU, and a test run may land on any CPU: the
	 * CPU goes into the port so no two CPUs make the same tuple. */
	__u32 n = (__u32)*seq;
	__u32 cpu = bpf_get_smp_processor_id();
	*seq += 1;
	__u16 *lo = (__u16 *)&ip->saddr + 1;
	*lo = bpf_htons((__u16)n);
	tcp->source = bpf_htons(
		(__u16)(1024 + ((cpu & 0xff) << 8) + ((n >> 16) & 0xff)));
}

/* fresh expects an untagged IPv4 frame without options carrying TCP or UDP: it
 * writes the low 16 bits of the source address and the source port from a
 * per-CPU sequence number and the CPU (2^24 distinct tuples per CPU), then
 * tail-calls slot 0.
 * XDP_ABORTED when the frame is not like that or the slot is empty, so a
 * measurement of the wrong thing cannot go unnoticed. */
SEC("xdp")
int fresh(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&fresh_seq, &zero);

	/* Cannot miss (one-entry array), but the verifier needs the check. */
	if (!seq)
		return XDP_ABORTED;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcpports *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > end)
		return XDP_ABORTED;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ver_ihl != 0x45 ||
	    (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return XDP_ABORTED;
	renew(ip, tcp, seq);
	bpf_tail_call(ctx, &fresh_next, 0);
	return XDP_ABORTED;
}

/* ---- known flows in a scattered order for BPF_PROG_TEST_RUN ---- */

/* Which flows spread hands out: flow i (0 <= i < flows) comes from source
 * address saddr + i / ports (host order), port sport + i % ports. Run k on
 * a CPU gets flow (k * step) mod flows: with step coprime to flows every
 * flow once per flows runs, consecutive runs far apart in the table. */
struct spread_cfg {
	__u32 flows;
	__u32 step;
	__u32 saddr; /* host order */
	__u32 ports;
	__u32 sport; /* host order */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct spread_cfg);
} spread_conf SEC(".maps");

/* Per-CPU count of frames spread rewrote (its k). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} spread_seq SEC(".maps");

/* The program spread hands each frame to (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} spread_next SEC(".maps");

/* spread expects what fresh does; it writes the whole source address and
 * port of flow (k * step) mod flows and tail-calls slot 0. XDP_ABORTED
 * when the frame is not like that, the configuration is empty or the slot
 * is. */
SEC("xdp")
int spread(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&spread_seq, &zero);
	struct spread_cfg *cfg = bpf_map_lookup_elem(&spread_conf, &zero);

	/* Cannot miss (one-entry arrays), but the verifier needs the check. */
	if (!seq || !cfg)
		return XDP_ABORTED;
	__u32 flows = cfg->flows, ports = cfg->ports;
	if (!flows || !ports)
		return XDP_ABORTED;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcpports *l4 = (void *)(ip + 1);
	if ((void *)(l4 + 1) > end)
		return XDP_ABORTED;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ver_ihl != 0x45 ||
	    (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return XDP_ABORTED;
	__u32 i = (__u32)((*seq * cfg->step) % flows);
	*seq += 1;
	ip->saddr = bpf_htonl(cfg->saddr + i / ports);
	l4->source = bpf_htons((__u16)(cfg->sport + i % ports));
	bpf_tail_call(ctx, &spread_next, 0);
	return XDP_ABORTED;
}

/* ---- restored frames for BPF_PROG_TEST_RUN ---- */

#define RESTORE_MAX 128

/* The frame restore writes back before each run. */
struct restore_frame {
	__u32 len;   /* 60 to RESTORE_MAX bytes */
	__u32 fresh; /* nonzero: a new source each run, as fresh gives */
	__u8 data[RESTORE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct restore_frame);
} restore_tmpl SEC(".maps");

/* The program restore hands each frame to (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} restore_next SEC(".maps");

/* restore moves the frame's start back to where the template's frame
 * starts (the measured program may have pushed a header in front), writes
 * the template's bytes, renews the source when asked (counted in
 * fresh_seq), and tail-calls slot 0. XDP_ABORTED when it cannot. */
SEC("xdp")
int restore(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct restore_frame *t = bpf_map_lookup_elem(&restore_tmpl, &zero);
	__u64 *seq = bpf_map_lookup_elem(&fresh_seq, &zero);

	if (!t || !seq)
		return XDP_ABORTED;
	__u32 want = t->len;
	if (want < 60 || want > RESTORE_MAX)
		return XDP_ABORTED;
	__u32 len = ctx->data_end - ctx->data;
	if (len < want)
		return XDP_ABORTED;
	if (len > want && bpf_xdp_adjust_head(ctx, (int)(len - want)))
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, t->data, want))
		return XDP_ABORTED;
	if (t->fresh) {
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		struct iphdr *ip = data + sizeof(struct ethhdr);
		struct tcpports *tcp = (void *)(ip + 1);
		if ((void *)(tcp + 1) > end)
			return XDP_ABORTED;
		renew(ip, tcp, seq);
	}
	bpf_tail_call(ctx, &restore_next, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
