package bpf

import "github.com/cilium/ebpf"

// Readable names for the types bpf2go generates from decap.c, the
// backend-side decapsulator (xlbd --role backend).
type (
	// DecapAddr is the key of the decap_vips and decap_addrs maps: an
	// IPv6 address, or an IPv4 one mapped (::ffff:a.b.c.d).
	DecapAddr = decapAddr
	// DecapConfig is the value of the one-entry decap_config map.
	DecapConfig = decapConfig
	// DecapCounters is the per-CPU value of the decap_stats map.
	DecapCounters = decapCounters
	// DecapObjects are the decapsulator's loaded program and maps.
	DecapObjects = decapObjects
)

// Names of the decapsulator's program and maps in its collection.
const (
	DecapProgramName = "decap"
	MapDecapVips     = "decap_vips"
	MapDecapAddrs    = "decap_addrs"
	MapDecapConfig   = "decap_config"
	MapDecapStats    = "decap_stats"
)

// LoadDecapSpec returns the collection spec of the embedded, committed
// decapsulator object.
func LoadDecapSpec() (*ebpf.CollectionSpec, error) {
	return loadDecap()
}
