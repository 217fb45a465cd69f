package orgsync

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// reportShapeEvents are the events of a small clone and a dry run: batched
// and single steps, a step that fails then succeeds on redelivery, reasons,
// a user error said twice, planned changes, and the TARGET events.
func reportShapeEvents(req string) []*orgsyncv1.Event {
	env := func(e *orgsyncv1.Event) *orgsyncv1.Event {
		e.RequestId, e.Org, e.PlanId, e.SourceOrg = req, "t1", req+"|t1", "src"
		return e
	}
	step, user := orgsyncv1.EventKind_EVENT_KIND_STEP, orgsyncv1.EventKind_EVENT_KIND_USER
	return []*orgsyncv1.Event{
		{RequestId: req, Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_RUNNING, Org: "src",
			Attributes: map[string]string{AttrPlannedTargets: "t1"}},
		env(&orgsyncv1.Event{Kind: step, Rows: []*orgsyncv1.Event{
			{UserExternalId: "src|USER|a@x.io", TargetUserId: "ua", Step: "ensure_user", Status: orgsyncv1.Status_STATUS_CHANGED},
			{UserExternalId: "src|USER|b@x.io", TargetUserId: "ub", Step: "ensure_user", Status: orgsyncv1.Status_STATUS_UNCHANGED, Reason: "exists"},
			{UserExternalId: "src|USER|c@x.io", Step: "ensure_user", Status: orgsyncv1.Status_STATUS_FAILED, Reason: "409 conflict <&>"},
		}}),
		env(&orgsyncv1.Event{Kind: step, Status: orgsyncv1.Status_STATUS_FAILED, UserExternalId: "src|USER|a@x.io", Step: "team", Reason: "404 not.found"}),
		env(&orgsyncv1.Event{Kind: step, Rows: []*orgsyncv1.Event{
			{UserExternalId: "src|USER|a@x.io", Step: "skills", Status: orgsyncv1.Status_STATUS_CHANGED},
			{UserExternalId: "src|USER|b@x.io", Step: "skills", Status: orgsyncv1.Status_STATUS_CHANGED},
			{UserExternalId: "src|USER|b@x.io", Step: "phone/work", Status: orgsyncv1.Status_STATUS_SKIPPED, Reason: "no phone"},
		}}),
		env(&orgsyncv1.Event{Kind: step, Status: orgsyncv1.Status_STATUS_CHANGED, UserExternalId: "src|USER|a@x.io", Step: "team"}),
		env(&orgsyncv1.Event{Kind: step, Status: orgsyncv1.Status_STATUS_CHANGED, UserExternalId: "src|USER|a@x.io", Step: "team"}),
		env(&orgsyncv1.Event{Kind: user, Rows: []*orgsyncv1.Event{
			{UserExternalId: "src|USER|a@x.io", TargetUserId: "ua", Status: orgsyncv1.Status_STATUS_CHANGED, Done: 1, Total: 3, ApiCalls: &orgsyncv1.ApiUsage{Reads: 2, Writes: 7}},
			{UserExternalId: "src|USER|b@x.io", Status: orgsyncv1.Status_STATUS_CHANGED, Done: 2, Total: 3, ApiCalls: &orgsyncv1.ApiUsage{Writes: 3, Throttled: 1}},
			{UserExternalId: "src|USER|c@x.io", Status: orgsyncv1.Status_STATUS_FAILED, Reason: "step ensure_user: 409 conflict <&>", Done: 3, Total: 3},
		}}),
		env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED, Reason: "1 user(s) failed", Done: 3, Total: 3,
			ApiCalls: &orgsyncv1.ApiUsage{Reads: 5, Writes: 11}}),
	}
}

