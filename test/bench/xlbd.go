package main

// AddTiming is how long `xlbctl backend add` takes to take effect.
type AddTiming struct {
	Reps      int    `json:"repetitions"`
	CommandMs Series `json:"command_ms"`
	TableMs   Series `json:"in_table_ms"`
	TrafficMs Series `json:"first_connection_ms"`
}

// HealthTiming is the time from a backend's death to its removal.
type HealthTiming struct {
	Interval  string `json:"interval"`
	Timeout   string `json:"timeout"`
	Fall      int    `json:"fall"`
	Reps      int    `json:"repetitions"`
	RemovalMs Series `json:"removal_ms"`
}

// Memory is xlbd's footprint with a large config.
type Memory struct {
	Services           int     `json:"services"`
	BackendsPerService int     `json:"backends_per_service"`
	MaglevSize         uint32  `json:"maglev_size"`
	VmRSSMiB           float64 `json:"vm_rss_mib"`
	VmHWMMiB           float64 `json:"vm_hwm_mib"`
	BPFMapMiB          float64 `json:"bpf_maps_mib"`
	StartupMs          float64 `json:"startup_ms"`
}
