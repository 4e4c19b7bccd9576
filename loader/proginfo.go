package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// ProgramInfo returns the name and tag of the loaded BPF program with the
// given id (what xlbd doctor shows of an XDP program it finds attached).
func ProgramInfo(id uint32) (name, tag string, err error) {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return "", "", fmt.Errorf("program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", "", fmt.Errorf("program %d: info: %w", id, err)
	}
	return info.Name, info.Tag, nil
}
