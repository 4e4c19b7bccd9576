// Package xlbdproc runs the real xlbd as a process in a lab (package
// test/lab), for the integration tests, the bench and the demo. It builds
// xlbd and xlbctl once; starts xlbd in the lab's balancer namespace with
// files of its own (config, API socket, state, run directory, log, pins)
// and waits until its API answers; runs xlbctl against it; reloads, stops,
// kills and restarts it by its pid, never by name; and removes everything
// it created.
//
// Functions and Daemon's methods return errors, for programs. T wraps a
// Daemon for a test: its methods fail the test instead, and tb.Cleanup
// removes everything and shows xlbd's log when the test failed.
package xlbdproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// module is the xlb module's path: binaries are built by import path, so
// any directory of the module will do.
const module = "github.com/xlb-lb/xlb"

// Binaries is a directory holding xlbd and xlbctl.
type Binaries struct {
	// Dir is the directory.
	Dir  string
	temp bool // Build created Dir: Remove removes it
}

// Prebuilt returns the xlbd and xlbctl already in dir.
func Prebuilt(dir string) *Binaries { return &Binaries{Dir: dir} }

// Build compiles xlbd and xlbctl with go build (no clang: the BPF object is
// committed) into dir, or into a new temporary directory when dir is empty.
// moduleDir is a directory of the xlb module to build in; empty means the
// working directory.
func Build(ctx context.Context, moduleDir, dir string) (*Binaries, error) {
	b := &Binaries{Dir: dir}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "xlb-bin-")
		if err != nil {
			return nil, err
		}
		b.Dir, b.temp = tmp, true
	}
	cmd := exec.CommandContext(ctx, GoTool(), "build", "-o", b.Dir+"/", module+"/cmd/xlbd", module+"/cmd/xlbctl")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = b.Remove() // the build's failure is the one to report
		return nil, fmt.Errorf("go build xlbd and xlbctl: %w\n%s", err, out)
	}
	return b, nil
}

// Xlbd is the path of xlbd.
func (b *Binaries) Xlbd() string { return filepath.Join(b.Dir, "xlbd") }

// Xlbctl is the path of xlbctl.
func (b *Binaries) Xlbctl() string { return filepath.Join(b.Dir, "xlbctl") }

// Remove removes the directory if Build created it.
func (b *Binaries) Remove() error {
	if !b.temp {
		return nil
	}
	return os.RemoveAll(b.Dir)
}

// GoTool returns the go command: the one on PATH (go run and go test put
// their toolchain's bin first), else the one in $GOROOT, else the usual
// install place, as in the Makefile (sudo may reset PATH).
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}
