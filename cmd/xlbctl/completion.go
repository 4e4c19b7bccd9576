package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
)

// completeCommand is the hidden command the completion scripts run:
// "xlbctl __complete WORD... CURRENT" prints the candidates for CURRENT
// (the word being completed, maybe empty), one a line.
const completeCommand = "__complete"

// completeTimeout bounds the wait for xlbd's service list: a shell must
// not hang on a Tab.
var completeTimeout = time.Second

//go:embed completion.bash
var bashScript string

//go:embed completion.zsh
var zshScript string

// completion is the command "completion SHELL".
func completion(fs *flag.FlagSet) func(context.Context, *call) error {
	return func(ctx context.Context, c *call) error {
		switch c.args[0] {
		case "bash":
			_, err := fmt.Fprint(c.env.Stdout, bashScript)
			return err
		case "zsh":
			_, err := fmt.Fprint(c.env.Stdout, zshScript)
			return err
		}
		return usagef("shell %q: want bash or zsh", c.args[0])
	}
}

// valueChoices are the values of flags that take one of a few words.
var valueChoices = map[string][]string{
	"output":    {outputTable, outputJSON},
	"o":         {outputTable, outputJSON},
	"check":     {"tcp", "http", "icmp", "none"},
	"scheduler": {"maglev", "source-hash", "round-robin", "least-conn"},
	"forward":   {"dsr-l2", "ipip", "gue"},
	"all-down":  {"drop", "keep-last"},
	"check-via": {"backend", "tunnel"},
}

// complete prints the candidates for the last of words (the words after
// "xlbctl" on the command line). It never fails: a command line it does
// not understand, or xlbd out of reach, gets fewer candidates or none.
func (e env) complete(ctx context.Context, words []string) int {
	for _, w := range e.candidates(ctx, words) {
		fmt.Fprintln(e.Stdout, w)
	}
	return exitOK
}

// candidates returns what may replace the last of words, sorted.
func (e env) candidates(ctx context.Context, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := strings.TrimLeft(words[len(words)-1], `'"`)
	before := words[:len(words)-1]
	socket := api.DefaultSocket
	if v := e.Getenv(envSocket); v != "" {
		socket = v
	}

	// Walk the words before: take --api's value, find the command and
	// its positional arguments, and note a flag still waiting for its
	// value.
	var (
		cmd     *command
		names   []string // command words so far ("backend", "add")
		pos     []string // positional arguments after the command
		pending string   // a flag whose value cur is
		fs      *flag.FlagSet
		help    bool // "xlbctl help ..."
	)
	flagSet := func() *flag.FlagSet {
		f := newFlagSet("complete")
		var s string
		globalFlags(f, &s)
		if cmd != nil {
			cmd.setup(f)
		}
		return f
	}
	fs = flagSet()
	for _, w := range before {
		if pending != "" {
			if pending == "api" {
				socket = w
			}
			pending = ""
			continue
		}
		if w == "--" {
			continue
		}
		if name, ok := strings.CutPrefix(w, "-"); ok && name != "" {
			name = strings.TrimPrefix(name, "-")
			name, value, hasValue := strings.Cut(name, "=")
			if name == "api" && hasValue {
				socket = value
			}
			if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) {
				pending = name
			}
			continue
		}
		switch {
		case cmd != nil:
			pos = append(pos, w)
		case len(names) == 0 && w == "help":
			help = true
		default:
			names = append(names, w)
			if c, _, err := lookup(names); err == nil && len(names) == len(strings.Fields(c.name)) {
				if help {
					return nil // "help COMMAND" takes nothing more
				}
				cmd = c
				fs = flagSet()
			}
		}
	}

	var cands []string
	switch {
	case pending != "":
		cands = valueChoices[pending]
		if pending == "backend" && cmd != nil && len(pos) > 0 {
			cands = e.backendAddrs(ctx, socket, pos[0])
		}
	case strings.HasPrefix(cur, "-"):
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 {
				cands = append(cands, "--"+f.Name)
			}
		})
		cands = append(cands, "--help")
	case cmd == nil && len(names) == 0:
		cands = slices.Concat(topNames(), []string{"help"})
		for _, c := range extraCommands() {
			if !strings.Contains(c.name, " ") { // a group's are under the group
				cands = append(cands, c.name)
			}
		}
	case cmd == nil && len(names) == 1 && isGroup(names[0]):
		cands = subNames(names[0])
	case cmd != nil:
		args := strings.Fields(cmd.args)
		if len(pos) >= len(args) {
			break
		}
		switch args[len(pos)] {
		case "VIP:PORT/PROTO":
			cands = e.serviceKeys(ctx, socket)
		case "ADDR":
			cands = e.backendAddrs(ctx, socket, pos[0])
		case "SHELL":
			cands = []string{"bash", "zsh"}
		}
	}
	cands = slices.DeleteFunc(slices.Clone(cands), func(s string) bool { return !strings.HasPrefix(s, cur) })
	slices.Sort(cands)
	return slices.Compact(cands)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// services asks xlbd for its services, within completeTimeout; nil when
// it cannot be reached.
func (e env) services(ctx context.Context, socket string) []api.ServiceStatus {
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	client := e.Client
	if client == nil {
		client = api.NewClient(socket)
	}
	svcs, err := client.Services(ctx)
	if err != nil {
		return nil
	}
	return svcs
}

func (e env) serviceKeys(ctx context.Context, socket string) []string {
	var keys []string
	for _, s := range e.services(ctx, socket) {
		keys = append(keys, s.Service)
	}
	return keys
}

// backendAddrs are the backends of service key (as typed, in any form
// parseKey takes).
func (e env) backendAddrs(ctx context.Context, socket, key string) []string {
	k, err := parseKey(strings.Trim(key, `'"`))
	if err != nil {
		return nil
	}
	ss, ok := findService(e.services(ctx, socket), k)
	if !ok {
		return nil
	}
	var addrs []string
	for _, b := range ss.Backends {
		addrs = append(addrs, b.Address)
	}
	return addrs
}
