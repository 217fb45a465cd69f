package resolver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/resolver"
)

const (
	johnID = "5f0c2a4e-0000-4000-8000-0000000000a1"
	janeID = "5f0c2a4e-0000-4000-8000-0000000000a2"
)

var targetOrgIDs = map[string]string{
	"t1": "5f0c2a4e-0000-4000-8000-000000000011",
	"t2": "5f0c2a4e-0000-4000-8000-000000000012",
	"t3": "5f0c2a4e-0000-4000-8000-000000000013",
}

// fastRetry keeps the client's own retries of injected faults short; the
// mechanics are those of the default policy.
var fastRetry = genesys.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

type env struct {
	t       *testing.T
	js      jetstream.JetStream
	sim     *gcsim.Sim
	clients *orgs.Registry

	events *natsxtest.EventLog // every event published on EVENTS
}

// newEnv starts NATS, gcsim with the demo fixture (edited by editFixture
// when non-nil) and a resolver with cfg.
func newEnv(t *testing.T, cfg resolver.Config, editFixture func(*gcsim.Fixture)) *env {
	t.Helper()
	_, js := natsxtest.Start(t)
	sim, err := gcsim.New(gcsim.Config{RateLimitPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	fx := gcsim.DemoFixture()
	if editFixture != nil {
		editFixture(fx)
	}
	if err := sim.LoadFixture(fx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	rec := apispec.NewValidatingTransport(http.DefaultTransport)
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			// The real API answers 501 not.implemented, which the spec
			// subset documents for no operation (gcsim injects it).
			if v.Status == http.StatusNotImplemented {
				continue
			}
			t.Errorf("SPEC VIOLATION: %v", v)
		}
	})
	org := func(id, secret string) genesys.OrgConfig {
		return genesys.OrgConfig{APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: id, ClientSecret: secret, RateLimit: 1000, Burst: 1000}
	}
	clients := orgs.NewRegistry(map[string]genesys.OrgConfig{
		"src": org("source-client", "source-secret"),
		"t1":  org("target1-client", "target1-secret"),
		"t2":  org("target2-client", "target2-secret"),
		"t3":  org("target3-client", "target3-secret"),
	}, orgs.WithTransport(rec), orgs.WithClientOptions(genesys.WithRetryPolicy(fastRetry)))
	cfg.Backoff = []time.Duration{50 * time.Millisecond}
	svc, err := resolver.New(cfg, resolver.Deps{JS: js, Clients: clients, Events: events.New(js), Logger: telemetry.NopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	natsxtest.RunService(t, "resolver", svc)
	e := &env{t: t, js: js, sim: sim, clients: clients}
	e.events = natsxtest.FollowEvents(t, js)
	return e
}

func (e *env) eventsWhere(pred func(*orgsyncv1.Event) bool) []*orgsyncv1.Event {
	return e.events.Find(pred)
}

// waitEvent waits for an event matching pred and returns it.
func (e *env) waitEvent(what string, pred func(*orgsyncv1.Event) bool) *orgsyncv1.Event {
	e.t.Helper()
	return e.events.Wait(e.t, 15*time.Second, what, pred)
}

// snapshot extracts John and Jane from the source (the real extractor
// code) into a snapshot for targets.
func (e *env) snapshot(requestID string, opts *orgsyncv1.CloneOptions, targets ...string) *orgsyncv1.Snapshot {
	e.t.Helper()
	c, err := e.clients.Client("src")
	if err != nil {
		e.t.Fatal(err)
	}
	sel := []*orgsyncv1.UserSelector{
		{Selector: &orgsyncv1.UserSelector_UserId{UserId: johnID}},
		{Selector: &orgsyncv1.UserSelector_UserId{UserId: janeID}},
	}
	ex, err := extractor.Extract(context.Background(), c, "src", sel, opts.GetInclude())
	if err != nil {
		e.t.Fatal(err)
	}
	snap, err := extractor.NewSnapshot(requestID, "src", targets, opts, orgsyncv1.Trigger_TRIGGER_CLONE, ex, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return snap
}

func (e *env) publish(snap *orgsyncv1.Snapshot, msgID string) {
	e.t.Helper()
	subj, _ := natsx.SnapshotSubject(snap.GetSourceOrg())
	if err := natsx.Publish(context.Background(), e.js, subj, msgID, snap); err != nil {
		e.t.Fatal(err)
	}
}

// settle waits until the resolver handled every snapshot.
func (e *env) settle() *jetstream.ConsumerInfo {
	e.t.Helper()
	var info *jetstream.ConsumerInfo
	natsxtest.Eventually(e.t, 15*time.Second, "resolver settled", func() bool {
		c, err := e.js.Consumer(context.Background(), natsx.StreamSnapshots, resolver.Durable)
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == e.streamState(natsx.StreamSnapshots).Msgs
	})
	return info
}

func (e *env) streamState(stream string) jetstream.StreamState {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State
}

// plans returns the plans published per target.
func (e *env) plans() map[string][]*orgsyncv1.Plan {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), natsx.StreamPlans)
	if err != nil {
		e.t.Fatal(err)
	}
	st := e.streamState(natsx.StreamPlans)
	out := map[string][]*orgsyncv1.Plan{}
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			e.t.Fatal(err)
		}
		var p orgsyncv1.Plan
		if err := proto.Unmarshal(m.Data, &p); err != nil {
			e.t.Fatal(err)
		}
		out[strings.TrimPrefix(m.Subject, "orgsync.plan.")] = append(out[strings.TrimPrefix(m.Subject, "orgsync.plan.")], &p)
	}
	return out
}

