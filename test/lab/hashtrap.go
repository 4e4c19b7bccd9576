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

// attachHashTrap loads the hash trap (once) and attaches it with TCX to
// the ingress of the router's client-facing interface.
func (t *HATopology) attachHashTrap() error {
	if t.trapProg == nil {
		memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })
		prog, err := ebpf.NewProgram(hashTrapSpec())
		if err != nil {
			return fmt.Errorf("load hash trap: %w", err)
		}
		t.trapProg = prog
	}
	r := t.Router
	// TCX resolves the ifindex in the caller's namespace.
	err := r.NS.run(func() error {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: r.ClientIfindex,
			Program:   t.trapProg,
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

// SetHashTrap attaches (on) or detaches the router's hash trap (see
// HATopology), e.g. to show that without it the router's multipath choice
// follows the client socket's random hash: the same 5-tuple from a new
// socket may take another next hop. Setting the state it is in does
// nothing.
func (t *HATopology) SetHashTrap(on bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	switch {
	case on && t.trapLink == nil:
		return t.attachHashTrap()
	case !on && t.trapLink != nil:
		err := t.trapLink.Close()
		t.trapLink = nil
		if err != nil {
			return fmt.Errorf("detach hash trap: %w", err)
		}
	}
	return nil
}
