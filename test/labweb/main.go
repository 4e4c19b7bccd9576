// Command labweb is the lab's web server as a process of its own: the
// instances the autoscaler example (examples/autoscaler) starts and stops
// in a lab namespace. It answers as test/lab's HTTPServer does: GET
// /healthz "ok", any other request the greeting "server=NAME
// client=ADDR:PORT", with HTTP/1.1 keep-alive. SIGTERM or SIGINT stop it:
// it closes its listeners and lets requests in progress finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
)

func main() {
	name := flag.String("name", "", "the `NAME` the server answers with (required)")
	port := flag.Int("port", 8080, "TCP `PORT` to listen on, on every address (IPv4 and IPv6)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *name, *port); err != nil {
		slog.Error("labweb", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, name string, port int) error {
	if name == "" || port < 1 || port > 65535 {
		return fmt.Errorf("want --name and a --port from 1 to 65535 (name %q, port %d)", name, port)
	}
	srv := &http.Server{Handler: lab.GreetingHandler(name, nil), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	for _, network := range []string{"tcp4", "tcp6"} {
		l, err := net.Listen(network, fmt.Sprintf(":%d", port))
		if err != nil {
			return fmt.Errorf("listen %s port %d: %w", network, port, err)
		}
		go func() { errc <- srv.Serve(l) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
