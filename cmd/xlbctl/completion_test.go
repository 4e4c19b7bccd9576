package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// completionLab serves xlbd's real handlers with two services: drainSvc
// (backends 198.18.0.11 and .12) and [2001:2::1]:443/tcp (2001:2::11).
func completionLab(t *testing.T) string {
	t.Helper()
	sock, _ := drainLab(t, 0)
	var out bytes.Buffer
	if code := run(context.Background(), env{Stdout: &out, Stderr: &out},
		[]string{"--api", sock, "service", "add", "[2001:2::1]:443/tcp", "--backend", "2001:2::11"}); code != 0 {
		t.Fatalf("service add: %d %s", code, out.String())
	}
	return sock
}

// TestCompleteCandidates: "xlbctl __complete WORDS" against xlbd's real
// handlers.
func TestCompleteCandidates(t *testing.T) {
	sock := completionLab(t)
	const keys = "198.18.1.1:80/tcp [2001:2::1]:443/tcp"
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{""}, "apply backend bgp completion explain flows help service stats status top"},
		{[]string{"b"}, "backend bgp"},
		{[]string{"backend", ""}, "add del drain list set sync"},
		{[]string{"backend", "d"}, "del drain"},
		{[]string{"service", "del", ""}, keys},
		{[]string{"service", "del", "198"}, "198.18.1.1:80/tcp"},
		{[]string{"service", "del", "'[2001"}, "[2001:2::1]:443/tcp"},
		{[]string{"backend", "add", ""}, keys},
		{[]string{"backend", "drain", drainSvc, ""}, "198.18.0.11 198.18.0.12"},
		{[]string{"backend", "drain", drainSvc, "198.18.0.12"}, "198.18.0.12"},
		{[]string{"backend", "del", "[2001:2::1]:443/tcp", ""}, "2001:2::11"},
		// Flags before, between and after the arguments are skipped.
		{[]string{"backend", "set", "--weight", "2", drainSvc, ""}, "198.18.0.11 198.18.0.12"},
		{[]string{"backend", "drain", drainSvc, "198.18.0.11", ""}, ""},
		{[]string{"backend", "drain", drainSvc, "198.18.0.11", "--"}, "--api --help --timeout --wait"},
		{[]string{"backend", "list", "198.18.9.9:80/tcp", ""}, ""},
		{[]string{"backend", "list", "nonsense", ""}, ""},
		{[]string{"status", "-"}, "--api --help --output"},
		{[]string{"status", "-o", ""}, "json table"},
		{[]string{"status", "--output", "j"}, "json"},
		{[]string{"service", "add", "198.18.1.2:80/tcp", "--scheduler", ""}, "least-conn maglev round-robin source-hash"},
		{[]string{"service", "set", drainSvc, "--check", "h"}, "http"},
		{[]string{"service", "set", drainSvc, "--backend", ""}, "198.18.0.11 198.18.0.12"},
		{[]string{"top", "--"}, "--api --batch --delay --help --iterations"},
		{[]string{"top", "-d", ""}, ""},
		{[]string{"completion", ""}, "bash zsh"},
		{[]string{"help", "s"}, "service stats status"},
		{[]string{"help", "status", ""}, ""},
		{[]string{"frobnicate", ""}, ""},
		{[]string{"-"}, "--api --help"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
			if k == envSocket {
				return sock
			}
			return ""
		}}, append([]string{completeCommand}, tc.words...))
		got := strings.Join(strings.Fields(out.String()), " ")
		if code != 0 || errOut.String() != "" || got != tc.want {
			t.Errorf("%q: exit %d, stderr %q\n  got  %q\n  want %q", tc.words, code, errOut.String(), got, tc.want)
		}
	}

	// --api among the words picks the daemon; one out of reach gives no
	// candidates and no error.
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"--api", sock, "service", "del", ""}, keys},
		{[]string{"--api=" + sock, "backend", "drain", drainSvc, ""}, "198.18.0.11 198.18.0.12"},
		{[]string{"--api", filepath.Join(t.TempDir(), "none.sock"), "service", "del", ""}, ""},
		{[]string{"--api", filepath.Join(t.TempDir(), "none.sock"), "service", ""}, "add del list resolve set"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }},
			append([]string{completeCommand}, tc.words...))
		got := strings.Join(strings.Fields(out.String()), " ")
		if code != 0 || errOut.String() != "" || got != tc.want {
			t.Errorf("%q: exit %d, stderr %q\n  got  %q\n  want %q", tc.words, code, errOut.String(), got, tc.want)
		}
	}
}

