package integrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// gcsim org ids of the demo fixture's targets 1..3.
var targetIDs = []string{"", "5f0c2a4e-0000-4000-8000-000000000011", "5f0c2a4e-0000-4000-8000-000000000012", "5f0c2a4e-0000-4000-8000-000000000013"}

// env is gcsim (demo fixture) over real HTTP on loopback, an embedded
// nats-server with the orgsync streams, the org registry and a log of
// stream EVENTS. Org keys are prefix+"1".."3" for the demo targets (a test
// that reads process-wide metrics uses its own prefix).
type env struct {
	t      *testing.T
	prefix string
	sim    *gcsim.Sim
	simURL string
	reg    *orgs.Registry
	js     jetstream.JetStream
	events *natsxtest.EventLog
	crm    *crmCalls
}

func newEnv(t *testing.T, prefix string, cfg gcsim.Config) *env {
	t.Helper()
	cfg.RateLimitPerMinute = -1
	sim, err := gcsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	orgCfgs := map[string]genesys.OrgConfig{}
	for n := 1; n <= 3; n++ {
		client := "target" + strconv.Itoa(n)
		orgCfgs[prefix+strconv.Itoa(n)] = genesys.OrgConfig{APIBaseURL: srv.URL, LoginBaseURL: srv.URL,
			ClientID: client + "-client", ClientSecret: client + "-secret", RateLimit: 1000, Burst: 100}
	}
	_, js := natsxtest.Start(t)
	return &env{t: t, prefix: prefix, sim: sim, simURL: srv.URL, reg: orgs.NewRegistry(orgCfgs), js: js,
		events: natsxtest.FollowEvents(t, js), crm: &crmCalls{next: http.DefaultTransport}}
}

// key is the org key of demo target n; orgID its gcsim id.
func (e *env) key(n int) string   { return e.prefix + strconv.Itoa(n) }
func (e *env) orgID(n int) string { return targetIDs[n] }

// config is a fast integrator: short backoffs and deadline, every demo
// target with its fake-CRM adapter.
func (e *env) config() Config {
	targets := map[string]CRMTarget{}
	for n := 1; n <= 3; n++ {
		targets[e.key(n)] = CRMTarget{BaseURL: e.simURL, APIKey: "target" + strconv.Itoa(n) + "-crm-key"}
	}
	return Config{Targets: targets, Deadline: 5 * time.Second, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Consumer: service.Consumer{Backoff: []time.Duration{50 * time.Millisecond}}}
}

func (e *env) start(cfg Config) *natsxtest.Running {
	e.t.Helper()
	svc, err := New(cfg, Deps{JS: e.js, Clients: e.reg, Events: events.New(e.js), Logger: slog.New(slog.DiscardHandler),
		HTTP: &http.Client{Transport: e.crm, Timeout: 10 * time.Second}})
	if err != nil {
		e.t.Fatal(err)
	}
	return natsxtest.RunService(e.t, "integrator", svc)
}

// request is the IntegrationRequest the provisioner publishes for user
// (external id) in target n after plan.
func (e *env) request(n int, user, plan string) *orgsyncv1.IntegrationRequest {
	return &orgsyncv1.IntegrationRequest{RequestId: plan + "|" + user + "|crm", TargetOrg: e.key(n), UserExternalId: user,
		TargetUserId: "uid-" + user, Email: user + "@acme.example", Name: "User " + user,
		OriginRequestId: "req-" + plan, PlanId: plan, SourceOrg: "src"}
}

// publish publishes req with Nats-Msg-Id msgID (the request id when empty).
func (e *env) publish(req *orgsyncv1.IntegrationRequest, msgID string) {
	e.t.Helper()
	if msgID == "" {
		msgID = req.GetRequestId()
	}
	subj, err := natsx.IntegrationSubject(req.GetTargetOrg())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := natsx.Publish(context.Background(), e.js, subj, msgID, req); err != nil {
		e.t.Fatal(err)
	}
}

// outcome waits for the CRM AUDIT event of req (state attribute s, or any
// final state when s is empty).
func (e *env) outcome(req *orgsyncv1.IntegrationRequest, timeout time.Duration) *orgsyncv1.Event {
	e.t.Helper()
	return e.events.Wait(e.t, timeout, "CRM outcome of "+req.GetRequestId(), func(ev *orgsyncv1.Event) bool {
		return isOutcomeOf(ev, req)
	})
}

func isOutcomeOf(ev *orgsyncv1.Event, req *orgsyncv1.IntegrationRequest) bool {
	return ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_AUDIT && ev.GetStep() == "crm" &&
		ev.GetAttributes()["integration_request_id"] == req.GetRequestId()
}

// state reads the KV record of req's user (fails the test when absent).
func (e *env) state(req *orgsyncv1.IntegrationRequest) SyncRecord {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), Bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), recordKey(req.GetTargetOrg(), req.GetUserExternalId()))
	if err != nil {
		e.t.Fatalf("KV %s: state of %s in %s: %v", Bucket, req.GetUserExternalId(), req.GetTargetOrg(), err)
	}
	var r SyncRecord
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// settled waits until the integrator's consumer has nothing pending or
// unacknowledged (every published request handled).
func (e *env) settled() {
	e.t.Helper()
	natsxtest.Eventually(e.t, 20*time.Second, "integrator consumer settled", func() bool {
		c, err := e.js.Consumer(context.Background(), natsx.StreamIntegrations, Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// crmCalls is the CRM adapter's HTTP transport, recording every call
// (method, path, status, Retry-After, when it was sent and answered) on
// its way to gcsim.
type crmCalls struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []crmCall
}

type crmCall struct {
	method, path   string
	status         int
	retryAfter     time.Duration
	sent, answered time.Time
}

func (c *crmCalls) RoundTrip(r *http.Request) (*http.Response, error) {
	call := crmCall{method: r.Method, path: r.URL.Path, sent: time.Now()}
	resp, err := c.next.RoundTrip(r)
	call.answered = time.Now()
	if resp != nil {
		call.status = resp.StatusCode
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			call.retryAfter = time.Duration(s) * time.Second
		}
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	return resp, err
}

// of returns the recorded calls on the record of external key user.
func (c *crmCalls) of(user string) []crmCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []crmCall
	for _, call := range c.calls {
		if call.path == "/crm/v1/users/"+user {
			out = append(out, call)
		}
	}
	return out
}
