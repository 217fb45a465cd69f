package clienttest_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/services/gcsim"
)

// suiteRecorder validates every request and response of every client the
// suite builds against the Genesys spec, and records which operations got a
// valid 2xx. TestMain fails the run on any violation and — when the whole
// suite ran — on any client operation left uncovered.
var suiteRecorder = apispec.NewValidatingTransport(http.DefaultTransport)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, v := range suiteRecorder.Violations() {
		fmt.Fprintln(os.Stderr, "SPEC VIOLATION:", v)
		code = 1
	}
	if code == 0 && flagEmpty("test.run") && flagEmpty("test.list") {
		var want []apispec.Operation
		for _, s := range genesys.Operations() {
			o, _ := apispec.ParseOperation(s)
			want = append(want, o)
		}
		covered := suiteRecorder.Covered()
		fmt.Fprintf(os.Stderr, "spec conformance: %d operations covered with a valid 2xx, %d implemented by the client\n", len(covered), len(want))
		for _, o := range suiteRecorder.Missing(want) {
			if _, pending := simulatorPending.Load(o.String()); pending {
				fmt.Fprintln(os.Stderr, "PENDING (not simulated by gcsim yet):", o)
				continue
			}
			fmt.Fprintln(os.Stderr, "UNCOVERED client operation:", o)
			code = 1
		}
	}
	os.Exit(code)
}

// flagEmpty reports whether the go test flag name is unset: coverage is
// demanded only when every test ran (no -run filter, not -list).
func flagEmpty(name string) bool {
	f := flag.Lookup(name)
	return f == nil || f.Value.String() == ""
}

const fixtureJSON = `{"orgs": [
 {"id": "6a7c1d2e-0000-4000-8000-0000000000a1", "name": "Acme",
  "clients": [{"clientId": "acme-client", "clientSecret": "acme-secret-0001"}],
  "divisions": [{"name": "Home", "description": "home", "home": true}, {"name": "East", "description": "east"}],
  "roles": [{"name": "Agent", "description": "agent"}, {"name": "Agent Lead", "description": "lead"}],
  "licenses": [{"id": "cx2", "description": "CX 2"}, {"id": "cx3", "description": "CX 3"}],
  "skills": [{"name": "Billing"}, {"name": "Billing Support"}, {"name": "Billing Support Tier 2"}, {"name": "Sales"}, {"name": "Retention"}],
  "languages": [{"name": "English"}, {"name": "English UK"}, {"name": "French"}],
  "teams": [{"name": "Team A", "division": "Home"}, {"name": "Team AB", "division": "Home"}, {"name": "Team B", "division": "Home"}, {"name": "Team C", "division": "Home"}, {"name": "Team D", "division": "Home"}],
  "queues": [{"name": "Support", "division": "Home"}, {"name": "Support Escalations", "division": "Home"}],
  "didPools": [{"name": "Main", "startPhoneNumber": "+13175550100", "endPhoneNumber": "+13175550109"}],
  "integrations": [{"name": "CRM", "type": "salesforce", "reportedState": "ACTIVE"}],
  "utilization": {"call": {"maximumCapacity": 1}},
  "users": [{"name": "Ann Lead", "email": "ann@acme.example", "division": "Home", "title": "Lead"}]
 },
 {"id": "6a7c1d2e-0000-4000-8000-0000000000b2", "name": "Globex",
  "clients": [{"clientId": "globex-client", "clientSecret": "globex-secret-0002"}],
  "divisions": [{"name": "Home", "description": "home", "home": true}],
  "users": [{"name": "Gus Globex", "email": "gus@globex.example", "division": "Home"}]
 }
]}`

// Org ids of the fixture (gcsim wants UUIDs, as Genesys uses).
const (
	acme   = "6a7c1d2e-0000-4000-8000-0000000000a1"
	globex = "6a7c1d2e-0000-4000-8000-0000000000b2"
)

var orgSecrets = map[string][2]string{acme: {"acme-client", "acme-secret-0001"}, globex: {"globex-client", "globex-secret-0002"}}

// env is one simulator on a loopback HTTP server, with a clock the test can
// move forward (gcsim reads every time from it).
type env struct {
	sim    *gcsim.Sim
	url    string
	offset atomic.Int64 // added to time.Now for the simulator's clock
}

func newEnv(t *testing.T, cfg gcsim.Config) *env {
	t.Helper()
	e := &env{}
	cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }
	sim, err := gcsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fx, err := gcsim.ParseFixture([]byte(fixtureJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(fx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	e.sim, e.url = sim, srv.URL
	return e
}

func (e *env) advance(d time.Duration) { e.offset.Add(int64(d)) }

// fastRetry keeps retry tests quick; the mechanics are the same as default.
var fastRetry = genesys.RetryPolicy{MaxAttempts: 12, MaxElapsed: 20 * time.Second, BaseDelay: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond}

func (e *env) config(org string) genesys.OrgConfig {
	cred := orgSecrets[org]
	return genesys.OrgConfig{OrgID: org, APIBaseURL: e.url, LoginBaseURL: e.url, ClientID: cred[0], ClientSecret: cred[1],
		RateLimit: 1000, Burst: 1000, ConsistencyWindow: 5 * time.Second}
}

func (e *env) client(t *testing.T, org string, opts ...genesys.Option) *genesys.Client {
	return e.clientWith(t, e.config(org), opts...)
}

func (e *env) clientWith(t *testing.T, cfg genesys.OrgConfig, opts ...genesys.Option) *genesys.Client {
	t.Helper()
	all := append([]genesys.Option{genesys.WithTransport(suiteRecorder), genesys.WithRetryPolicy(fastRetry)}, opts...)
	c, err := genesys.New(cfg, all...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// calls collects the observer's reports.
type calls struct {
	mu  sync.Mutex
	all []genesys.Call
}

func (c *calls) observe(_ context.Context, call genesys.Call) {
	c.mu.Lock()
	c.all = append(c.all, call)
	c.mu.Unlock()
}

func (c *calls) count(pred func(genesys.Call) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, call := range c.all {
		if pred(call) {
			n++
		}
	}
	return n
}

func withStatus(s int) func(genesys.Call) bool {
	return func(c genesys.Call) bool { return c.Status == s }
}

func withOp(op string) func(genesys.Call) bool {
	return func(c genesys.Call) bool { return c.Operation == op }
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
