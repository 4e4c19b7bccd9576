package loader_test

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/maps/lb"
)

// sameService agrees with reflect.DeepEqual on services that differ in
// one field each, and compares every field there is.
func TestSameServiceComplete(t *testing.T) {
	if n := reflect.TypeFor[lb.Service]().NumField(); n != 5 {
		t.Fatalf("lb.Service has %d fields: compare the new one in sameService, then count it here", n)
	}
	if n := reflect.TypeFor[lb.Backend]().NumField(); n != 5 {
		t.Fatalf("lb.Backend has %d fields: compare the new one in sameService, then count it here", n)
	}
	base := func() lb.Service {
		return lb.Service{Key: web4, Scheduler: lb.Maglev, Forward: lb.DSRL2, Persistence: time.Second, Backends: []lb.Backend{
			{Addr: netip.MustParseAddr("198.18.0.11"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Weight: 1},
			{Addr: netip.MustParseAddr("198.18.0.12"), Weight: 2, Down: true},
		}}
	}
	changes := map[string]func(*lb.Service){
		"same":              func(*lb.Service) {},
		"key":               func(s *lb.Service) { s.Key = dns4 },
		"scheduler":         func(s *lb.Service) { s.Scheduler = lb.RoundRobin },
		"forward":           func(s *lb.Service) { s.Forward = lb.IPIP },
		"persistence":       func(s *lb.Service) { s.Persistence = 2 * time.Second },
		"backends nil":      func(s *lb.Service) { s.Backends = nil },
		"backends empty":    func(s *lb.Service) { s.Backends = []lb.Backend{} },
		"backend gone":      func(s *lb.Service) { s.Backends = s.Backends[:1] },
		"addr":              func(s *lb.Service) { s.Backends[0].Addr = netip.MustParseAddr("198.18.0.13") },
		"mac":               func(s *lb.Service) { s.Backends[0].MAC = net.HardwareAddr{2, 0, 0, 0, 0, 2} },
		"mac nil":           func(s *lb.Service) { s.Backends[0].MAC = nil },
		"mac empty not nil": func(s *lb.Service) { s.Backends[1].MAC = net.HardwareAddr{} },
		"weight":            func(s *lb.Service) { s.Backends[1].Weight = 3 },
		"down":              func(s *lb.Service) { s.Backends[1].Down = false },
		"failing":           func(s *lb.Service) { s.Backends[1].Failing = true },
		"order":             func(s *lb.Service) { s.Backends[0], s.Backends[1] = s.Backends[1], s.Backends[0] },
	}
	for name, change := range changes {
		a, b := base(), base()
		change(&b)
		if got, want := loader.SameService(a, b), reflect.DeepEqual(a, b); got != want {
			t.Errorf("%s: sameService %v, reflect.DeepEqual %v", name, got, want)
		}
	}
	empty := lb.Service{Key: web4}
	if !loader.SameService(empty, empty) {
		t.Error("a service without backends differs from itself")
	}
}
