package orgsync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orgsync/orgsync/services/gcsim"
)

// SimCommand builds the command that runs gcsim with args in a process of
// its own. DefaultSimCommand runs this executable's `orgsync gcsim`.
type SimCommand func(args ...string) (*exec.Cmd, error)

// DefaultSimCommand runs `orgsync gcsim ARGS` with the running executable.
func DefaultSimCommand(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find this executable to run gcsim: %w", err)
	}
	return exec.Command(exe, append([]string{"gcsim"}, args...)...), nil
}

// simStats is where a scenario reads gcsim's counters: the in-process
// *gcsim.Sim, or a simProcess over gcsim's admin API.
type simStats interface {
	Stats(orgID string) gcsim.Stats
}

// simProcess is gcsim in a child process, loaded with a fixture. S4 runs
// its gcsim this way so that the peak RSS it reports is orgsync's own: a
// simulated Genesys Cloud of 11 orgs × 2,000 users is not part of an
// orgsync deployment.
type simProcess struct {
	URL  string
	cmd  *exec.Cmd
	done chan error
	log  *syncBuffer

	mu  sync.Mutex
	err error // the first failed stats read
}

// startSimProcess writes fx to dir, starts gcsim on a free loopback port
// with it (plus args) and returns once gcsim answers.
func startSimProcess(ctx context.Context, command SimCommand, dir string, fx *gcsim.Fixture, args ...string) (*simProcess, error) {
	data, err := json.Marshal(fx)
	if err != nil {
		return nil, fmt.Errorf("bench: encode gcsim fixture: %w", err)
	}
	path := filepath.Join(dir, "gcsim-fixture.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("bench: write gcsim fixture: %w", err)
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cmd, err := command(append([]string{"--addr", addr, "--fixture", path}, args...)...)
	if err != nil {
		return nil, err
	}
	p := &simProcess{URL: "http://" + addr, cmd: cmd, done: make(chan error, 1), log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start gcsim (%s): %w", cmd.Path, err)
	}
	go func() { p.done <- cmd.Wait() }()
	if err := p.waitReady(ctx, time.Minute); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: find a free port for gcsim: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (p *simProcess) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/_sim/orgs", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("bench: gcsim exited before it was ready (%v): %s", err, p.log.Tail(2000))
		case <-ctx.Done():
			return fmt.Errorf("bench: gcsim not ready at %s after %v: %s", p.URL, timeout, p.log.Tail(2000))
		case <-tick.C:
		}
	}
}

// Stats reads gcsim's counters of orgID over its admin API. A failed read
// returns empty Stats; Err reports the first such failure.
func (p *simProcess) Stats(orgID string) gcsim.Stats {
	var st gcsim.Stats
	err := func() error {
		resp, err := http.Get(p.URL + "/_sim/orgs/" + orgID + "/stats")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&st)
	}()
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = fmt.Errorf("bench: read gcsim stats of %s: %w", orgID, err)
		}
		p.mu.Unlock()
	}
	return st
}

// url is p's base URL; "" for nil (no gcsim process).
func (p *simProcess) url() string {
	if p == nil {
		return ""
	}
	return p.URL
}

// Err is the first failed stats read, or nil.
func (p *simProcess) Err() error { p.mu.Lock(); defer p.mu.Unlock(); return p.err }

// CPUTime is the CPU time the gcsim process has used so far.
func (p *simProcess) CPUTime() time.Duration { return cpuTimeOf(strconv.Itoa(p.cmd.Process.Pid)) }

// PeakRSSMB is the gcsim process's peak resident set size in MiB.
func (p *simProcess) PeakRSSMB() float64 {
	return peakRSSMBOf("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
}

// Close stops gcsim: interrupt, then kill if it has not exited in 10 s.
func (p *simProcess) Close() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (a child's
// output, a command's stdout and stderr).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n bytes written, trimmed.
func (b *syncBuffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
