package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/lab"
)

// progRunAttr is the BPF_PROG_TEST_RUN member of union bpf_attr
// (include/uapi/linux/bpf.h). The generator issues the system call itself:
// ebpf.Program.Run restarts an interrupted run, and here the interruption
// is how a run ends.
type progRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

const (
	bpfProgTestRun         = 10     // BPF_PROG_TEST_RUN
	bpfFTestXDPLiveFrames  = 1 << 1 // BPF_F_TEST_XDP_LIVE_FRAMES
	liveRepeat             = 1 << 31
	stopSignal             = unix.SIGURG // the Go runtime ignores stray ones
	stopSignalRetryEvery   = 2 * time.Millisecond
	generatorStartDeadline = 5 * time.Second
)

// liveRun injects frame repeat times as live frames arriving on ifindex
// (resolved in the calling thread's network namespace). It returns when
// the repeats are done or a signal interrupts it (unix.EINTR).
func liveRun(prog *ebpf.Program, frame []byte, ifindex int) error {
	ctx := [6]uint32{0, uint32(len(frame)), 0, uint32(ifindex), 0, 0} // struct xdp_md
	attr := progRunAttr{
		progFD:     uint32(prog.FD()),
		dataSizeIn: uint32(len(frame)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		repeat:     liveRepeat,
		ctxSizeIn:  uint32(unsafe.Sizeof(ctx)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(&ctx[0]))),
		flags:      bpfFTestXDPLiveFrames,
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfProgTestRun, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(frame)
	runtime.KeepAlive(&ctx)
	if errno != 0 {
		return errno
	}
	return nil
}

// generate runs one generator thread per CPU in cpus, each inside ns,
// pinned to its CPU and making one long live-frames run, for d. It returns
// the time from the moment all threads were running to the moment the
// last one stopped.
func generate(ns *lab.NS, prog *ebpf.Program, ifindex int, frame []byte, cpus []int, d time.Duration) (time.Duration, error) {
	var stop atomic.Bool
	type thread struct {
		tid  atomic.Int64
		done atomic.Bool
	}
	threads := make([]*thread, len(cpus))
	ready := make(chan int, len(cpus))
	errs := make(chan error, len(cpus))
	var wg sync.WaitGroup
	for i, cpu := range cpus {
		th := &thread{}
		threads[i] = th
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer th.done.Store(true)
			err := ns.Do(func() (err error) {
				var all unix.CPUSet
				if err := unix.SchedGetaffinity(0, &all); err != nil {
					ready <- -1
					return fmt.Errorf("get affinity: %w", err)
				}
				var one unix.CPUSet
				one.Set(cpu)
				if err := unix.SchedSetaffinity(0, &one); err != nil {
					ready <- -1
					return fmt.Errorf("pin to cpu %d: %w", cpu, err)
				}
				// The thread goes back to the pool after Do: unpin it.
				defer func() {
					if uerr := unix.SchedSetaffinity(0, &all); uerr != nil {
						err = errors.Join(err, fmt.Errorf("unpin from cpu %d: %w", cpu, uerr))
					}
				}()
				th.tid.Store(int64(unix.Gettid()))
				ready <- 1
				for !stop.Load() {
					err := liveRun(prog, frame, ifindex)
					if err != nil && !errors.Is(err, unix.EINTR) {
						return fmt.Errorf("live-frames run on cpu %d: %w", cpu, err)
					}
				}
				return nil
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	deadline := time.After(generatorStartDeadline)
	started := true
wait:
	for range threads {
		select {
		case ok := <-ready:
			if ok < 0 {
				started = false
				break wait
			}
		case <-deadline:
			started = false
			break wait
		}
	}
	start := time.Now()
	if started {
		time.Sleep(d)
	}
	stop.Store(true)
	pid := os.Getpid()
	for {
		running := 0
		for _, th := range threads {
			if tid := th.tid.Load(); tid > 0 && !th.done.Load() {
				running++
				_ = unix.Tgkill(pid, int(tid), stopSignal)
			}
		}
		if running == 0 {
			break
		}
		time.Sleep(stopSignalRetryEvery)
	}
	elapsed := time.Since(start)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if !started && len(all) == 0 {
		all = append(all, errors.New("generator threads did not start"))
	}
	return elapsed, errors.Join(all...)
}