func isRequestRunning(requestID string) func(*orgsyncv1.Event) bool {
	return func(ev *orgsyncv1.Event) bool {
		return ev.GetRequestId() == requestID && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_REQUEST && ev.GetStatus() == orgsyncv1.Status_STATUS_RUNNING
	}
}

func TestSnapshotPlansEveryTargetWithKnownIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{EmailMapping: map[string]*orgsyncv1.EmailMapping{
		"t2": {ToDomain: "t2.example"},
		"t3": {ToDomain: "config.example"}, // overridden by the request
	}}, nil)
	opts := &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t3": {FromDomain: "acme.example", ToDomain: "t3.example"}}}
	snap := e.snapshot("req-1", opts, "t1", "t2", "t3")
	e.publish(snap, snap.GetSnapshotId())
	e.settle()
	running := e.waitEvent("REQUEST RUNNING", isRequestRunning("req-1"))
	if running.GetOrg() != "src" || running.GetAttributes()["planned_targets"] != "t1,t2,t3" || running.GetAttributes()["failed_targets"] != "" ||
		running.GetTotal() != 3 {
		t.Errorf("running event %v", running)
	}

	plans := e.plans()
	wantEmail := map[string]string{"t1": "jane.doe@acme.example", "t2": "jane.doe@t2.example", "t3": "jane.doe@t3.example"}
	for target, orgID := range targetOrgIDs {
		if len(plans[target]) != 1 {
			t.Fatalf("%s: %d plans, want 1", target, len(plans[target]))
		}
		p := plans[target][0]
		if p.GetPlanId() != "req-1|"+target || p.GetTargetOrg() != target || len(p.GetUsers()) != 2 {
			t.Errorf("%s: plan %s for %s with %d users", target, p.GetPlanId(), p.GetTargetOrg(), len(p.GetUsers()))
		}
		if got := p.GetUsers()[1].GetDesired().GetEmail(); got != wantEmail[target] {
			t.Errorf("%s: Jane's email %q, want %q", target, got, wantEmail[target])
		}
		// Every pre-existing resource is known, with the target's own id.
		c, _ := e.clients.Client(target)
		ctx := context.Background()
		for _, r := range p.GetResources() {
			id, known := p.GetKnownTargetIds()[r.GetExternalId()]
			var want string
			switch r.GetType() {
			case orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:
				q, _, _ := c.FindQueueByName(ctx, r.GetName())
				want = q.ID
			case orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE:
				ro, _, _ := c.FindRoleByName(ctx, r.GetName())
				want = ro.ID
			case orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION:
				divs, _ := c.ListDivisions(ctx)
				for _, d := range divs {
					if d.Name == r.GetName() {
						want = d.ID
					}
				}
			case orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE:
				want = r.GetName()
			default:
				if known {
					t.Errorf("%s: %s is created by orgsync, yet listed as known", target, r.GetExternalId())
				}
				continue
			}
			if !known || id != want || want == "" {
				t.Errorf("%s (%s): known id of %s = %q (known %v), want %q", target, orgID, r.GetExternalId(), id, known, want)
			}
		}
		if n := len(p.GetKnownTargetIds()); n != 9 { // 2 divisions, 2 licenses, 3 roles, 2 queues
			t.Errorf("%s: %d known ids, want 9: %v", target, n, p.GetKnownTargetIds())
		}
		if stats := e.sim.Stats(orgID); stats.Creates["user"]+stats.Creates["skill"]+stats.Creates["team"]+stats.Creates["language"] != 0 {
			t.Errorf("%s: the resolver created something: %v", target, stats.Creates)
		}
	}

	// Replay: the same snapshot again (other message id, as after the
	// SNAPSHOTS dedupe window) publishes nothing new.
	plansBefore, eventsBefore := e.streamState(natsx.StreamPlans).Msgs, e.streamState(natsx.StreamEvents).Msgs
	e.publish(snap, snap.GetSnapshotId()+"-replay")
	info := e.settle()
	if got := e.streamState(natsx.StreamPlans).Msgs; got != plansBefore || got != 3 {
		t.Errorf("PLANS holds %d messages after the replay, want %d", got, plansBefore)
	}
	if got := e.streamState(natsx.StreamEvents).Msgs; got != eventsBefore {
		t.Errorf("EVENTS grew from %d to %d on a replay", eventsBefore, got)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d redeliveries", info.NumRedelivered)
	}
}

