package daemon

import (
	"testing"

	"github.com/xlb-lb/xlb/loader"
	"github.com/xlb-lb/xlb/test/priv"
)

// The daemon's tests run against the model of the data plane; here the
// ones that read the data plane back run again against the real loader
// (loaded, not attached), so the model cannot drift from it unseen.
func TestOnTheLoader(t *testing.T) {
	priv.Require(t)
	model := newDataPlane
	t.Cleanup(func() { newDataPlane = model })
	newDataPlane = func(t *testing.T) DataPlane {
		bal, err := loader.Open(loader.Options{MaxServices: 16, MaxBackends: 64, ConntrackSize: 1024})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := bal.Close(); err != nil {
				t.Errorf("close balancer: %v", err)
			}
		})
		return bal
	}
	for name, fn := range map[string]func(*testing.T){
		"Handlers":                        TestHandlers,
		"StateWriteFailureAppliesNothing": TestStateWriteFailureAppliesNothing,
		"HealthDrivesTheDataPlane":        TestHealthDrivesTheDataPlane,
		"HealthStartUp":                   TestHealthStartUp,
	} {
		t.Run(name, fn)
	}
}
