package provisioner

import (
	"context"
	"strings"
	"testing"

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
	if _, err := c.SetUserUtilization(ctx, jane.ID, zero); err != nil {
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
