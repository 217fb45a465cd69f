package events

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TestBatchExpandsToTheEventsItReplaces: a phase's STEP batch, sent and
// decoded, expands into rows equal to the unbatched events (envelope, the
// dry-run marker, the id the unbatched event had); a resumed phase with
// other rows is another fact (another id), the same rows the same fact.
func TestBatchExpandsToTheEventsItReplaces(t *testing.T) {
	t.Parallel()
	fixed := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	em := &Emitter{now: func() time.Time { return fixed }}
	row := func(user, step string, st orgsyncv1.Status) *orgsyncv1.Event {
		return &orgsyncv1.Event{UserExternalId: user, TargetUserId: "id-" + user, Step: step, Status: st, Message: step + " of " + user,
			Attributes: map[string]string{"found_by": "created"}}
	}
	envelope := func(e *orgsyncv1.Event) *orgsyncv1.Event {
		e.RequestId, e.PlanId, e.Org, e.SourceOrg, e.PlanParts = "r1", "p1", "t1", "src", 2
		e.Attributes = map[string]string{"dry_run": "true", "found_by": "batch"}
		return e
	}
	b := envelope(Batch(orgsyncv1.EventKind_EVENT_KIND_STEP, []*orgsyncv1.Event{
		row("a", "a/ensure_user", orgsyncv1.Status_STATUS_CHANGED), row("b", "b/ensure_user", orgsyncv1.Status_STATUS_FAILED)}))
	if _, err := em.prepare(b); err != nil {
		t.Fatal(err)
	}
	wire, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var got orgsyncv1.Event
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	rows := Expand(&got)
	if len(rows) != 2 {
		t.Fatalf("expanded %d rows, want 2", len(rows))
	}
	for i, user := range []string{"a", "b"} {
		r := rows[i]
		want := row(user, user+"/ensure_user", r.GetStatus())
		want.Kind, want.RequestId, want.PlanId, want.Org, want.SourceOrg, want.PlanParts = orgsyncv1.EventKind_EVENT_KIND_STEP, "r1", "p1", "t1", "src", 2
		want.Time = timestamppb.New(fixed)
		want.Attributes["dry_run"] = "true" // the batch's; the row's own found_by wins
		want.EventId = rowID(want)
		if !proto.Equal(r, want) {
			t.Errorf("row %d:\n got %v\nwant %v", i, r, want)
		}
	}

	again := envelope(Batch(orgsyncv1.EventKind_EVENT_KIND_STEP, []*orgsyncv1.Event{
		row("a", "a/ensure_user", orgsyncv1.Status_STATUS_CHANGED), row("b", "b/ensure_user", orgsyncv1.Status_STATUS_FAILED)}))
	resumed := envelope(Batch(orgsyncv1.EventKind_EVENT_KIND_STEP, []*orgsyncv1.Event{
		row("b", "b/ensure_user", orgsyncv1.Status_STATUS_CHANGED), row("c", "c/ensure_user", orgsyncv1.Status_STATUS_CHANGED)}))
	for _, e := range []*orgsyncv1.Event{again, resumed} {
		if _, err := em.prepare(e); err != nil {
			t.Fatal(err)
		}
	}
	if again.GetEventId() != b.GetEventId() {
		t.Errorf("the same rows got another id: %s, %s", again.GetEventId(), b.GetEventId())
	}
	if resumed.GetEventId() == b.GetEventId() {
		t.Errorf("other rows got the same id %s: JetStream would drop the resumed phase as a duplicate", b.GetEventId())
	}

	one := row("a", "a/verify", orgsyncv1.Status_STATUS_UNCHANGED)
	if single := Batch(orgsyncv1.EventKind_EVENT_KIND_STEP, []*orgsyncv1.Event{one}); single != one || single.GetKind() != orgsyncv1.EventKind_EVENT_KIND_STEP || len(Expand(single)) != 1 {
		t.Errorf("a single row is not sent as itself: %v", single)
	}
}
