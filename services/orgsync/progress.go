package orgsync

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressView shows one progress bar per target org (users finished out
// of users planned) with the target's status, using mpb, redrawn live on a
// terminal. On anything else (pipes, CI logs) it prints one line per target
// as the target finishes instead, so logs stay readable.
type progressView struct {
	p     *mpb.Progress // nil: line mode
	out   io.Writer
	users int // users of the request: the bars' total until a plan says otherwise

	mu   sync.Mutex
	bars map[string]*targetBar
}

type targetBar struct {
	bar    *mpb.Bar
	status string
	total  int64
	done   bool
}

// newProgressView starts the bars for targets (in that order) on out.
func newProgressView(out io.Writer, targets []string, users int) *progressView {
	v := &progressView{out: out, users: users, bars: map[string]*targetBar{}}
	if !isTerminal(out) {
		for _, t := range targets {
			v.bars[t] = &targetBar{status: "pending", total: int64(max(users, 1))}
		}
		return v
	}
	v.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40))
	width := 0
	for _, t := range targets {
		width = max(width, len(t))
	}
	for _, t := range targets {
		tb := &targetBar{status: "pending", total: int64(max(users, 1))}
		tb.bar = v.p.New(tb.total,
			mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(
				decor.Name(t, decor.WC{W: width + 1, C: decor.DindentRight}),
				decor.CountersNoUnit("%d/%d users", decor.WC{W: 12}),
			),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				v.mu.Lock()
				defer v.mu.Unlock()
				return " " + tb.status
			})),
		)
		v.bars[t] = tb
	}
	return v
}

// update moves the bars to the report's state.
func (v *progressView) update(r *Report) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range r.Targets {
		tb, ok := v.bars[t.Org]
		if !ok || tb.done {
			continue
		}
		if v.p == nil {
			if t.terminal {
				tb.done = true
				line := fmt.Sprintf("  %s: %s (%d/%d users)", t.Org, t.Status, countFinished(t), max(t.Total, len(t.Users)))
				if t.Reason != "" {
					line += ": " + oneLine(t.Reason)
				}
				fmt.Fprintln(v.out, line)
			}
			continue
		}
		if t.Total > 0 && int64(t.Total) != tb.total {
			tb.total = int64(t.Total)
			tb.bar.SetTotal(tb.total, false)
		}
		finished := countFinished(t)
		tb.bar.SetCurrent(int64(finished))
		tb.status = t.Status
		if t.terminal {
			tb.done = true
			if t.Status == "failed" {
				tb.bar.Abort(false)
			} else {
				tb.bar.SetTotal(max(int64(finished), tb.total), false)
				tb.bar.SetCurrent(max(int64(finished), tb.total))
				tb.bar.SetTotal(-1, true)
			}
		}
	}
	if r.Complete() && v.p != nil {
		for _, tb := range v.bars {
			if !tb.done {
				tb.done = true
				tb.status = r.Status
				tb.bar.Abort(false)
			}
		}
	}
}

// close stops the bars (aborting unfinished ones) and waits for the last render.
func (v *progressView) close() {
	if v.p == nil {
		return
	}
	v.mu.Lock()
	for _, tb := range v.bars {
		if !tb.done {
			tb.done = true
			tb.bar.Abort(false)
		}
	}
	v.mu.Unlock()
	v.p.Wait()
}

// countFinished is the number of users of t with a final status.
func countFinished(t *TargetReport) int {
	n := 0
	for _, u := range t.Users {
		if u.terminal {
			n++
		}
	}
	return max(n, t.Done)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