// planShapeEvents: a dry run of one user with planned changes.
func planShapeEvents(req string) []*orgsyncv1.Event {
	env := func(e *orgsyncv1.Event) *orgsyncv1.Event {
		e.RequestId, e.Org, e.PlanId, e.SourceOrg = req, "t1", req+"|t1", "src"
		e.Attributes = map[string]string{"dry_run": "true"}
		return e
	}
	return []*orgsyncv1.Event{
		env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Rows: []*orgsyncv1.Event{
			{UserExternalId: "src|USER|a@x.io", Step: "ensure_user", Status: orgsyncv1.Status_STATUS_PLANNED,
				Diffs: []*orgsyncv1.FieldDiff{{Field: "user", Want: "a@x.io"}}},
			{UserExternalId: "src|USER|a@x.io", Step: "profile", Status: orgsyncv1.Status_STATUS_PLANNED,
				Diffs: []*orgsyncv1.FieldDiff{{Field: "title", Got: "Lead", Want: "Agent"}}},
			{UserExternalId: "src|USER|a@x.io", Step: "skills", Status: orgsyncv1.Status_STATUS_UNCHANGED},
		}}),
		env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_PLANNED, UserExternalId: "src|USER|a@x.io", Done: 1, Total: 1}),
		env(&orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_PLANNED, Done: 1, Total: 1,
			Diffs: []*orgsyncv1.FieldDiff{{Field: "team", Want: "Night"}}, ApiCalls: &orgsyncv1.ApiUsage{Reads: 4}}),
	}
}

// benchSteps are the steps of a bench user (S6): the report holds a row
// of each for every user in every target.
var benchSteps = []string{"ensure_user", "external_id", "wait_active", "license", "profile", "skills", "languages",
	"grants", "utilization", "queues", "team", "verify"}

// cloneBatches are the events of a clone of users into org as the
// provisioner sends them: one STEP batch per phase, one USER batch.
func cloneBatches(req, org string, users int) []*orgsyncv1.Event {
	var evs []*orgsyncv1.Event
	for _, step := range benchSteps {
		e := &orgsyncv1.Event{RequestId: req, Org: org, PlanId: req + "|" + org, Kind: orgsyncv1.EventKind_EVENT_KIND_STEP}
		for i := range users {
			e.Rows = append(e.Rows, &orgsyncv1.Event{UserExternalId: fmt.Sprintf("src|USER|bench.user.%05d@acme.example", i),
				TargetUserId: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), Step: step, Status: orgsyncv1.Status_STATUS_CHANGED})
		}
		evs = append(evs, e)
	}
	e := &orgsyncv1.Event{RequestId: req, Org: org, PlanId: req + "|" + org, Kind: orgsyncv1.EventKind_EVENT_KIND_USER}
	for i := range users {
		e.Rows = append(e.Rows, &orgsyncv1.Event{UserExternalId: fmt.Sprintf("src|USER|bench.user.%05d@acme.example", i),
			Status: orgsyncv1.Status_STATUS_CHANGED, Done: int32(i + 1), Total: int32(users), ApiCalls: &orgsyncv1.ApiUsage{Reads: 1, Writes: 7}})
	}
	return append(evs, e)
}

