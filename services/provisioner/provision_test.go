package provisioner

import (
	"encoding/json"
	"os"
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
