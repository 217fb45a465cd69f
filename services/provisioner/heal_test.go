package provisioner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/service"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// Tests of the id cache healing: the bbolt translations (and the ids a plan
// carries) are a cache of the target; objects deleted behind orgsync's back
// are looked up again, re-created when orgsync may, and the plan goes on.

// admin calls the target's Platform API as an administrator would (its own
// token, straight HTTP) and returns the decoded JSON answer, if any.
func (e *env) admin(target, method, path string, body ...string) map[string]any {
	e.t.Helper()
	status, out := e.adminTry(target, method, path, body...)
	if status >= 300 {
		e.t.Fatalf("%s %s: %d", method, path, status)
	}
	return out
}

// adminTry is admin's request, answering its status instead of failing.
func (e *env) adminTry(target, method, path string, body ...string) (int, map[string]any) {
	e.t.Helper()
	n := strings.TrimPrefix(target, "t")
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, e.simURL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("target"+n+"-client", "target"+n+"-secret")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	e.adminDo(req, &tok)
	req, _ = http.NewRequest(method, e.simURL+path, strings.NewReader(strings.Join(body, "")))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode < 300 && resp.StatusCode != http.StatusNoContent {
		_ = json.NewDecoder(resp.Body).Decode(&out)
	}
	return resp.StatusCode, out
}

func (e *env) adminDo(req *http.Request, out any) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		e.t.Fatalf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	}
	if resp.StatusCode != http.StatusNoContent {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
}

// adminFind returns the id of the entity named name in a listing path.
func (e *env) adminFind(target, path, name string) string {
	e.t.Helper()
	page := e.admin(target, http.MethodGet, path+"?pageSize=100&name="+url.QueryEscape(name))
	ents, _ := page["entities"].([]any)
	for _, x := range ents {
		if m, _ := x.(map[string]any); m["name"] == name {
			return m["id"].(string)
		}
	}
	e.t.Fatalf("%s: no %s named %q", target, path, name)
	return ""
}

// cloneOK runs a clone plan of the demo snapshot in target and requires it
// to end CHANGED or UNCHANGED.
func (e *env) cloneOK(requestID, target string, edit func(*orgsyncv1.Plan)) *orgsyncv1.Event {
	e.t.Helper()
	p := planFor(e.t, demoSnapshot(requestID), target)
	if edit != nil {
		edit(p)
	}
	e.publish(p)
	ev := e.waitTarget(p.GetPlanId())
	if st := ev.GetStatus(); st != orgsyncv1.Status_STATUS_CHANGED && st != orgsyncv1.Status_STATUS_UNCHANGED {
		var why []string
		for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
			why = append(why, u.GetUserExternalId()+": "+u.GetReason())
		}
		e.t.Fatalf("%s in %s: TARGET %v %q; users: %s", requestID, target, st, ev.GetReason(), strings.Join(why, "; "))
	}
	return ev
}

// expectNoDuplicates requires one of each demo object orgsync creates in
// target, and one user per demo email and per external id.
func expectNoDuplicates(t *testing.T, e *env, target string) {
	t.Helper()
	org := targetIDs[target]
	for _, n := range []string{"Billing", "Billing Support", "Billing Escalations", "Technical Support"} {
		if c := e.sim.CountSkillsByName(org, n); c != 1 {
			t.Errorf("%s: %d skills %q, want 1", target, c, n)
		}
	}
	for _, n := range []string{"English", "Spanish"} {
		if c := e.sim.CountLanguagesByName(org, n); c != 1 {
			t.Errorf("%s: %d languages %q, want 1", target, c, n)
		}
	}
	if c := e.sim.CountTeamsByName(org, "Billing Team"); c != 1 {
		t.Errorf("%s: %d teams \"Billing Team\", want 1", target, c)
	}
	st, _ := e.sim.OrgState(org)
	for _, email := range []string{"john.smith@acme.example", "jane.doe@acme.example"} {
		if c := e.sim.CountUsersByEmail(org, email); c != 1 {
			t.Errorf("%s: %d users %s, want 1", target, c, email)
		}
		stamped := 0
		for _, u := range st.Users {
			for _, x := range u.ExternalIDs {
				if x.AuthorityName == extid.Authority && x.ExternalKey == extid.User(src, email) {
					stamped++
				}
			}
		}
		if stamped != 1 {
			t.Errorf("%s: %d users stamped %s, want 1", target, stamped, extid.User(src, email))
		}
	}
}

