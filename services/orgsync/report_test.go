package orgsync

import (
	"maps"
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
