package provisioner

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/service"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestCrashMidPlanResumes kills the provisioner (cancels its context) right
// after its 6th state-changing step; a new provisioner on the same bbolt file
// finishes the plan from the journal, with nothing created twice.
func TestCrashMidPlanResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	var changed atomic.Int32
	var first *natsxtest.Running
	var firstMu sync.Mutex
	crashed := make(chan struct{})
	first = e.start(Config{Orgs: []string{"t3"}}, func(ctx context.Context, org, planID, user, step string, st orgsyncv1.Status) {
		if st == orgsyncv1.Status_STATUS_CHANGED && changed.Add(1) == 6 {
			firstMu.Lock()
			defer firstMu.Unlock()
			first.Cancel() // abrupt: in-flight calls of other users fail with context canceled
			close(crashed)
		}
	})
	p := planFor(t, demoSnapshot("req-crash"), "t3")
	e.publish(p)
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("the plan never reached its 6th change")
	}
	first.Stop(t)
	if ev := e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_TARGET); len(ev) != 0 {
		t.Fatalf("plan reported finished before the crash: %v", ev)
	}
	journaled := len(e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP))

	e.start(Config{Orgs: []string{"t3"}}, nil)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED || ev.GetDone() != 2 {
		t.Fatalf("after restart: TARGET %v done %d reason %q", ev.GetStatus(), ev.GetDone(), ev.GetReason())
	}
	expectDemo(t, e, "t3")
	st := e.sim.Stats(targetIDs["t3"])
	if st.Creates["user"] != 2 || st.Creates["skill"] != 4 || st.Creates["team"] != 1 || st.Creates["language"] != 1 {
		t.Errorf("creates %v, want 2 users, 4 skills, 1 team, 1 language (Spanish)", st.Creates)
	}
	t.Logf("%d steps journaled before the crash; %d step events in all", journaled, len(e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP)))
}

// TestConcurrentPlansShareUsersAndSkills runs two plans of one org at once
// whose users overlap (Jane) and whose skills overlap: every skill is created
// once, and no user is worked on by both plans at the same time.
func TestConcurrentPlansShareUsersAndSkills(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{Latency: 2 * time.Millisecond})
	type span struct{ first, last time.Time }
	var mu sync.Mutex
	spans := map[string]map[string]*span{} // user → plan → span of its steps
	e.start(Config{Orgs: []string{"t3"}, Consumer: service.Consumer{Concurrency: 4}}, func(_ context.Context, _, planID, user, _ string, _ orgsyncv1.Status) {
		mu.Lock()
		defer mu.Unlock()
		if spans[user] == nil {
			spans[user] = map[string]*span{}
		}
		now := time.Now()
		if s := spans[user][planID]; s == nil {
			spans[user][planID] = &span{now, now}
		} else {
			s.last = now
		}
	})
	a := planFor(t, demoSnapshot("req-a"), "t3")
	snapB := demoSnapshot("req-b")
	x := &orgsyncv1.UserConfig{ExternalId: extid.User(src, "xavier@acme.example"), Name: "Xavier", Email: "xavier@acme.example",
		DivisionRef: ref(tDiv, "Billing Division"), LicenseRefs: []string{ref(tLic, "cx2")},
		Skills: []*orgsyncv1.Proficiency{prof(tSkill, "Billing", 2), prof(tSkill, "Technical Support", 3)}}
	snapB.Users = []*orgsyncv1.UserConfig{snapB.Users[0], x} // Jane + Xavier
	b := planFor(t, snapB, "t3")
	e.publish(a, b)
	for _, p := range []*orgsyncv1.Plan{a, b} {
		if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			t.Fatalf("%s: %v %s", p.GetPlanId(), ev.GetStatus(), ev.GetReason())
		}
	}
	for _, n := range []string{"Billing", "Billing Support", "Billing Escalations", "Technical Support"} {
		if c := e.sim.CountSkillsByName(targetIDs["t3"], n); c != 1 {
			t.Errorf("%d skills %q", c, n)
		}
	}
	if c := e.sim.Stats(targetIDs["t3"]).Creates["skill"]; c != 4 {
		t.Errorf("%d skill creates, want 4", c)
	}
	if c := e.sim.CountUsersByEmail(targetIDs["t3"], "jane.doe@acme.example"); c != 1 {
		t.Errorf("%d Janes", c)
	}
	mu.Lock()
	defer mu.Unlock()
	jane := spans[extid.User(src, "jane.doe@acme.example")]
	if len(jane) != 2 {
		t.Fatalf("Jane worked on by %d plans, want 2", len(jane))
	}
	var ss []*span
	for _, s := range jane {
		ss = append(ss, s)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].first.Before(ss[j].first) })
	if !ss[0].last.Before(ss[1].first) {
		t.Errorf("Jane was worked on by both plans at once: %v–%v and %v–%v", ss[0].first, ss[0].last, ss[1].first, ss[1].last)
	}
}

