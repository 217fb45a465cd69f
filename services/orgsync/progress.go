package orgsync

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressView shows one progress bar per target org (users finished out
// of users planned) with the target's status and phase, using mpb, redrawn
// live on a terminal. On anything else (pipes, CI logs) it prints one line
// per target as the target finishes instead, so logs stay readable.
//
// Locking: the event loop (update) never calls mpb and never waits for the
// renderer. It publishes an immutable snapshot of the report (barLine per
// target) and wakes a driver goroutine, the only caller of mpb's Bar
// methods. Decorators, run by mpb's render goroutines, read the snapshot
// through an atomic pointer and take no lock. A stuck or slow terminal can
// therefore delay the bars, never the request's events, --timeout or Ctrl-C.
type progressView struct {
	p     *mpb.Progress // nil: line mode
	out   io.Writer
	users int // users of the request: the bars' total until a plan says otherwise

	order []string
	bars  map[string]*targetBar

	latest   atomic.Pointer[map[string]barLine] // the report as the bars must show it
	kick     chan struct{}                      // cap 1: a new snapshot is waiting
	final    chan struct{}                      // closed by close: apply the last snapshot and end every bar
	driven   chan struct{}                      // closed when the driver returns
	cancel   context.CancelFunc                 // stops mpb when it does not end in time
	printed  map[string]bool                    // line mode: targets already printed
	lastSeen *Report
}

// barLine is what one target's bar shows: immutable once published.
type barLine struct {
	Status string // the target's status, as the summary table prints it
	Phase  string // what is under way ("" once the target is final)
	Done   int    // users finished
	Total  int    // users planned
	Final  bool   // the target will not change any more
	Failed bool   // ends aborted (red-ish), not completed
}

// Label is the status text of the bar: "running · provisioning: team".
func (l barLine) Label() string {
	switch {
	case l.Phase == "" || l.Final:
		return l.Status
	case l.Status == "pending": // no event of the target yet: the phase says it all
		return l.Phase
	}
	return l.Status + " · " + l.Phase
}

type targetBar struct {
	bar  *mpb.Bar
	line atomic.Pointer[barLine] // read by the decorators; written by the driver

	// driver-only state
	total int64
	ended bool
}

// closeGrace bounds how long close waits for the renderer's last frame.
const closeGrace = 3 * time.Second

// newProgressView starts the bars for targets (in that order) on out.
func newProgressView(out io.Writer, targets []string, users int) *progressView {
	v := &progressView{out: out, users: users, order: targets, bars: map[string]*targetBar{},
		kick: make(chan struct{}, 1), final: make(chan struct{}), driven: make(chan struct{}), printed: map[string]bool{}}
	initial := map[string]barLine{}
	for _, t := range targets {
		initial[t] = barLine{Status: "pending", Phase: phaseExtracting, Total: max(users, 1)}
	}
	v.latest.Store(&initial)
	if !isTerminal(out) {
		close(v.driven)
		return v
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.p = mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithWidth(30))
	width := 0
	for _, t := range targets {
		width = max(width, len(t))
	}
	for _, t := range targets {
		tb := &targetBar{total: int64(max(users, 1))}
		l := initial[t]
		tb.line.Store(&l)
		// Total 0 at construction: mpb then never completes the bar by
		// itself when its count reaches the total (users finished before
		// the target's final event); only apply ends it, after storing the
		// final label, so the last frame says what the summary says.
		tb.bar = v.p.New(0,
			mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(
				decor.Name(t, decor.WC{W: width + 1, C: decor.DindentRight}),
				decor.Any(func(decor.Statistics) string {
					l := tb.line.Load()
					return fmt.Sprintf("%d/%d users", l.Done, l.Total)
				}, decor.WC{W: 12}),
			),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return " " + tb.line.Load().Label() })),
		)
		tb.bar.SetTotal(tb.total, false)
		v.bars[t] = tb
	}
	go v.drive()
	return v
}