func TestCompletionCommand(t *testing.T) {
	r := mustRun(t, &fakeClient{}, "completion", "bash")
	if r.stdout != bashScript || !strings.Contains(r.stdout, "complete -F _xlbctl xlbctl") || len(r.calls) != 0 {
		t.Errorf("completion bash: %q", r.stdout)
	}
	r = mustRun(t, &fakeClient{}, "completion", "zsh")
	if r.stdout != zshScript || !strings.HasPrefix(r.stdout, "#compdef xlbctl\n") {
		t.Errorf("completion zsh: %q", r.stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion", "fish"}, `xlbctl: completion: shell "fish": want bash or zsh`},
		{[]string{"completion"}, "xlbctl: completion: missing SHELL (usage: xlbctl completion SHELL)"},
		{[]string{"completion", "bash", "zsh"}, `xlbctl: completion: unexpected argument "zsh" (usage: xlbctl completion SHELL)`},
	} {
		r := xlbctl(t, &fakeClient{}, tc.args...)
		if r.code != exitUsage || r.stderr != tc.want+"\n" || r.stdout != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q\n  want exit 2, %q", tc.args, r.code, r.stderr, r.stdout, tc.want)
		}
	}
}

var (
	buildOnce sync.Once
	builtDir  string // removed by TestMain
	builtBin  string
	buildErr  error
)

// xlbctlBinary builds xlbctl once for the tests that run a real shell,
// into a directory named to go first in PATH.
func xlbctlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xlbctl-completion-")
		if err != nil {
			buildErr = err
			return
		}
		builtDir = dir
		builtBin = filepath.Join(dir, "xlbctl")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build xlbctl: %v", buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// shellEnv is the environment of a shell that finds the built xlbctl in
// PATH and xlbd's socket in XLB_API.
func shellEnv(bin, sock string) []string {
	// HISTFILE empty: an interactive shell saves no history on exit.
	return append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), envSocket+"="+sock, "HOME="+filepath.Dir(bin), "HISTFILE=")
}