// TestObjectsDeletedBehindOurBackAreRebuilt: after a clone, an administrator
// deletes the team, a skill and a language orgsync created, and a cloned
// user, and removes the other user from a queue. The next clone re-creates
// what is gone (one of each, no duplicate), the deleted user included, and
// configures both users fully; the queue membership removed by hand is drift
// of a user orgsync configured, restored by the next sweep (`orgsync
// reconcile`): a clone trusts its baseline for memberships (README, S3).
func TestObjectsDeletedBehindOurBackAreRebuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	e.cloneOK("req-del-1", "t3", nil)
	expectDemo(t, e, "t3")

	e.admin("t3", http.MethodDelete, "/api/v2/teams/"+e.adminFind("t3", "/api/v2/teams", "Billing Team"))
	e.admin("t3", http.MethodDelete, "/api/v2/routing/skills/"+e.adminFind("t3", "/api/v2/routing/skills", "Technical Support"))
	e.admin("t3", http.MethodDelete, "/api/v2/routing/languages/"+e.adminFind("t3", "/api/v2/routing/languages", "Spanish"))
	john, _ := e.sim.UserByEmail(targetIDs["t3"], "john.smith@acme.example")
	e.admin("t3", http.MethodDelete, "/api/v2/users/"+john.ID)
	jane, _ := e.sim.UserByEmail(targetIDs["t3"], "jane.doe@acme.example")
	e.admin("t3", http.MethodDelete, "/api/v2/routing/queues/"+e.adminFind("t3", "/api/v2/routing/queues", "Support Queue")+"/members/"+jane.ID)

	e.cloneOK("req-del-2", "t3", nil)
	expectNoDuplicates(t, e, "t3")
	if got, _ := e.sim.UserByEmail(targetIDs["t3"], "john.smith@acme.example"); got.ID == john.ID {
		t.Errorf("John still has the deleted user's id %s", john.ID)
	}
	if got, _ := e.sim.UserByEmail(targetIDs["t3"], "jane.doe@acme.example"); got.ID != jane.ID {
		t.Errorf("Jane is a new user %s, want %s kept", got.ID, jane.ID)
	}

	e.cloneOK("req-del-3", "t3", func(p *orgsyncv1.Plan) { p.Trigger = orgsyncv1.Trigger_TRIGGER_SWEEP })
	expectDemo(t, e, "t3")
	expectNoDuplicates(t, e, "t3")
}

// TestGcsimRestartUnderKeptStore: `orgsync dev` restarted — the targets are
// new (everything orgsync created is gone), the provisioner restarts on its
// kept bbolt file — and the next clone converges with no duplicate.
func TestGcsimRestartUnderKeptStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	svc := e.start(Config{Orgs: []string{"t1", "t3"}}, nil)
	for _, tg := range []string{"t1", "t3"} {
		e.cloneOK("req-rs-1-"+tg, tg, nil)
	}

	svc.Stop(t)
	e.restartSim()
	e.start(Config{Orgs: []string{"t1", "t3"}}, nil)
	for _, tg := range []string{"t1", "t3"} {
		e.cloneOK("req-rs-2-"+tg, tg, nil)
		t.Logf("%s after the restart: %d API calls (%d writes)", tg, e.apiCalls(tg), e.writes(tg))
		expectDemo(t, e, tg)
		expectNoDuplicates(t, e, tg)
	}
	// The healed translations hold: a third clone changes nothing.
	e.sim.ResetStats()
	for _, tg := range []string{"t1", "t3"} {
		if ev := e.cloneOK("req-rs-3-"+tg, tg, nil); ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED {
			t.Errorf("%s third clone: %v, want UNCHANGED", tg, ev.GetStatus())
		}
		if w := e.writes(tg); w != 0 {
			t.Errorf("%s third clone: %d writes: %v", tg, w, e.sim.Stats(targetIDs[tg]).Requests)
		}
	}
}

