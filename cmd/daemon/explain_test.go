package daemon

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/daemon/daemontest"
	"github.com/xlb-lb/xlb/maps/lb"
)

// The explain endpoint: a connection-table entry on a backend whose MAC is
// unknown is ignored (the flow is rescheduled), and the backend's state
// and reason say why; bad clients and unknown services are refused,
// naming the value.
func TestExplainEndpoint(t *testing.T) {
	d, srv := newTestDaemon(t, "198.18.0.12")
	dp := d.dp.(*daemontest.DataPlane)
	const svc = "198.18.1.1:80/tcp"
	if code, body := call(t, srv, "POST", "/v1/services", `{"vip": "198.18.1.1", "port": 80, "backends": [{"address": "198.18.0.11"}, {"address": "198.18.0.12"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	flow := lb.FlowKey{Src: netip.MustParseAddrPort("198.18.2.10:40000"), Dst: netip.MustParseAddrPort("198.18.1.1:80"), Proto: lb.TCP}
	dp.SetFlows([]lb.FlowEntry{{Key: flow, Backend: netip.MustParseAddr("198.18.0.12"), Idle: 2 * time.Second}})
	code, body := call(t, srv, "GET", svcURL(svc)+"/explain?client="+url.QueryEscape("198.18.2.10:40000"), "")
	var x api.Explain
	if err := json.Unmarshal([]byte(body), &x); code != 200 || err != nil {
		t.Fatalf("explain: %d %s", code, body)
	}
	if x.Conntrack == nil || x.Conntrack.Used || x.Conntrack.Backend != "198.18.0.12" || !strings.Contains(x.Conntrack.Ignored, "reschedules") {
		t.Errorf("entry on a backend without MAC: %+v", x.Conntrack)
	}
	// Only 198.18.0.11 is in the table: the flow moves there.
	if x.NextPacket.Backend != "198.18.0.11" || x.NextPacket.By != "scheduler" {
		t.Errorf("next packet %+v: want 198.18.0.11 by the scheduler", x.NextPacket)
	}
	if len(x.Backends) == 0 || x.Backends[0] != (api.ExplainBackend{Address: "198.18.0.12", Weight: 1, State: api.StateNoMAC, Reason: "MAC not resolved yet (ARP/NDP)"}) {
		t.Errorf("backends %+v: want 198.18.0.12 first, no-mac", x.Backends)
	}

	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{svcURL(svc) + "/explain", 400, `client: missing (want IP:PORT`},
		{svcURL(svc) + "/explain?client=198.18.2.10", 400, `client \"198.18.2.10\": want IP:PORT`},
		{svcURL(svc) + "/explain?client=198.18.2.10:0", 400, `client \"198.18.2.10:0\": port 0: out of range 1-65535`},
		{svcURL(svc) + "/explain?client=" + url.QueryEscape("[2001:2::10]:5"), 400, `client \"[2001:2::10]:5\": IPv6, but vip 198.18.1.1 is IPv4`},
		{svcURL("198.18.1.1:81/tcp") + "/explain?client=198.18.2.10:5", 404, `service 198.18.1.1:81/tcp: no such service`},
		{svcURL("198.18.1.1:80") + "/explain?client=198.18.2.10:5", 400, `service \"198.18.1.1:80\"`},
	} {
		if code, body := call(t, srv, "GET", tc.path, ""); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}