// TestCompletionBash sources the script in a real bash, sets the
// variables bash sets on Tab (COMP_WORDS split at ':' as COMP_WORDBREAKS
// says) and prints what the completion function answers.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	bin := xlbctlBinary(t)
	sock := completionLab(t)
	for _, tc := range []struct {
		line  string
		words []string // COMP_WORDS as bash splits the line
		want  string
	}{
		{"xlbctl ba", []string{"xlbctl", "ba"}, "backend"},
		{"xlbctl backend ", []string{"xlbctl", "backend", ""}, "add del drain list set sync"},
		// A whole service key where no ':' has been typed yet.
		{"xlbctl service del 198", []string{"xlbctl", "service", "del", "198"}, "198.18.1.1:80/tcp"},
		{"xlbctl backend add ", []string{"xlbctl", "backend", "add", ""}, "198.18.1.1:80/tcp [2001:2::1]:443/tcp"},
		// After a ':', bash replaces only the part after it: the
		// candidates lose what precedes it.
		{"xlbctl service del 198.18.1.1:8", []string{"xlbctl", "service", "del", "198.18.1.1", ":", "8"}, "80/tcp"},
		{"xlbctl service del [2001:2::", []string{"xlbctl", "service", "del", "[2001", ":", "2", "::"}, "1]:443/tcp"},
		// Backend addresses of the service before them.
		{"xlbctl backend drain 198.18.1.1:80/tcp ", []string{"xlbctl", "backend", "drain", "198.18.1.1", ":", "80/tcp", ""}, "198.18.0.11 198.18.0.12"},
		{"xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.1", []string{"xlbctl", "backend", "drain", "198.18.1.1", ":", "80/tcp", "198.18.0.1"}, "198.18.0.11 198.18.0.12"},
		{"xlbctl backend del [2001:2::1]:443/tcp 2001:2::", []string{"xlbctl", "backend", "del", "[2001", ":", "2", "::", "1]", ":", "443/tcp", "2001", ":", "2", "::"}, "11"},
		{"xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.11 --w", []string{"xlbctl", "backend", "drain", "198.18.1.1", ":", "80/tcp", "198.18.0.11", "--w"}, "--wait"},
	} {
		// nullglob, as many users set it: an IPv6 key is a glob pattern,
		// and the script must not let bash expand it away.
		script := `set -e
shopt -s nullglob
source <(xlbctl completion bash)
complete -p xlbctl
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
shift
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_xlbctl
printf 'reply:%s\n' "${COMPREPLY[@]}"
`
		cmd := exec.Command(bash, append([]string{"--norc", "--noprofile", "-c", script, "bash", tc.line}, tc.words...)...)
		cmd.Env = shellEnv(bin, sock)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: bash: %v\n%s", tc.line, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "complete -F _xlbctl xlbctl" {
			t.Errorf("%q: complete -p: %q", tc.line, lines[0])
		}
		var got []string
		for _, l := range lines[1:] {
			if r, ok := strings.CutPrefix(l, "reply:"); ok && r != "" {
				got = append(got, r)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: COMPREPLY %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestCompletionZsh loads the script the two documented ways in a real
// zsh: from fpath through compinit (which reads its #compdef line) and by
// sourcing it after compinit; then runs the function with words and
// CURRENT set as zsh sets them on Tab, compadd replaced by a function that
// prints what it is given.
func TestCompletionZsh(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		if os.Getenv("XLB_REQUIRE_PRIV") == "1" {
			t.Fatal("zsh not installed (apt-get install zsh)")
		}
		t.Skip("zsh not installed (apt-get install zsh)")
	}
	bin := xlbctlBinary(t)
	sock := completionLab(t)
	fdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(fdir, "_xlbctl"), []byte(zshScript), 0o644); err != nil {
		t.Fatal(err)
	}
	zdot := t.TempDir()
	for _, load := range []string{
		`fpath=(` + fdir + ` $fpath); autoload -Uz compinit; compinit -u -d ` + zdot + `/.zcompdump`,
		`autoload -Uz compinit; compinit -u -d ` + zdot + `/.zcompdump; source <(xlbctl completion zsh)`,
	} {
		for _, tc := range []struct {
			words []string // the last is the word being completed
			want  string
		}{
			{[]string{"xlbctl", "ba"}, "backend"},
			{[]string{"xlbctl", "service", "del", ""}, "198.18.1.1:80/tcp [2001:2::1]:443/tcp"},
			{[]string{"xlbctl", "service", "del", "198.18.1.1:8"}, "198.18.1.1:80/tcp"},
			{[]string{"xlbctl", "backend", "drain", "198.18.1.1:80/tcp", ""}, "198.18.0.11 198.18.0.12"},
			{[]string{"xlbctl", "backend", "drain", "198.18.1.1:80/tcp", "198.18.0.11", "--w"}, "--wait"},
		} {
			script := load + `
print -r -- "comps:${_comps[xlbctl]}"
compadd() { [[ $1 == -- ]] && shift; print -rl -- "reply:"${^@} }
words=("$@"); CURRENT=${#words}
_xlbctl || print "status:$?"
`
			cmd := exec.Command(zsh, append([]string{"-f", "-c", script, "zsh"}, tc.words...)...)
			cmd.Env = append(shellEnv(bin, sock), "ZDOTDIR="+zdot)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%q: zsh: %v\n%s", tc.words, err, out)
			}
			var got []string
			comps := ""
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if r, ok := strings.CutPrefix(l, "reply:"); ok {
					got = append(got, r)
				}
				if c, ok := strings.CutPrefix(l, "comps:"); ok {
					comps = c
				}
			}
			if comps != "_xlbctl" {
				t.Errorf("%s: xlbctl's completion function is %q, want _xlbctl\n%s", load, comps, out)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("%s: %q: candidates %q, want %q\n%s", load, tc.words, got, tc.want, out)
			}
		}
	}
}

// tmuxShell runs an interactive shell in a detached tmux window on a tmux
// server of its own, for pressing Tab in it.
type tmuxShell struct {
	t      *testing.T
	tmux   string
	server string
}

