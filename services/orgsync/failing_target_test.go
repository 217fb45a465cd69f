package orgsync

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/orgconfig"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestOneFailingTargetStaysAlone is the user's clone into three targets
// when one of them is down (its API answers 503 to everything) and another
// has a wrong client secret: the healthy target is cloned without waiting
// for the others, each bad target ends failed with its cause, and the bad
// targets are the only ones retried or failed.
func TestOneFailingTargetStaysAlone(t *testing.T) {
	t.Parallel()
	const wrongSecret = "rotated-secret-target3"
	h := startHarnessConfig(t, DevConfig{Sim: e2eSim(),
		EditOrgs: func(_ string, o map[string]orgconfig.Org) {
			c := o["target3"]
			c.ClientSecret = wrongSecret
			o["target3"] = c
		},
		// A short retry budget for the down target (3 deliveries of the
		// snapshot instead of 5); the mechanics are the default ones.
		ServiceArgs: map[string][]string{"resolver": {"--max-deliver", "3"}},
	})
	if err := h.dev.Sim.SetFaults(h.orgID("target2"), gcsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	rep, _ := h.clone(CloneSpec{SourceOrg: "source", Users: e2eUsers, Targets: e2eTargets, RequestedBy: t.Name()})
	if rep.Status != ReportFailed {
		t.Errorf("report status %s, want failed (two targets failed)", rep.Status)
	}
	if tr := rep.Target("target1"); tr.Status != "changed" || tr.Counts["changed"] != len(e2eUsers) {
		t.Errorf("target1: %s, counts %v; want changed for all %d users\n%s", tr.Status, tr.Counts, len(e2eUsers), reportJSON(rep))
	}
	for target, want := range map[string][]string{
		"target2": {"pre-flight of target2", "503 service.unavailable"},
		"target3": {"pre-flight of target3", "401", "invalid_client"},
	} {
		tr := rep.Target(target)
		if tr.Status != "failed" || tr.Reason == "" {
			t.Errorf("%s: %s with reason %q, want failed with its cause", target, tr.Status, tr.Reason)
			continue
		}
		t.Logf("%s: %s", target, tr.Reason)
		assertReason(t, tr.Reason, want...)
		if strings.Contains(tr.Reason, wrongSecret) {
			t.Errorf("%s: the reason shows the client secret", target)
		}
	}
	if n := SimWrites(h.stats("target2")) + SimWrites(h.stats("target3")); n != 0 {
		t.Errorf("%d writes in the failed targets", n)
	}

	// Order, not time: target1's plan and target3's failure were out before
	// target2's first retry, and target1 was cloned before target2's retry
	// budget ran out.
	evs := h.requestEvents(rep.RequestID)
	at := func(org string, status orgsyncv1.Status) int {
		return slices.IndexFunc(evs, func(e *orgsyncv1.Event) bool {
			return e.GetKind() == orgsyncv1.EventKind_EVENT_KIND_TARGET && e.GetOrg() == org && e.GetStatus() == status
		})
	}
	planned, changed := at("target1", orgsyncv1.Status_STATUS_RUNNING), at("target1", orgsyncv1.Status_STATUS_CHANGED)
	retry, failed2, failed3 := at("target2", orgsyncv1.Status_STATUS_RUNNING), at("target2", orgsyncv1.Status_STATUS_FAILED), at("target3", orgsyncv1.Status_STATUS_FAILED)
	if planned < 0 || failed3 < 0 || retry < 0 || planned > retry || failed3 > retry {
		t.Errorf("target1 planned at event %d, target3 failed at %d, target2's first retry at %d: want both before the retry", planned, failed3, retry)
	}
	if changed < 0 || failed2 < 0 || changed > failed2 {
		t.Errorf("target1 changed at event %d, target2 failed at %d: target1 waited for target2", changed, failed2)
	} else if len(evs) > 0 {
		t0 := evs[0].GetTime().AsTime()
		t.Logf("target1 changed after %s, target3 failed after %s, target2 failed after %s",
			evs[changed].GetTime().AsTime().Sub(t0).Round(time.Millisecond), evs[failed3].GetTime().AsTime().Sub(t0).Round(time.Millisecond),
			evs[failed2].GetTime().AsTime().Sub(t0).Round(time.Millisecond))
	}
	for _, e := range evs {
		if e.GetKind() == orgsyncv1.EventKind_EVENT_KIND_REQUEST && e.GetStatus() == orgsyncv1.Status_STATUS_FAILED {
			t.Errorf("the whole request failed: %s", e.GetReason())
		}
		if e.GetOrg() == "target3" && e.GetStatus() == orgsyncv1.Status_STATUS_RUNNING {
			t.Errorf("target3 was retried: %s", e.GetMessage())
		}
	}
}

// requestEvents returns the events of requestID stored in EVENTS so far, in
// stream order.
func (h *harness) requestEvents(requestID string) []*orgsyncv1.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	end, err := h.client.eventsEnd(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*orgsyncv1.Event
	if err := followEvents(ctx, h.client.JS, "", 1, end, func(e *orgsyncv1.Event) bool {
		if e.GetRequestId() == requestID {
			out = append(out, e)
		}
		return false
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}
