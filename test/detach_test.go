//go:build integration

package test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
)

// xlbd --detach with a config whose limits differ from the defaults
// detaches without a word about the sizes, and leaves nothing behind: no
// pins, no empty pin directory, no lock file (issue 11, bug 3). Before the
// fix it opened the pins with the default sizes, warned "could not open
// the pins", and left the directory and the lock.
func TestDetachWithLimits(t *testing.T) {
	topo := lab.NewT(t, lab.Config{Backends: 2, ClientAddrs: 1})
	serveAll(t, topo, 8080)
	e := newDaemonEnv(t, topo, labConfig(topo, 8080)) // conntrack_size, max_services, max_backends set
	e.Start()
	dst := netip.AddrPortFrom(topo.VIP4, 8080)
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, 3*time.Second); err != nil {
		t.Fatalf("not forwarding before the detach: %v", err)
	}
	e.Stop()
	// A config file broken since does not keep the operator from
	// detaching (--interface is given).
	good, err := os.ReadFile(e.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	e.WriteConfig("services: [\n")

	out, err := e.Run(context.Background(), "--detach")
	if err != nil {
		t.Fatalf("xlbd --detach: %v\n%s", err, out)
	}
	for _, bad := range []string{"level=ERROR", "could not open", "detach first"} {
		if strings.Contains(out, bad) {
			t.Errorf("xlbd --detach said %q:\n%s", bad, out)
		}
	}
	if _, err := os.Stat(e.BPFFS()); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(e.BPFFS())
		t.Errorf("pin directory %s left after --detach (%v): %v", e.BPFFS(), err, entries)
	}
	lock := filepath.Join(e.Dir(), strings.ReplaceAll(strings.Trim(e.PinDir(), "/"), "/", "_")+".lock")
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("lock file %s left after --detach: %v", lock, err)
	}
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, time.Second); err == nil {
		t.Errorf("traffic still forwarded after --detach")
	}

	// Nothing to detach is an error that says so, and changes nothing.
	out, err = e.Run(context.Background(), "--detach")
	if err == nil || !strings.Contains(out, "nothing to detach") {
		t.Errorf("second --detach: %v\n%s", err, out)
	}

	// A fresh start after the detach works as on a clean host.
	e.WriteConfig(string(good))
	e.Start()
	if _, err := topo.Client.Query("tcp", netip.AddrPort{}, dst, 3*time.Second); err != nil {
		t.Errorf("not forwarding after a fresh start: %v", err)
	}
}
