// Command xlbctl changes a running xlbd through its local API (HTTP/JSON
// over a unix socket): it adds, changes and removes services and
// backends, drains backends, and shows status, counters and flows; top
// shows live rates, and completion prints bash and zsh completion scripts.
//
// Noun commands (status, stats, flows, service list, backend list) only
// read; verb commands (add, set, del, drain) change state. Errors are one
// line on stderr; the exit status is 0 on success, 1 when xlbd cannot be
// reached or refuses the change, and 2 for usage errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/xlb-lb/xlb/cmd/api"
	"github.com/xlb-lb/xlb/cmd/config"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // xlbd unreachable, or it refused the change
	exitUsage = 2 // bad command line
)

// Client is the part of *api.Client the commands use, so tests can inject
// a fake.
type Client interface {
	Status(ctx context.Context) (api.Status, error)
	Services(ctx context.Context) ([]api.ServiceStatus, error)
	AddService(ctx context.Context, s config.Service) (api.Status, error)
	SetService(ctx context.Context, key string, s config.Service) (api.Status, error)
	DeleteService(ctx context.Context, key string) (api.Status, error)
	AddBackend(ctx context.Context, key string, b config.Backend) (api.Status, error)
	SetBackend(ctx context.Context, key, addr string, b config.Backend) (api.Status, error)
	DeleteBackend(ctx context.Context, key, addr string) (api.Status, error)
	DrainBackend(ctx context.Context, key, addr string) (api.Status, error)
	Flows(ctx context.Context, limit int) ([]api.Flow, error)
	BGP(ctx context.Context) (api.BGPStatus, error)
}

var _ Client = (*api.Client)(nil)

// env is everything a command touches outside its arguments.
type env struct {
	Stdout, Stderr io.Writer
	// Client talks to xlbd; nil: an *api.Client for the --api socket.
	Client Client
	// Now is the clock that ages are measured with; nil: time.Now.
	Now func() time.Time
	// Getenv reads the environment (XLB_API); nil: os.Getenv.
	Getenv func(string) string
	// Screen opens the terminal for top's live view; nil: the real
	// terminal when Stdout is one, else top prints plain frames.
	Screen func() (tcell.Screen, error)
}

// envSocket names the environment variable that replaces the default API
// socket (--api still wins).
const envSocket = "XLB_API"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, env{Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run parses the global flags, finds the command in the table and runs
// it. It returns the exit status.
func run(ctx context.Context, e env, args []string) int {
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if len(args) > 0 && args[0] == completeCommand {
		return e.complete(ctx, args[1:])
	}
	socket := api.DefaultSocket
	if v := e.Getenv(envSocket); v != "" {
		socket = v
	}
	fs := newFlagSet("xlbctl")
	globalFlags(fs, &socket)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		writeOverview(e.Stdout)
		return exitOK
	case err != nil:
		return e.fail("", usageErr(flagError(err, "xlbctl --help")))
	}
	args = fs.Args()
	if len(args) == 0 {
		return e.fail("", usageErr("missing command (usage: xlbctl [--api SOCKET] COMMAND [ARGS]; commands: "+
			strings.Join(topNames(), ", ")+"; see xlbctl --help)"))
	}
	if args[0] == "help" {
		return e.help(args[1:])
	}
	cmd, rest, err := lookup(args)
	if err != nil {
		var h helpRequest
		if errors.As(err, &h) {
			writeGroupHelp(e.Stdout, string(h))
			return exitOK
		}
		name := ""
		if isGroup(args[0]) {
			name = args[0]
		}
		return e.fail(name, err)
	}
	return e.fail(cmd.name, e.exec(ctx, cmd, rest, &socket))
}

// globalFlags registers the flags every command accepts.
func globalFlags(fs *flag.FlagSet, socket *string) {
	fs.StringVar(socket, "api", *socket, "xlbd's API `SOCKET`")
}

// help answers "xlbctl help [COMMAND]".
func (e env) help(words []string) int {
	switch {
	case len(words) == 0:
		writeOverview(e.Stdout)
		return exitOK
	case len(words) == 1 && isGroup(words[0]):
		writeGroupHelp(e.Stdout, words[0])
		return exitOK
	}
	cmd, rest, err := lookup(words)
	var h helpRequest
	switch {
	case errors.As(err, &h):
		writeGroupHelp(e.Stdout, string(h))
		return exitOK
	case err != nil:
		return e.fail("help", err)
	case len(rest) > 0:
		return e.fail("help", usageErr(fmt.Sprintf("unexpected argument %q (usage: xlbctl help [COMMAND])", rest[0])))
	}
	writeHelp(e.Stdout, cmd)
	return exitOK
}

// fail prints err (if any) as one line and returns its exit status.
func (e env) fail(name string, err error) int {
	if err == nil {
		return exitOK
	}
	prefix := "xlbctl: "
	if name != "" {
		prefix += name + ": "
	}
	msg := strings.Join(strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' }), " ")
	fmt.Fprintln(e.Stderr, prefix+msg)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitError
}
