package orgsync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// spans records every span of every test: the services get the global
// provider, so a test finds its request's spans by trace id.
var spans = tracetest.NewSpanRecorder()

// runAsCLI, set in the environment, makes this test binary the orgsync
// command line (tests start `orgsync gcsim` in a child process this way).
const runAsCLI = "ORGSYNC_TEST_RUN_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(runAsCLI) == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], IO{Out: os.Stdout, Err: os.Stderr}))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	telemetry.InstallPropagator()
	code := m.Run()
	_ = tp.Shutdown(context.Background())
	os.Exit(code)
}

// harness is the whole system in this process: embedded NATS, gcsim, every
// service (orgsync dev), and a CLI client. Every Genesys request the
// services send is validated against the API spec.
type harness struct {
	t      *testing.T
	dev    *Dev
	client *Client
	api    *apispec.Recorder
	// direct reads targets back through the Genesys API with the org's own
	// client credentials (not through the pipeline).
	direct *orgs.Registry
}

// e2eSim is gcsim for end-to-end tests: no rate limit (budgets are counted
// exactly), short but real eventual-consistency windows.
func e2eSim() gcsim.Config {
	return gcsim.Config{RateLimitPerMinute: -1, NotFoundAfterCreate: 50 * time.Millisecond, ActivationDelay: 100 * time.Millisecond}
}

func startHarness(t *testing.T, fx *gcsim.Fixture, edit func(simURL string, orgs map[string]orgconfig.Org)) *harness {
	t.Helper()
	return startHarnessSim(t, e2eSim(), fx, edit)
}

// startHarnessSim is startHarness with gcsim configured by sim.
func startHarnessSim(t *testing.T, sim gcsim.Config, fx *gcsim.Fixture, edit func(simURL string, orgs map[string]orgconfig.Org)) *harness {
	t.Helper()
	return startHarnessConfig(t, DevConfig{Fixture: fx, Sim: sim, EditOrgs: edit})
}

// startHarnessConfig is startHarness with the environment cfg describes
// (its StoreDir, RegistryOptions and Logger are the harness's).
func startHarnessConfig(t *testing.T, cfg DevConfig) *harness {
	t.Helper()
	rec := apispec.NewValidatingTransport(http.DefaultTransport)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg.StoreDir = t.TempDir()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cfg.RegistryOptions = []orgs.Option{orgs.WithTransport(rec)}
	d, err := StartDev(ctx, cfg)
	if err != nil {
		t.Fatalf("start dev environment: %v", err)
	}
	t.Cleanup(d.Close)
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			t.Errorf("API spec violation: %s", v)
		}
		// Every service runs as its own NATS user: a subject it needs and
		// is not allowed shows here.
		for _, err := range d.Refusals() {
			t.Errorf("NATS permission violation: %v", err)
		}
	})
	nc, js, err := d.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	direct := orgs.NewRegistry(d.Orgs.OrgConfigs(), orgs.WithTransport(rec))
	return &harness{t: t, dev: d, client: &Client{JS: js}, api: rec, direct: direct}
}

// clone submits spec and waits for its complete report.
func (h *harness) clone(spec CloneSpec) (*Report, *Submitted) {
	h.t.Helper()
	req, err := spec.Build()
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub, err := h.client.Submit(ctx, req)
	if err != nil {
		h.t.Fatal(err)
	}
	rep, err := h.client.Wait(ctx, sub, nil)
	if err != nil {
		h.t.Fatalf("wait for %s: %v\nreport so far: %s", req.GetRequestId(), err, reportJSON(rep))
	}
	return rep, sub
}

// cli runs the orgsync command line against the harness's NATS: exit
// status, stdout, stderr.
func (h *harness) cli(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), append(args, h.natsArgs()...), IO{Out: &stdout, Err: &stderr})
	return code, stdout.String(), stderr.String()
}

// natsArgs are the CLI's connection flags for this harness: its NATS URL and
// the CLI identity orgsync dev generated.
func (h *harness) natsArgs() []string {
	return []string{"--nats", h.dev.NATSURL, "--creds", natsx.CredsFile(h.dev.CredsDir, natsx.RoleCLI)}
}

