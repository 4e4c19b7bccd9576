package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// ui writes the story: numbered steps, indented lines, aligned tables and,
// when the output is a terminal, a spinner with the elapsed time wherever
// the user waits.
type ui struct {
	w           io.Writer
	interactive bool
	color       bool
	steps       int
	step        int
}

const indent = "    "

func (u *ui) bold(s string) string {
	if !u.color {
		return s
	}
	return "\033[1m" + s + "\033[0m"
}

func (u *ui) dim(s string) string {
	if !u.color {
		return s
	}
	return "\033[2m" + s + "\033[0m"
}

// title starts the next numbered step.
func (u *ui) title(format string, args ...any) {
	u.step++
	fmt.Fprintf(u.w, "\n%s\n", u.bold(fmt.Sprintf("%d/%d  %s", u.step, u.steps, fmt.Sprintf(format, args...))))
}

// line prints one indented line.
func (u *ui) line(format string, args ...any) {
	fmt.Fprintf(u.w, "%s%s\n", indent, fmt.Sprintf(format, args...))
}

// block prints text indented, line by line.
func (u *ui) block(text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			fmt.Fprintln(u.w)
			continue
		}
		fmt.Fprintf(u.w, "%s%s\n", indent, l)
	}
}

// quote prints a command's output one level deeper than lines, tabs as
// four spaces, without trailing blanks.
func (u *ui) quote(text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		l = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " ")
		if l == "" {
			fmt.Fprintln(u.w)
			continue
		}
		fmt.Fprintf(u.w, "%s%s%s\n", indent, indent, l)
	}
}

// table returns a writer whose tab-separated rows come out aligned and
// indented when flushed.
func (u *ui) table(header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(u.w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(anySlice(header)...)
	}
	return t
}

type table struct{ tw *tabwriter.Writer }

func (t *table) row(cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = strings.TrimRight(fmt.Sprint(c), " ")
	}
	// The last cell is not tab-terminated: it is not padded, so lines
	// carry no trailing blanks.
	fmt.Fprintf(t.tw, "%s%s\n", indent, strings.Join(parts, "\t"))
}

// flush writes the table to the screen: like the other writes for a
// person, a failure there has nowhere better to be reported.
func (t *table) flush() { _ = t.tw.Flush() }

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// wait shows what the user is waiting for: on a terminal a spinner with
// the elapsed seconds and an optional live detail, replaced by a final
// line when done. Elsewhere only the final line is printed.
type wait struct {
	u      *ui
	what   string
	start  time.Time
	mu     sync.Mutex
	detail string
	stop   chan struct{}
	done   chan struct{}
}

var spinFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (u *ui) wait(format string, args ...any) *wait {
	w := &wait{u: u, what: fmt.Sprintf(format, args...), start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if !u.interactive {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			w.mu.Lock()
			d := w.detail
			w.mu.Unlock()
			if d != "" {
				d = "  " + d
			}
			fmt.Fprintf(u.w, "\r%s%s %s %s%s\033[K", indent, w.what, spinFrames[i%len(spinFrames)], u.dim(fmt.Sprintf("%.1fs", time.Since(w.start).Seconds())), d)
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// set changes the live detail shown next to the spinner.
func (w *wait) set(format string, args ...any) {
	w.mu.Lock()
	w.detail = fmt.Sprintf(format, args...)
	w.mu.Unlock()
}

// end stops the spinner and prints the final line (which replaces it on a
// terminal). It returns the time waited.
func (w *wait) end(format string, args ...any) time.Duration {
	took := time.Since(w.start)
	if w.u.interactive {
		close(w.stop)
		<-w.done
		fmt.Fprint(w.u.w, "\r\033[K")
	}
	if format != "" {
		w.u.line(format, args...)
	}
	return took
}

// seconds formats a duration as seconds with two decimals: "1.23s".
func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// bar draws a share (0-1) as a bar of at most width cells.
func bar(share float64, width int) string {
	n := int(share*float64(width) + 0.5)
	return strings.Repeat("█", n)
}