// TestHalfConfiguredUserIsFinished: a plan fails mid-way (the team step
// answers 503), and while it waits for its retry an administrator deletes
// the half-configured John. The retry (same plan, a restarted provisioner,
// same bbolt file) re-creates John and runs every step for him again — the
// journal's "done" steps were about the deleted user — and the plan ends
// with both users fully configured.
func TestHalfConfiguredUserIsFinished(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	var hits atomic.Int32
	failing := make(chan struct{})
	fault := func(r *http.Request) int {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v2/teams/") && strings.HasSuffix(r.URL.Path, "/members") {
			if hits.Add(1) == 1 {
				close(failing)
			}
			return http.StatusServiceUnavailable
		}
		return 0
	}
	e.fault.Store(&fault)
	cfg := Config{Orgs: []string{"t3"}, Consumer: service.Consumer{AckWait: 3 * time.Second, MaxDeliver: -1, Backoff: []time.Duration{50 * time.Millisecond}}}
	first := e.start(cfg, nil)
	p := planFor(t, demoSnapshot("req-half"), "t3")
	e.publish(p)
	select {
	case <-failing:
	case <-time.After(60 * time.Second):
		t.Fatal("the plan never reached the team step")
	}
	first.Stop(t)
	if ev := e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_TARGET); len(ev) != 0 {
		t.Fatalf("plan ended despite the fault: %v", ev)
	}
	john, ok := e.sim.UserByEmail(targetIDs["t3"], "john.smith@acme.example")
	if !ok || len(john.Skills) == 0 || john.Team != "" {
		t.Fatalf("John is not half-configured before the retry: %+v", john)
	}
	e.admin("t3", http.MethodDelete, "/api/v2/users/"+john.ID)
	e.fault.Store(nil)

	e.start(cfg, nil)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		var why []string
		for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
			why = append(why, u.GetUserExternalId()+": "+u.GetReason())
		}
		t.Fatalf("retry: TARGET %v %q; users: %s", ev.GetStatus(), ev.GetReason(), strings.Join(why, "; "))
	}
	expectDemo(t, e, "t3")
	expectNoDuplicates(t, e, "t3")
	// The baseline stored is about the new John: the next clone trusts it
	// and changes nothing.
	e.sim.ResetStats()
	if ev := e.cloneOK("req-half-2", "t3", nil); ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED {
		t.Errorf("clone after the retry: %v, want UNCHANGED", ev.GetStatus())
	}
}

// TestStalePreflightIDsInThePlanAreHealed: the ids the resolver's
// pre-flight put in a plan (cached there for a minute) name objects that
// were deleted and re-created meanwhile — a queue, a role, a division, a
// license; and one queue is gone for good. The users are cloned with the
// objects' current ids; the user who wants the vanished queue fails saying
// so, the other is unaffected.
func TestStalePreflightIDsInThePlanAreHealed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	staleIDs := func(p *orgsyncv1.Plan) {
		p.KnownTargetIds = map[string]string{}
		for i, r := range p.GetResources() {
			if mustPreexist := r.GetType() == tQueue || r.GetType() == tRole || r.GetType() == tDiv || r.GetType() == tLic; mustPreexist {
				p.KnownTargetIds[r.GetExternalId()] = fmt.Sprintf("0badc0de-0000-4000-8000-%012d", i)
			}
		}
	}
	p := planFor(t, demoSnapshot("req-known"), "t3")
	staleIDs(p)
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	expectDemo(t, e, "t3")

	// Night Queue: deleted after pre-flight, never re-created.
	snap := demoSnapshot("req-known-2")
	snap.Resources = append(snap.Resources, res(tQueue, "Night Queue"))
	john := snap.Users[1]
	john.QueueRefs = append(john.QueueRefs, ref(tQueue, "Night Queue"))
	p = planFor(t, snap, "t3")
	staleIDs(p)
	e.publish(p)
	e.waitTarget(p.GetPlanId())
	for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
		isJohn := u.GetUserExternalId() == john.GetExternalId()
		if isJohn != (u.GetStatus() == orgsyncv1.Status_STATUS_FAILED) ||
			(isJohn && !strings.Contains(u.GetReason(), `queue "Night Queue" does not exist in target t3`)) {
			t.Errorf("USER %s: %v %q", u.GetUserExternalId(), u.GetStatus(), u.GetReason())
		}
	}
}

// TestDeletedManagerOutsideThePlan: Jane's manager John, cloned earlier, is
// deleted in the target; a clone of Jane alone forgets John's translation
// instead of failing on it (manager left unset, saying why), and a clone of
// both re-creates John and makes him Jane's manager again.
func TestDeletedManagerOutsideThePlan(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	e.cloneOK("req-mgr-1", "t3", nil)
	john, _ := e.sim.UserByEmail(targetIDs["t3"], "john.smith@acme.example")
	e.admin("t3", http.MethodDelete, "/api/v2/users/"+john.ID)

	snap := demoSnapshot("req-mgr-2")
	snap.Users = snap.Users[:1] // Jane
	p := planFor(t, snap, "t3")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED {
		t.Fatalf("Jane alone: TARGET %v %q, want UNCHANGED (nothing of hers to change)", ev.GetStatus(), ev.GetReason())
	}
	var reason string
	for _, s := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		if s.GetStep() == "profile" || strings.HasSuffix(s.GetStep(), "/profile") {
			reason = s.GetReason()
		}
	}
	if !strings.Contains(reason, "manager john.smith@acme.example does not exist in t3") {
		t.Errorf("profile step reason %q, want the manager named as missing", reason)
	}

	e.cloneOK("req-mgr-3", "t3", nil)
	expectDemo(t, e, "t3")
	expectNoDuplicates(t, e, "t3")
}

