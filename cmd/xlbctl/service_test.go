package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

func TestServiceAdd(t *testing.T) {
	const key = `{"vip":"198.18.1.1","port":80,"protocol":"tcp",`
	for _, tc := range []struct {
		args []string
		call string
		out  string
	}{
		{
			[]string{"service", "add", "198.18.1.1:80/tcp"},
			`AddService ` + key + `"scheduler":"","forward":"","backends":[]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n", // as the returned status says
		},
		{
			[]string{"service", "add", "198.18.1.1:80/TCP", "--backend", "198.18.0.11", "--backend", "198.18.0.12=2", "--backend", "::ffff:198.18.0.13=0"},
			`AddService ` + key + `"scheduler":"","forward":"","backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":2},{"address":"198.18.0.13","weight":0}]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n",
		},
		{
			// Flags before and after the service; scheduler aliases.
			[]string{"service", "add", "--scheduler", "SH", "198.18.1.1:80/tcp", "--forward", "DSR-L2", "--api", "/elsewhere.sock"},
			`AddService ` + key + `"scheduler":"source-hash","forward":"dsr-l2","backends":[]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n",
		},
		{
			[]string{"service", "add", "198.18.1.1:80/tcp", "--check", "HTTP", "--http-path", "/healthz", "--http-expect", "200,204", "--http-body", "ok",
				"--check-interval", "5s", "--check-timeout", "2s", "--rise", "3", "--fall", "4", "--check-port", "8080"},
			`AddService ` + key + `"scheduler":"","forward":"",` +
				`"health":{"type":"http","interval":"5s","timeout":"2s","rise":3,"fall":4,"port":8080,"http":{"method":"","path":"/healthz","expect_status":"200,204","expect_body":"ok"}},"backends":[]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n",
		},
		{
			[]string{"service", "add", "198.18.1.1:443/tcp", "--check", "http", "--https", "--insecure-skip-verify", "--http-method", "HEAD",
				"--http-host", "www.example.test", "--start-up", "--all-down", "KEEP-LAST"},
			`AddService {"vip":"198.18.1.1","port":443,"protocol":"tcp","scheduler":"","forward":"",` +
				`"health":{"type":"http","interval":"0s","timeout":"0s","rise":0,"fall":0,"http":{"method":"HEAD","path":"","host":"www.example.test","https":true,"insecure_skip_verify":true,"expect_status":""},"start_up":true,"all_down":"keep-last"},"backends":[]}`,
			"added service 198.18.1.1:443/tcp with 0 backends\n",
		},
		{
			// Any check flag adds a check; an --http-* flag alone makes it http.
			[]string{"service", "add", "198.18.1.1:80/tcp", "--rise", "1"},
			`AddService ` + key + `"scheduler":"","forward":"","health":{"type":"","interval":"0s","timeout":"0s","rise":1,"fall":0},"backends":[]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n",
		},
		{
			[]string{"service", "add", "198.18.1.1:80/tcp", "--http-path", "/ready"},
			`AddService ` + key + `"scheduler":"","forward":"","health":{"type":"","interval":"0s","timeout":"0s","rise":0,"fall":0,"http":{"method":"","path":"/ready","expect_status":""}},"backends":[]}`,
			"added service 198.18.1.1:80/tcp with 3 backends\n",
		},
		{
			[]string{"service", "add", "[2001:2:0::5]:53/udp", "--backend", "2001:2::11", "--backend", "[2001:2::12]=3", "--check", "icmp"},
			`AddService {"vip":"2001:2::5","port":53,"protocol":"udp","scheduler":"","forward":"",` +
				`"health":{"type":"icmp","interval":"0s","timeout":"0s","rise":0,"fall":0},"backends":[{"address":"2001:2::11"},{"address":"2001:2::12","weight":3}]}`,
			"added service [2001:2::5]:53/udp with 2 backends\n", // not in the returned status
		},
	} {
		r := mustRun(t, &fakeClient{status: sampleStatus()}, tc.args...)
		if len(r.calls) != 1 || r.calls[0] != tc.call {
			t.Errorf("%q:\n  calls %q\n  want  %q", tc.args, r.calls, tc.call)
		}
		if r.stdout != tc.out {
			t.Errorf("%q: stdout %q, want %q", tc.args, r.stdout, tc.out)
		}
	}
}

// The bodies service add sends are what xlbd accepts.
func TestServiceAddBodiesDecode(t *testing.T) {
	fc := &fakeClient{}
	mustRun(t, fc, "service", "add", "198.18.1.1:80/tcp", "--check", "http", "--http-path", "/healthz", "--check-interval", "500ms", "--backend", "198.18.0.11=7")
	body := strings.TrimPrefix(fc.calls[0], "AddService ")
	s, err := config.DecodeService(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if s.Health.Timeout != config.Duration(250*time.Millisecond) || *s.Backends[0].Weight != 7 || s.Health.HTTP.Path != "/healthz" {
		t.Errorf("decoded %+v", s)
	}
}

func TestServiceSet(t *testing.T) {
	// The current service as xlbd has it: the put sends all of it back,
	// changed as the flags say.
	const cur = `{"vip":"198.18.1.1","port":80,"protocol":"tcp","scheduler":"%s","forward":"dsr-l2",` +
		`"health":%s,` +
		`"backends":%s}`
	const curHealth = `{"type":"http","interval":"2s","timeout":"1s","rise":2,"fall":3,"http":{"method":"GET","path":"/healthz","expect_status":"200-399"},"all_down":"drop"}`
	const curBackends = `[{"address":"198.18.0.11","weight":1},{"address":"198.18.0.12","weight":0},{"address":"198.18.0.13","weight":2}]`
	put := func(sched, health, backends string) string {
		return "SetService 198.18.1.1:80/tcp " + fmt.Sprintf(cur, sched, health, backends)
	}
	for _, tc := range []struct {
		args []string
		put  string
	}{
		{[]string{"--scheduler", "source-hash"}, put("source-hash", curHealth, curBackends)},
		{[]string{"--backend", "198.18.0.14", "--backend", "198.18.0.11=5"},
			put("maglev", curHealth, `[{"address":"198.18.0.14"},{"address":"198.18.0.11","weight":5}]`)},
		{[]string{"--rise", "5", "--http-path", "/ready"},
			put("maglev", strings.Replace(strings.Replace(curHealth, `"rise":2`, `"rise":5`, 1), "/healthz", "/ready", 1), curBackends)},
		// A new type drops what only the old one had.
		{[]string{"--check", "tcp", "--check-port", "8080"},
			put("maglev", `{"type":"tcp","interval":"2s","timeout":"1s","rise":2,"fall":3,"port":8080,"all_down":"drop"}`, curBackends)},
		{[]string{"--check", "none"},
			put("maglev", `{"type":"none","interval":"2s","timeout":"1s","rise":2,"fall":3,"all_down":"drop"}`, curBackends)},
		// The same type keeps its settings.
		{[]string{"--check", "http", "--fall", "1"},
			put("maglev", strings.Replace(curHealth, `"fall":3`, `"fall":1`, 1), curBackends)},
		// A default timeout follows a shorter interval; a chosen one stays.
		{[]string{"--check-interval", "500ms"},
			put("maglev", strings.Replace(strings.Replace(curHealth, `"interval":"2s"`, `"interval":"500ms"`, 1), `"timeout":"1s"`, `"timeout":"0s"`, 1), curBackends)},
		{[]string{"--check-interval", "10s", "--check-timeout", "3s"},
			put("maglev", strings.Replace(strings.Replace(curHealth, `"interval":"2s"`, `"interval":"10s"`, 1), `"timeout":"1s"`, `"timeout":"3s"`, 1), curBackends)},
	} {
		args := append([]string{"service", "set", "198.18.1.1:80/tcp"}, tc.args...)
		r := mustRun(t, &fakeClient{status: sampleStatus()}, args...)
		want := []string{"Services", tc.put}
		if !reflect.DeepEqual(r.calls, want) {
			t.Errorf("%q:\n  calls %q\n  want  %q", tc.args, r.calls, want)
		}
		if r.stdout != "changed service 198.18.1.1:80/tcp\n" {
			t.Errorf("%q: stdout %q", tc.args, r.stdout)
		}
	}

	// A service without a check gets one.
	r := mustRun(t, &fakeClient{status: sampleStatus()}, "service", "set", "[2001:2::1]:53/udp", "--check", "icmp", "--check-interval", "1s")
	want := `SetService [2001:2::1]:53/udp {"vip":"2001:2::1","port":53,"protocol":"udp","scheduler":"source-hash","forward":"dsr-l2",` +
		`"health":{"type":"icmp","interval":"1s","timeout":"0s","rise":0,"fall":0},"backends":[]}`
	if len(r.calls) != 2 || r.calls[1] != want {
		t.Errorf("add a check:\n  calls %q\n  want  %q", r.calls, want)
	}

	// Combinations checked against the current service: usage errors,
	// nothing put.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--check", "tcp", "--http-path", "/x"}, "xlbctl: service set: --http-path needs --check http (the check is tcp)\n"},
		{[]string{"--check-timeout", "2s"}, "xlbctl: service set: check-timeout 2s: must be less than interval 2s\n"},
		{[]string{"--backend", "198.18.1.1"}, `xlbctl: service set: backend "198.18.1.1": same as the service's vip` + "\n"},
	} {
		args := append([]string{"service", "set", "198.18.1.1:80/tcp"}, tc.args...)
		r := xlbctl(t, &fakeClient{status: sampleStatus()}, args...)
		if r.code != 2 || r.stderr != tc.want || len(r.calls) > 1 {
			t.Errorf("%q: exit %d, stderr %q, calls %q; want exit 2, %q", tc.args, r.code, r.stderr, r.calls, tc.want)
		}
	}
	// On a service with a tcp check, --http-* alone is an error too.
	st := sampleStatus()
	st.Services[0].Health = &config.Health{Type: "tcp", Interval: config.Duration(2 * time.Second), Timeout: config.Duration(time.Second), Rise: 2, Fall: 3}
	r = xlbctl(t, &fakeClient{status: st}, "service", "set", "198.18.1.1:80/tcp", "--http-expect", "200")
	if r.code != 2 || r.stderr != "xlbctl: service set: --http-expect needs --check http (the check is tcp)\n" {
		t.Errorf("http flag on a tcp check: exit %d, stderr %q", r.code, r.stderr)
	}

	r = xlbctl(t, &fakeClient{status: sampleStatus()}, "service", "set", "198.18.1.9:80/tcp", "--scheduler", "maglev")
	if r.code != 1 || r.stderr != "xlbctl: service set: service 198.18.1.9:80/tcp: no such service (see xlbctl service list)\n" || len(r.calls) != 1 {
		t.Errorf("missing service: exit %d, stderr %q, calls %q", r.code, r.stderr, r.calls)
	}
}

func TestServiceDel(t *testing.T) {
	r := mustRun(t, &fakeClient{}, "service", "del", "[2001:2:0:0::1]:53/UDP")
	if want := []string{"DeleteService [2001:2::1]:53/udp"}; !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls %q, want %q", r.calls, want)
	}
	sameLines(t, "stdout", r.stdout, "deleted service [2001:2::1]:53/udp\n")
}
