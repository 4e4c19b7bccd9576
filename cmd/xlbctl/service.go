package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/maps/lb"
)

// serviceFlags are the settings of service add and service set.
type serviceFlags struct {
	scheduler, forward string
	persistence        string
	backends           stringList
	check              string
	interval, timeout  string
	rise, fall, port   string
	httpPath           string
	httpExpect         string
	httpBody           string
	httpMethod         string
	httpHost           string
	https, insecure    bool
	startUp            bool
	allDown            string
	via                string
}

// checkFlags are the flags that make up the health check.
var checkFlags = []string{"check", "check-interval", "check-timeout", "rise", "fall", "check-port", "check-via", "start-up", "all-down",
	"http-method", "http-path", "http-host", "http-expect", "http-body", "https", "insecure-skip-verify"}

// httpFlags are the flags of the http check.
var httpFlags = []string{"http-method", "http-path", "http-host", "http-expect", "http-body", "https", "insecure-skip-verify"}

func (f *serviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.scheduler, "scheduler", "", "scheduler `NAME`: maglev (the default; ipvsadm's mh), source-hash (sh), round-robin (rr, wrr) or least-conn (lc, wlc)")
	fs.StringVar(&f.persistence, "persistence", "", "client persistence `DURATION` in whole seconds, e.g. 300s (ipvsadm's -p): a client's new connections follow its previous one's backend, drained or not; 0 turns it off")
	fs.StringVar(&f.forward, "forward", "", "forwarding `MODE`: dsr-l2 (the default; ipvsadm's -g), ipip (ipvsadm's -i) or gue")
	fs.Var(&f.backends, "backend", "backend `ADDR`, or ADDR=WEIGHT with a weight of 0-65535 (default 1); IPv6 plain or in [brackets]; repeat for more")
	fs.StringVar(&f.check, "check", "", "health check `TYPE`: tcp (the default), http, icmp or none (no probes: backends count as up)")
	fs.StringVar(&f.interval, "check-interval", "", "time between probes, a `DURATION` from 100ms to 1h (default 2s)")
	fs.StringVar(&f.timeout, "check-timeout", "", "`DURATION` a probe may take, less than the interval (default 1s, or half the interval if less)")
	fs.StringVar(&f.rise, "rise", "", "`N` successes in a row bring a backend up, 1-100 (default 2)")
	fs.StringVar(&f.fall, "fall", "", "`N` failures in a row take a backend down, 1-100 (default 3)")
	fs.StringVar(&f.port, "check-port", "", "`PORT` that tcp and http checks probe, 0-65535 (default 0: the service port)")
	fs.StringVar(&f.via, "check-via", "", "`PATH` of tcp and http checks: backend (the default: the backend's own address) or tunnel (the VIP on each backend through its ipip or gue tunnel, as clients reach it)")
	fs.BoolVar(&f.startUp, "start-up", false, "new backends start up, before their first check (default: down until they pass rise checks)")
	fs.StringVar(&f.allDown, "all-down", "", "when every backend is down: drop (the default) or keep-last (keep sending to the last healthy ones)")
	fs.StringVar(&f.httpMethod, "http-method", "", "http check: request `METHOD` (default GET)")
	fs.StringVar(&f.httpHost, "http-host", "", "http check: Host header and TLS server `NAME` (default the backend address)")
	fs.BoolVar(&f.https, "https", false, "http check: use TLS")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "http check: do not verify the backend's TLS certificate")
	fs.StringVar(&f.httpPath, "http-path", "", "http check: request `PATH` (default /)")
	fs.StringVar(&f.httpExpect, "http-expect", "", "http check: good status `CODES`, e.g. 200,204,300-399 (default 200-399)")
	fs.StringVar(&f.httpBody, "http-body", "", "http check: `TEXT` the response body must contain")
}

