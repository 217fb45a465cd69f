package provisioner

import (
	"context"
	"testing"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestDryRunComparesActualState is `orgsync plan` at the provisioner (issue
// 12, defect 4): after a clone, a dry run of the same configuration is
// UNCHANGED for every user; after an admin takes John out of his queue and
// lowers a skill behind orgsync's back (components a clone trusts from the
// baseline), the dry run reads them back as a sweep does and plans exactly
// those two differences, for John only. Dry runs write nothing — no API
// write, no audit entry — and every event they publish says dry_run=true.
func TestDryRunComparesActualState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	e.start(Config{Orgs: []string{"t1"}}, nil)
	clone := planFor(t, demoSnapshot("req-clone"), "t1")
	e.publish(clone)
	if ev := e.waitTarget(clone.GetPlanId()); ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED {
		t.Fatalf("clone: TARGET %v %s", ev.GetStatus(), ev.GetReason())
	}
	john := extid.User(src, "john.smith@acme.example")

	// dryRun plans the demo configuration again, dry, and returns its
	// planned steps (user → step → diffs) and USER statuses.
	dryRun := func(requestID string, want orgsyncv1.Status) (map[string]map[string][]*orgsyncv1.FieldDiff, map[string]orgsyncv1.Status) {
		t.Helper()
		snap := demoSnapshot(requestID)
		snap.Options = &orgsyncv1.CloneOptions{DryRun: true}
		p := planFor(t, snap, "t1")
		before := e.writes("t1")
		e.publish(p)
		if ev := e.waitTarget(p.GetPlanId()); ev.GetStatus() != want {
			t.Errorf("%s: TARGET %v (%s), want %v", requestID, ev.GetStatus(), ev.GetMessage(), want)
		}
		if w := e.writes("t1") - before; w != 0 {
			t.Errorf("%s: dry run wrote %d times", requestID, w)
		}
		if a := e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_AUDIT); len(a) != 0 {
			t.Errorf("%s: dry run wrote %d audit entries, first: %s", requestID, len(a), a[0].GetMessage())
		}
		planned := map[string]map[string][]*orgsyncv1.FieldDiff{}
		users := map[string]orgsyncv1.Status{}
		for _, kind := range []orgsyncv1.EventKind{orgsyncv1.EventKind_EVENT_KIND_STEP, orgsyncv1.EventKind_EVENT_KIND_USER, orgsyncv1.EventKind_EVENT_KIND_TARGET} {
			for _, ev := range e.eventsOf(p.GetPlanId(), kind) {
				if ev.GetAttributes()[DryRunAttribute] != "true" {
					t.Errorf("%s: %v event %s not marked as a dry run", requestID, kind, ev.GetStep())
				}
				switch {
				case kind == orgsyncv1.EventKind_EVENT_KIND_USER:
					users[ev.GetUserExternalId()] = ev.GetStatus()
				case kind == orgsyncv1.EventKind_EVENT_KIND_STEP && ev.GetStatus() == orgsyncv1.Status_STATUS_PLANNED:
					if planned[ev.GetUserExternalId()] == nil {
						planned[ev.GetUserExternalId()] = map[string][]*orgsyncv1.FieldDiff{}
					}
					planned[ev.GetUserExternalId()][ev.GetStep()] = ev.GetDiffs()
				}
			}
		}
		return planned, users
	}

	planned, users := dryRun("req-plan-1", orgsyncv1.Status_STATUS_UNCHANGED)
	if len(planned) != 0 || len(users) != 2 {
		t.Errorf("dry run after the clone planned %v; users %v, want 2 unchanged", planned, users)
	}
	for u, s := range users {
		if s != orgsyncv1.Status_STATUS_UNCHANGED {
			t.Errorf("dry run after the clone: %s is %v, want UNCHANGED", u, s)
		}
	}

	// An admin edits John in t1.
	ctx := context.Background()
	c, err := e.reg.Client("t1")
	if err != nil {
		t.Fatal(err)
	}
	gu, _, err := c.FindUserByEmail(ctx, "john.smith@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := c.FindQueueByName(ctx, "Billing Queue")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveQueueMembers(ctx, q.ID, []string{gu.ID}); err != nil {
		t.Fatal(err)
	}
	billing, _, err := c.FindSkillByName(ctx, "Billing")
	if err != nil {
		t.Fatal(err)
	}
	esc, _, err := c.FindSkillByName(ctx, "Billing Escalations")
	if err != nil {
		t.Fatal(err)
	}
	// Billing 5 → 1; Billing Escalations kept at 4.
	if err := c.ReplaceUserRoutingSkills(ctx, gu.ID, []genesys.SkillProficiency{{ID: billing.ID, Proficiency: 1}, {ID: esc.ID, Proficiency: 4}}); err != nil {
		t.Fatal(err)
	}

	planned, users = dryRun("req-plan-2", orgsyncv1.Status_STATUS_PLANNED)
	if users[john] != orgsyncv1.Status_STATUS_PLANNED || len(planned) != 1 || len(planned[john]) != 2 {
		t.Errorf("after the edit: users %v, planned steps %v; want John PLANNED with routing and queues only", users, planned)
	}
	for step, want := range map[string]string{"routing": `skills[Billing] want "5" got "1"`, "queues": `queues[Billing Queue] want "member" got ""`} {
		var got string
		if diffs := planned[john][step]; len(diffs) == 1 {
			got = diffText(diffs[0])
		}
		if got != want {
			t.Errorf("planned %s of John: %q, want %q (all: %v)", step, got, want, planned[john])
		}
	}
}

func diffText(d *orgsyncv1.FieldDiff) string {
	return d.GetField() + " want " + quote(d.GetWant()) + " got " + quote(d.GetGot())
}

func quote(s string) string { return `"` + s + `"` }
