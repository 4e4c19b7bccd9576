package main

import "testing"

func TestFlags(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil || f.config != "/etc/xlb/xlb.yaml" || f.bpffs != "/sys/fs/bpf/xlb" || f.apiSock != "/run/xlb/xlb.sock" ||
		f.metrics != "127.0.0.1:9641" || f.state != "/var/lib/xlb/state.json" {
		t.Errorf("defaults: %+v %v", f, err)
	}
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Error("stray argument accepted")
	}
}
