package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is the directory holding the bind mounts of named network
// namespaces, as used by iproute2 ("ip netns").
const NetnsDir = "/var/run/netns"

// ErrClosed is returned by operations on a namespace or topology that has
// already been closed.
var ErrClosed = errors.New("lab: closed")

// NS is a named network namespace created by the lab.
type NS struct {
	// Name is the namespace's name, e.g. "xlbab12c-lb".
	Name string
	// Path is the namespace's bind mount, e.g. "/var/run/netns/xlbab12c-lb".
	Path string

	handle netns.NsHandle  // open fd of the namespace, for netlink peers
	nl     *netlink.Handle // netlink sockets living in the namespace
	reqs   chan func()     // work for the locked worker goroutine
	quit   chan struct{}   // closed to stop the worker
	done   chan struct{}   // closed when the worker has returned
	mu     sync.Mutex      // guards cmds and closed
	cmds   []*exec.Cmd     // commands handed out by Command
	closed bool            // set by close
	mount  bool            // the bind mount exists and must be removed
	once   sync.Once       // runs the teardown once
	cerr   error           // result of the teardown
}

// newNS creates a named network namespace and starts its worker goroutine.
// On error nothing is left behind.
func newNS(name string) (*NS, error) {
	n := &NS{
		Name:   name,
		Path:   filepath.Join(NetnsDir, name),
		handle: netns.None(),
		reqs:   make(chan func()),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	ready := make(chan error, 1)
	go n.worker(ready)
	if err := <-ready; err != nil {
		<-n.done
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	n.mount = true
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		_ = n.close()
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	n.handle = h
	err = n.run(func() error {
		var err error
		n.nl, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		_ = n.close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return n, nil
}

// worker locks itself to an OS thread, moves that thread into a new network
// namespace bound at n.Path and then runs requests until quit is closed.
//
// On the way out it switches the thread back to its original namespace
// before unlocking it, so no thread is left behind in (and keeping alive) a
// lab namespace. If that switch fails the thread stays locked and the
// runtime discards it. Merely exiting locked is not enough: when the
// goroutine happens to run on the main thread, the runtime cannot end that
// thread and parks it forever, still inside the namespace.
func (n *NS) worker(ready chan<- error) {
	runtime.LockOSThread()
	defer close(n.done) // deferred first: runs after the thread is restored
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		ready <- fmt.Errorf("get current netns: %w", err)
		return
	}
	// A handle of the host's namespace, not a lab one: it keeps nothing
	// of the lab alive, and close(2) frees it whatever it returns.
	defer func() { _ = orig.Close() }()
	if err := unshareNamed(n.Path); err != nil {
		ready <- err
		restoreThread(orig)
		return
	}
	ready <- nil
	for {
		select {
		case fn := <-n.reqs:
			fn()
		case <-n.quit:
			restoreThread(orig)
			return
		}
	}
}

// restoreThread switches the calling locked thread back to orig and unlocks
// it; if the switch fails it leaves the thread locked, so the runtime
// discards it when the goroutine exits.
func restoreThread(orig netns.NsHandle) {
	if err := netns.Set(orig); err == nil {
		runtime.UnlockOSThread()
	}
}

// unshareNamed moves the calling (locked) thread into a new network
// namespace and bind-mounts it at path. On error the file at path is
// removed again; the thread may be left in the new namespace.
func unshareNamed(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return errors.Join(err, os.Remove(path))
	}
	self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		return errors.Join(fmt.Errorf("bind mount: %w", err), os.Remove(path))
	}
	return nil
}

// removeNamed unmounts and removes a namespace bind mount. Missing mounts
// and files are not errors.
func removeNamed(path string) error {
	var errs []error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// run executes fn on the namespace's worker thread and waits for it. fn
// must be quick (create a socket, a netlink handle, write a sysctl): all
// callers share the one thread. A panic in fn is re-raised in the caller.
func (n *NS) run(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	resc := make(chan result, 1)
	req := func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.panicked, r.value = true, p
			}
			resc <- r
		}()
		r.err = fn()
	}
	select {
	case n.reqs <- req:
	case <-n.done:
		return fmt.Errorf("netns %s: %w", n.Name, ErrClosed)
	}
	r := <-resc
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

