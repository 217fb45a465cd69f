package orgsync

import (
	"maps"
	"strings"
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TestReportCountsFollowRedelivery: a user's final status can change (a
// failed plan retried succeeds), events arrive twice, and a late "running"
// must not undo a final status; the target's counts and calls always equal
// what its users say.
func TestReportCountsFollowRedelivery(t *testing.T) {
	t.Parallel()
	rep := NewReport("r1", "src", []string{"t1"})
	user := func(ext string, st orgsyncv1.Status, reads int32) *orgsyncv1.Event {
		return &orgsyncv1.Event{RequestId: "r1", Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Org: "t1", Status: st,
			UserExternalId: ext, ApiCalls: &orgsyncv1.ApiUsage{Reads: reads}}
	}
	steps := []struct {
		e          *orgsyncv1.Event
		wantCounts map[string]int
		wantReads  int
	}{
		{user("a", orgsyncv1.Status_STATUS_RUNNING, 0), map[string]int{}, 0},
		{user("a", orgsyncv1.Status_STATUS_FAILED, 3), map[string]int{"failed": 1}, 3},
		{user("a", orgsyncv1.Status_STATUS_FAILED, 3), map[string]int{"failed": 1}, 3}, // redelivered
		{user("b", orgsyncv1.Status_STATUS_UNCHANGED, 2), map[string]int{"failed": 1, "unchanged": 1}, 5},
		{user("a", orgsyncv1.Status_STATUS_RUNNING, 0), map[string]int{"failed": 1, "unchanged": 1}, 5}, // retry announces itself
		{user("a", orgsyncv1.Status_STATUS_CHANGED, 4), map[string]int{"changed": 1, "unchanged": 1}, 6},
	}
	for i, s := range steps {
		rep.Apply(s.e)
		tr := rep.Target("t1")
		if !maps.Equal(tr.Counts, s.wantCounts) || tr.APICalls.Reads != s.wantReads {
			t.Fatalf("after event %d: counts %v reads %d, want %v reads %d", i, tr.Counts, tr.APICalls.Reads, s.wantCounts, s.wantReads)
		}
	}
}

func stepEvent(request, org, user, step string) *orgsyncv1.Event {
	return &orgsyncv1.Event{RequestId: request, Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Status: orgsyncv1.Status_STATUS_CHANGED,
		Org: org, UserExternalId: user, Step: step, PlanId: request + "|" + org}
}

// TestReportPhases: what the bars show per target follows the pipeline's
// events: extracting (nothing yet), pre-flight (the source was read),
// provisioning (planned), the step last finished, verifying, then the final
// status; users count as their plans finish.
func TestReportPhases(t *testing.T) {
	t.Parallel()
	rep := NewReport("r", "src", []string{"t1", "t2"})
	lines := func() map[string]barLine { return barLines(rep, []string{"t1", "t2"}, 2) }
	want := func(when, org, label string, done int) {
		t.Helper()
		if l := lines()[org]; l.Label() != label || l.Done != done {
			t.Errorf("%s: %s shows %q with %d users done, want %q with %d", when, org, l.Label(), l.Done, label, done)
		}
	}
	want("before any event", "t1", "extracting", 0)
	rep.Apply(&orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_RUNNING, Org: "src"})
	want("after the extractor's event", "t1", "pre-flight", 0)
	rep.Apply(&orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_RUNNING, Org: "src",
		Attributes: map[string]string{AttrPlannedTargets: "t1,t2"}})
	want("planned", "t2", "provisioning", 0)
	rep.Apply(stepEvent("r", "t1", "a", "license"))
	want("a step finished", "t1", "running · provisioning: license", 0)
	if rep.Target("t1").Phase != "provisioning: license" {
		t.Errorf("JSON phase %q", rep.Target("t1").Phase)
	}
	rep.Apply(stepEvent("r", "t1", "a", "verify"))
	want("verify finished", "t1", "running · verifying", 0)
	rep.Apply(&orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_CHANGED, Org: "t1",
		UserExternalId: "a", PlanId: "r|t1", Done: 1, Total: 2})
	want("one user finished", "t1", "running · verifying", 1)
	rep.Apply(&orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_CHANGED, Org: "t1",
		PlanId: "r|t1", Done: 2, Total: 2})
	want("target done", "t1", "changed", 2)
	if l := lines()["t1"]; !l.Final || l.Failed {
		t.Errorf("done target: %+v", l)
	}
}

// TestSummarySaysWhoWasSkipped: a user the provisioner left alone (here:
// an older source version than the one applied) is named with the reason
// under the table, which counts only changed, unchanged and failed users.
func TestSummarySaysWhoWasSkipped(t *testing.T) {
	t.Parallel()
	rep := NewReport("r", "src", []string{"t1"})
	for _, e := range []*orgsyncv1.Event{
		{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_SKIPPED, UserExternalId: "src|USER|john@x.example",
			Reason: "stale: source version 1 < applied 3", Done: 1, Total: 2},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_UNCHANGED, UserExternalId: "src|USER|jane@x.example", Done: 2, Total: 2},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_UNCHANGED, Done: 2, Total: 2},
	} {
		e.RequestId, e.Org, e.PlanId = "r", "t1", "r|t1"
		rep.Apply(e)
	}
	var out strings.Builder
	if err := rep.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	if want := "t1 src|USER|john@x.example: skipped: stale: source version 1 < applied 3"; !strings.Contains(out.String(), want) {
		t.Errorf("summary does not say who was skipped and why (%q):\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "jane") {
		t.Errorf("summary names an unchanged user:\n%s", out.String())
	}
	// The same in a dry run: the plan's count says it too.
	rep.DryRun = true
	out.Reset()
	if err := rep.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	if want := "plan for t1: no changes (1 user(s) unchanged, 1 skipped (why: above))"; !strings.Contains(out.String(), want) {
		t.Errorf("plan does not count the skipped user (%q):\n%s", want, out.String())
	}
}

