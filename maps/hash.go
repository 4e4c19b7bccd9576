package maps

import (
	"math/bits"

	"github.com/xlb-lb/xlb/maps/lb"
)

// The Go twin of bpf/include/hash.h. It predicts the slot a flow hashes to,
// which tests and `xlbctl` use; the data plane never depends on it.

const hashSeed = 0x786c6221

func hashMix(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

func hashFinal(h, n uint32) uint32 {
	h ^= n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// FlowHash is the data plane's hash of a flow's 5-tuple (maglev scheduler).
func FlowHash(k lb.FlowKey) uint32 {
	m := MarshalFlowKey(k)
	h := uint32(hashSeed)
	for _, w := range m.Src {
		h = hashMix(h, w)
	}
	for _, w := range m.Dst {
		h = hashMix(h, w)
	}
	h = hashMix(h, uint32(m.Sport)<<16|uint32(m.Dport))
	h = hashMix(h, uint32(m.Family)<<8|uint32(m.Proto))
	return hashFinal(h, 40)
}

// ClientHash is the data plane's hash of a flow's client address
// (source-hash scheduler).
func ClientHash(k lb.FlowKey) uint32 {
	m := MarshalFlowKey(k)
	h := uint32(hashSeed)
	for _, w := range m.Src {
		h = hashMix(h, w)
	}
	h = hashMix(h, uint32(m.Family))
	return hashFinal(h, 20)
}

// Slot returns the Maglev slot the data plane uses for a flow under sched.
func Slot(sched lb.Scheduler, k lb.FlowKey, size uint32) uint32 {
	if sched == lb.SourceHash {
		return ClientHash(k) % size
	}
	return FlowHash(k) % size
}