func TestPreflightFailsOnlyTheTargetLackingQueueAndRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{}, func(fx *gcsim.Fixture) {
		for i := range fx.Orgs {
			o := &fx.Orgs[i]
			if o.Name != "Acme Target 3" {
				continue
			}
			// "Billing Queue Overflow" stays: it must not be taken for "Billing Queue".
			o.Queues = slices.DeleteFunc(o.Queues, func(q gcsim.FixtureQueue) bool { return q.Name == "Billing Queue" })
			o.Roles = slices.DeleteFunc(o.Roles, func(r gcsim.FixtureRole) bool { return r.Name == "Supervisor" })
		}
	})
	snap := e.snapshot("req-pf", nil, "t1", "t2", "t3")
	e.publish(snap, snap.GetSnapshotId())
	e.settle()
	running := e.waitEvent("REQUEST RUNNING", isRequestRunning("req-pf"))
	if running.GetAttributes()["planned_targets"] != "t1,t2" || running.GetAttributes()["failed_targets"] != "t3" {
		t.Errorf("running event attributes %v", running.GetAttributes())
	}
	failed := e.eventsWhere(func(ev *orgsyncv1.Event) bool {
		return ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED
	})
	if len(failed) != 1 || failed[0].GetOrg() != "t3" || failed[0].GetPlanId() != "req-pf|t3" || failed[0].GetRequestId() != "req-pf" {
		t.Fatalf("failed TARGET events %v, want one for t3", failed)
	}
	reason := failed[0].GetReason()
	t.Logf("t3 failure reason: %s", reason)
	for _, want := range []string{`ROLE "Supervisor"`, `QUEUE "Billing Queue"`} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not name %s", reason, want)
		}
	}
	if strings.Contains(reason, "Agent") || strings.Contains(reason, "Support Queue") {
		t.Errorf("reason %q names objects that exist", reason)
	}
	plans := e.plans()
	if len(plans["t1"]) != 1 || len(plans["t2"]) != 1 || len(plans["t3"]) != 0 {
		t.Errorf("plans per target: t1 %d, t2 %d, t3 %d; want 1, 1, 0", len(plans["t1"]), len(plans["t2"]), len(plans["t3"]))
	}
	if st := e.streamState(natsx.StreamPlans); st.Subjects["orgsync.plan.t3"] != 0 {
		t.Errorf("%d messages on orgsync.plan.t3", st.Subjects["orgsync.plan.t3"])
	}
}