func (h *harness) orgID(key string) string {
	id, ok := h.dev.OrgIDs[key]
	if !ok {
		h.t.Fatalf("no gcsim org for key %q", key)
	}
	return id
}

func (h *harness) stats(key string) gcsim.Stats { return h.dev.Sim.Stats(h.orgID(key)) }

func reportJSON(r *Report) string {
	if r == nil {
		return "<nil>"
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// failedEvent follows stream EVENTS from its start until an event matches
// (or the deadline passes, failing the test).
func (h *harness) failedEvent(match func(*orgsyncv1.Event) bool, what string) *orgsyncv1.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var found *orgsyncv1.Event
	err := followEvents(ctx, h.client.JS, "", 1, 0, func(e *orgsyncv1.Event) bool {
		if e.GetStatus() == orgsyncv1.Status_STATUS_FAILED && match(e) {
			found = e
			return true
		}
		return false
	})
	if err != nil || found == nil {
		h.t.Fatalf("no failed event for %s: %v", what, err)
	}
	return found
}

// testLogger sends service logs to the test log, only shown on failure or -v.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	l, err := telemetry.NewLogger(w, levelFromEnv(), "text")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// levelFromEnv is the service log level of tests: ORGSYNC_TEST_LOG
// (debug, info, warn, error), default warn.
func levelFromEnv() slog.Level {
	if l, err := telemetry.ParseLevel(os.Getenv("ORGSYNC_TEST_LOG")); err == nil && os.Getenv("ORGSYNC_TEST_LOG") != "" {
		return l
	}
	return slog.LevelWarn
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
	// done stops logging once the test ended (services stop after it).
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && !strings.Contains(string(p), "level=DEBUG") {
		func() {
			defer func() { _ = recover() }() // t.Log after the test completed panics
			w.t.Log(strings.TrimRight(string(p), "\n"))
		}()
	}
	return len(p), nil
}

// fixtureWithUsers returns the demo fixture with n reference users in the
// source (John, Jane and n-2 agents configured like Jane, each with a work
// number) and DID pools large enough in every target.
func fixtureWithUsers(t *testing.T, n int) *gcsim.Fixture {
	t.Helper()
	raw, err := json.Marshal(gcsim.DemoFixture())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, o := range doc["orgs"].([]any) {
		org := o.(map[string]any)
		pools := org["didPools"].([]any)
		pool := pools[0].(map[string]any)
		start := pool["startPhoneNumber"].(string) // +1317555X000 / +13175550100
		if org["name"] == "Acme Source" {
			var jane map[string]any
			for _, u := range org["users"].([]any) {
				if u.(map[string]any)["email"] == "jane.doe@acme.example" {
					jane = u.(map[string]any)
				}
			}
			for i := 1; i <= n-2; i++ {
				b, _ := json.Marshal(jane)
				var agent map[string]any
				_ = json.Unmarshal(b, &agent)
				delete(agent, "id")
				agent["name"] = fmt.Sprintf("Agent %02d", i)
				agent["email"] = fmt.Sprintf("agent%02d@acme.example", i)
				agent["addresses"] = []any{map[string]any{"address": fmt.Sprintf("+131755502%02d", i), "mediaType": "PHONE", "type": "WORK"}}
				org["users"] = append(org["users"].([]any), agent)
			}
			pools = append(pools, map[string]any{"name": "Agent DIDs", "startPhoneNumber": "+13175550200", "endPhoneNumber": "+13175550299"})
			org["didPools"] = pools
			continue
		}
		pool["endPhoneNumber"] = start[:len(start)-3] + "099"
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	fx, err := gcsim.ParseFixture(b)
	if err != nil {
		t.Fatalf("fixture with %d users: %v", n, err)
	}
	return fx
}

// testSimCommand is DefaultSimCommand for tests: this binary as `orgsync gcsim`.
func testSimCommand(args ...string) (*exec.Cmd, error) {
	cmd, err := DefaultSimCommand(args...)
	if err == nil {
		cmd.Env = append(os.Environ(), runAsCLI+"=1")
	}
	return cmd, err
}