// apply sets the flags given on s, checking each value on its own.
func (f *serviceFlags) apply(s *config.Service, given map[string]bool) error {
	if given["scheduler"] {
		v, err := lb.Schedulers.Parse(f.scheduler)
		if err != nil {
			return usagef("%v", err)
		}
		s.Scheduler = v.String()
	}
	if given["persistence"] {
		if f.persistence == "0" {
			s.Persistence = 0
		} else {
			d, err := time.ParseDuration(f.persistence)
			if err != nil {
				return usagef("persistence %q: not a duration (want e.g. 300s or 5m; 0 turns it off)", f.persistence)
			}
			s.Persistence = config.Duration(d)
		}
	}
	if given["forward"] {
		v, err := lb.ForwardModes.Parse(f.forward)
		if err != nil {
			return usagef("%v", err)
		}
		s.Forward = v.String()
	}
	if given["backend"] {
		s.Backends = []config.Backend{}
		for _, v := range f.backends {
			b, err := parseBackend(v)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(s.Backends, func(o config.Backend) bool { return o.Address == b.Address }) {
				return usagef("backend %q: %s is given twice", v, b.Address)
			}
			s.Backends = append(s.Backends, b)
		}
	}
	if anyGiven(given, checkFlags) {
		return f.applyHealth(s, given)
	}
	return nil
}

// validate makes the checks that span several settings (a timeout below
// the interval, no port for icmp, a backend other than the VIP, ...) by
// xlbd's own rules, before the service is sent.
func validate(s config.Service) error {
	if err := s.Normalize(); err != nil { // changes the copy s only
		return explain(err)
	}
	return nil
}

func (f *serviceFlags) applyHealth(s *config.Service, given map[string]bool) error {
	var h config.Health
	if s.Health != nil {
		h = *s.Health
		if h.HTTP != nil {
			c := *h.HTTP
			h.HTTP = &c
		}
	}
	if given["check"] {
		ct, err := lb.CheckTypes.Parse(f.check)
		if err != nil {
			return usagef("check %q: %s", f.check, lb.CheckTypes.Want())
		}
		t := string(ct)
		if t != checkType(h) {
			// A new type: drop the settings only the old one had.
			if t != string(lb.CheckHTTP) {
				h.HTTP = nil
			}
			if t == string(lb.CheckICMP) || t == string(lb.CheckNone) {
				h.Port = 0
			}
		}
		h.Type = t
	}
	if given["check-interval"] {
		d, err := parseDuration("check-interval", f.interval)
		if err != nil {
			return err
		}
		// A timeout that was the old interval's default follows the new
		// interval.
		if !given["check-timeout"] && h.Timeout != 0 && h.Timeout == config.DefaultCheckTimeout(h.Interval) {
			h.Timeout = 0
		}
		h.Interval = d
	}
	if given["check-timeout"] {
		d, err := parseDuration("check-timeout", f.timeout)
		if err != nil {
			return err
		}
		h.Timeout = d
	}
	for _, n := range []struct {
		name, v string
		dst     *int
		lo, hi  int
	}{
		{"rise", f.rise, &h.Rise, lb.CheckRise.Min, lb.CheckRise.Max},
		{"fall", f.fall, &h.Fall, lb.CheckFall.Min, lb.CheckFall.Max},
		{"check-port", f.port, &h.Port, 0, 65535},
	} {
		if given[n.name] {
			v, err := parseInt(n.name, n.v, n.lo, n.hi)
			if err != nil {
				return err
			}
			*n.dst = v
		}
	}
	if given["check-via"] {
		v, err := lb.CheckVias.Parse(f.via)
		if err != nil {
			return usagef("check-via %q: %s", f.via, lb.CheckVias.Want())
		}
		h.Via = string(v)
	}
	if given["start-up"] {
		h.StartUp = f.startUp
	}
	if given["all-down"] {
		v, err := lb.AllDowns.Parse(f.allDown)
		if err != nil {
			return usagef("all-down %q: %s", f.allDown, lb.AllDowns.Want())
		}
		mode := string(v)
		h.AllDown = mode
	}
	if anyGiven(given, httpFlags) {
		if h.HTTP == nil {
			h.HTTP = &config.HTTPCheck{}
		}
		for name, set := range map[string]func(c *config.HTTPCheck){
			"http-method":          func(c *config.HTTPCheck) { c.Method = f.httpMethod },
			"http-host":            func(c *config.HTTPCheck) { c.Host = f.httpHost },
			"https":                func(c *config.HTTPCheck) { c.HTTPS = f.https },
			"insecure-skip-verify": func(c *config.HTTPCheck) { c.InsecureSkipVerify = f.insecure },
			"http-path":            func(c *config.HTTPCheck) { c.Path = f.httpPath },
			"http-expect":          func(c *config.HTTPCheck) { c.ExpectStatus = f.httpExpect },
			"http-body":            func(c *config.HTTPCheck) { c.ExpectBody = f.httpBody },
		} {
			if given[name] {
				set(h.HTTP)
			}
		}
		if t := checkType(h); t != string(lb.CheckHTTP) {
			i := slices.IndexFunc(httpFlags, func(n string) bool { return given[n] })
			return usagef("--%s needs --check http (the check is %s)", httpFlags[i], t)
		}
	}
	s.Health = &h
	return nil
}