// Do runs fn on an OS thread that is locked and switched into the
// namespace, then switches the thread back and unlocks it. If switching back
// fails the thread stays locked, so the runtime terminates it instead of
// reusing it. fn runs on its own goroutine; Do waits for it and re-raises a
// panic. Goroutines started by fn do not inherit the namespace.
func (n *NS) Do(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		// close(2) frees the descriptors whatever it returns; the lab's
		// namespace is not kept alive by a failed close.
		defer func() { _ = orig.Close() }()
		target, err := netns.GetFromPath(n.Path)
		if err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("open netns %s: %w", n.Name, err)}
			return
		}
		defer func() { _ = target.Close() }()
		if err := netns.Set(target); err != nil {
			// The thread may be in an unknown state: keep it locked so
			// it dies with this goroutine.
			resc <- result{err: fmt.Errorf("enter netns %s: %w", n.Name, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.panicked, r.value = true, p
				}
			}()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("restore netns: %w", err))
			resc <- r // thread stays locked and is discarded
			return
		}
		runtime.UnlockOSThread()
		resc <- r
	}()
	r := <-resc
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

// Command returns a command that runs name with args inside the namespace's
// network namespace only: it is started through "nsenter --net=PATH --", so
// it keeps the host's mount namespace and sees the host's /sys/fs/bpf pins
// (unlike "ip netns exec", which remounts /sys).
//
// The command runs in its own process group and gets SIGKILL if the thread
// that started it exits (Pdeathsig). Cancelling ctx kills the whole group.
// Topology.Close kills every started command's process group that has not
// been waited for yet; callers still own Wait. Start commands before calling
// Close, not concurrently with it.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	nsenter, lookErr := exec.LookPath("nsenter")
	if lookErr != nil {
		nsenter = "nsenter"
	}
	full := append([]string{"--net=" + n.Path, "--", name}, args...)
	cmd := exec.CommandContext(ctx, nsenter, full...)
	if lookErr != nil {
		cmd.Err = fmt.Errorf("lab: nsenter (util-linux) is needed to run commands in a netns: %w", lookErr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd) }
	n.mu.Lock()
	if n.closed {
		cmd.Err = fmt.Errorf("netns %s: %w", n.Name, ErrClosed)
	} else {
		n.cmds = append(n.cmds, cmd)
	}
	n.mu.Unlock()
	return cmd
}

// killGroup sends SIGKILL to the process group of a started command, but
// only while its leader has not been reaped (so the pid cannot have been
// reused). It returns os.ErrProcessDone when there was nothing to kill.
func killGroup(cmd *exec.Cmd) error {
	p := cmd.Process
	if p == nil {
		return nil
	}
	// Signal uses a pidfd where available: it fails once Wait reaped the
	// process, and while it succeeds the pid (= pgid) is still ours.
	if err := p.Signal(syscall.Signal(0)); err != nil {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}

// close stops the worker, kills started commands and removes the namespace.
// It is idempotent.
func (n *NS) close() error {
	n.once.Do(func() {
		n.mu.Lock()
		n.closed = true
		cmds := n.cmds
		n.cmds = nil
		n.mu.Unlock()
		var errs []error
		for _, cmd := range cmds {
			if err := killGroup(cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill %s in %s: %w", cmd.Path, n.Name, err))
			}
		}
		if n.nl != nil {
			n.nl.Close()
		}
		close(n.quit)
		<-n.done
		if n.handle.IsOpen() {
			if err := n.handle.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close handle of %s: %w", n.Name, err))
			}
		}
		if n.mount {
			if err := removeNamed(n.Path); err != nil {
				errs = append(errs, err)
			}
		}
		n.cerr = errors.Join(errs...)
	})
	return n.cerr
}
