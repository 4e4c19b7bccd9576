// Package lab builds a small, realistic "edge segment" in network namespaces
// so that integration tests, benchmarks and demos can run the xlb balancer
// against real TCP and UDP endpoints without touching the host's network.
//
// # Topology
//
// New creates, under a random prefix such as "xlbab12c":
//
//   - PREFIX-seg: a namespace holding a Linux bridge (PREFIX-br). Every host
//     is plugged into it through a veth pair whose seg-side end is named
//     PREFIX-ROLE (for example "xlbab12c-lb") and whose host-side end is
//     "eth0" in the host's namespace.
//   - PREFIX-client: the client, 198.18.0.2 and 2001:2::2, plus extra source
//     addresses (198.18.0.200+i, 2001:2::200+i) and routes for the VIPs via
//     the balancer.
//   - PREFIX-lb: the balancer, 198.18.0.3 and 2001:2::3. Its seg-side port
//     carries an XDP program returning XDP_PASS, because a veth delivers
//     frames sent with XDP_TX only when the receiving peer has an XDP
//     program attached.
//   - PREFIX-be1 … PREFIX-beN: the backends, 198.18.0.11+i and 2001:2::11+i,
//     holding the VIPs (198.18.1.1, 2001:2:0:1::1) on lo with arp_ignore=1,
//     arp_announce=2 and rp_filter=0, as a direct server return real server
//     needs.
//
// All namespaces are named (they appear in "ip netns list"), all addresses
// come from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48, IPv6
// addresses are added with nodad, transmit checksum offload (and with it TSO)
// is turned off on every eth0, and by default permanent neighbour entries make
// ARP and NDP unnecessary. Nothing is created in, or changed in, the root
// namespace except the bind-mount files under /var/run/netns.
//
// Topology.Close removes everything: processes started through NS.Command,
// servers, connections from Host.Dial, XDP links, veth pairs, the bridge and
// the namespaces. It is idempotent, and New calls it itself when it fails
// halfway. A run that dies without Close (a test binary killed by its
// timeout) leaves its namespaces behind; RemoveStale deletes lab namespaces
// that no live process is using.
//
// # HA topology
//
// NewHA builds several balancer nodes sharing one VIP behind a BGP/ECMP
// router (see HATopology for the picture and the addresses): the segment
// holds the nodes lb1 … lbN (198.18.0.3+i), the backends and the router's
// segment side (198.18.0.1); the client sits behind the router on
// 198.19.0.0/24 and 2001:2:1::/64. The router forwards, hashes multipath
// routes on the 5-tuple, and clears each client packet's flow hash at its
// ingress (a TCX program), without which it would follow the client
// socket's random hash. HATopology.StartBird runs BIRD 2 in the router's
// namespace as the nodes' BGP peer; its kernel protocols merge equal
// routes into one multipath route (NS.NextHops reads it).
// HAConfig.ClientLinkMTU narrows the router's client-facing link only, so
// the router answers larger packets towards the client with ICMP
// fragmentation needed / packet too big (path MTU tests); NS.AddRoute adds
// a static route, e.g. a VIP to one node without BIRD.
// HAConfig.RemoteBackends puts backends behind the router instead, each in
// a subnet of its own (198.19.10+i.0/24, 2001:2:10+i::/64), for
// encapsulated forwarding (ipip, gue).
// HATopology.SetBalancerLink pulls a node's cable. TestECMPLab shows it
// all with GoBGP speakers on the nodes.
//
// # Running code in a namespace
//
// A socket belongs to the network namespace it was created in and can be
// used from any thread afterwards. Each NS therefore keeps one goroutine
// locked to an OS thread that lives inside the namespace; it creates sockets
// (and netlink handles) on request. Everything else — bind, connect, reads
// and writes — happens on ordinary goroutines, so a slow connect never
// blocks other work and Host.Query costs a few socket system calls rather
// than a setns round trip (about 150µs per query here, 3000 in half a
// second). NS.Do is the general escape hatch: it runs a
// function on a fresh locked thread switched into the namespace.
//
// # Tests and programs
//
// Tests call NewT, which skips (or fails, when XLB_REQUIRE_PRIV=1) when the
// environment cannot build a lab and registers Close with tb.Cleanup.
// Programs call New and defer Close, and may call CheckPrivileged first for
// a clear error message.
package lab
