package lb

import "testing"

func TestParseServiceKeyErrors(t *testing.T) {
	const hint = ": want VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp or [2001:2::1]:443/udp"
	for in, want := range map[string]string{
		"x":                                   `service "x"` + hint,
		"198.18.1.1:80":                       `service "198.18.1.1:80"` + hint,
		"198.18.1.1/tcp":                      `service "198.18.1.1/tcp"` + hint,
		"198.18.1.1:80/":                      `service "198.18.1.1:80/"` + hint,
		"2001:2::1:443/tcp":                   `service "2001:2::1:443/tcp"` + hint,
		"198.18.1.1:http/tcp":                 `service "198.18.1.1:http/tcp": port "http": not a number (service names are not looked up)`,
		"198.18.1.1:abc/tcp":                  `service "198.18.1.1:abc/tcp": port "abc": not a number (service names are not looked up)`,
		"198.18.1.1:65536/tcp":                `service "198.18.1.1:65536/tcp": port 65536: out of range 1-65535`,
		"198.18.1.1:99999999999999999999/tcp": `service "198.18.1.1:99999999999999999999/tcp": port 99999999999999999999: out of range 1-65535`,
		"198.18.1.300:80/tcp":                 `service "198.18.1.300:80/tcp": vip "198.18.1.300": not an IP address`,
		"198.18.1.1:80/sctp":                  `service "198.18.1.1:80/sctp": protocol "sctp": want one of tcp, udp`,
		"198.18.1.1:0/tcp":                    `service "198.18.1.1:0/tcp": port 0: out of range 1-65535`,
		"0.0.0.0:80/tcp":                      `service "0.0.0.0:80/tcp": vip "0.0.0.0": not a unicast address (unspecified)`,
		"255.255.255.255:80/udp":              `service "255.255.255.255:80/udp": vip "255.255.255.255": not a unicast address (broadcast)`,
		"[fe80::1%eth0]:80/tcp":               `service "[fe80::1%eth0]:80/tcp": vip "fe80::1%eth0": zones are not allowed`,
		"[ff02::1]:80/tcp":                    `service "[ff02::1]:80/tcp": vip "ff02::1": not a unicast address (multicast)`,
	} {
		if _, err := ParseServiceKey(in); err == nil || err.Error() != want {
			t.Errorf("ParseServiceKey(%q):\n  got  %v\n  want %s", in, err, want)
		}
	}
	k, err := ParseServiceKey("[2001:2::1]:443/UDP")
	if err != nil || k.String() != "[2001:2::1]:443/udp" {
		t.Errorf("upper-case proto: %v, %v", k, err)
	}
}