func TestPlanBuildingErrorFailsOnlyThatTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{}, nil)
	snap := e.snapshot("req-bad-map", nil, "t1", "t2", "t3")
	// A rule the extractor would have refused, as a replayed old snapshot
	// or another producer might carry it.
	snap.Options = &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t2": {ToDomain: "not a domain"}}}
	e.publish(snap, "bad-map")
	e.settle()
	ev := e.waitEvent("t2 failed", func(ev *orgsyncv1.Event) bool {
		return ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED
	})
	if ev.GetOrg() != "t2" || !strings.Contains(ev.GetReason(), `to_domain "not a domain" is not a valid domain`) {
		t.Errorf("failed event %v", ev)
	}
	running := e.waitEvent("REQUEST RUNNING", isRequestRunning("req-bad-map"))
	if running.GetAttributes()["planned_targets"] != "t1,t3" || running.GetAttributes()["failed_targets"] != "t2" {
		t.Errorf("running attributes %v", running.GetAttributes())
	}
	plans := e.plans()
	if len(plans["t1"]) != 1 || len(plans["t2"]) != 0 || len(plans["t3"]) != 1 {
		t.Errorf("plans: %d/%d/%d", len(plans["t1"]), len(plans["t2"]), len(plans["t3"]))
	}

	// A management cycle is a plan-building error too (every target).
	cyc := e.snapshot("req-cycle", nil, "t1")
	cyc.Users[0].ManagerRef = extid.User("src", "jane.doe@acme.example")
	e.publish(cyc, "cycle")
	e.settle()
	ev = e.waitEvent("cycle failed", func(ev *orgsyncv1.Event) bool {
		return ev.GetRequestId() == "req-cycle" && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET
	})
	if ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED || !strings.Contains(ev.GetReason(), "management cycle") {
		t.Errorf("cycle event %v", ev)
	}
}

func TestBadSnapshotIsTerminatedWithReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{}, nil)
	if _, err := e.js.Publish(context.Background(), "orgsync.snapshot.src", []byte{0xff, 0x00, 0xff}, jetstream.WithMsgID("garbage")); err != nil {
		t.Fatal(err)
	}
	e.publish(&orgsyncv1.Snapshot{SnapshotId: "x", RequestId: "req-empty", SourceOrg: "src"}, "empty")
	info := e.settle()
	for _, want := range []string{"malformed snapshot", "invalid snapshot x: no target orgs; no users"} {
		e.waitEvent(want, func(ev *orgsyncv1.Event) bool {
			return ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED && strings.Contains(ev.GetReason(), want)
		})
	}
	if info.NumRedelivered != 0 || e.streamState(natsx.StreamPlans).Msgs != 0 {
		t.Errorf("redelivered %d, plans %d", info.NumRedelivered, e.streamState(natsx.StreamPlans).Msgs)
	}
}

func TestConfigRejectsInvalidEmailRule(t *testing.T) {
	t.Parallel()
	err := resolver.Config{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t1": {FromDomain: "a.example"}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "EmailMapping[t1]: to_domain is empty") {
		t.Fatalf("Validate = %v", err)
	}
}
