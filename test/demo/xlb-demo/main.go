// Command xlb-demo is `sudo make demo`: xlb's main job end to end on a lab
// in network namespaces, with the real xlbd and xlbctl. See package demo.
//
// It exits 0 when every step showed what it should, 1 when one did not,
// 130 when interrupted; in every case everything it created is removed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xlb-lb/xlb/test/demo"
)

func main() {
	result := flag.String("result", "", "write the outcome as JSON to `FILE` (for tests)")
	bin := flag.String("bin", "", "use prebuilt xlbd and xlbctl from `DIR` instead of building them")
	config := flag.String("config", "", "xlbd config `FILE` (default examples/demo.yaml)")
	flag.Parse()

	// SIGHUP (the terminal closed) and SIGPIPE (`make demo | head`) stop
	// the demo like Ctrl-C, tearing down; unhandled, they would kill it
	// with its namespaces left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	tty := isTerminal(os.Stdout)
	res, err := demo.Run(ctx, demo.Options{
		Out:         os.Stdout,
		Interactive: tty,
		Color:       tty && os.Getenv("NO_COLOR") == "",
		BinDir:      *bin,
		Config:      *config,
	})
	if *result != "" && res != nil {
		b, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(*result, b, 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "xlb-demo: write result:", werr)
		}
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		os.Exit(130)
	default:
		os.Exit(1)
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil && os.Getenv("TERM") != "dumb"
}
