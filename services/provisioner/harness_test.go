package provisioner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/resolver"
)

const src = "src"

// gcsim org ids of the demo fixture's targets, by orgsync key.
var targetIDs = map[string]string{
	"t1": "5f0c2a4e-0000-4000-8000-000000000011",
	"t2": "5f0c2a4e-0000-4000-8000-000000000012",
	"t3": "5f0c2a4e-0000-4000-8000-000000000013",
}

// env is gcsim (demo fixture, spec-validated) + embedded NATS + an event
// collector.
type env struct {
	t      *testing.T
	sim    *gcsim.Sim // the current instance (restartSim replaces it)
	simCfg gcsim.Config
	reg    *orgs.Registry
	rec    *apispec.Recorder
	nc     *nats.Conn
	js     jetstream.JetStream
	state  string // bbolt path
	simURL string

	mu     sync.Mutex
	events []*orgsyncv1.Event

	// serving is the gcsim instance behind simURL; fault, when set, may
	// answer a request in its place (a status code, 0 to let it through).
	serving atomic.Pointer[gcsim.Sim]
	fault   atomic.Pointer[func(*http.Request) int]
}

func newEnv(t *testing.T, cfg gcsim.Config) *env { return newEnvWith(t, cfg, nil) }

// newEnvWith is newEnv with each org's client settings edited by edit.
func newEnvWith(t *testing.T, cfg gcsim.Config, edit func(*genesys.OrgConfig)) *env {
	t.Helper()
	if cfg.RateLimitPerMinute == 0 {
		cfg.RateLimitPerMinute = -1
	}
	e := &env{t: t, simCfg: cfg}
	e.sim = newDemoSim(t, cfg)
	e.serving.Store(e.sim)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := e.fault.Load(); f != nil {
			if status := (*f)(r); status != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"status":%d,"code":"injected.fault","message":"fault injected by the test"}`, status)
				return
			}
		}
		e.serving.Load().Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec := apispec.NewValidatingTransport(http.DefaultTransport)
	org := func(n string) genesys.OrgConfig {
		c := genesys.OrgConfig{APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: n + "-client", ClientSecret: n + "-secret",
			RateLimit: 1000, Burst: 100, ConsistencyWindow: 5 * time.Second}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	reg := orgs.NewRegistry(map[string]genesys.OrgConfig{
		src: org("source"), "t1": org("target1"), "t2": org("target2"), "t3": org("target3"),
	}, orgs.WithTransport(rec))
	nc, js := natsxtest.Start(t)
	e.reg, e.rec, e.nc, e.js, e.state, e.simURL = reg, rec, nc, js, filepath.Join(t.TempDir(), "provisioner.db"), srv.URL
	sub, err := nc.Subscribe("orgsync.event.>", func(m *nats.Msg) {
		var ev orgsyncv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err == nil {
			e.mu.Lock()
			e.events = append(e.events, events.Expand(&ev)...)
			e.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			t.Errorf("SPEC VIOLATION: %s", v)
		}
	})
	return e
}

func newDemoSim(t *testing.T, cfg gcsim.Config) *gcsim.Sim {
	t.Helper()
	sim, err := gcsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// restartSim replaces gcsim by a new instance loaded with the same fixture,
// at the same URL: what a restart of `orgsync dev` does to the targets (the
// objects orgsync created are gone, the fixture's own keep their ids).
func (e *env) restartSim() {
	e.t.Helper()
	e.sim = newDemoSim(e.t, e.simCfg)
	e.serving.Store(e.sim)
}

func (e *env) start(cfg Config, obs StepObserver) *natsxtest.Running {
	e.t.Helper()
	if cfg.StatePath == "" {
		cfg.StatePath = e.state
	}
	if len(cfg.Orgs) == 0 {
		cfg.Orgs = []string{"t1", "t2", "t3"}
	}
	svc, err := New(cfg, Deps{JS: e.js, NC: e.nc, Clients: e.reg, Events: events.New(e.js),
		Logger: slog.New(slog.DiscardHandler), Observer: obs})
	if err != nil {
		e.t.Fatal(err)
	}
	return natsxtest.RunService(e.t, "provisioner", svc)
}

func (e *env) publish(plans ...*orgsyncv1.Plan) {
	e.t.Helper()
	for _, p := range plans {
		subj, err := natsx.PlanSubject(p.GetTargetOrg())
		if err != nil {
			e.t.Fatal(err)
		}
		if err := natsx.Publish(context.Background(), e.js, subj, p.GetPlanId(), p); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitTarget waits for the TARGET event of a plan that ends it (not RUNNING).
func (e *env) waitTarget(planID string) *orgsyncv1.Event {
	e.t.Helper()
	var got *orgsyncv1.Event
	natsxtest.Eventually(e.t, 60*time.Second, "TARGET event of "+planID, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && ev.GetPlanId() == planID && ev.GetStatus() != orgsyncv1.Status_STATUS_RUNNING {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

func (e *env) eventsOf(planID string, kind orgsyncv1.EventKind) []*orgsyncv1.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*orgsyncv1.Event
	for _, ev := range e.events {
		if ev.GetPlanId() == planID && ev.GetKind() == kind {
			out = append(out, ev)
		}
	}
	return out
}

// writes counts POST/PUT/PATCH/DELETE gcsim answered in a target (searches excluded).
func (e *env) writes(target string) int {
	n := 0
	for op, c := range e.sim.Stats(targetIDs[target]).Requests {
		if op == "POST /api/v2/users/search" || strings.HasPrefix(op, "POST /oauth") || strings.HasPrefix(op, "GET") {
			continue
		}
		n += c
	}
	return n
}

// apiCalls counts every API request of a target (token requests excluded).
func (e *env) apiCalls(target string) int {
	n := 0
	for op, c := range e.sim.Stats(targetIDs[target]).Requests {
		if !strings.Contains(op, "/oauth/") {
			n += c
		}
	}
	return n
}

// ---- the demo's reference users as the extractor would snapshot them ----

func res(t orgsyncv1.ResourceType, name string) *orgsyncv1.Resource {
	return &orgsyncv1.Resource{ExternalId: extid.Resource(src, t, name), Type: t, Name: name}
}

func ref(t orgsyncv1.ResourceType, name string) string { return extid.Resource(src, t, name) }

var (
	tSkill = orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL
	tLang  = orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE
	tTeam  = orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM
	tRole  = orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE
	tQueue = orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE
	tDiv   = orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION
	tLic   = orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE
)

func prof(t orgsyncv1.ResourceType, name string, p float64) *orgsyncv1.Proficiency {
	return &orgsyncv1.Proficiency{Ref: ref(t, name), Proficiency: p}
}

func media(typ string, max int32, interruptible ...string) *orgsyncv1.MediaCapacity {
	return &orgsyncv1.MediaCapacity{MediaType: typ, MaximumCapacity: max, InterruptibleMediaTypes: interruptible}
}

func demoSnapshot(requestID string) *orgsyncv1.Snapshot {
	john := &orgsyncv1.UserConfig{
		ExternalId: extid.User(src, "john.smith@acme.example"), SourceUserId: "5f0c2a4e-0000-4000-8000-0000000000a1",
		Name: "John Smith", Email: "john.smith@acme.example", Title: "Billing Supervisor", Department: "Billing",
		DivisionRef: ref(tDiv, "Billing Division"),
		Skills:      []*orgsyncv1.Proficiency{prof(tSkill, "Billing", 5), prof(tSkill, "Billing Escalations", 4)},
		Languages:   []*orgsyncv1.Proficiency{prof(tLang, "English", 5)},
		Utilization: &orgsyncv1.Utilization{Media: []*orgsyncv1.MediaCapacity{media("call", 1), media("chat", 2), media("email", 1)}},
		TeamRef:     ref(tTeam, "Billing Team"),
		Grants: []*orgsyncv1.Grant{{RoleRef: ref(tRole, "Supervisor"), DivisionRef: ref(tDiv, "Billing Division")},
			{RoleRef: ref(tRole, "employee"), DivisionRef: ref(tDiv, "Home")}},
		QueueRefs:   []string{ref(tQueue, "Billing Queue")},
		Phones:      []*orgsyncv1.Phone{{Alias: "john.smith@acme.example/work", SourceNumber: "+13175550100", Type: "WORK"}},
		LicenseRefs: []string{ref(tLic, "cx3")},
	}
	jane := &orgsyncv1.UserConfig{
		ExternalId: extid.User(src, "jane.doe@acme.example"), SourceUserId: "5f0c2a4e-0000-4000-8000-0000000000a2",
		Name: "Jane Doe", Email: "jane.doe@acme.example", Title: "Billing Agent", Department: "Billing",
		DivisionRef: ref(tDiv, "Billing Division"), ManagerRef: john.ExternalId, ManagerEmail: john.Email,
		Skills:    []*orgsyncv1.Proficiency{prof(tSkill, "Billing Support", 4), prof(tSkill, "Technical Support", 2.5)},
		Languages: []*orgsyncv1.Proficiency{prof(tLang, "English", 5), prof(tLang, "Spanish", 3)},
		Utilization: &orgsyncv1.Utilization{Media: []*orgsyncv1.MediaCapacity{media("call", 1), media("chat", 3, "email"),
			media("email", 1)}},
		TeamRef: ref(tTeam, "Billing Team"),
		Grants: []*orgsyncv1.Grant{{RoleRef: ref(tRole, "Agent"), DivisionRef: ref(tDiv, "Billing Division")},
			{RoleRef: ref(tRole, "employee"), DivisionRef: ref(tDiv, "Home")}},
		QueueRefs:   []string{ref(tQueue, "Billing Queue"), ref(tQueue, "Support Queue")},
		Phones:      []*orgsyncv1.Phone{{Alias: "jane.doe@acme.example/work", SourceNumber: "+13175550101", Type: "WORK"}},
		LicenseRefs: []string{ref(tLic, "cx2")},
	}
	var resources []*orgsyncv1.Resource
	for _, n := range []string{"Billing", "Billing Support", "Billing Escalations", "Technical Support"} {
		resources = append(resources, res(tSkill, n))
	}
	resources = append(resources, res(tLang, "English"), res(tLang, "Spanish"), res(tTeam, "Billing Team"),
		res(tRole, "Supervisor"), res(tRole, "Agent"), res(tRole, "employee"), res(tDiv, "Billing Division"), res(tDiv, "Home"),
		res(tQueue, "Billing Queue"), res(tQueue, "Support Queue"), res(tLic, "cx2"), res(tLic, "cx3"))
	// Jane first: the plan must still put her manager first.
	return &orgsyncv1.Snapshot{SnapshotId: requestID + "|snap", RequestId: requestID, SourceOrg: src,
		TargetOrgs: []string{"t1", "t2", "t3"}, Users: []*orgsyncv1.UserConfig{jane, john}, Resources: resources}
}

func planFor(t *testing.T, snap *orgsyncv1.Snapshot, target string) *orgsyncv1.Plan {
	t.Helper()
	p, err := resolver.BuildPlan(resolver.PlanInput{Snapshot: snap, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expectDemo checks a target's John and Jane against the source configuration.
func expectDemo(t *testing.T, e *env, target string) {
	t.Helper()
	org := targetIDs[target]
	john, ok := e.sim.UserByEmail(org, "john.smith@acme.example")
	if !ok {
		t.Fatalf("%s: John missing", target)
	}
	jane, ok := e.sim.UserByEmail(org, "jane.doe@acme.example")
	if !ok {
		t.Fatalf("%s: Jane missing", target)
	}
	check := func(who string, got, want any) {
		t.Helper()
		if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
			t.Errorf("%s %s: got %s, want %s", target, who, g, w)
		}
	}
	check("John title", john.Title, "Billing Supervisor")
	check("John department", john.Department, "Billing")
	check("John division", john.Division, "Billing Division")
	check("John licenses", john.Licenses, []string{"cx3"})
	check("John skills", john.Skills, map[string]float64{"Billing": 5, "Billing Escalations": 4})
	check("John languages", john.Languages, map[string]float64{"English": 5})
	check("John utilization", jsonOf(t, john.Utilization), "{"+util("call", 1)+","+util("chat", 2)+","+util("email", 1)+"}")
	check("John team", john.Team, "Billing Team")
	check("John queues", john.Queues, []string{"Billing Queue"})
	check("John grants", john.Grants, []gcsim.FixtureGrant{{Role: "Supervisor", Division: "Billing Division"}, {Role: "employee", Division: "Home"}})
	check("John manager", john.Manager, "")

	check("Jane title", jane.Title, "Billing Agent")
	check("Jane department", jane.Department, "Billing")
	check("Jane manager", jane.Manager, "john.smith@acme.example")
	wantLic := []string{"cx2"}
	if target == "t1" {
		wantLic = []string{"cx1", "cx2"} // adopted: her own cx1 stays
	}
	check("Jane licenses", jane.Licenses, wantLic)
	check("Jane skills", jane.Skills, map[string]float64{"Billing Support": 4, "Technical Support": 2.5})
	check("Jane languages", jane.Languages, map[string]float64{"English": 5, "Spanish": 3})
	check("Jane utilization", jsonOf(t, jane.Utilization), "{"+util("call", 1)+","+util("chat", 3, "email")+","+util("email", 1)+"}")
	check("Jane team", jane.Team, "Billing Team")
	check("Jane queues", jane.Queues, []string{"Billing Queue", "Support Queue"})
	check("Jane grants", jane.Grants, []gcsim.FixtureGrant{{Role: "Agent", Division: "Billing Division"}, {Role: "employee", Division: "Home"}})

	pool := map[string]string{"t1": "+13175551", "t2": "+13175552", "t3": "+13175553"}[target]
	for _, u := range []gcsim.UserState{john, jane} {
		var phones []string
		for _, a := range u.Addresses {
			if a.MediaType == "PHONE" && a.Type == "WORK" {
				phones = append(phones, a.Address)
			}
		}
		if len(phones) != 1 || !strings.HasPrefix(phones[0], pool) {
			t.Errorf("%s %s: work phones %v, want one number of the target's pool %s0xx", target, u.Email, phones, pool)
		}
		if target == "t1" && u.Email == "jane.doe@acme.example" && (len(phones) != 1 || phones[0] != "+13175551000") {
			t.Errorf("t1 Jane: phones %v, want her own +13175551000 kept", phones)
		}
		ext := extid.User(src, u.Email)
		stamped := false
		for _, x := range u.ExternalIDs {
			stamped = stamped || (x.AuthorityName == extid.Authority && x.ExternalKey == ext)
		}
		if !stamped {
			t.Errorf("%s %s: external ids %v lack %s/%s", target, u.Email, u.ExternalIDs, extid.Authority, ext)
		}
		if e.sim.CountUsersByEmail(org, u.Email) != 1 {
			t.Errorf("%s: %d users with email %s", target, e.sim.CountUsersByEmail(org, u.Email), u.Email)
		}
	}
}

// util renders one media type as gcsim dumps agent utilization.
func util(media string, max int, interruptible ...string) string {
	it, _ := json.Marshal(append([]string{}, interruptible...))
	return fmt.Sprintf(`"%s":{"maximumCapacity":%d,"interruptableMediaTypes":%s,"includeNonAcd":false}`, media, max, it)
}
