package resolver_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/service"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/resolver"
)

func targetEvent(requestID, org string, status orgsyncv1.Status) func(*orgsyncv1.Event) bool {
	return func(ev *orgsyncv1.Event) bool {
		return ev.GetRequestId() == requestID && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET &&
			ev.GetOrg() == org && ev.GetStatus() == status
	}
}

// TestOneFailingTargetDoesNotHoldBackTheOthers: t2's API answers 503 to
// everything and t3's client secret was rotated. t1 is planned at the
// snapshot's first delivery, t3 fails at once naming invalid_client, and
// only t2 is retried (with the snapshot's redeliveries) until it fails
// naming the 503; no target is left without an outcome.
func TestOneFailingTargetDoesNotHoldBackTheOthers(t *testing.T) {
	t.Parallel()
	// LookupTTL < 0: a re-resolved t1 would show in its request counts.
	e := newEnv(t, resolver.Config{Consumer: service.Consumer{MaxDeliver: 3}, LookupTTL: -1}, func(fx *gcsim.Fixture) {
		for i := range fx.Orgs {
			if fx.Orgs[i].Name == "Acme Target 3" {
				fx.Orgs[i].Clients[0].ClientSecret = "rotated-target3-secret"
			}
		}
	})
	snap := e.snapshot("req-iso", nil, "t1", "t2", "t3")
	if err := e.sim.SetFaults(targetOrgIDs["t2"], gcsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	e.publish(snap, snap.GetSnapshotId())
	running := e.waitEvent("REQUEST RUNNING", isRequestRunning("req-iso"))
	info := e.settle()

	if running.GetAttributes()["planned_targets"] != "t1" || running.GetAttributes()["failed_targets"] != "t2,t3" {
		t.Errorf("running attributes %v, want t1 planned, t2 and t3 failed", running.GetAttributes())
	}
	plans := e.plans()
	if len(plans["t1"]) != 1 || len(plans["t2"]) != 0 || len(plans["t3"]) != 0 {
		t.Errorf("plans per target: t1 %d, t2 %d, t3 %d; want 1, 0, 0", len(plans["t1"]), len(plans["t2"]), len(plans["t3"]))
	}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"t2", []string{"pre-flight of t2", "503 service.unavailable", "the last of 3 attempts at this target"}},
		{"t3", []string{"pre-flight of t3", "401", "invalid_client"}},
	} {
		failed := e.eventsWhere(targetEvent("req-iso", tc.target, orgsyncv1.Status_STATUS_FAILED))
		if len(failed) != 1 {
			t.Errorf("%s: %d failed events, want 1", tc.target, len(failed))
			continue
		}
		reason := failed[0].GetReason()
		t.Logf("%s: %s", tc.target, reason)
		for _, w := range tc.want {
			if !strings.Contains(reason, w) {
				t.Errorf("%s: reason %q lacks %q", tc.target, reason, w)
			}
		}
		if strings.Contains(reason, "rotated-target3-secret") {
			t.Errorf("%s: reason leaks the secret", tc.target)
		}
	}

	// Order, not time: t1's plan and t3's failure were out before t2's
	// first retry, and only t2 was retried.
	all := e.eventsWhere(func(ev *orgsyncv1.Event) bool { return ev.GetRequestId() == "req-iso" })
	index := func(match func(*orgsyncv1.Event) bool) int { return slices.IndexFunc(all, match) }
	planned := index(targetEvent("req-iso", "t1", orgsyncv1.Status_STATUS_RUNNING))
	t3failed := index(targetEvent("req-iso", "t3", orgsyncv1.Status_STATUS_FAILED))
	t2retry := index(targetEvent("req-iso", "t2", orgsyncv1.Status_STATUS_RUNNING))
	if planned < 0 || t3failed < 0 || t2retry < 0 || planned > t2retry || t3failed > t2retry {
		t.Errorf("event order: t1 planned at %d, t3 failed at %d, t2's first retry at %d; want both before the retry", planned, t3failed, t2retry)
	}
	if n := len(e.eventsWhere(targetEvent("req-iso", "t2", orgsyncv1.Status_STATUS_RUNNING))); n != 2 {
		t.Errorf("t2: %d retry events, want 2 (deliveries 1 and 2 of 3)", n)
	}
	if n := len(e.eventsWhere(targetEvent("req-iso", "t3", orgsyncv1.Status_STATUS_RUNNING))); n != 0 {
		t.Errorf("t3: %d running events, want none (failed at once)", n)
	}
	if got := e.sim.Stats(targetOrgIDs["t1"]).Requests["GET /api/v2/authorization/divisions"]; got != 1 {
		t.Errorf("t1: divisions listed %d times, want once (not re-resolved on redelivery)", got)
	}
	if info.Delivered.Consumer != 3 {
		t.Errorf("snapshot delivered %d times, want 3 (MaxDeliver)", info.Delivered.Consumer)
	}
}

