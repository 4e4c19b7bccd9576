package bpf

import "github.com/cilium/ebpf"

// Readable names for the types bpf2go generates from include/structs.h.
// The generated names follow the C ones; these aliases are what the rest of
// the module uses (maps/ is the only package that should need them).
type (
	// SvcKey is the key of the services map.
	SvcKey = xlbSvcKey
	// Service is the value of the services map.
	Service = xlbService
	// Backend is the value of the backends array.
	Backend = xlbBackend
	// FlowKey is the key of the connection table.
	FlowKey = xlbFlowKey
	// Flow is the value of the connection table.
	Flow = xlbFlow
	// PersistKey is the key of the persistence table.
	PersistKey = xlbPersistKey
	// PersistEntry is the value of the persistence table.
	PersistEntry = xlbPersistEntry
	// Config is the value of the one-entry config map.
	Config = xlbXlbConfig
	// VipKey is the key of the vips map.
	VipKey = xlbVipKey
	// Vip is the value of the vips map.
	Vip = xlbVip
	// VipFilter is the value of the one-entry vip_filter map.
	VipFilter = xlbVipFilter
	// FragKey is a key of the fragment table: one fragmented datagram.
	FragKey = xlbFragKey
	// FragEntry is its value: the first fragment's backend and time.
	FragEntry = xlbFragEntry
	// GlobalCounters is the per-CPU value of the stats map.
	GlobalCounters = xlbGlobalCounters
	// SvcCounters is the per-CPU value of the svc_stats map.
	SvcCounters = xlbSvcCounters
	// BackendCounters is the per-CPU value of the backend_stats map.
	BackendCounters = xlbBackendCounters
	// Sched is the data plane's scheduler enum.
	Sched = xlbSched
	// FwdMode is the data plane's forwarding-mode enum.
	FwdMode = xlbFwdMode
	// Objects are the loaded program and maps.
	Objects = xlbObjects
	// Maps are the loaded maps.
	Maps = xlbMaps
	// Programs are the loaded programs.
	Programs = xlbPrograms
)

// Enum values of Sched and FwdMode.
const (
	SchedMaglev     = xlbSchedSCHED_MAGLEV
	SchedSourceHash = xlbSchedSCHED_SOURCE_HASH
	SchedRoundRobin = xlbSchedSCHED_ROUND_ROBIN
	SchedLeastConn  = xlbSchedSCHED_LEAST_CONN
	FwdDSRL2        = xlbFwdModeFWD_DSR_L2
	FwdIPIP         = xlbFwdModeFWD_IPIP
	FwdGUE          = xlbFwdModeFWD_GUE
)

// Flags of Backend.Flags (consts.h F_BACKEND_*).
const (
	// BackendUsable marks a backend that may carry traffic.
	BackendUsable = 1 << 0
	// BackendFailing marks a usable backend failing its health check (kept
	// for its established flows only).
	BackendFailing = 1 << 1
	// BackendIPIP and BackendGUE mark a backend reached by encapsulation
	// (its service's mode), by its address through the FIB.
	BackendIPIP = 1 << 2
	BackendGUE  = 1 << 3
)

// Flags of Config.Flags (consts.h F_CFG_*).
const (
	// ConfigNoICMPEcho leaves ICMP echo requests to a VIP to the kernel.
	ConfigNoICMPEcho = 1 << 0
	// ConfigNoICMPForward leaves ICMP errors to a VIP to the kernel.
	ConfigNoICMPForward = 1 << 1
)

// Flags of Flow.Flags (consts.h F_FLOW_*).
const (
	// FlowClosing marks a flow whose client sent FIN or RST.
	FlowClosing = 1 << 0
)

// MaxLCBackends is the number of backends with a weight above 0 a
// least-conn service may have (consts.h MAX_LC_BACKENDS).
const MaxLCBackends = 256

// VipFilterBits is the number of slots of the VIP filter (consts.h
// VIP_FILTER_BITS).
const VipFilterBits = 65536

// Address families as stored in keys (consts.h XLB_AF_*).
const (
	FamilyIPv4 = 2
	FamilyIPv6 = 10
)

// Names of the program, maps and variables in the collection.
const (
	ProgramName     = "xlb"
	MapServices     = "services"
	MapBackends     = "backends"
	MapMaglevTables = "maglev_tables"
	MapConntrack    = "conntrack"
	MapStats        = "stats"
	MapSvcStats     = "svc_stats"
	MapBackendStats = "backend_stats"
	MapPersist      = "persist"
	MapActive       = "backend_active"
	MapRRCursor     = "rr_cursor"
	MapConfig       = "config"
	MapVips         = "vips"
	MapFrags        = "frags"
	MapHalfOpen     = "halfopen"
	MapVipFilter    = "vip_filter"
	MapBackendSvc   = "backend_svc"
	VarIfaceMAC     = "iface_mac"
	VarMaglevSize   = "maglev_size"
)

// LoadSpec returns the collection spec of the embedded, committed object.
func LoadSpec() (*ebpf.CollectionSpec, error) {
	return loadXlb()
}