// TestReportRejectedRequest: a request rejected before any target started
// shows every target "not started" (not "pending"), the reason once.
func TestReportRejectedRequest(t *testing.T) {
	t.Parallel()
	rep := NewReport("r", "src", []string{"t1", "nosuch"})
	rep.Apply(&orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_FAILED, Org: "src",
		Reason: "invalid clone request: unknown target org(s): nosuch"})
	if !rep.Complete() || rep.Status != ReportFailed {
		t.Fatalf("report %s complete %v", rep.Status, rep.Complete())
	}
	var out strings.Builder
	if err := rep.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	for _, tr := range rep.Targets {
		if tr.Status != "not started" || tr.Reason != "request rejected" || tr.Phase != "" {
			t.Errorf("%s: %q %q %q", tr.Org, tr.Status, tr.Reason, tr.Phase)
		}
	}
	if strings.Contains(out.String(), "pending") || strings.Count(out.String(), "unknown target org(s): nosuch") != 1 {
		t.Errorf("summary:\n%s", out.String())
	}
	if l := barLines(rep, []string{"t1"}, 1)["t1"]; !l.Final || !l.Failed || l.Label() != "not started" {
		t.Errorf("bar of a rejected request: %+v", l)
	}
}

// TestReportUserErrorSaidOnce: the provisioner reports a failed step as
// the step and again as the user's reason ("step S: R"); the summary says
// it once, whichever event comes first.
func TestReportUserErrorSaidOnce(t *testing.T) {
	t.Parallel()
	step := &orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Status: orgsyncv1.Status_STATUS_FAILED, Org: "t1",
		UserExternalId: "a", Step: "team", Reason: "add to team Sales: 404 not.found"}
	user := &orgsyncv1.Event{RequestId: "r", Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_FAILED, Org: "t1",
		UserExternalId: "a", Reason: "step team: add to team Sales: 404 not.found"}
	for _, order := range [][]*orgsyncv1.Event{{step, user}, {user, step}} {
		rep := NewReport("r", "src", []string{"t1"})
		for _, e := range order {
			rep.Apply(e)
		}
		var out strings.Builder
		_ = rep.WriteSummary(&out)
		if errs := rep.Target("t1").User("a").Errors(); len(errs) != 1 || errs[0] != "step team: add to team Sales: 404 not.found" {
			t.Errorf("errors %q", errs)
		}
		if n := strings.Count(out.String(), "add to team Sales"); n != 1 {
			t.Errorf("summary says the error %d times:\n%s", n, out.String())
		}
	}
}

// TestReportShowsTheStepsOfABatch: the provisioner sends one STEP event per
// phase and one USER event per plan, with a row per user; the report (and
// so `orgsync clone --wait`, `status`, `watch`) shows every user's step
// and outcome as it did with one event each.
func TestReportShowsTheStepsOfABatch(t *testing.T) {
	t.Parallel()
	rep := NewReport("r", "src", []string{"t1"})
	env := func(e *orgsyncv1.Event) *orgsyncv1.Event {
		e.RequestId, e.Org, e.PlanId = "r", "t1", "r|t1"
		return e
	}
	rep.Apply(env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Rows: []*orgsyncv1.Event{
		{UserExternalId: "a", TargetUserId: "ua", Step: "a/ensure_user", Status: orgsyncv1.Status_STATUS_CHANGED},
		{UserExternalId: "b", TargetUserId: "ub", Step: "b/ensure_user", Status: orgsyncv1.Status_STATUS_FAILED, Reason: "409 conflict"},
	}}))
	rep.Apply(env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Rows: []*orgsyncv1.Event{
		{UserExternalId: "a", TargetUserId: "ua", Status: orgsyncv1.Status_STATUS_CHANGED, Done: 1, Total: 2, ApiCalls: &orgsyncv1.ApiUsage{Writes: 7}},
		{UserExternalId: "b", Status: orgsyncv1.Status_STATUS_FAILED, Reason: "step b/ensure_user: 409 conflict", Done: 2, Total: 2, ApiCalls: &orgsyncv1.ApiUsage{Reads: 1}},
	}}))
	tr := rep.Target("t1")
	a, b := tr.User("a"), tr.User("b")
	if a == nil || b == nil {
		t.Fatalf("users of the batch missing: %+v", tr.Users)
	}
	if a.Status != "changed" || a.TargetUserID() != "ua" || strings.Join(a.StepsApplied(), ",") != "a/ensure_user" || a.APICalls().Writes != 7 {
		t.Errorf("user a: %+v", a)
	}
	if b.Status != "failed" || len(b.Steps()) != 1 || b.Steps()[0].Status != "failed" || strings.Join(b.Errors(), ";") != "step b/ensure_user: 409 conflict" {
		t.Errorf("user b: %+v steps %+v", b, b.Steps())
	}
	if !maps.Equal(tr.Counts, map[string]int{"changed": 1, "failed": 1}) || tr.APICalls.Total != 8 {
		t.Errorf("target counts %v calls %+v, want 1 changed, 1 failed, 8 calls", tr.Counts, tr.APICalls)
	}
}
