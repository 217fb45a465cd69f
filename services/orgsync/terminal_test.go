package orgsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// terminalRun is one run of the orgsync command line in its own process
// (this test binary as the CLI, see runAsCLI) with a pseudo-terminal as
// stdout and stderr, as a user's shell gives it.
type terminalRun struct {
	cmd    *exec.Cmd
	ptmx   *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	copied chan struct{}
}

func startOnTerminal(t *testing.T, ctx context.Context, args ...string) *terminalRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsCLI+"=1", "ORGSYNC_TRACE=off")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	_ = tty.Close() // the child holds it; reading ptmx ends when the child exits
	r := &terminalRun{cmd: cmd, ptmx: ptmx, copied: make(chan struct{})}
	go func() {
		defer close(r.copied)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			r.mu.Lock()
			r.out.Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *terminalRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// wait waits for the process (killed by its context's deadline) and the
// last of its output.
func (r *terminalRun) wait() (exitCode int, hung bool) {
	err := r.cmd.Wait()
	<-r.copied
	_ = r.ptmx.Close()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, false
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), false
	}
	return -1, true // killed: it did not end on its own
}

// waitingBar is a bar of a planned target the provisioner has not taken up
// (status pending, or running once the resolver announced the plan).
var waitingBar = regexp.MustCompile(`\]\s+(?:running · )?` + phaseProvisioning + `\r?\n`)

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// lastFrame returns, per target, the text of its bar in the last frame the
// command drew before the summary (ANSI controls stripped), and the
// summary's status per target.
func lastFrame(out string, targets []string) (bars, summary map[string]string) {
	text := ansi.ReplaceAllString(out, "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	bars, summary = map[string]string{}, map[string]string{}
	for _, line := range lines {
		line = strings.TrimSpace(line)
		for _, t := range targets {
			if !strings.HasPrefix(line, t+" ") {
				continue
			}
			if strings.Contains(line, "users") && strings.Contains(line, "[") {
				if _, done := summary[t]; !done {
					bars[t] = line
				}
			} else if _, seen := summary[t]; !seen {
				if f := strings.Fields(line); len(f) > 1 {
					summary[t] = f[1]
				}
			}
		}
	}
	return bars, summary
}

// barStatus is the status a bar line ends with ("... ] changed").
func barStatus(bar string) string {
	_, after, ok := strings.Cut(bar, "]")
	if !ok {
		return ""
	}
	return strings.TrimSpace(after)
}

// TestCloneWaitOnTerminal runs `orgsync clone --wait` as a user does in a
// terminal, 50 times: it never hangs (each run is bounded by a context
// deadline: a hang is a kill), and the last frame's per-target status is
// the one the summary table prints.
func TestCloneWaitOnTerminal(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("50 CLI runs")
	}
	h := startHarness(t, nil, nil)
	runs := 50
	var phases []string
	for i := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		r := startOnTerminal(t, ctx, append([]string{"clone", "--source", "source", "--user", strings.Join(e2eUsers, ","),
			"--target", strings.Join(e2eTargets, ","), "--wait", "--timeout", "60s"}, h.natsArgs()...)...)
		code, hung := r.wait()
		cancel()
		out := r.output()
		if hung {
			t.Fatalf("run %d of %d hung (killed after 90 s); terminal output:\n%s", i+1, runs, out)
		}
		if code != ExitOK {
			t.Fatalf("run %d: exit %d; terminal output:\n%s", i+1, code, out)
		}
		bars, summary := lastFrame(out, e2eTargets)
		for _, target := range e2eTargets {
			want := summary[target]
			if want == "" || barStatus(bars[target]) != want {
				t.Fatalf("run %d, %s: last frame %q, summary says %q; terminal output:\n%q", i+1, target, bars[target], want, out)
			}
		}
		for _, p := range []string{phaseExtracting, phasePreflight, phaseProvisioning + ":", phaseVerifying} {
			if strings.Contains(out, p) && !strings.Contains(strings.Join(phases, ","), p) {
				phases = append(phases, p)
			}
		}
	}
	t.Logf("%d runs on a terminal, none hung; phases seen in frames: %v", runs, phases)
}

// TestCloneWaitInterrupted: with the provisioner stopped a clone cannot
// finish; on a terminal the bars show it waiting in "provisioning", and
// --timeout, SIGINT (Ctrl-C) and SIGTERM each end the command promptly
// with a message saying the request goes on.
func TestCloneWaitInterrupted(t *testing.T) {
	t.Parallel()
	h := startHarness(t, nil, nil)
	if err := h.dev.StopService("provisioner"); err != nil {
		t.Fatal(err)
	}
	args := func(timeout string) []string {
		return append([]string{"clone", "--source", "source", "--user", e2eUsers[0], "--target", "target1,target2", "--wait", "--timeout", timeout}, h.natsArgs()...)
	}
	for _, tc := range []struct {
		name   string
		signal os.Signal
		want   string
	}{
		{"timeout", nil, "not complete after 3s (it goes on"},
		{"SIGINT", os.Interrupt, "stopped following request"},
		{"SIGTERM", syscall.SIGTERM, "stopped following request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			timeout := "3s"
			if tc.signal != nil {
				timeout = "5m"
			}
			r := startOnTerminal(t, ctx, args(timeout)...)
			natsxtest.Eventually(t, 30*time.Second, "the bars show the targets waiting in provisioning", func() bool {
				return len(waitingBar.FindAllString(r.output(), -1)) >= 2
			})
			if tc.signal != nil {
				if err := r.cmd.Process.Signal(tc.signal); err != nil {
					t.Fatal(err)
				}
			}
			code, hung := r.wait()
			out := r.output()
			if hung || code != ExitNotFinished || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (hung %v), want %d and %q; terminal output:\n%s", code, hung, ExitNotFinished, tc.want, out)
			}
			if strings.Contains(out, "orgsync orgsync") {
				t.Errorf("doubled prefix in:\n%s", out)
			}
		})
	}
}

// TestProgressViewNeverBlocksTheEventLoop: update is called on the event
// loop and must return while the renderer is busy; close must return within
// its grace period even when the terminal takes no output.
func TestProgressViewNeverBlocksTheEventLoop(t *testing.T) {
	t.Parallel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	// Nobody reads ptmx: once its buffer is full every write to tty blocks.
	v := newProgressView(tty, []string{"t1", "t2"}, 2)
	rep := NewReport("r", "src", []string{"t1", "t2"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			rep.Apply(stepEvent("r", "t1", fmt.Sprintf("u%d", i%2), fmt.Sprintf("step-%d", i%11)))
			v.update(rep)
		}
		v.close()
	}()
	select {
	case <-done:
	case <-time.After(closeGrace + 20*time.Second):
		t.Fatal("update/close blocked on a terminal that takes no output")
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(ptmx, 0))
}
