package orgsync

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TestPlanChangesFollowRedelivery: the events of a dry run delivered twice
// list each planned change once; a step redelivered with another outcome
// replaces what it said; a removal reads "-", and every change keeps the
// direction target value → clone value.
func TestPlanChangesFollowRedelivery(t *testing.T) {
	t.Parallel()
	dry := map[string]string{"dry_run": "true"}
	step := func(name string, st orgsyncv1.Status, diffs ...*orgsyncv1.FieldDiff) *orgsyncv1.Event {
		return &orgsyncv1.Event{RequestId: "r1", Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Org: "t1", Status: st,
			UserExternalId: "src|USER|a@x.io", Step: name, Diffs: diffs, Attributes: dry}
	}
	events := []*orgsyncv1.Event{
		step("profile", orgsyncv1.Status_STATUS_PLANNED, &orgsyncv1.FieldDiff{Field: "title", Want: "Agent", Got: "Lead"}),
		step("queues", orgsyncv1.Status_STATUS_PLANNED, &orgsyncv1.FieldDiff{Field: "queues[Sales]", Got: "member"}),
		step("routing", orgsyncv1.Status_STATUS_PLANNED, &orgsyncv1.FieldDiff{Field: "skills[Billing]", Want: "5", Got: "1"}),
		step("routing", orgsyncv1.Status_STATUS_UNCHANGED), // redelivered: nothing to do after all
		{RequestId: "r1", Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Org: "t1", Status: orgsyncv1.Status_STATUS_PLANNED,
			UserExternalId: "src|USER|a@x.io", Attributes: dry},
		{RequestId: "r1", Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Org: "t1", Status: orgsyncv1.Status_STATUS_PLANNED,
			Diffs: []*orgsyncv1.FieldDiff{{Field: "team", Want: "Night"}}, Attributes: dry},
	}
	rep := NewReport("r1", "src", []string{"t1"})
	for _, e := range append(events, events...) {
		rep.Apply(e)
	}
	tr := rep.Target("t1")
	want := []Change{
		{Op: OpUpdate, Resource: "profile", Field: "title", Old: "Lead", New: "Agent"},
		{Op: OpRemove, Resource: "queue", Field: "queues[Sales]", Old: "member"},
	}
	if u := tr.User("src|USER|a@x.io"); !rep.DryRun || u == nil || !slices.Equal(u.Changes(), want) || len(u.StepsApplied()) != 0 {
		t.Fatalf("report: %s", reportJSON(rep))
	}
	if !slices.Equal(tr.Changes, []Change{{Op: OpCreate, Resource: "team", Field: "name", New: "Night"}}) {
		t.Errorf("target changes %+v", tr.Changes)
	}
	var out bytes.Buffer
	if err := rep.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`  + team "Night"`, "  ~ user a@x.io", `      ~ title: "Lead" → "Agent"`, `      - queues[Sales]: "member"`} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("summary lacks %q:\n%s", line, out.String())
		}
	}
}
