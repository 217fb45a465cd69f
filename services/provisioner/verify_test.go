package provisioner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestVerifyCatchesAgentWithZeroCapacity: Jane already exists in t1 with
// agent-level utilization of zero for every media type. In the source she
// inherits the org default (call 1, chat 4, email 1), the same as t1's,
// so nothing rewrites her utilization — the post-bind verification must
// read it back and fail her with the field-level differences, while John
// (agent-level utilization applied) verifies.
func TestVerifyCatchesAgentWithZeroCapacity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{})
	ctx := context.Background()
	c, err := e.reg.Client("t1")
	if err != nil {
		t.Fatal(err)
	}
	jane, ok := e.sim.UserByEmail(targetIDs["t1"], "jane.doe@acme.example")
	if !ok {
		t.Fatal("fixture: Jane missing in t1")
	}
	if _, err := c.AssignLicenses(ctx, []genesys.LicenseAssignment{{LicenseID: "cx2", UserIDsAdd: []string{jane.ID}}}); err != nil {
		t.Fatal(err)
	}
	zero := genesys.Utilization{Utilization: map[string]genesys.MediaUtilization{
		"call": {MaximumCapacity: 0}, "chat": {MaximumCapacity: 0}, "email": {MaximumCapacity: 0}}}
	if err := c.SetUserUtilization(ctx, jane.ID, zero); err != nil {
		t.Fatal(err)
	}
	e.start(Config{Orgs: []string{"t1"}}, nil)

	snap := demoSnapshot("verify-zero")
	snap.Users[0].Utilization = nil // Jane inherits the source default
	p := planFor(t, snap, "t1")
	p.SourceOrgUtilization = &orgsyncv1.Utilization{Media: []*orgsyncv1.MediaCapacity{media("call", 1), media("chat", 4), media("email", 1)}}
	preflightIDs(t, e, p)
	e.publish(p)
	ev := e.waitTarget(p.GetPlanId())
	if ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED || ev.GetReason() != "1 of 2 users failed" {
		t.Fatalf("TARGET %v %q", ev.GetStatus(), ev.GetReason())
	}
	var verifyFailed *orgsyncv1.Event
	johnVerified := false
	for _, s := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		if s.GetStep() != "verify" {
			continue
		}
		switch {
		case s.GetStatus() == orgsyncv1.Status_STATUS_FAILED && s.GetTargetUserId() == jane.ID:
			verifyFailed = s
		case s.GetStatus() == orgsyncv1.Status_STATUS_UNCHANGED && strings.Contains(s.GetUserExternalId(), "john.smith"):
			johnVerified = strings.Contains(s.GetMessage(), "capacity call=1 chat=2 email=1 (agent level)")
			if !johnVerified {
				t.Errorf("John's verification message %q", s.GetMessage())
			}
		}
	}
	if !johnVerified {
		t.Error("John was not verified")
	}
	if verifyFailed == nil {
		t.Fatal("no failed verify step for Jane")
	}
	got := map[string]string{}
	for _, d := range verifyFailed.GetDiffs() {
		got[d.GetField()] = d.GetWant() + "→" + d.GetGot()
	}
	want := map[string]string{"utilization.call.maximumCapacity": "1→0", "utilization.chat.maximumCapacity": "4→0", "utilization.email.maximumCapacity": "1→0"}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("diff %s = %q, want %q (all: %v)", f, got[f], w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("diffs %v: skills and queues were bound, only capacity should differ", got)
	}
	if !strings.Contains(verifyFailed.GetReason(), "cannot receive work") || !strings.Contains(verifyFailed.GetReason(), "utilization.chat.maximumCapacity want \"4\" got \"0\"") {
		t.Errorf("reason %q", verifyFailed.GetReason())
	}
	for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
		if u.GetTargetUserId() == jane.ID && (u.GetStatus() != orgsyncv1.Status_STATUS_FAILED || !strings.Contains(u.GetReason(), "step verify")) {
			t.Errorf("Jane's USER event %v %q", u.GetStatus(), u.GetReason())
		}
	}
}

