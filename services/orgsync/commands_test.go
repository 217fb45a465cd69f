package orgsync

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// TestDemo runs what `make demo` runs and checks what it promises: both
// runs succeed, the second changes nothing, a source change reaches every
// target (RunDemo fails otherwise), the output says so.
func TestDemo(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	res, err := RunDemo(context.Background(), DemoOptions{StoreDir: t.TempDir(), ServiceLog: &testWriter{t: t}}, IO{Out: &stdout, Err: &stderr})
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, target := range demoTargets {
		if tr := res.First.Target(target); tr.Status != "changed" || tr.Counts["changed"] != len(demoUsers) {
			t.Errorf("first run %s: %s %v", target, tr.Status, tr.Counts)
		}
		if tr := res.Second.Target(target); tr.Status != "unchanged" || tr.Counts["unchanged"] != len(demoUsers) {
			t.Errorf("second run %s: %s %v", target, tr.Status, tr.Counts)
		}
		if n := res.SecondRunWrites[target]; n != 0 {
			t.Errorf("second run wrote %d times to %s", n, target)
		}
	}
	out := stdout.String()
	for _, want := range []string{"1) clone", "2) the same clone again", "target1  unchanged", "second run changed nothing",
		"3) continuous sync", "target3: skills of john.smith@acme.example match the source", "every target converged",
		"4) CRM integration sync", "target3  0        2            0       0        0%",
		"5) sync set", "write requests in gcsim: target1 0, target2 0, target3 0", "target3: nina.newhire@acme.example, active, team Billing Team",
		"the new team member reached every target"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("demo output:\n%s", out)
	t.Logf("sync set new hire in every target %v after the team add", res.HireConverged)
}

// TestCLICloneAndStatus drives the CLI commands themselves against a
// running system: clone --wait --output json, status, plan, and the exit
// statuses scripts rely on.
func TestCLICloneAndStatus(t *testing.T) {
	t.Parallel()
	h := startHarness(t, nil, nil)
	run := h.cli

	code, out, errOut := run("plan", "--source", "source", "--user", "jane.doe@acme.example", "--target", "target2", "--output", "json")
	var plan Report
	if err := json.Unmarshal([]byte(out), &plan); code != ExitOK || err != nil {
		t.Fatalf("plan: exit %d, %v\nstdout %s\nstderr %s", code, err, out, errOut)
	}
	if tr := plan.Targets[0]; tr.Status != "planned" || len(tr.Users[0].StepsApplied()) != 0 || len(tr.Users[0].Changes()) == 0 {
		t.Errorf("plan report: %s", reportJSON(&plan))
	}
	if n := SimWrites(h.stats("target2")); n != 0 {
		t.Errorf("plan wrote %d times to target2", n)
	}

	code, out, errOut = run("clone", "--source", "source", "--user", "john.smith@acme.example,jane.doe@acme.example",
		"--target", "target1", "--target", "target2", "--wait", "--output", "json", "--request-id", "cli-test-1")
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); code != ExitOK || err != nil {
		t.Fatalf("clone: exit %d, %v\nstdout %s\nstderr %s", code, err, out, errOut)
	}
	if rep.RequestID != "cli-test-1" || rep.Status != ReportSucceeded || len(rep.Targets) != 2 {
		t.Fatalf("clone report: %s", reportJSON(&rep))
	}
	for _, tr := range rep.Targets {
		for _, u := range tr.Users {
			if u.TargetUserID() == "" || len(u.StepsApplied()) == 0 || u.APICalls().Total == 0 {
				t.Errorf("%s %s: report lacks target id, steps or calls: %+v", tr.Org, u.ExternalID, u)
			}
		}
	}

	// In text, a clone ends with where the decoupled CRM sync of its
	// targets stands (PENDING until the integrator is done).
	code, out, errOut = run("clone", "--source", "source", "--user", "john.smith@acme.example", "--target", "target1,target2", "--wait")
	if code != ExitOK || !strings.Contains(out, "CRM integration sync") || !regexp.MustCompile(`(?m)^target2\s+\d+\s+\d+`).MatchString(out) {
		t.Errorf("text clone: exit %d, no CRM section for its targets\nstdout %s\nstderr %s", code, out, errOut)
	}

	// Every phone number chosen is in the target's audit trail.
	code, out, errOut = run("audit", "--org", "target1", "--request", "cli-test-1")
	t.Logf("audit --org target1:\n%s", out)
	if code != ExitOK || !strings.Contains(out, `decision="phone_number"`) || !strings.Contains(out, "john.smith@acme.example") {
		t.Errorf("audit --org target1: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Count(line, " reason=") > 1 {
			t.Errorf("audit line says its reason twice: %s", line)
		}
	}
	if code, _, errOut = run("audit"); code != ExitUsage || !strings.Contains(errOut, `required flag(s) "org" not set`) {
		t.Errorf("audit without --org: exit %d, %s", code, errOut)
	}
	// With the org registry, an org it does not list is a usage error that
	// names the known ones, before anything is read.
	if code, out, errOut = run("audit", "--org", "nosuch", "--orgs", h.orgsFile); code != ExitUsage ||
		!strings.Contains(errOut, `--org: unknown org "nosuch" (orgs: source, target1, target2, target3; sets: demo-targets)`) {
		t.Errorf("audit --org nosuch: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	// reconcile of a target org: nothing to sweep is said, not "done".
	if code, out, errOut = run("reconcile", "--org", "target1", "--now"); code != ExitFailed ||
		!strings.Contains(errOut, "org target1 is not the source of any cloned user, nothing to sweep (sources with tracked users: source)") {
		t.Errorf("reconcile --org target1: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, out, errOut = run("audit", "--org", "target3")
	if code != ExitOK || out != "" || !strings.Contains(errOut, "no audit events for org target3") {
		t.Errorf("audit of an org without events: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, out, _ = run("status", "cli-test-1")
	if code != ExitOK || !strings.Contains(out, "request cli-test-1: succeeded") || !strings.Contains(out, "target2") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, _, errOut = run("status", "no-such-request")
	if code != ExitFailed || !strings.Contains(errOut, "no request no-such-request") {
		t.Errorf("status of unknown id: exit %d, %s", code, errOut)
	}
	// A request that fails makes clone --wait exit non-zero with the reason.
	code, out, _ = run("clone", "--source", "source", "--user", "nobody@acme.example", "--target", "target1", "--wait")
	if code != ExitFailed || !strings.Contains(out, "user not found") {
		t.Errorf("failing clone: exit %d\n%s", code, out)
	}
}

// TestDevCommand starts `orgsync dev` as a user does and stops it with the
// context (Ctrl-C).
func TestDevCommand(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	store := t.TempDir()
	go func() {
		done <- Main(ctx, []string{"dev", "--store", store, "--nats-port", "0", "--gcsim-addr", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "info"}, IO{Out: out, Err: out})
	}()
	natsxtest.Eventually(t, 30*time.Second, "orgsync dev reports it is running", func() bool {
		return strings.Contains(out.String(), "services:  auth, extractor, integrator, provisioner, reconciler, resolver")
	})
	// One --http address serves every service's endpoints.
	addr := regexp.MustCompile(`http:      http://(\S+)/metrics`).FindStringSubmatch(out.String())
	if addr == nil {
		t.Fatalf("dev output names no http address:\n%s", out.String())
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "# TYPE"} {
		resp, err := http.Get("http://" + addr[1] + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %q; want 200 and %q", path, resp.StatusCode, body, want)
		}
	}
	// Each log key once per line (was "service=auth service=orgsync-auth").
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Count(line, " service=") > 1 {
			t.Errorf("log line repeats the service key: %s", line)
		}
	}
	for _, want := range []string{"NATS:      nats://127.0.0.1:", "gcsim:     http://127.0.0.1:", "orgs:      source, target1, target2, target3", "clone --nats nats://"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dev output lacks %q:\n%s", want, out.String())
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("dev exited %d:\n%s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("orgsync dev did not stop after cancel")
	}
}
