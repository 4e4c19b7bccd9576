package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestStatusJSON(t *testing.T) {
	s := Status{
		Interface: "eth1", XDPMode: "native", Version: "v0.1.0", Flows: 7,
		Services: []ServiceStatus{{
			Service: "198.18.1.1:80/tcp", Scheduler: "maglev", Forward: "dsr-l2",
			Backends: []BackendStatus{
				{Address: "198.18.0.11", Weight: 1, MAC: "02:00:00:00:00:11", State: StateUp, Usable: true, InTable: true,
					Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Packets: 10, Bytes: 1000, NewFlows: 2},
				{Address: "198.18.0.12", State: StateNoMAC, Reason: "no neighbour entry"},
			},
			Packets: 10, Bytes: 1000, NewFlows: 2, DropNoBackend: 3,
		}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"interface":"eth1","xdp_mode":"native","version":"v0.1.0","services":[{"service":"198.18.1.1:80/tcp",` +
		`"scheduler":"maglev","persistence":"0s","forward":"dsr-l2","backends":[{"address":"198.18.0.11","weight":1,"mac":"02:00:00:00:00:11",` +
		`"state":"up","usable":true,"in_table":true,"since":"2026-01-02T03:04:05Z","packets":10,"bytes":1000,"new_flows":2,"active_flows":0},` +
		`{"address":"198.18.0.12","weight":0,"mac":"","state":"no-mac","usable":false,"in_table":false,"reason":"no neighbour entry",` +
		`"packets":0,"bytes":0,"new_flows":0,"active_flows":0}],"packets":10,"bytes":1000,"new_flows":2,"drop_no_backend":3,"announced":false}],"flows":7,` +
		`"timeouts":{"tcp_timeout":"0s","tcp_fin_timeout":"0s","udp_timeout":"0s"},"bgp":false}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip: got %+v, want %+v", back, s)
	}

	f, _ := json.Marshal(Flow{Protocol: "tcp", Client: "198.51.100.7:40000", VIP: "198.18.1.1:80", Backend: "198.18.0.11", IdleSeconds: 1.5})
	if got := string(f); got != `{"protocol":"tcp","client":"198.51.100.7:40000","vip":"198.18.1.1:80","backend":"198.18.0.11","idle_seconds":1.5}` {
		t.Errorf("flow: %s", got)
	}
	e, _ := json.Marshal(Error{Error: "services[0].port 0: out of range 1-65535"})
	if got := string(e); got != `{"error":"services[0].port 0: out of range 1-65535"}` {
		t.Errorf("error: %s", got)
	}
}
