package demo

import (
	"context"
	"fmt"
	"os"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/test/xlbdproc"
)

// pinDir is the bpffs directory of this run's xlbd (one per lab, so demos
// and tests never share pins).
func (d *run) pinDir() string { return xlbdproc.BPFFS(d.topo) }

// startXlbd runs xlbd in the balancer's namespace, its log in a file, and
// waits until its API answers.
func (d *run) startXlbd(ctx context.Context) error {
	x, err := xlbdproc.New(xlbdproc.Options{Bins: d.bins, Lab: d.topo, ConfigFile: d.config,
		Metrics: xlbdproc.DefaultMetrics, TempDir: d.dir})
	if err != nil {
		return err
	}
	d.xlbd = x
	// On Ctrl-C xlbd gets SIGTERM and --detach in the tear-down: ctx
	// bounds the wait only.
	err = x.Start(ctx)
	d.res.XlbdPID = x.PID()
	return err
}

// ctl runs xlbctl against this run's xlbd and returns its output.
func (d *run) ctl(args ...string) (string, error) { return d.xlbd.Ctl(args...) }

// status is xlbd's status.
func (d *run) status(ctx context.Context) (api.Status, error) { return d.xlbd.Client().Status(ctx) }

// backendStatus returns the status of one backend of the demo's service.
func (d *run) backendStatus(ctx context.Context, addr string) (api.BackendStatus, error) {
	st, err := d.status(ctx)
	if err != nil {
		return api.BackendStatus{}, err
	}
	for _, s := range st.Services {
		if s.Service != d.service {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == addr {
				return b, nil
			}
		}
	}
	return api.BackendStatus{}, fmt.Errorf("xlbd shows no backend %s in %s", addr, d.service)
}

// teardown removes what the run built, in reverse order (the session then
// removes its directory).
func (d *run) teardown() (errs []error) {
	// Client sockets of this process, closed with a reset: close(2)
	// frees them whatever it returns, so nothing is left behind.
	for _, c := range d.held {
		_ = c.Close()
	}
	if d.xlbd != nil {
		// SIGTERM, then --detach: it removes the program, its link
		// and the pins.
		if err := d.xlbd.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.topo != nil {
		if err := d.topo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("remove the lab: %w", err))
		}
	}
	return errs
}

// leftovers lists what of this run's lab still exists: namespaces, pins.
func (d *run) leftovers() []string {
	if d.topo == nil {
		return nil
	}
	left := labLeftovers(d.topo.Prefix)
	if _, err := os.Stat(d.pinDir()); err == nil {
		left = append(left, "pins "+d.pinDir())
	}
	return left
}

// logs is xlbd's log, for a failure.
func (d *run) logs() []logFile {
	if d.xlbd == nil {
		return nil
	}
	return []logFile{{Whose: "xlbd's", Slug: "xlbd", Path: d.xlbd.LogPath(), Lines: 15}}
}