// TestPermanentAPIErrorIsNotRetried: a 501 not.implemented is final. In a
// target it fails that target at the first delivery (one request, no
// retry) while the others are planned; in the source org it terminates the
// snapshot at its first delivery with the reason.
func TestPermanentAPIErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, resolver.Config{}, nil)
	if err := e.sim.SetFaults(targetOrgIDs["t2"], gcsim.Faults{ErrorRate: 1, ErrorStatus: 501}); err != nil {
		t.Fatal(err)
	}
	snap := e.snapshot("req-501", nil, "t1", "t2")
	e.publish(snap, snap.GetSnapshotId())
	e.waitEvent("REQUEST RUNNING", isRequestRunning("req-501"))
	failed := e.waitEvent("t2 failed", targetEvent("req-501", "t2", orgsyncv1.Status_STATUS_FAILED))
	if r := failed.GetReason(); !strings.Contains(r, "501 not.implemented") || !strings.Contains(r, "pre-flight of t2") {
		t.Errorf("t2 reason %q", r)
	}
	if st := e.sim.Stats(targetOrgIDs["t2"]); st.Status[501] != 1 {
		t.Errorf("t2: %d requests answered 501, want 1 (no retry): %v", st.Status[501], st.Requests)
	}
	if plans := e.plans(); len(plans["t1"]) != 1 || len(plans["t2"]) != 0 {
		t.Errorf("plans: t1 %d, t2 %d", len(plans["t1"]), len(plans["t2"]))
	}

	// The source org: the resolver reads its default utilization when a
	// user inherits it.
	src := e.snapshot("req-501-src", nil, "t1")
	for _, u := range src.GetUsers() {
		u.Utilization = nil
	}
	srcOrg := "5f0c2a4e-0000-4000-8000-000000000001"
	if err := e.sim.SetFaults(srcOrg, gcsim.Faults{ErrorRate: 1, ErrorStatus: 501}); err != nil {
		t.Fatal(err)
	}
	e.publish(src, src.GetSnapshotId())
	rejected := e.waitEvent("request failed", func(ev *orgsyncv1.Event) bool {
		return ev.GetRequestId() == "req-501-src" && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_REQUEST && ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED
	})
	if r := rejected.GetReason(); !strings.Contains(r, "501 not.implemented") || !strings.Contains(r, "default utilization of source org src") {
		t.Errorf("source reason %q", r)
	}
	info := e.settle()
	if info.Delivered.Consumer != 2 {
		t.Errorf("%d deliveries of 2 snapshots, want 2 (none redelivered)", info.Delivered.Consumer)
	}
	if st := e.sim.Stats(srcOrg); st.Status[501] != 1 {
		t.Errorf("source: %d requests answered 501, want 1", st.Status[501])
	}
	if got := e.streamState(natsx.StreamPlans).Subjects["orgsync.plan.t1"]; got != 1 {
		t.Errorf("%d plans for t1, want only the first request's", got)
	}
}
