package bpf

import "github.com/cilium/ebpf"

// Readable names for the types bpf2go generates from probe.c, the health
// checks' tunnel (TC programs on the balancer's interface).
type (
	// ProbeKey is the key of the probes map: one direction of a
	// registered probe connection.
	ProbeKey = probeProbeKey
	// Probe is the value of the probes map: what to make of its packets.
	Probe = probeProbe
	// ProbeCounters is the per-CPU value of the probe_stats map.
	ProbeCounters = probeProbeCounters
	// ProbeObjects are the tunnel's loaded programs and maps.
	ProbeObjects = probeObjects
)

// Directions of a probes key.
const (
	ProbeOut = 1 // the check's packets, to the backend (egress)
	ProbeIn  = 2 // the service's answers, from the VIP (ingress)
)

// Names of the tunnel's programs and maps in its collection.
const (
	ProbeOutProgram = "probe_out"
	ProbeInProgram  = "probe_in"
	MapProbes       = "probes"
	MapProbeStats   = "probe_stats"
)

// LoadProbeSpec returns the collection spec of the embedded, committed
// tunnel object.
func LoadProbeSpec() (*ebpf.CollectionSpec, error) {
	return loadProbe()
}
