package provisioner

import (
	"context"
	"fmt"
	"testing"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// batchSnapshot is n source users with a full configuration each: two of
// five skills, one or two languages, agent utilization, one of two teams,
// one or two queues, two grants, a license, a work phone, and a manager
// (users 0 and 10 manage the others of their half).
func batchSnapshot(requestID string, n int) *orgsyncv1.Snapshot {
	skills := []string{"Billing", "Billing Support", "Billing Escalations", "Technical Support", "Sales"}
	snap := &orgsyncv1.Snapshot{SnapshotId: requestID + "|snap", RequestId: requestID, SourceOrg: src}
	for _, s := range skills {
		snap.Resources = append(snap.Resources, res(tSkill, s))
	}
	snap.Resources = append(snap.Resources, res(tLang, "English"), res(tLang, "French"), res(tTeam, "Billing Team"), res(tTeam, "Support Team"),
		res(tRole, "Agent"), res(tRole, "employee"), res(tDiv, "Billing Division"), res(tDiv, "Home"),
		res(tQueue, "Billing Queue"), res(tQueue, "Support Queue"), res(tLic, "cx2"))
	for i := range n {
		email := fmt.Sprintf("agent%02d@acme.example", i)
		u := &orgsyncv1.UserConfig{ExternalId: extid.User(src, email), Name: fmt.Sprintf("Agent %02d", i), Email: email,
			Title: "Agent", Department: "Billing", DivisionRef: ref(tDiv, "Billing Division"),
			Skills:      []*orgsyncv1.Proficiency{prof(tSkill, skills[i%5], float64(i%5+1)), prof(tSkill, skills[(i+2)%5], 2.5)},
			Languages:   []*orgsyncv1.Proficiency{prof(tLang, "English", 5)},
			Utilization: &orgsyncv1.Utilization{Media: []*orgsyncv1.MediaCapacity{media("call", 1), media("chat", int32(i%3+1), "email")}},
			TeamRef:     ref(tTeam, []string{"Billing Team", "Support Team"}[i%2]),
			Grants: []*orgsyncv1.Grant{{RoleRef: ref(tRole, "Agent"), DivisionRef: ref(tDiv, "Billing Division")},
				{RoleRef: ref(tRole, "employee"), DivisionRef: ref(tDiv, "Home")}},
			QueueRefs:   []string{ref(tQueue, "Billing Queue")},
			Phones:      []*orgsyncv1.Phone{{Alias: email + "/work", Type: "WORK"}},
			LicenseRefs: []string{ref(tLic, "cx2")},
		}
		if i%2 == 0 {
			u.Languages = append(u.Languages, prof(tLang, "French", 3))
			u.QueueRefs = append(u.QueueRefs, ref(tQueue, "Support Queue"))
		}
		if lead := i / 10 * 10; lead != i {
			lu := fmt.Sprintf("agent%02d@acme.example", lead)
			u.ManagerRef, u.ManagerEmail = extid.User(src, lu), lu
		}
		snap.Users = append(snap.Users, u)
	}
	return snap
}

// preflightIDs fills known_target_ids as the resolver's pre-flight does
// (roles, queues, divisions, licenses it checked exist).
func preflightIDs(t *testing.T, e *env, p *orgsyncv1.Plan) {
	t.Helper()
	c, err := e.reg.Client(p.GetTargetOrg())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p.KnownTargetIds = map[string]string{}
	divs, err := c.ListDivisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.GetResources() {
		switch r.GetType() {
		case tRole:
			role, ok, err := c.FindRoleByName(ctx, r.GetName())
			if err != nil || !ok {
				t.Fatalf("role %s: %v", r.GetName(), err)
			}
			p.KnownTargetIds[r.GetExternalId()] = role.ID
		case tQueue:
			q, ok, err := c.FindQueueByName(ctx, r.GetName())
			if err != nil || !ok {
				t.Fatalf("queue %s: %v", r.GetName(), err)
			}
			p.KnownTargetIds[r.GetExternalId()] = q.ID
		case tDiv:
			for _, d := range divs {
				if d.Name == r.GetName() {
					p.KnownTargetIds[r.GetExternalId()] = d.ID
				}
			}
		case tLic:
			p.KnownTargetIds[r.GetExternalId()] = r.GetName()
		}
	}
}

// TestCallBudgetTwentyUsers measures API calls per user per target for a
// full configuration of 20 users (budget 10, amortised) and for a re-run
// with nothing to change (budget 3).
func TestCallBudgetTwentyUsers(t *testing.T) {
	t.Parallel()
	const n = 20
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t3"}}, nil)

	run := func(requestID string) (*orgsyncv1.Event, float64) {
		p := planFor(t, batchSnapshot(requestID, n), "t3")
		preflightIDs(t, e, p)
		e.sim.ResetStats()
		e.publish(p)
		ev := e.waitTarget(p.GetPlanId())
		if ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED || ev.GetDone() != n {
			t.Fatalf("%s: TARGET %v done %d reason %q", requestID, ev.GetStatus(), ev.GetDone(), ev.GetReason())
		}
		calls := e.apiCalls("t3")
		reported := ev.GetApiCalls().GetReads() + ev.GetApiCalls().GetWrites()
		if int(reported) != calls {
			t.Errorf("%s: TARGET event reports %d calls, gcsim answered %d", requestID, reported, calls)
		}
		var sum float64
		for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
			sum += float64(u.GetApiCalls().GetReads() + u.GetApiCalls().GetWrites())
		}
		if d := sum - float64(calls); d > n || d < -n { // each user rounds its share
			t.Errorf("%s: USER events attribute %.0f calls, plan made %d", requestID, sum, calls)
		}
		per := float64(calls) / n
		t.Logf("%s: %d API calls for %d users = %.2f per user (%v)", requestID, calls, n, per, e.sim.Stats(targetIDs["t3"]).Requests)
		return ev, per
	}

	ev, full := run("budget-1")
	if ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Errorf("first run: %v", ev.GetStatus())
	}
	if full > 10 {
		t.Errorf("full configuration: %.2f calls per user, budget 10", full)
	}
	st, _ := e.sim.OrgState(targetIDs["t3"])
	configured := 0
	for _, u := range st.Users {
		if len(u.Skills) == 2 && u.Team != "" && len(u.Queues) >= 1 && len(u.Addresses) == 1 && len(u.Licenses) == 1 {
			configured++
		}
	}
	if configured != n {
		t.Errorf("%d of %d users fully configured", configured, n)
	}

	ev, rerun := run("budget-2")
	if ev.GetStatus() != orgsyncv1.Status_STATUS_UNCHANGED || e.writes("t3") != 0 {
		t.Errorf("re-run: %v with %d writes", ev.GetStatus(), e.writes("t3"))
	}
	if rerun > 3 {
		t.Errorf("re-run: %.2f calls per user, budget 3", rerun)
	}
}
