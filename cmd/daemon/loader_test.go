package daemon

import (
	"encoding/json"
	"testing"

	"github.com/xlb-lb/xlb/cmd/api"
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
		"BulkSync":                        TestBulkSync,
	} {
		t.Run(name, fn)
	}
	// The loader's table, read back through the API: every slot named by
	// a backend address, in the weights' shares.
	t.Run("Table", func(t *testing.T) {
		_, srv := newTestDaemon(t)
		if code, out := call(t, srv, "POST", "/v1/services", `{"vip":"198.18.1.1","port":80,"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":2}]}`); code != 200 {
			t.Fatalf("add: %d %s", code, out)
		}
		code, out := call(t, srv, "GET", svcURL("198.18.1.1:80/tcp")+"/table", "")
		var tbl api.Table
		if err := json.Unmarshal([]byte(out), &tbl); code != 200 || err != nil {
			t.Fatalf("table: %d %s", code, out)
		}
		a, b := tbl.Counts["198.18.0.11"], tbl.Counts["198.18.0.12"]
		if a+b != tbl.Size || b < 2*a-1 || b > 2*a+1 {
			t.Errorf("table of %d slots: %d and %d", tbl.Size, a, b)
		}
	})
}
