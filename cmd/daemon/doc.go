// Package daemon is xlbd's core: it holds the desired state (from the
// config file and the local API), reconciles it with health checks and
// neighbour entries into the data plane, serves the API and the metrics,
// and persists the state file.
//
// It drives the data plane through the DataPlane interface and learns MACs
// through Neighbors, so it runs without root against a model of both
// (package daemontest) and in xlbd against the loader. cmd/xlbd only
// parses flags, takes locks and wires the two together.
package daemon
