package lab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// hashTrapSpec is a TCX ingress program that clears the packet's flow hash
// (bpf_set_hash_invalid) and lets it go on (TCX_NEXT). A router that
// receives it hashes the real 5-tuple for its multipath choice instead of
// reusing the hash the sending socket put on the skb, which crosses veth
// pairs unchanged.
func hashTrapSpec() *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:       "xlb_lab_rehash",
		Type:       ebpf.SchedCLS,
		AttachType: ebpf.AttachTCXIngress,
		License:    "GPL",
		Instructions: asm.Instructions{
			// R1 holds the skb, the helper's only argument.
			asm.FnSetHashInvalid.Call(),
			asm.Mov.Imm(asm.R0, -1), // TCX_NEXT: the next program, or pass
			asm.Return(),
		},
	}
}

// attachHashTrap loads the hash trap and attaches it with TCX to the
// ingress of the router's client-facing interface.
func (t *HATopology) attachHashTrap() error {
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })
	prog, err := ebpf.NewProgram(hashTrapSpec())
	if err != nil {
		return fmt.Errorf("load hash trap: %w", err)
	}
	t.trapProg = prog
	r := t.Router
	// TCX resolves the ifindex in the caller's namespace.
	err = r.NS.run(func() error {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: r.ClientIfindex,
			Program:   prog,
			Attach:    ebpf.AttachTCXIngress,
		})
		t.trapLink = l
		return err
	})
	if err != nil {
		return fmt.Errorf("attach hash trap to %s ingress: %w", r.ClientLink, err)
	}
	return nil
}
