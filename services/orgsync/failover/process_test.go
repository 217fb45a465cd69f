package failover_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one OS process of a built binary. Its stdout and stderr go to a
// log file that the test prints (tail) when it fails.
type proc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	// httpAddr serves /healthz, /readyz and /metrics (services only).
	httpAddr string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// startProc starts bin with args; the test's cleanup stops it.
func startProc(t *testing.T, name, binPath, httpAddr, logDir string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: binPath, args: args, httpAddr: httpAddr, logPath: logDir + "/" + name + ".log"}
	p.start()
	t.Cleanup(func() {
		p.stop()
		// ORGSYNC_FAILOVER_LOGS=N prints the last N lines of every log,
		// also when the test passes.
		n, err := strconv.Atoi(os.Getenv("ORGSYNC_FAILOVER_LOGS"))
		if err != nil || n <= 0 {
			n = 0
		}
		if t.Failed() || n > 0 {
			t.Logf("--- log of %s (last lines) ---\n%s", p.name, tail(p.logPath, max(n, 40)))
		}
	})
	return p
}

// start (re)starts the process with its arguments, appending to its log.
func (p *proc) start() {
	p.t.Helper()
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.starts++
	p.mu.Unlock()
}

func (p *proc) running() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited
}

// kill sends SIGKILL (kill -9) and waits until the process is gone.
func (p *proc) kill() {
	p.t.Helper()
	cmd, exited := p.running()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("kill -9 %s (pid %d): %v", p.name, cmd.Process.Pid, err)
	}
	<-exited
}

// stop sends SIGTERM and waits (SIGKILL after 15s). Safe on a dead process.
func (p *proc) stop() {
	cmd, exited := p.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// waitReady waits until /readyz answers 200 (connected to NATS, consumers
// bound), failing the test if the process exits first.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	_, exited := p.running()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := httpGet(p.httpAddr, "/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("%s exited while starting:\n%s", p.name, tail(p.logPath, 30))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready after %v: /readyz %d %q %v\n%s", p.name, timeout, code, body, err, tail(p.logPath, 30))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// metrics scrapes /metrics.
func (p *proc) metrics() series {
	p.t.Helper()
	code, body, err := httpGet(p.httpAddr, "/metrics")
	if err != nil || code != http.StatusOK {
		p.t.Fatalf("%s /metrics: %d %v", p.name, code, err)
	}
	return parseSeries(body)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(addr, path string) (int, string, error) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// series is a scraped Prometheus text exposition: `name{labels}` → value.
type series map[string]float64

func parseSeries(body string) series {
	s := series{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	return s
}

// sum adds the series named name whose labels include every `key="value"`
// of labels (given as "key=value").
func (s series) sum(name string, labels ...string) float64 {
	total := 0.0
next:
	for k, v := range s {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		for _, l := range labels {
			key, val, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, key+`="`+val+`"`) {
				continue next
			}
		}
		total += v
	}
	return total
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds or timeout passes (then fails with what).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForState(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// waitForState is waitFor with a condition that also tells what it saw
// last; the failure message includes it.
func waitForState(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			if state != "" {
				state = " (last seen: " + state + ")"
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, state)
		case <-tick.C:
		}
	}
}