func newTmuxShell(t *testing.T, env []string, shell ...string) *tmuxShell {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("XLB_REQUIRE_PRIV") == "1" {
			t.Fatal("tmux not installed (apt-get install tmux)")
		}
		t.Skip("tmux not installed (apt-get install tmux)")
	}
	s := &tmuxShell{t: t, tmux: tmux, server: fmt.Sprintf("xlbctl-tab-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))}
	args := append([]string{"new-session", "-d", "-x", "200", "-y", "50", "-s", "tab", "--"}, shell...)
	cmd := exec.Command(tmux, append([]string{"-L", s.server, "-f", "/dev/null"}, args...)...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	// kill-server ends this tmux server only (-L), and the shell with it.
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", s.server, "kill-server").Run() })
	return s
}

func (s *tmuxShell) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tmux, append([]string{"-L", s.server}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys types text (literally) and then the named keys (Tab, Enter).
func (s *tmuxShell) keys(text string, named ...string) {
	s.t.Helper()
	if text != "" {
		s.run("send-keys", "-t", "tab", "-l", text)
	}
	if len(named) > 0 {
		s.run(append([]string{"send-keys", "-t", "tab"}, named...)...)
	}
}

// waitFor waits until the window shows want.
func (s *tmuxShell) waitFor(want string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		screen := s.run("capture-pane", "-p", "-t", "tab")
		if strings.Contains(screen, want) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q in the window after 10s:\n%s", want, screen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCompletionTab presses Tab in real interactive bash and zsh, in a
// tmux window, with the scripts loaded as docs/cli.md says.
func TestCompletionTab(t *testing.T) {
	bin := xlbctlBinary(t)
	sock := completionLab(t)
	t.Run("bash", func(t *testing.T) {
		s := newTmuxShell(t, shellEnv(bin, sock), "bash", "--norc", "--noprofile", "-i")
		s.keys("PS1='$ '; source <(xlbctl completion bash); echo loaded", "Enter")
		s.waitFor("\nloaded")
		s.keys("clear", "Enter")
		// A service key through its colons, then a backend of it.
		s.keys("xlbctl backend drain 198.18.1.1:8", "Tab")
		s.waitFor("$ xlbctl backend drain 198.18.1.1:80/tcp")
		s.keys("198.18.0.1", "Tab", "Tab")
		s.waitFor("198.18.0.11  198.18.0.12")
		s.keys("2")
		s.waitFor("$ xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.12")
		s.keys("", "C-c")
		s.keys("clear", "Enter")
		s.keys("xlbctl backend del [2001:2::1]:443/tcp 2001:", "Tab")
		s.waitFor("$ xlbctl backend del [2001:2::1]:443/tcp 2001:2::11")
	})
	t.Run("zsh", func(t *testing.T) {
		fdir, zdot := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(fdir, "_xlbctl"), []byte(zshScript), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("zsh"); err != nil {
			t.Skip("zsh not installed (apt-get install zsh)")
		}
		s := newTmuxShell(t, append(shellEnv(bin, sock), "ZDOTDIR="+zdot), "zsh", "-f", "-i")
		s.keys("PS1='%% '; fpath=("+fdir+" $fpath); autoload -Uz compinit; compinit -u -d "+zdot+"/.zcompdump; echo loaded", "Enter")
		s.waitFor("\nloaded")
		s.keys("clear", "Enter")
		s.keys("xlbctl backend drain 198.18.1.1:8", "Tab")
		s.waitFor("% xlbctl backend drain 198.18.1.1:80/tcp")
		s.keys("198.18.0.1", "Tab")
		s.waitFor("198.18.0.11  198.18.0.12")
		s.keys("1")
		s.waitFor("% xlbctl backend drain 198.18.1.1:80/tcp 198.18.0.11")
		s.keys("", "C-c")
		s.keys("clear", "Enter")
		s.keys("xlbctl backend del '[2001:2::1]:443/tcp' 2001:", "Tab")
		s.waitFor("% xlbctl backend del '[2001:2::1]:443/tcp' 2001:2::11")
	})
}

// The commands of toolCommands have help like the others (TestHelp covers
// the commands table), and the overview lists them.
func TestToolCommandsHelp(t *testing.T) {
	overview := mustRun(t, &fakeClient{}, "--help").stdout
	for i := range toolCommands {
		c := &toolCommands[i]
		if !strings.Contains(overview, "\n  "+c.shortUsage()+" ") {
			t.Errorf("overview lacks %s:\n%s", c.name, overview)
		}
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			r := xlbctl(t, &fakeClient{}, args...)
			if r.code != 0 || r.stderr != "" || len(r.calls) != 0 || !strings.HasPrefix(r.stdout, "Usage: "+c.usageLine()+"\n") ||
				!strings.Contains(r.stdout, "\nExamples:\n  xlbctl "+c.name) {
				t.Errorf("%q: exit %d, stderr %q, calls %q, stdout:\n%s", args, r.code, r.stderr, r.calls, r.stdout)
			}
		}
		r := xlbctl(t, &fakeClient{}, c.name, "--help")
		for _, f := range strings.Fields(c.flags) {
			if name, ok := strings.CutPrefix(strings.Trim(f, "[]."), "--"); ok && !strings.Contains(r.stdout, "--"+name+" ") {
				t.Errorf("%s --help does not explain --%s:\n%s", c.name, name, r.stdout)
			}
		}
	}
}
