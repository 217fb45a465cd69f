package orgsync

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestValidateRequestReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := CloneSpec{RequestID: "bad id!", SourceOrg: "src", Targets: []string{"src", "t1", "t1", "a.b"},
		EmailMap: map[string]*orgsyncv1.EmailMapping{"t9": {ToDomain: "x.example"}, "t1": {ToDomain: "nodot"}}}.Build()
	if err == nil {
		t.Fatal("Build accepted an invalid request")
	}
	for _, want := range []string{`request id "bad id!"`, "at least one user", `target org "src" is the source org`,
		`target org "t1" is named twice`, `"a.b" contains a '.'`, `email mapping for "t9", which is not a target`, `email mapping for t1: to_domain "nodot" is not a valid domain`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "email mapping: ") {
		t.Errorf("error says \"email mapping\" twice:\n%v", err)
	}
	req, err := CloneSpec{SourceOrg: "src", Users: []string{"a@x.example", "5f0c2a4e-0000-4000-8000-0000000000a1"}, Targets: []string{"t1"}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if req.GetUsers()[0].GetEmail() != "a@x.example" || req.GetUsers()[1].GetUserId() == "" || len(req.GetRequestId()) != 36 {
		t.Fatalf("selectors or generated id wrong: %v", req)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"clone", "--source", "src", "--target", "t1"}, `required flag(s) "user" not set`},
		{[]string{"clone", "--source", "src", "--user", "a@x.example", "--target", "t1", "--include", "skils"}, `unknown component "skils"`},
		{[]string{"clone", "--source", "src", "--user", "a@x.example", "--target", "t1", "--existing", "merge"}, `invalid argument "merge" for "--existing" flag: want one of adopt, skip, fail`},
		{[]string{"status"}, "exactly one request id"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, IO{Out: &stdout, Err: &stderr})
		if code != ExitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), ExitUsage, tc.want)
		}
	}
}

// TestWaitFollowsEventContract drives the CLI's wait/status with the events
// the pipeline publishes (through events.Emitter on a real JetStream), so
// the report logic is pinned to the event contract independently of the
// services.
func TestWaitFollowsEventContract(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &Client{JS: js}
	em := events.New(js)

	req, err := CloneSpec{SourceOrg: "src", Users: []string{"a@x.example", "b@x.example"}, Targets: []string{"t1", "t2"}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Submit(ctx, req)
	if err != nil || sub.Duplicate {
		t.Fatalf("submit: %v (duplicate %v)", err, sub != nil && sub.Duplicate)
	}
	id := req.GetRequestId()
	// An event of another request must not count.
	emit(t, em, &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED, RequestId: "other", Org: "t1"})
	for _, e := range []*orgsyncv1.Event{
		{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_RUNNING, Org: "t1", Total: 2},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Status: orgsyncv1.Status_STATUS_CHANGED, Org: "t1", UserExternalId: "src|USER|a@x.example", Step: "ensure_user", TargetUserId: "u-a"},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_STEP, Status: orgsyncv1.Status_STATUS_UNCHANGED, Org: "t1", UserExternalId: "src|USER|a@x.example", Step: "routing"},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_CHANGED, Org: "t1", UserExternalId: "src|USER|a@x.example", TargetUserId: "u-a", Done: 1, Total: 2, ApiCalls: &orgsyncv1.ApiUsage{Reads: 4, Writes: 3}},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: orgsyncv1.Status_STATUS_UNCHANGED, Org: "t1", UserExternalId: "src|USER|b@x.example", TargetUserId: "u-b", Done: 2, Total: 2, ApiCalls: &orgsyncv1.ApiUsage{Reads: 2}},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_CHANGED, Org: "t1", Done: 2, Total: 2, ApiCalls: &orgsyncv1.ApiUsage{Reads: 8, Writes: 4}},
		{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED, Org: "t2", Reason: `pre-flight: queue "Billing Queue" does not exist in t2`},
	} {
		e.RequestId, e.SourceOrg = id, "src"
		emit(t, em, e)
	}
	var updates int
	rep, err := c.Wait(ctx, sub, func(*Report) { updates++ })
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete() || rep.Status != ReportFailed || updates != 7 {
		t.Fatalf("report complete=%v status=%s after %d updates; want complete, failed, 7", rep.Complete(), rep.Status, updates)
	}
	t1 := rep.Target("t1")
	if t1.Status != "changed" || t1.Counts["changed"] != 1 || t1.Counts["unchanged"] != 1 || t1.APICalls.Total != 12 {
		t.Errorf("t1 = %+v", t1)
	}
	if u := t1.User("src|USER|a@x.example"); u.TargetUserID() != "u-a" || strings.Join(u.StepsApplied(), ",") != "ensure_user" || u.APICalls().Total != 7 {
		t.Errorf("user a = %+v", u)
	}
	if t2 := rep.Target("t2"); t2.Status != "failed" || !strings.Contains(t2.Reason, "Billing Queue") {
		t.Errorf("t2 = %+v", t2)
	}

	// status rebuilds the same report from the streams alone.
	st, found, err := c.Status(ctx, id)
	if err != nil || !found {
		t.Fatalf("status: found=%v err=%v", found, err)
	}
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(st)
	if !bytes.Equal(a, b) {
		t.Errorf("status report differs from the waited one:\nwait:   %s\nstatus: %s", a, b)
	}
	var summary bytes.Buffer
	if err := st.WriteSummary(&summary); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"request " + id + ": failed", "t1", "changed", "12 (8/4)", "Billing Queue"} {
		if !strings.Contains(summary.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary.String())
		}
	}
	if _, found, err := c.Status(ctx, "no-such-request"); err != nil || found {
		t.Errorf("status of an unknown id: found=%v err=%v", found, err)
	}

	// Re-submitting the same id is a duplicate; waiting shows the old outcome.
	sub2, err := c.Submit(ctx, req)
	if err != nil || !sub2.Duplicate {
		t.Fatalf("resubmit: duplicate=%v err=%v", sub2 != nil && sub2.Duplicate, err)
	}
	rep2, err := c.Wait(ctx, sub2, nil)
	if err != nil || rep2.Status != ReportFailed {
		t.Fatalf("wait on duplicate: %v %v", rep2, err)
	}
}

func emit(t *testing.T, em *events.Emitter, e *orgsyncv1.Event) {
	t.Helper()
	if err := em.Emit(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}
