package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/xlb-lb/xlb/cmd/api"
)

// command is one entry of the command table.
type command struct {
	// name is what the user types: "status", "backend add".
	name string
	// args names the positional arguments, space-separated:
	// "VIP:PORT/PROTO ADDR". Each is required, none more is allowed.
	args string
	// flags is the flags part of the usage line: "[--weight N]".
	flags string
	// summary is the line of the command list.
	summary string
	// help explains the command, after the usage line.
	help string
	// examples are command lines, each with an optional "  # comment".
	examples []string
	// setup registers the command's flags and returns the function that
	// runs it once they are parsed.
	setup func(fs *flag.FlagSet) func(ctx context.Context, c *call) error
}

// call is one invocation of a command.
type call struct {
	env    env
	cmd    *command
	client Client
	// args are the positional arguments, as many as cmd.args names.
	args []string
	// given holds the names of the flags given on the command line.
	given map[string]bool
}

// usageLine is "xlbctl NAME ARGS FLAGS".
func (c *command) usageLine() string {
	return strings.Join(slices.DeleteFunc([]string{"xlbctl", c.name, c.args, c.flags}, func(s string) bool { return s == "" }), " ")
}

// shortUsage is "NAME ARGS", for command lists.
func (c *command) shortUsage() string { return strings.TrimSpace(c.name + " " + c.args) }

// usageError is a bad command line (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

func usageErr(msg string) error { return usageError(msg) }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

// helpRequest asks for the help of a command group ("service --help").
type helpRequest string

func (h helpRequest) Error() string { return "help for " + string(h) }

func isGroup(word string) bool { return slices.Contains(groups(), word) }

// groups lists the first words of two-word commands: "service", "backend".
func groups() []string {
	var gs []string
	for _, c := range commands {
		if g, _, ok := strings.Cut(c.name, " "); ok && !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	return gs
}

// topNames lists the one-word commands and the groups, in table order.
func topNames() []string {
	var names []string
	for _, c := range commands {
		n, _, _ := strings.Cut(c.name, " ")
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// subNames lists the commands of a group: "add", "set", ...
func subNames(group string) []string {
	var names []string
	for _, c := range slices.Concat(commands, extraCommands()) {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			names = append(names, sub)
		}
	}
	return names
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" || s == "--h" }

// extraCommands are the commands kept out of commands (each table's
// comment says why), in the order the overview lists them.
func extraCommands() []command {
	return slices.Concat(fileCommands, flowCommands, toolCommands)
}

// lookup finds the command that args start with and returns it with the
// remaining arguments.
func lookup(args []string) (*command, []string, error) {
	word := args[0]
	for i := range commands {
		if commands[i].name == word {
			return &commands[i], args[1:], nil
		}
	}
	extra := extraCommands()
	for i := range extra {
		if extra[i].name == word {
			return &extra[i], args[1:], nil
		}
	}
	if !isGroup(word) {
		return nil, nil, usagef("unknown command %q (commands: %s; see xlbctl --help)", word, strings.Join(topNames(), ", "))
	}
	subs := orList(subNames(word))
	if len(args) < 2 {
		return nil, nil, usagef("missing command (want %s; see xlbctl %s --help)", subs, word)
	}
	if isHelpFlag(args[1]) {
		return nil, nil, helpRequest(word)
	}
	name := word + " " + args[1]
	for i := range commands {
		if commands[i].name == name {
			return &commands[i], args[2:], nil
		}
	}
	for i := range fileCommands {
		if fileCommands[i].name == name {
			return &fileCommands[i], args[2:], nil
		}
	}
	return nil, nil, usagef("unknown command %q (want %s; see xlbctl %s --help)", args[1], subs, word)
}

// orList formats "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// exec parses the command's flags and arguments and runs it.
func (e env) exec(ctx context.Context, cmd *command, args []string, socket *string) error {
	fs := newFlagSet(cmd.name)
	globalFlags(fs, socket)
	runFn := cmd.setup(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		writeHelp(e.Stdout, cmd)
		return nil
	}
	if err != nil {
		return usageErr(flagError(err, "xlbctl "+cmd.name+" --help"))
	}
	names := strings.Fields(cmd.args)
	if len(pos) < len(names) {
		return usagef("missing %s (usage: %s)", strings.Join(names[len(pos):], " "), cmd.usageLine())
	}
	if len(pos) > len(names) {
		return usagef("unexpected argument %q (usage: %s)", pos[len(names)], cmd.usageLine())
	}
	if *socket == "" {
		return usageErr(`api "": want the path of xlbd's API socket`)
	}
	c := &call{env: e, cmd: cmd, client: e.Client, args: pos, given: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
	if c.client == nil {
		c.client = api.NewClient(*socket)
	}
	return runFn(ctx, c)
}

// parseInterspersed parses flags anywhere among the positional arguments
// ("backend add SVC ADDR --weight 2"), which package flag alone does not;
// after "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError rewrites package flag's errors with long flag names.
func flagError(err error, help string) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Sprintf("unknown flag --%s (see %s)", strings.TrimLeft(name, "-"), help)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Sprintf("flag --%s needs a value (see %s)", strings.TrimLeft(name, "-"), help)
	}
	return msg
}

// writeHelp prints a command's usage, description, flags and examples.
func writeHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", cmd.usageLine(), strings.TrimSpace(cmd.help))
	fs := newFlagSet(cmd.name)
	var socket string
	globalFlags(fs, &socket)
	cmd.setup(fs)
	var own, check []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		switch {
		case f.Name == "api" || isShortFlag(f.Name):
		case slices.Contains(checkFlags, f.Name):
			check = append(check, f)
		default:
			own = append(own, f)
		}
	})
	// Health check flags in their logical order, not the alphabet's.
	slices.SortFunc(check, func(a, b *flag.Flag) int {
		return slices.Index(checkFlags, a.Name) - slices.Index(checkFlags, b.Name)
	})
	writeFlags(w, "Flags", own)
	writeFlags(w, "Health check flags", check)
	writeGlobalFlags(w)
	fmt.Fprintf(w, "\nExamples:\n")
	for _, ex := range cmd.examples {
		fmt.Fprintf(w, "  %s\n", ex)
	}
}

