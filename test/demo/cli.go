package demo

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main is the main function of a demo command (xlb-demo, xlb-demo-ha):
// flags, signals, the result file and the exit status. run is the demo
// (Run, RunHA); withConfig offers the --config flag.
//
// It exits 0 when every step showed what it should, 1 when one did not,
// 130 when interrupted; in every case everything the demo created is
// removed first.
func Main[R any](name string, run func(context.Context, Options) (*R, error), withConfig bool) {
	result := flag.String("result", "", "write the outcome as JSON to `FILE` (for tests)")
	bin := flag.String("bin", "", "use prebuilt xlbd and xlbctl from `DIR` instead of building them")
	var config *string
	if withConfig {
		config = flag.String("config", "", "xlbd config `FILE` (default examples/demo.yaml)")
	}
	flag.Parse()

	// SIGHUP (the terminal closed) and SIGPIPE (`make demo | head`) stop
	// the demo like Ctrl-C, tearing down; unhandled, they would kill it
	// with its namespaces left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	tty := isTerminal(os.Stdout)
	opts := Options{
		Out:         os.Stdout,
		Interactive: tty,
		Color:       tty && os.Getenv("NO_COLOR") == "",
		BinDir:      *bin,
	}
	if config != nil {
		opts.Config = *config
	}
	res, err := run(ctx, opts)
	if *result != "" && res != nil {
		b, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(*result, b, 0o644); werr != nil {
			fmt.Fprintf(os.Stderr, "%s: write result: %v\n", name, werr)
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
