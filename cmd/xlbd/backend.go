package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/signal"
	"syscall"

	"github.com/xlb-lb/xlb/cmd/config"
	"github.com/xlb-lb/xlb/cmd/daemon"
	"github.com/xlb-lb/xlb/loader/decap"
	"github.com/xlb-lb/xlb/maps/lb"
)

// runBackend is xlbd --role backend: the decapsulator on ifc, driven by
// the config file's decap section, with the same lock, API socket
// (status), metrics, pins and re-adoption as the balancer. Stopping xlbd
// leaves it decapsulating; xlbd --detach removes it.
func runBackend(ctx context.Context, f *flags, log *slog.Logger, cfg *config.Config, ifc *net.Interface,
	xdpMode lb.XDPMode, pinDir string, ln, metricsLn net.Listener) error {
	dc, err := decap.Open(decap.Options{Interface: ifc.Name, XDPMode: xdpMode, PinDir: pinDir, Logger: log})
	if err != nil {
		return err
	}
	defer closeLogged(log, "the decapsulator (it keeps decapsulating)", dc)
	if dc.Adopted() {
		log.Info("re-adopted the running decapsulator", "pins", pinDir)
	} else {
		log.Info("attached a fresh decapsulator", "interface", ifc.Name, "mode", string(xdpMode), "pins", pinDir)
	}
	b := daemon.NewBackend(daemon.BackendOptions{
		Log: log, ConfigPath: f.config, Interface: ifc.Name, XDPMode: string(xdpMode), Version: version,
		Decap: dc, Adopted: dc.Adopted(),
		InterfaceAddrs: func() ([]netip.Addr, error) {
			// Read afresh: a reload picks up addresses added since.
			i, err := net.InterfaceByIndex(ifc.Index)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", ifc.Name, err)
			}
			return interfaceAddrs(i)
		},
	})
	if err := b.Apply(cfg); err != nil {
		return err
	}

	defer serveAPI(log, b.Handler(), ln, b.MetricsHandler(), metricsLn)()
	sigs := notifySignals()
	defer signal.Stop(sigs)
	log.Info("xlbd ready", "role", string(lb.RoleBackend), "api", f.apiSock, "metrics", f.metrics, "version", version)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := b.Reload(); err != nil {
					log.Error("reload rejected, previous decap settings keep serving", "err", err)
				} else {
					log.Info("reloaded config", "file", f.config)
				}
				continue
			}
			log.Info("stopping; the decapsulator keeps running (xlbd --detach removes it)")
			return nil
		}
	}
}
