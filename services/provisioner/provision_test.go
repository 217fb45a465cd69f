package provisioner

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCloneDemoUsersToThreeTargets covers Done-when 1–4: the reference users
// land in three targets exactly as configured in the source; the same request
// again (new id) writes nothing within ≤3 calls per user; with the bbolt file
// deleted a third run duplicates nothing; the pre-existing same-email user of
// target 1 is adopted and prefix-trap skills resolve to the exact names.
func TestCloneDemoUsersToThreeTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	svc := e.start(Config{}, nil)

	// 1. First run: everything created.
	snap := demoSnapshot("req-1")
	var plans []*orgsyncv1.Plan
	for _, tg := range []string{"t1", "t2", "t3"} {
		plans = append(plans, planFor(t, snap, tg))
	}
	e.publish(plans...)
	for _, p := range plans {
		ev := e.waitTarget(p.GetPlanId())
		if ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED || ev.GetDone() != 2 || ev.GetTotal() != 2 {
			t.Fatalf("%s: TARGET %v done %d/%d reason %q", p.GetTargetOrg(), ev.GetStatus(), ev.GetDone(), ev.GetTotal(), ev.GetReason())
		}
		users := e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER)
		if len(users) != 2 {
			t.Fatalf("%s: %d USER events, want 2", p.GetTargetOrg(), len(users))
		}
		for _, u := range users {
			if u.GetTargetUserId() == "" || u.GetApiCalls().GetReads()+u.GetApiCalls().GetWrites() == 0 {
				t.Errorf("%s: USER event %s lacks target id or api calls: %v", p.GetTargetOrg(), u.GetUserExternalId(), u)
			}
		}
		if audits := e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_AUDIT); p.GetTargetOrg() != "t1" && len(audits) != 2 {
			t.Errorf("%s: %d AUDIT events (DID choices), want 2", p.GetTargetOrg(), len(audits))
		}
		t.Logf("%s first run: %d API calls for 2 users (%v)", p.GetTargetOrg(), e.apiCalls(p.GetTargetOrg()), ev.GetApiCalls())
	}
	for _, tg := range []string{"t1", "t2", "t3"} {
		expectDemo(t, e, tg)
	}
	// 4. Adoption and prefix traps.
	if n := e.sim.CountUsersByEmail(targetIDs["t1"], "jane.doe@acme.example"); n != 1 {
		t.Errorf("t1: %d Janes, want the legacy one adopted", n)
	}
	for name, want := range map[string]int{"Billing": 1, "Bill": 1, "Billing Support": 1, "Billing Escalations": 1} {
		if n := e.sim.CountSkillsByName(targetIDs["t2"], name); n != want {
			t.Errorf("t2: %d skills named %q, want %d", n, name, want)
		}
	}
	if n := e.sim.CountSkillsByName(targetIDs["t1"], "Billing Support Tier 2"); n != 1 {
		t.Errorf("t1: prefix trap skill count %d", n)
	}
	if n := e.sim.CountSkillsByName(targetIDs["t1"], "Billing Support"); n != 1 {
		t.Errorf("t1: %d skills named Billing Support, want 1 (created, not confused with Tier 2)", n)
	}

	// 2. Same request again under a new id: zero writes, ≤3 calls per user.
	e.sim.ResetStats()
	snap2 := demoSnapshot("req-2")
	var plans2 []*orgsyncv1.Plan
	for _, tg := range []string{"t1", "t2", "t3"} {
		plans2 = append(plans2, planFor(t, snap2, tg))
	}
	e.publish(plans2...)
	for _, p := range plans2 {
		ev := e.waitTarget(p.GetPlanId())
		if ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED {
			t.Errorf("%s re-run: TARGET %v (%s)", p.GetTargetOrg(), ev.GetStatus(), ev.GetMessage())
		}
		tg := p.GetTargetOrg()
		if w := e.writes(tg); w != 0 {
			t.Errorf("%s re-run: %d writes, want 0: %v", tg, w, e.sim.Stats(targetIDs[tg]).Requests)
		}
		perUser := float64(e.apiCalls(tg)) / 2
		t.Logf("%s re-run: %.1f API calls per user (%v)", tg, perUser, e.sim.Stats(targetIDs[tg]).Requests)
		if perUser > 3 {
			t.Errorf("%s re-run: %.1f calls per user, budget 3", tg, perUser)
		}
	}

	// 3. Lose the bbolt file: a third run finds everything, duplicates nothing.
	svc.Stop(t)
	if err := os.Remove(e.state); err != nil {
		t.Fatal(err)
	}
	e.start(Config{}, nil)
	e.sim.ResetStats()
	snap3 := demoSnapshot("req-3")
	for _, tg := range []string{"t1", "t2", "t3"} {
		p := planFor(t, snap3, tg)
		e.publish(p)
		if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			t.Fatalf("%s after state loss: %v %s", tg, ev.GetStatus(), ev.GetReason())
		}
		st := e.sim.Stats(targetIDs[tg])
		if len(st.Creates) != 0 {
			t.Errorf("%s after state loss: creates %v", tg, st.Creates)
		}
		t.Logf("%s after state loss: %d calls, %d writes", tg, e.apiCalls(tg), e.writes(tg))
		expectDemo(t, e, tg)
		org, _ := e.sim.OrgState(targetIDs[tg])
		for _, n := range []string{"Billing", "Billing Support", "Billing Escalations", "Technical Support"} {
			if c := e.sim.CountSkillsByName(targetIDs[tg], n); c != 1 {
				t.Errorf("%s: %d skills %q", tg, c, n)
			}
		}
		if c := e.sim.CountTeamsByName(targetIDs[tg], "Billing Team"); c != 1 {
			t.Errorf("%s: %d teams", tg, c)
		}
		members := 0
		for _, u := range org.Users {
			if u.Team == "Billing Team" {
				members++
			}
		}
		if members != 2 {
			t.Errorf("%s: %d team members, want 2", tg, members)
		}
	}
}