// TestBadPlansFailWithReason: an undecodable plan and a plan needing a role
// the target lacks are terminated with a failed TARGET event naming the
// reason, and nothing is written.
func TestBadPlansFailWithReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t2"}, Consumer: service.Consumer{Backoff: []time.Duration{10 * time.Millisecond}}}, nil)

	if _, err := e.js.Publish(context.Background(), "orgsync.plan.t2", []byte("\xff not protobuf")); err != nil {
		t.Fatal(err)
	}
	snap := demoSnapshot("req-bad")
	snap.Resources = append(snap.Resources, res(tRole, "Astronaut"))
	snap.Users[0].Grants = append(snap.Users[0].Grants, &orgsyncv1.Grant{RoleRef: ref(tRole, "Astronaut"), DivisionRef: ref(tDiv, "Home")})
	p := planFor(t, snap, "t2")
	e.publish(p)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED ||
		!strings.Contains(ev.GetReason(), `role "Astronaut" does not exist in target t2`) {
		t.Errorf("missing role: TARGET %v reason %q", ev.GetStatus(), ev.GetReason())
	}
	var undecodable bool
	natsxtest.Eventually(t, 30*time.Second, "failed TARGET event of the undecodable plan", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && ev.GetOrg() == "t2" && strings.Contains(ev.GetReason(), "decode") {
				undecodable = true
			}
		}
		return undecodable
	})
	if w := e.writes("t2"); w != 0 {
		t.Errorf("%d writes in t2: %v", w, e.sim.Stats(targetIDs["t2"]).Requests)
	}
}

// TestDryRunWritesNothing: a dry-run plan reports per user what would change
// (PLANNED steps with diffs) and writes nothing.
func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t1"}}, nil)
	snap := demoSnapshot("req-dry")
	snap.Options = &orgsyncv1.CloneOptions{DryRun: true}
	p := planFor(t, snap, "t1")
	e.publish(p)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_PLANNED {
		t.Fatalf("TARGET %v %s", ev.GetStatus(), ev.GetReason())
	}
	if w := e.writes("t1"); w != 0 {
		t.Errorf("dry run wrote %d times: %v", w, e.sim.Stats(targetIDs["t1"]).Requests)
	}
	planned := map[string]int{}
	for _, s := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		if s.GetStatus() == orgsyncv1.Status_STATUS_PLANNED && len(s.GetDiffs()) > 0 {
			planned[s.GetStep()]++
		}
	}
	// John is new, Jane (legacy) is adopted: both need routing, grants,
	// queues, team; only John needs creating and a phone.
	for step, want := range map[string]int{"ensure-user": 1, "routing": 2, "grants": 2, "queues": 2, "team": 2, "phone": 1, "license": 2} {
		if planned[step] != want {
			t.Errorf("planned %s diffs for %d users, want %d (all: %v)", step, planned[step], want, planned)
		}
	}
	if _, ok := e.sim.UserByEmail(targetIDs["t1"], "john.smith@acme.example"); ok {
		t.Error("dry run created John")
	}
}

// TestUserFailureDoesNotStopOthers: policy FAIL refuses the pre-existing
// same-email Jane of target 1; John is still provisioned, the plan is acked
// and its TARGET event is FAILED with the counts.
func TestUserFailureDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t1"}}, nil)
	snap := demoSnapshot("req-policy")
	snap.Options = &orgsyncv1.CloneOptions{ExistingUsers: orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_FAIL}
	p := planFor(t, snap, "t1")
	e.publish(p)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED || ev.GetDone() != 2 || ev.GetReason() != "1 of 2 users failed" {
		t.Fatalf("TARGET %v done %d reason %q", ev.GetStatus(), ev.GetDone(), ev.GetReason())
	}
	for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
		jane := u.GetUserExternalId() == extid.User(src, "jane.doe@acme.example")
		if jane != (u.GetStatus() == orgsyncv1.Status_STATUS_FAILED) || (jane && !strings.Contains(u.GetReason(), "policy is FAIL")) {
			t.Errorf("USER %s: %v %q", u.GetUserExternalId(), u.GetStatus(), u.GetReason())
		}
	}
	john, ok := e.sim.UserByEmail(targetIDs["t1"], "john.smith@acme.example")
	if !ok || john.Team != "Billing Team" || len(john.Skills) != 2 {
		t.Errorf("John not provisioned: %+v", john)
	}
	legacy, _ := e.sim.UserByEmail(targetIDs["t1"], "jane.doe@acme.example")
	if legacy.Name != "Jane Doe (legacy)" || len(legacy.Skills) != 0 || len(legacy.ExternalIDs) != 0 {
		t.Errorf("refused Jane was touched: %+v", legacy)
	}
}

// TestEventualConsistencyAfterCreate: users invisible (404) and inactive for
// a while after creation are waited for, not failed.
func TestEventualConsistencyAfterCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{NotFoundAfterCreate: 150 * time.Millisecond, ActivationDelay: 300 * time.Millisecond})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	p := planFor(t, demoSnapshot("req-ec"), "t3")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	expectDemo(t, e, "t3")
}

// TestEndedPlanLeavesNoJournal: the journal lets a plan that stopped midway
// resume (TestCrashMidPlanResumes); once the plan has ended nothing reads
// it, and kept it grew the state file by a record per user and plan — a
// third of the file at 10,000 users × 20 orgs. A plan that ended, done or
// failed for good, leaves none.
func TestEndedPlanLeavesNoJournal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	svc := e.start(Config{Orgs: []string{"t3"}}, nil)
	p := planFor(t, demoSnapshot("req-journal"), "t3")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("plan: %v %q", ev.GetStatus(), ev.GetReason())
	}
	// The journal is dropped before the plan is acknowledged.
	natsxtest.Eventually(t, 30*time.Second, "the plan acknowledged", func() bool {
		c, err := e.js.Consumer(context.Background(), natsx.StreamPlans, "provisioner-t3")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= 1 && info.NumAckPending == 0
	})
	svc.Stop(t)
	s, err := OpenStore(e.state)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.journalLen("t3", p.GetPlanId()); err != nil || n != 0 {
		t.Errorf("ended plan: %d journal records left (%v), want none", n, err)
	}
	if id, ok, err := s.TargetID("t3", p.GetUsers()[0].GetDesired().GetExternalId()); err != nil || !ok || id == "" {
		t.Errorf("the id translation went with the journal: %q %v %v", id, ok, err)
	}
}