// checkType is the type a health check has once xlbd applies the
// defaults.
func checkType(h config.Health) string {
	if h.Type == "" {
		if h.HTTP != nil {
			return string(lb.CheckHTTP)
		}
		return string(lb.CheckTCP)
	}
	if t, ok := lb.CheckTypes.Lookup(h.Type); ok {
		return string(t)
	}
	return strings.ToLower(h.Type)
}

func anyGiven(given map[string]bool, names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return given[n] })
}

// flagOfPath names the flag of a field of config.Service.
var flagOfPath = map[string]string{
	"scheduler":                        "scheduler",
	"persistence":                      "persistence",
	"forward":                          "forward",
	"health.type":                      "check",
	"health.interval":                  "check-interval",
	"health.timeout":                   "check-timeout",
	"health.rise":                      "rise",
	"health.fall":                      "fall",
	"health.port":                      "check-port",
	"health.via":                       "check-via",
	"health.all_down":                  "all-down",
	"health.http.method":               "http-method",
	"health.http.host":                 "http-host",
	"health.http.insecure_skip_verify": "insecure-skip-verify",
	"health.http.path":                 "http-path",
	"health.http.expect_status":        "http-expect",
	"health.http.expect_body":          "http-body",
}

// explain turns a validation error of a service into a usage error that
// names the flag rather than the field.
func explain(err error) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return usageErr(err.Error())
	}
	c := *fe
	if name, ok := flagOfPath[c.Path]; ok {
		c.Path = name
	} else if strings.HasPrefix(c.Path, "backends[") {
		c.Path = "backend"
	}
	return usageErr(c.Error())
}

// findService returns the service named k.
func findService(svcs []api.ServiceStatus, k lb.ServiceKey) (api.ServiceStatus, bool) {
	for _, s := range svcs {
		if sk, err := lb.ParseServiceKey(s.Service); err == nil && sk == k {
			return s, true
		}
	}
	return api.ServiceStatus{}, false
}

// noService is the error for a service xlbd does not have.
func noService(k lb.ServiceKey) error {
	return fmt.Errorf("service %s: no such service (see xlbctl service list)", k)
}

// toService turns an installed service back into the API's request form.
func toService(k lb.ServiceKey, ss api.ServiceStatus) config.Service {
	s := config.Service{
		VIP: k.VIP.String(), Port: int(k.Port), Protocol: k.Proto.String(),
		Scheduler: ss.Scheduler, Persistence: ss.Persistence, Forward: ss.Forward,
		Backends: make([]config.Backend, 0, len(ss.Backends)),
	}
	if ss.Health != nil {
		h := ss.Health.Clone()
		s.Health = &h
	}
	for _, b := range ss.Backends {
		if b.Name != "" {
			continue // the name's entry stands for it
		}
		w := b.Weight
		s.Backends = append(s.Backends, config.Backend{Address: b.Address, Weight: &w})
	}
	for _, n := range ss.Names {
		w := n.Weight
		s.Backends = append(s.Backends, config.Backend{Name: n.Name, Family: n.Family, Weight: &w})
	}
	return s
}