// update shows the report's state. It is called on the event loop after
// every event: it never blocks on the terminal.
func (v *progressView) update(r *Report) {
	lines := barLines(r, v.order, v.users)
	v.latest.Store(&lines)
	v.lastSeen = r
	if v.p == nil {
		v.printFinished(lines)
		return
	}
	select {
	case v.kick <- struct{}{}:
	default: // the driver has a wake-up pending; it reads the latest snapshot
	}
}

// printFinished is line mode: one line per target once it is final.
func (v *progressView) printFinished(lines map[string]barLine) {
	for _, t := range v.order {
		l := lines[t]
		if !l.Final || v.printed[t] {
			continue
		}
		v.printed[t] = true
		line := fmt.Sprintf("  %s: %s (%d/%d users)", t, l.Status, l.Done, l.Total)
		if tr := v.lastSeen.Target(t); tr != nil && tr.Reason != "" {
			line += ": " + oneLine(tr.Reason)
		}
		fmt.Fprintln(v.out, line)
	}
}

// drive applies snapshots to the bars until close, then the last one,
// ending every bar so that the last frame shows what the summary says.
func (v *progressView) drive() {
	defer close(v.driven)
	for {
		select {
		case <-v.kick:
			v.apply(*v.latest.Load(), false)
		case <-v.final:
			v.apply(*v.latest.Load(), true)
			return
		}
	}
}

// apply moves the bars to lines; with end, every bar ends (completed when
// its target succeeded, aborted otherwise). A bar's label is stored before
// the call that ends it, so its last frame shows its final label.
func (v *progressView) apply(lines map[string]barLine, end bool) {
	for _, t := range v.order {
		tb, l := v.bars[t], lines[t]
		if tb.ended {
			continue
		}
		tb.line.Store(&l)
		if total := int64(max(l.Total, 1)); total != tb.total {
			tb.total = total
			tb.bar.SetTotal(total, false)
		}
		tb.bar.SetCurrent(int64(l.Done))
		if !l.Final && !end {
			continue
		}
		tb.ended = true
		if l.Final && !l.Failed {
			tb.bar.SetTotal(-1, true) // complete at the current count
		} else {
			tb.bar.Abort(false)
		}
	}
}

// close ends the bars and waits for the renderer's last frame, at most
// closeGrace: a terminal that does not take output must not keep the
// command from returning.
func (v *progressView) close() {
	if v.p == nil {
		return
	}
	close(v.final)
	rendered := make(chan struct{})
	go func() {
		<-v.driven
		v.p.Wait()
		close(rendered)
	}()
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-rendered:
	case <-timer.C:
		v.cancel() // mpb's goroutines end once the terminal takes output again
	}
	v.cancel()
}

// Phases shown while a target is not final (Report.Targets[].Phase).
const (
	phaseExtracting   = "extracting"
	phasePreflight    = "pre-flight"
	phaseProvisioning = "provisioning"
	phaseVerifying    = "verifying"
)

// barLines derives what each target's bar shows from the report: status
// and phase as the report has them, users finished out of planned.
func barLines(r *Report, targets []string, users int) map[string]barLine {
	out := make(map[string]barLine, len(targets))
	complete := r.Complete()
	for _, org := range targets {
		t := r.Target(org)
		if t == nil {
			out[org] = barLine{Status: "pending", Phase: phaseExtracting, Total: max(users, 1)}
			continue
		}
		total := max(t.Total, len(t.Users), users, 1)
		if t.Total > 0 {
			total = t.Total
		}
		final := t.terminal || complete
		out[org] = barLine{Status: t.Status, Phase: t.Phase, Done: countFinished(t), Total: total,
			Final: final, Failed: final && t.Status != "changed" && t.Status != "unchanged" && t.Status != "planned" && t.Status != "skipped"}
	}
	return out
}

// countFinished is the number of users of t with a final status (O(1):
// the report keeps the counts as user events arrive).
func countFinished(t *TargetReport) int {
	n := 0
	for _, c := range t.userCounts {
		n += c
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