// TestCloneReadsNoExternalIDPerUser: a fresh clone looks its users up with
// batched reads only (no GET /users/externalid per user). With the state
// file lost and a user's target email changed since (another email rule),
// neither the translation nor the email search finds orgsync's user: the
// clone creates one, the stamp answers 409, and the provisioner deletes
// the mistaken user and carries on with the stamped one — one user per
// external id, as before.
func TestCloneReadsNoExternalIDPerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	svc := e.start(Config{}, nil)
	const byExt = "GET /api/v2/users/externalid/{authorityName}/{externalKey}"
	org := targetIDs["t2"]

	p := planFor(t, demoSnapshot("req-1"), "t2")
	e.publish(p)
	if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("first clone: TARGET %v (%s)", ev.GetStatus(), ev.GetReason())
	}
	if n := e.sim.Stats(org).Requests[byExt]; n != 0 {
		t.Errorf("first clone: %d external id look-ups, want 0 (one email search for the plan)", n)
	}
	john, ok := e.sim.UserByEmail(org, "john.smith@acme.example")
	if !ok {
		t.Fatal("John missing after the first clone")
	}

	svc.Stop(t)
	if err := os.Remove(e.state); err != nil {
		t.Fatal(err)
	}
	e.start(Config{}, nil)
	e.sim.ResetStats()
	snap := demoSnapshot("req-2")
	const moved = "john.smith@billing.example"
	for _, u := range snap.GetUsers() {
		if u.GetEmail() == "john.smith@acme.example" {
			u.Email = moved // same source user (external id), another target email
		}
		if u.GetManagerEmail() == "john.smith@acme.example" {
			u.ManagerEmail = moved
		}
	}
	p2 := planFor(t, snap, "t2")
	e.publish(p2)
	if ev := e.waitTarget(p2.GetPlanId()); ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
		t.Fatalf("after state loss: TARGET %v (%s)", ev.GetStatus(), ev.GetReason())
	}
	st := e.sim.Stats(org)
	if st.Creates["user"] != 1 || st.Requests["DELETE /api/v2/users/{userId}"] != 1 {
		t.Errorf("after state loss: %d user(s) created, %d deleted; want the mistaken one created and deleted (%v)",
			st.Creates["user"], st.Requests["DELETE /api/v2/users/{userId}"], st.Requests)
	}
	if n := e.sim.CountUsersByEmail(org, moved); n != 0 {
		t.Errorf("after state loss: %d user(s) with the new email %s remain, want the mistaken one deleted", n, moved)
	}
	if n := e.sim.CountUsersByEmail(org, "john.smith@acme.example"); n != 1 {
		t.Errorf("after state loss: %d Johns under the old email, want the stamped one kept", n)
	}
	jane, _ := e.sim.UserByEmail(org, "jane.doe@acme.example")
	if jane.Manager != "john.smith@acme.example" {
		t.Errorf("Jane's manager %q, want the stamped John (%s)", jane.Manager, john.ID)
	}
	var rows []string
	for _, s := range e.eventsOf(p2.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		if strings.HasSuffix(s.GetStep(), "/external_id") || strings.Contains(s.GetMessage(), "by mistake") {
			rows = append(rows, s.GetStep()+": "+s.GetMessage())
		}
	}
	t.Logf("stamp steps: %v", rows)
}