// TestVerifyReadsLargeQueuesPerUser: VERIFY proves queue memberships with
// whichever read costs fewer calls. With pages of 2, a plan of 20 users in
// queues of 40 and 20 members is cheaper read per user (20 calls) than
// listed (30 pages). The first plan lists (the queues' sizes are unknown),
// the second reads each user's queues. A user taken out of a queue behind
// orgsync's back, between the queues step and VERIFY, is missing from its
// own list; the queue is then listed after all and the user fails
// verification with the membership as the reason.
func TestVerifyReadsLargeQueuesPerUser(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, gcsim.Config{}, func(c *genesys.OrgConfig) { c.PageSize = 2 })
	const victim = "agent25@acme.example"
	var removed sync.Once
	c, err := e.reg.Client("t3")
	if err != nil {
		t.Fatal(err)
	}
	e.start(Config{Orgs: []string{"t3"}}, func(ctx context.Context, org, planID, userExt, step string, st orgsyncv1.Status) {
		if step != "queues" || userExt != extid.User(src, victim) {
			return
		}
		removed.Do(func() {
			u, ok, err := c.FindUserByEmail(ctx, victim)
			q, qok, qerr := c.FindQueueByName(ctx, "Billing Queue")
			if err != nil || !ok || qerr != nil || !qok {
				t.Errorf("find %s (%v %v) or Billing Queue (%v %v)", victim, ok, err, qok, qerr)
				return
			}
			if err := c.RemoveQueueMembers(ctx, q.ID, []string{u.ID}); err != nil {
				t.Errorf("remove %s from Billing Queue: %v", victim, err)
			}
		})
	})
	all := batchSnapshot("verify-queues", 40)
	for _, u := range all.Users {
		u.Phones = nil // t3's DID pool is for 20 users; phones are not what this is about
	}
	const (
		listOp    = "GET /api/v2/routing/queues/{queueId}/members"
		perUserOp = "GET /api/v2/users/{userId}/queues"
	)
	run := func(users []*orgsyncv1.UserConfig) (*orgsyncv1.Plan, *orgsyncv1.Event, map[string]int) {
		snap := proto.Clone(all).(*orgsyncv1.Snapshot)
		snap.Users = users
		snap.RequestId += "-" + users[0].GetEmail()
		snap.SnapshotId = snap.RequestId + "|snap"
		p := planFor(t, snap, "t3")
		preflightIDs(t, e, p)
		e.sim.ResetStats()
		e.publish(p)
		return p, e.waitTarget(p.GetPlanId()), e.sim.Stats(targetIDs["t3"]).Requests
	}

	_, ev, req := run(all.Users[:20])
	if ev.GetStatus() != orgsyncv1.Status_STATUS_CHANGED || ev.GetDone() != 20 {
		t.Fatalf("first plan: %v, %d done, %q", ev.GetStatus(), ev.GetDone(), ev.GetReason())
	}
	if req[listOp] == 0 || req[perUserOp] != 0 {
		t.Errorf("first plan (queue sizes unknown): %d member list pages, %d user queue lists; want listings only", req[listOp], req[perUserOp])
	}

	p, ev, req := run(all.Users[20:])
	if req[perUserOp] != 20 {
		t.Errorf("second plan: %d user queue lists, want one per user (20)", req[perUserOp])
	}
	// Only the queue the victim left is listed: 40 members less the victim
	// plus the end of the listing, 2 per page.
	if req[listOp] < 1 || req[listOp] > 21 {
		t.Errorf("second plan: %d member list pages, want only Billing Queue's (≤ 21)", req[listOp])
	}
	if ev.GetStatus() != orgsyncv1.Status_STATUS_FAILED {
		t.Errorf("second plan: %v, want FAILED (the victim)", ev.GetStatus())
	}
	for _, u := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_USER) {
		if failed := u.GetStatus() == orgsyncv1.Status_STATUS_FAILED; failed != (u.GetUserExternalId() == extid.User(src, victim)) {
			t.Errorf("user %s: %v %q", u.GetUserExternalId(), u.GetStatus(), u.GetReason())
		}
	}
	var verifyDiffs []string
	for _, s := range e.eventsOf(p.GetPlanId(), orgsyncv1.EventKind_EVENT_KIND_STEP) {
		if s.GetStep() != "verify" {
			continue
		}
		if s.GetUserExternalId() == extid.User(src, victim) {
			for _, d := range s.GetDiffs() {
				verifyDiffs = append(verifyDiffs, d.GetField()+"="+d.GetGot())
			}
		} else if s.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			t.Errorf("verify failed %s: %s", s.GetUserExternalId(), s.GetReason())
		}
	}
	if fmt.Sprint(verifyDiffs) != "[queues[Billing Queue]=not a member]" {
		t.Errorf("victim's verify diffs %v, want [queues[Billing Queue]=not a member]", verifyDiffs)
	}
}