func countBackends(n int) string {
	if n == 1 {
		return "1 backend"
	}
	return fmt.Sprintf("%d backends", n)
}

func serviceAdd(fs *flag.FlagSet) func(context.Context, *call) error {
	var f serviceFlags
	f.register(fs)
	return func(ctx context.Context, c *call) error {
		k, err := parseKey(c.args[0])
		if err != nil {
			return err
		}
		s := config.Service{VIP: k.VIP.String(), Port: int(k.Port), Protocol: k.Proto.String(), Backends: []config.Backend{}}
		if err := f.apply(&s, c.given); err != nil {
			return err
		}
		if err := validate(s); err != nil {
			return err
		}
		st, err := c.client.AddService(ctx, s)
		if err != nil {
			return err
		}
		n := len(s.Backends)
		if ss, ok := findService(st.Services, k); ok {
			n = len(ss.Backends)
		}
		fmt.Fprintf(c.env.Stdout, "added service %s with %s\n", k, countBackends(n))
		return nil
	}
}

func serviceSet(fs *flag.FlagSet) func(context.Context, *call) error {
	var f serviceFlags
	f.register(fs)
	return func(ctx context.Context, c *call) error {
		k, err := parseKey(c.args[0])
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(append([]string{"scheduler", "persistence", "forward", "backend"}, checkFlags...), func(n string) bool { return c.given[n] }) {
			return usagef("nothing to change: give the settings to change as flags (usage: %s)", c.cmd.usageLine())
		}
		// Check each flag's value before asking xlbd for the service.
		probe := config.Service{VIP: k.VIP.String(), Port: int(k.Port), Protocol: k.Proto.String()}
		if err := f.apply(&probe, c.given); err != nil {
			return err
		}
		svcs, err := c.client.Services(ctx)
		if err != nil {
			return err
		}
		cur, ok := findService(svcs, k)
		if !ok {
			return noService(k)
		}
		s := toService(k, cur)
		if err := f.apply(&s, c.given); err != nil {
			return err
		}
		if err := validate(s); err != nil {
			return err
		}
		if _, err := c.client.SetService(ctx, k.String(), s); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "changed service %s\n", k)
		return nil
	}
}

func serviceDel(fs *flag.FlagSet) func(context.Context, *call) error {
	return func(ctx context.Context, c *call) error {
		k, err := parseKey(c.args[0])
		if err != nil {
			return err
		}
		if _, err := c.client.DeleteService(ctx, k.String()); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "deleted service %s\n", k)
		return nil
	}
}

func serviceList(fs *flag.FlagSet) func(context.Context, *call) error {
	return readCommand(fs,
		func(ctx context.Context, c *call) ([]api.ServiceStatus, error) {
			svcs, err := c.client.Services(ctx)
			if svcs == nil {
				svcs = []api.ServiceStatus{}
			}
			return svcs, err
		},
		func(c *call, svcs []api.ServiceStatus) error {
			t := newTable(c.env.Stdout, "", "SERVICE", "SCHEDULER", "PERSISTENCE", "FORWARD", "CHECK", "BACKENDS", "UP")
			for _, s := range svcs {
				up := 0
				for _, b := range s.Backends {
					if b.State == api.StateUp {
						up++
					}
				}
				check := ""
				if s.Health != nil {
					check = s.Health.Type
				}
				t.row(s.Service, s.Scheduler, persistenceText(s.Persistence), s.Forward, check, len(s.Backends), up)
			}
			return t.flush()
		})
}

// persistenceText shows a persistence timeout, "off" for none.
func persistenceText(d config.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}