// TestReportIsCompact: `orgsync bench --sizes S6=10000x20` follows a clone
// of 10,000 users into 20 orgs in one report; at the 1.7 KB per user and
// target the report took before, that alone was 350 MB of the 400 MB
// budget. A user with its twelve steps now costs some 200 bytes (343 until
// its target user id was held as 16 bytes, its calls as three int32 and
// the targets found users by number), and folding a batch again (a
// redelivery) allocates nothing per row. Each target's events are let go
// once folded, as the decoded events of the stream are: what the report
// keeps of them (ids) counts.
func TestReportIsCompact(t *testing.T) {
	const users, targets = 1000, 4
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep := NewReport("r", "src", []string{"t1", "t2", "t3", "t4"})
	for i := range targets {
		for _, e := range cloneBatches("r", fmt.Sprintf("t%d", i+1), users) {
			rep.Apply(e)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / (users * targets)
	if u := rep.Target("t4").User("src|USER|bench.user.00999@acme.example"); u == nil || len(u.Steps()) != len(benchSteps) || rep.Status != ReportRunning {
		t.Fatalf("report not folded: %+v", u)
	}
	t.Logf("report: %d bytes per user and target", per)
	if per > 220 {
		t.Errorf("report holds %d bytes per user and target, want ≤ 220", per)
	}
	again := cloneBatches("r", "t1", users)[3] // a STEP batch of 1,000 rows, redelivered
	if n := testing.AllocsPerRun(5, func() { rep.Apply(again) }); n > 20 {
		t.Errorf("folding a batch of %d known rows again allocates %.0f times, want ≤ 20", users, n)
	}
}

// TestReportTargetUserIDs: a report holds a target user id that is a
// canonical UUID (a Genesys user id) as 16 bytes, any other as given; each
// prints back as the events said it, and a later id replaces an earlier.
func TestReportTargetUserIDs(t *testing.T) {
	t.Parallel()
	const uuidA, uuidB = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	for _, ids := range [][]string{
		{uuidA},
		{"u-1"},
		{strings.ToUpper(uuidA)}, // not canonical: kept as the string
		{"{" + uuidA + "}"},      // idem
		{uuidA, "u-1"},           // a UUID, then another id
		{"u-1", uuidB},           // another id, then a UUID
		{uuidA, uuidB},
	} {
		rep := NewReport("r", "src", []string{"t1"})
		for _, id := range ids {
			rep.Apply(&orgsyncv1.Event{RequestId: "r", Org: "t1", PlanId: "r|t1", Kind: orgsyncv1.EventKind_EVENT_KIND_USER,
				UserExternalId: "src|USER|a@x.io", TargetUserId: id, Status: orgsyncv1.Status_STATUS_CHANGED,
				ApiCalls: &orgsyncv1.ApiUsage{Reads: 1, Writes: 2, Throttled: 3}})
		}
		want := ids[len(ids)-1]
		u := rep.Target("t1").User("src|USER|a@x.io")
		if got := u.TargetUserID(); got != want {
			t.Errorf("after ids %q: target user id %q, want %q", ids, got, want)
		}
		if u.APICalls() != (Usage{Reads: 1, Writes: 2, Throttled: 3, Total: 3}) {
			t.Errorf("after ids %q: calls %+v", ids, u.APICalls())
		}
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		var back UserReport
		if err := json.Unmarshal(b, &back); err != nil || back.TargetUserID() != want || !strings.Contains(string(b), `"targetUserId":"`+want+`"`) {
			t.Errorf("after ids %q: JSON %s read back as %q (%v), want %q", ids, b, back.TargetUserID(), err, want)
		}
	}
}

// TestReportJSONShape: the report's JSON (`clone --wait --output json`,
// `status --output json`) is a contract for scripts; this is the JSON the
// report printed before it was made compact, byte for byte, applied once
// and with every event delivered twice.
func TestReportJSONShape(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		events []*orgsyncv1.Event
		want   string
	}{{"clone", reportShapeEvents("r"), wantCloneJSON}, {"plan", planShapeEvents("p"), wantPlanJSON}} {
		for _, twice := range []bool{false, true} {
			rep := NewReport(c.events[0].GetRequestId(), "src", []string{"t1"})
			for _, e := range c.events {
				rep.Apply(e)
				if twice {
					rep.Apply(e)
				}
			}
			var out strings.Builder
			if err := rep.WriteJSON(&out); err != nil {
				t.Fatal(err)
			}
			if out.String() != c.want {
				t.Errorf("%s (events twice: %v): JSON\n%s\nwant\n%s", c.name, twice, out.String(), c.want)
			}
			// A script (or a test) reading the JSON back gets the same report.
			var back Report
			if err := json.Unmarshal([]byte(out.String()), &back); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if err := back.WriteJSON(&out); err != nil || out.String() != c.want {
				t.Errorf("%s read back: JSON\n%s\nwant\n%s", c.name, out.String(), c.want)
			}
		}
	}
}

const wantCloneJSON = `{
  "requestId": "r",
  "sourceOrg": "src",
  "status": "failed",
  "targets": [
    {
      "org": "t1",
      "status": "failed",
      "reason": "1 user(s) failed",
      "planId": "r|t1",
      "done": 3,
      "total": 3,
      "counts": {
        "changed": 2,
        "failed": 1
      },
      "apiCalls": {
        "reads": 5,
        "writes": 11,
        "throttled": 0,
        "total": 16
      },
      "users": [
        {
          "externalId": "src|USER|a@x.io",
          "targetUserId": "ua",
          "status": "changed",
          "stepsApplied": [
            "ensure_user",
            "skills",
            "team"
          ],
          "steps": [
            {
              "step": "ensure_user",
              "status": "changed"
            },
            {
              "step": "team",
              "status": "changed"
            },
            {
              "step": "skills",
              "status": "changed"
            }
          ],
          "apiCalls": {
            "reads": 2,
            "writes": 7,
            "throttled": 0,
            "total": 9
          },
          "errors": [
            "step team: 404 not.found"
          ]
        },
        {
          "externalId": "src|USER|b@x.io",
          "targetUserId": "ub",
          "status": "changed",
          "stepsApplied": [
            "skills"
          ],
          "steps": [
            {
              "step": "ensure_user",
              "status": "unchanged",
              "reason": "exists"
            },
            {
              "step": "skills",
              "status": "changed"
            },
            {
              "step": "phone/work",
              "status": "skipped",
              "reason": "no phone"
            }
          ],
          "apiCalls": {
            "reads": 0,
            "writes": 3,
            "throttled": 1,
            "total": 3
          }
        },
        {
          "externalId": "src|USER|c@x.io",
          "status": "failed",
          "reason": "step ensure_user: 409 conflict \u003c\u0026\u003e",
          "stepsApplied": [],
          "steps": [
            {
              "step": "ensure_user",
              "status": "failed",
              "reason": "409 conflict \u003c\u0026\u003e"
            }
          ],
          "apiCalls": {
            "reads": 0,
            "writes": 0,
            "throttled": 0,
            "total": 0
          },
          "errors": [
            "step ensure_user: 409 conflict \u003c\u0026\u003e"
          ]
        }
      ]
    }
  ],
  "apiCalls": {
    "reads": 5,
    "writes": 11,
    "throttled": 0,
    "total": 16
  }
}
`

const wantPlanJSON = `{
  "requestId": "p",
  "sourceOrg": "src",
  "status": "succeeded",
  "dryRun": true,
  "targets": [
    {
      "org": "t1",
      "status": "planned",
      "planId": "p|t1",
      "done": 1,
      "total": 1,
      "counts": {
        "planned": 1
      },
      "apiCalls": {
        "reads": 4,
        "writes": 0,
        "throttled": 0,
        "total": 4
      },
      "users": [
        {
          "externalId": "src|USER|a@x.io",
          "status": "planned",
          "stepsApplied": [],
          "steps": [
            {
              "step": "ensure_user",
              "status": "planned"
            },
            {
              "step": "profile",
              "status": "planned"
            },
            {
              "step": "skills",
              "status": "unchanged"
            }
          ],
          "apiCalls": {
            "reads": 0,
            "writes": 0,
            "throttled": 0,
            "total": 0
          },
          "changes": [
            {
              "op": "create",
              "resource": "user",
              "field": "email",
              "new": "a@x.io"
            },
            {
              "op": "update",
              "resource": "profile",
              "field": "title",
              "old": "Lead",
              "new": "Agent"
            }
          ]
        }
      ],
      "changes": [
        {
          "op": "create",
          "resource": "team",
          "field": "name",
          "new": "Night"
        }
      ]
    }
  ],
  "apiCalls": {
    "reads": 4,
    "writes": 0,
    "throttled": 0,
    "total": 4
  }
}
`
