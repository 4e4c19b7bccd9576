package config

import (
	"encoding/json"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		text string
	}{
		{2 * time.Second, "2s"},
		{500 * time.Millisecond, "500ms"},
		{90 * time.Second, "1m30s"},
		{time.Minute, "1m"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{0, "0s"},
	} {
		d := Duration(tc.d)
		if d.String() != tc.text {
			t.Errorf("%v.String() = %q, want %q", tc.d, d, tc.text)
		}

		j, err := json.Marshal(d)
		if err != nil || string(j) != `"`+tc.text+`"` {
			t.Errorf("json.Marshal(%v) = %s, %v", tc.d, j, err)
		}
		var fromJSON Duration
		if err := json.Unmarshal(j, &fromJSON); err != nil || fromJSON != d {
			t.Errorf("json.Unmarshal(%s) = %v, %v", j, fromJSON, err)
		}

		y, err := yaml.Marshal(struct {
			D Duration `yaml:"d"`
		}{d})
		if err != nil || string(y) != "d: "+tc.text+"\n" {
			t.Errorf("yaml.Marshal(%v) = %q, %v", tc.d, y, err)
		}
		var fromYAML struct {
			D Duration `yaml:"d"`
		}
		if err := yaml.Unmarshal(y, &fromYAML); err != nil || fromYAML.D != d {
			t.Errorf("yaml.Unmarshal(%q) = %v, %v", y, fromYAML.D, err)
		}

		var fromText Duration
		if err := fromText.UnmarshalText([]byte(tc.text)); err != nil || fromText != d {
			t.Errorf("UnmarshalText(%q) = %v, %v", tc.text, fromText, err)
		}
	}

	// A normalised Health marshals to YAML that parses back to itself.
	h := Health{Type: "tcp", Interval: Duration(1500 * time.Millisecond), Timeout: Duration(time.Second), Rise: 2, Fall: 3, AllDown: "drop"}
	y, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Health
	if err := yaml.Unmarshal(y, &back); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, back, h)
}

func TestDurationErrors(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("2")); err == nil || err.Error() != `duration "2": not a duration (want e.g. 2s, 500ms or 1m)` {
		t.Errorf("UnmarshalText: %v", err)
	}
	for _, in := range []string{`2`, `"2"`, `"soon"`, `{}`, `true`} {
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("json %s: no error", in)
		}
	}
	d = Duration(time.Second)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != Duration(time.Second) {
		t.Errorf("json null: %v, %v", d, err)
	}
}
