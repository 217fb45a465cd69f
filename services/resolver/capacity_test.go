package resolver_test

import (
	"strings"
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/resolver"
)

// orgDefault is a full default utilization with the given chat capacity.
func orgDefault(chat int) map[string]gcsim.FixtureMediaUtilization {
	return map[string]gcsim.FixtureMediaUtilization{
		"call": {MaximumCapacity: 1}, "callback": {MaximumCapacity: 1}, "chat": {MaximumCapacity: chat},
		"email": {MaximumCapacity: 1}, "message": {MaximumCapacity: 4},
	}
}

// TestCapacityPreflightRepairsOrRejects: John and Jane inherit the source
// default (chat 4). t1 (policy reject) gives chat 0 by default, t2 (repair)
// chat 2, t3 chat 4. t1 fails before any write with a reason naming the
// users, the media type and both capacities; t2's users get agent-level
// utilization equal to the source's, recorded as an AUDIT event; t3's plan
// is untouched.
func TestCapacityPreflightRepairsOrRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{CapacityPolicy: map[string]string{"t1": resolver.CapacityReject}}, func(fx *gcsim.Fixture) {
		for i := range fx.Orgs {
			switch fx.Orgs[i].Name {
			case "Acme Source", "Acme Target 3":
				fx.Orgs[i].Utilization = orgDefault(4)
			case "Acme Target 1":
				fx.Orgs[i].Utilization = orgDefault(0)
			case "Acme Target 2":
				fx.Orgs[i].Utilization = orgDefault(2)
			}
		}
	})
	snap := e.snapshot("req-cap", nil, "t1", "t2", "t3")
	for _, u := range snap.Users {
		u.Utilization = nil // both inherit the source org's default
	}
	e.publish(snap, snap.GetSnapshotId())
	e.settle()
	running := e.waitEvent("REQUEST RUNNING", isRequestRunning("req-cap"))
	if running.GetAttributes()["planned_targets"] != "t2,t3" || running.GetAttributes()["failed_targets"] != "t1" {
		t.Fatalf("planned %q failed %q", running.GetAttributes()["planned_targets"], running.GetAttributes()["failed_targets"])
	}

	failed := e.waitEvent("t1 TARGET FAILED", func(ev *orgsyncv1.Event) bool {
		return ev.GetOrg() == "t1" && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED
	})
	for _, want := range []string{"capacity mismatch in t1", "policy reject",
		"user john.smith@acme.example: chat capacity 4 in the source, 0 by the target's default utilization",
		"user jane.doe@acme.example: chat capacity 4 in the source, 0 by the target's default utilization"} {
		if !strings.Contains(failed.GetReason(), want) {
			t.Errorf("t1 reason %q lacks %q", failed.GetReason(), want)
		}
	}
	if strings.Contains(failed.GetReason(), "call capacity") {
		t.Errorf("t1 reason names a media type that matches: %q", failed.GetReason())
	}
	st := e.sim.Stats(targetOrgIDs["t1"])
	for op, n := range st.Requests {
		if !strings.HasPrefix(op, "GET ") && op != "POST /oauth/token" && n > 0 {
			t.Errorf("t1 got a write before the rejection: %s x%d", op, n)
		}
	}

	plans := e.plans()
	if len(plans["t1"]) != 0 {
		t.Errorf("t1 got a plan")
	}
	p2, p3 := plans["t2"][0], plans["t3"][0]
	if len(p2.GetCapacityRepairs()) != 2 {
		t.Fatalf("t2 repairs %v", p2.GetCapacityRepairs())
	}
	for _, up := range p2.GetUsers() {
		var chat int32 = -1
		for _, m := range up.GetDesired().GetUtilization().GetMedia() {
			if m.GetMediaType() == "chat" {
				chat = m.GetMaximumCapacity()
			}
		}
		if chat != 4 {
			t.Errorf("t2 %s: desired chat capacity %d, want the source's 4", up.GetDesired().GetEmail(), chat)
		}
	}
	d := p2.GetCapacityRepairs()[0].GetDiffs()
	if len(d) != 1 || d[0].GetField() != "utilization.chat.maximumCapacity" || d[0].GetWant() != "4" || d[0].GetGot() != "2" {
		t.Errorf("t2 repair diffs %v", d)
	}
	audit := e.waitEvent("t2 capacity AUDIT", func(ev *orgsyncv1.Event) bool {
		return ev.GetOrg() == "t2" && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_AUDIT
	})
	if audit.GetAttributes()["decision"] != "capacity_repair" || !strings.Contains(audit.GetAttributes()["users"], "jane.doe@acme.example") {
		t.Errorf("audit %v", audit)
	}
	if len(p3.GetCapacityRepairs()) != 0 || p3.GetUsers()[0].GetDesired().GetUtilization() != nil {
		t.Errorf("t3 matches the source yet was repaired: %v", p3.GetCapacityRepairs())
	}
	if len(p3.GetSourceOrgUtilization().GetMedia()) != 5 {
		t.Errorf("t3 plan lacks the source default utilization: %v", p3.GetSourceOrgUtilization())
	}
}

func TestConfigRejectsUnknownCapacityPolicy(t *testing.T) {
	t.Parallel()
	err := resolver.Config{CapacityPolicy: map[string]string{"t1": "ignore"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `CapacityPolicy[t1]: "ignore"`) {
		t.Errorf("Validate: %v", err)
	}
}
