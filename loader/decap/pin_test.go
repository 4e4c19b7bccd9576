package decap_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/xlb-lb/xlb/loader/decap"
	"github.com/xlb-lb/xlb/maps/lb"
	"github.com/xlb-lb/xlb/test/frame"
	"github.com/xlb-lb/xlb/test/priv"
)

// A pinned decapsulator is re-adopted with its settings and counters; a
// pin directory of another role is refused.
func TestDecapPinAndReadopt(t *testing.T) {
	priv.Require(t)
	root, err := os.MkdirTemp("/sys/fs/bpf", "xlbdecaptest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	pins := filepath.Join(root, "eth0")

	d, err := decap.Open(decap.Options{PinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	if d.Adopted() {
		t.Error("a fresh decapsulator claims to be adopted")
	}
	want := lb.DecapConfig{VIPs: []netip.Addr{vip4.Addr()}, Addresses: []netip.Addr{host4}, GUEPort: 7000}
	if err := d.Set(want); err != nil {
		t.Fatal(err)
	}
	run(t, d, frame.MustEncap(inner(vip4, false, 0), tunnel(4, false)), inner(vip4, false, 0), "decap/ipip/ipv4/ipv4")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d, err = decap.Open(decap.Options{PinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	if !d.Adopted() {
		t.Error("pins not re-adopted")
	}
	got, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.VIPs) != 1 || got.VIPs[0] != vip4.Addr() || got.GUEPort != 7000 || got.Addresses[0] != host4 {
		t.Errorf("re-adopted settings %+v, want %+v", got, want)
	}
	n, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if n.RxPackets != 1 || n.Decap[lb.DecapKind{Mode: "ipip", Outer: "ipv4", Inner: "ipv4"}] != 1 {
		t.Errorf("re-adopted counters %+v", n)
	}
	// The re-adopted program decapsulates with the kept settings.
	run(t, d, frame.MustEncap(inner(vip4, true, 0), tunnel(4, false)), inner(vip4, true, 0), "decap/ipip/ipv4/ipv4")

	other := filepath.Join(root, "eth1")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := decap.Open(decap.Options{PinDir: other}); !errors.Is(err, decap.ErrOtherRole) {
		t.Errorf("pins of another role: %v, want ErrOtherRole", err)
	}
}