// TestManagerInAnEarlierPartIsWaitedFor: a request in parts puts managers in
// earlier parts, but the parts' plans run concurrently. When Jane's part
// reaches her profile before John's part has created him, her plan is
// retried until he exists, never finished with the manager left unset.
func TestManagerInAnEarlierPartIsWaitedFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	snap := demoSnapshot("req-parts")
	john, jane := snap.Users[1], snap.Users[0]
	if jane.GetManagerRef() != john.GetExternalId() {
		t.Fatalf("fixture: Jane's manager is %q, want John", jane.GetManagerRef())
	}
	part := func(n int32, u *orgsyncv1.UserConfig) *orgsyncv1.Plan {
		s := proto.Clone(snap).(*orgsyncv1.Snapshot)
		s.Users, s.Part, s.Parts = []*orgsyncv1.UserConfig{u}, n, 2
		return planFor(t, s, "t3")
	}
	first, second := part(1, john), part(2, jane)
	e.publish(second)
	natsxtest.Eventually(t, 30*time.Second, "Jane's part waited for her activation", func() bool {
		for _, s := range e.eventsOf(second.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
			if strings.HasSuffix(s.GetStep(), "wait-active") {
				return true
			}
		}
		return false
	})
	e.publish(first)
	for _, p := range []*orgsyncv1.Plan{first, second} {
		if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
			t.Fatalf("%s: TARGET %v %q, want CHANGED", p.GetPlanId(), ev.GetStatus(), ev.GetReason())
		}
	}
	gJohn, _ := e.sim.UserByEmail(targetIDs["t3"], john.GetEmail())
	gJane, _ := e.sim.UserByEmail(targetIDs["t3"], jane.GetEmail())
	if gJane.Manager != gJohn.Email {
		t.Errorf("Jane's manager in t3 is %q, want John (%s)", gJane.Manager, gJohn.Email)
	}
}

// TestDeactivatedUserIsReactivated: a user deactivated in the target (a
// sync set's onRemove: deactivate, or an admin) and cloned again is shown
// by plan as "~ state: inactive → active" and made active by the clone,
// instead of every later clone waiting for an activation that never comes.
func TestDeactivatedUserIsReactivated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)
	e.cloneOK("req-react-1", "t3", nil)
	org := targetIDs["t3"]
	jane, _ := e.sim.UserByEmail(org, "jane.doe@acme.example")
	var cur map[string]any
	natsxtest.Eventually(t, 10*time.Second, "Jane readable through the API (404 window after create)", func() bool {
		var status int
		status, cur = e.adminTry("t3", http.MethodGet, "/api/v2/users/"+jane.ID)
		return status == http.StatusOK
	})
	e.admin("t3", http.MethodPatch, "/api/v2/users/"+jane.ID, fmt.Sprintf(`{"state":"inactive","version":%v}`, cur["version"]))
	if u, _ := e.sim.UserByEmail(org, "jane.doe@acme.example"); u.State != "inactive" {
		t.Fatalf("setup: Jane is %q, want inactive", u.State)
	}

	dry := planFor(t, demoSnapshot("req-react-dry"), "t3")
	dry.DryRun = true
	e.publish(dry)
	if ev := e.waitTarget(dry.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_PLANNED {
		t.Fatalf("dry run: TARGET %v %q, want PLANNED (Jane is inactive)", ev.GetStatus(), ev.GetReason())
	}
	var shown bool
	for _, s := range e.eventsOf(dry.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		for _, d := range s.GetDiffs() {
			shown = shown || (s.GetUserExternalId() == extid.User(src, "jane.doe@acme.example") && d.GetField() == "state" && d.GetGot() == "inactive" && d.GetWant() == "active")
		}
	}
	if !shown {
		t.Error("the dry run does not show Jane's state: inactive → active")
	}

	e.cloneOK("req-react-2", "t3", nil)
	if u, _ := e.sim.UserByEmail(org, "jane.doe@acme.example"); u.State != "active" || u.ID != jane.ID {
		t.Fatalf("after the clone Jane is %q (%s), want the same user active", u.State, u.ID)
	}
	expectNoDuplicates(t, e, "t3")
}