// shortFlags are the one-letter aliases of long flags, shown with them in
// help: -o for --output, -f for --file, and top's -b, -n and -d (top's own
// letters, for its users' fingers).
var shortFlags = map[string]string{"output": "o", "file": "f", "batch": "b", "iterations": "n", "delay": "d"}

func isShortFlag(name string) bool {
	for _, s := range shortFlags {
		if s == name {
			return true
		}
	}
	return false
}

// writeFlags prints a section of flags with their long names.
func writeFlags(w io.Writer, title string, flags []*flag.Flag) {
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range flags {
		arg, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if short, ok := shortFlags[f.Name]; ok {
			name = "-" + short + ", " + name
		}
		if arg != "" {
			name += " " + arg
		}
		if f.DefValue != "" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	}
	_ = tw.Flush() // output for a person, as fmt.Fprint* (see .golangci.yaml)
}

func writeGlobalFlags(w io.Writer) {
	fmt.Fprintf(w, "\nGlobal flags (before or after the command):\n  --api SOCKET  xlbd's API socket (default $%s, else %s)\n", envSocket, api.DefaultSocket)
}

// writeGroupHelp prints the commands of a group ("service").
func writeGroupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: xlbctl %s COMMAND [ARGS] [FLAGS]\n\nCommands:\n", group)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var examples []string
	for _, c := range slices.Concat(commands, fileCommands) {
		if strings.HasPrefix(c.name, group+" ") {
			fmt.Fprintf(tw, "  %s\t%s\n", c.shortUsage(), c.summary)
			examples = append(examples, c.examples[0])
		}
	}
	_ = tw.Flush() // output for a person, as fmt.Fprint* (see .golangci.yaml)
	writeGlobalFlags(w)
	fmt.Fprintf(w, "\nExamples:\n")
	for _, ex := range examples {
		fmt.Fprintf(w, "  %s\n", ex)
	}
	fmt.Fprintf(w, "\nRun 'xlbctl %s COMMAND --help' for a command's flags and more examples.\n", group)
}

// writeOverview prints xlbctl's help.
func writeOverview(w io.Writer) {
	fmt.Fprint(w, `Usage: xlbctl [--api SOCKET] COMMAND [ARGS] [FLAGS]

xlbctl changes a running xlbd through its local API. Noun commands only
read; verb commands change the running state (until xlbd reloads its config
file with SIGHUP, which makes the file authoritative again).

A service is named VIP:PORT/PROTO, e.g. 198.18.1.1:80/tcp, or
'[2001:2::1]:443/udp' for IPv6 (quote it: the shell treats [...] as a
pattern). A backend is an IP address, e.g. 198.18.0.11 or 2001:2::11.

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range slices.Concat(commands, extraCommands()) {
		fmt.Fprintf(tw, "  %s\t%s\n", c.shortUsage(), c.summary)
	}
	_ = tw.Flush() // output for a person, as fmt.Fprint* (see .golangci.yaml)
	writeGlobalFlags(w)
	fmt.Fprint(w, `
Examples:
  xlbctl status
  xlbctl service add 198.18.1.1:80/tcp --backend 198.18.0.11 --backend 198.18.0.12=2 --check http --http-path /healthz
  xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.11
  xlbctl --api /tmp/xlb.sock service list -o json

Exit status: 0 success, 1 xlbd unreachable or the change refused, 2 usage error.
Run 'xlbctl COMMAND --help' for a command's flags and examples.
`)
}
