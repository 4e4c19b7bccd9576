package config

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The config file and the API bodies come from people and scripts: every
// input must give a valid, normalised value or one error line, never a
// panic. A value that parses must be a fixed point (normalising it again
// changes nothing) and survive a round trip through its own encoding.
//
// make fuzz FUZZTIME=10m runs each target; go test runs the seeds (the
// examples, the test fixtures and testdata/fuzz).

// checkError fails on an error that is empty or spans several lines.
func checkError(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.TrimSpace(msg) == "" || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one non-empty line", msg)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"xlb.yaml", "demo.yaml", "ha.yaml", "backend.yaml"} {
		if data, err := os.ReadFile("../../examples/" + name); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", "services: [\n", "interface: eth0\n", "limits: {maglev_size: 251}\n",
		"services:\n  - vip: 198.18.1.1\n    port: 80\n    health: {http: {expect_status: '200-299,404'}}\n",
		"services:\n  - {vip: '2001:2::1', port: 53, protocol: udp, scheduler: sh, backends: [{address: '2001:2::11', weight: 0}]}\n",
		bgpBase,
		"decap: {vips: [198.18.1.1, '2001:2::1'], gue_port: 6080, addresses: ['::ffff:198.18.0.2']}\n",
		"decap: {vips: []}\n", "decap: {gue_port: 0}\n", "decap: {vips: [198.18.1.1, 198.18.1.1]}\n",
		"encap: {source_v4: 198.18.100.0/28, source_v6: '2001:2:100::1', gue_port: 6080}\n",
		"encap: {source_v4: 198.18.0.0/8}\n", "encap: {source_v6: 198.18.0.1}\n",
		"services:\n  - {vip: 198.18.1.1, port: 53, protocol: udp, forward: gue, backends: [{address: 198.18.200.11}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			checkError(t, err)
			return
		}
		again := *c
		again.Services = append([]Service(nil), c.Services...)
		for i := range again.Services {
			again.Services[i] = again.Services[i].Clone()
		}
		again.BGP = c.BGP.Clone()
		again.Decap = c.Decap.Clone()
		if err := again.Validate(); err != nil {
			t.Fatalf("a parsed config fails validation: %v", err)
		}
		if !reflect.DeepEqual(&again, c) {
			t.Fatalf("normalising twice changes the config:\n%+v\n%+v", c, &again)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("the config does not parse back: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%s", out)
		}
	})
}

// fuzzJSON is a fuzz body for one API decoder: decode must give a value
// that encodes and decodes to itself, or one error line.
func fuzzJSON[T any](f *testing.F, decode func([]byte) (T, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decode(data)
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := decode(out)
		if err != nil {
			t.Fatalf("%s does not decode back: %v", out, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("round trip changed %s", out)
		}
	})
}

func FuzzDecodeService(f *testing.F) {
	fuzzJSON(f, func(b []byte) (Service, error) { return DecodeService(bytes.NewReader(b)) },
		`{"vip":"198.18.1.1","port":80}`,
		`{"vip":"2001:2::1","port":443,"protocol":"UDP","scheduler":"wlc","persistence":"300s","backends":[{"address":"2001:2::11","weight":2}]}`,
		`{"vip":"198.18.1.1","port":80,"health":{"type":"negotiate","interval":"500ms","http":{"path":"/healthz","expect_status":"200,204"}}}`,
		`{"vip":"198.18.1.1","port":"80"}`, `[]`, `null`, `{"vip":"198.18.1.1","port":80} {}`)
}

func FuzzDecodeBackend(f *testing.F) {
	fuzzJSON(f, func(b []byte) (Backend, error) { return DecodeBackend(bytes.NewReader(b)) },
		`{"address":"198.18.0.11"}`, `{"address":"::ffff:198.18.0.11","weight":65535}`, `{"weight":-1}`, `"198.18.0.11"`)
}

func FuzzDecodeBGP(f *testing.F) {
	fuzzJSON(f, func(b []byte) (*BGP, error) { return DecodeBGP(bytes.NewReader(b)) },
		`{"asn":65010,"peers":[{"address":"198.18.0.1","asn":65000}]}`,
		`{"asn":65010,"router_id":"198.18.0.3","communities":["no-export","65010:100"],"vip_policy":"all","vips":[{"vip":"198.18.1.1","policy":"any"}],"peers":[{"address":"2001:2::1","asn":65000,"hold_time":"3s","password":"k"}]}`,
		`{"asn":0}`, `{"asn":65010,"peers":[]}`)
}
