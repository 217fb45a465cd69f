package extractor_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/gcsim"
)

func cloneRequest(id string, users ...*orgsyncv1.UserSelector) *orgsyncv1.CloneRequest {
	return &orgsyncv1.CloneRequest{RequestId: id, SourceOrg: "src", Users: users, TargetOrgs: []string{"t2", "t1", "t3"}}
}

func TestCloneRequestPublishesSnapshotOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req := cloneRequest("req-demo", byID(johnID), byEmail(janeEmail))
	req.Options = &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t2": {ToDomain: "t2.example"}}}
	req.RequestedAt = timestamppb.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	e.publishClone(req, "req-demo")
	e.waitSettled(natsx.StreamClone, extractor.CloneDurable)

	snaps := e.snapshots("src")
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots, want 1", len(snaps))
	}
	snap := snaps[0]
	if snap.GetRequestId() != "req-demo" || snap.GetSourceOrg() != "src" || snap.GetTrigger() != orgsyncv1.Trigger_TRIGGER_CLONE ||
		!slices.Equal(snap.GetTargetOrgs(), []string{"t1", "t2", "t3"}) || snap.GetExtractedAt() == nil ||
		snap.GetOptions().GetEmailMapping()["t2"].GetToDomain() != "t2.example" {
		t.Fatalf("snapshot header %v", snap)
	}
	assertMatchesSim(t, snap, snap.GetUsers()[0], sourceUser(t, e.sim, johnEmail))
	assertMatchesSim(t, snap, snap.GetUsers()[1], sourceUser(t, e.sim, janeEmail))
	// Ordered by the request's time, not by a dateModified the real User lacks.
	for _, u := range snap.GetUsers() {
		if !u.GetSourceChangedAt().AsTime().Equal(req.GetRequestedAt().AsTime()) || u.GetDateModified() != nil {
			t.Errorf("%s: source_changed_at %v, date_modified %v; want the request's requested_at %v and no date_modified",
				u.GetEmail(), u.GetSourceChangedAt(), u.GetDateModified(), req.GetRequestedAt())
		}
	}

	// The same request again under another message id (a replay beyond the
	// CLONE dedupe window): same content → same snapshot id → JetStream
	// keeps one snapshot.
	e.publishClone(req, "req-demo-replay")
	e.waitSettled(natsx.StreamClone, extractor.CloneDurable)
	if n := e.streamMsgs(natsx.StreamSnapshots); n != 1 {
		t.Fatalf("SNAPSHOTS holds %d messages after a replay, want 1", n)
	}
	if info := e.consumer(natsx.StreamClone, extractor.CloneDurable); info.NumRedelivered != 0 {
		t.Errorf("%d redeliveries", info.NumRedelivered)
	}

	// Tracking: both users, all targets, the request's options.
	recs, err := e.svc.Tracking().List(context.Background(), "src")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("tracked %d users, want 2: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if !slices.Equal(r.Targets, []string{"t1", "t2", "t3"}) || r.EmailMapping["t2"].ToDomain != "t2.example" || r.LastRequestID != "req-demo" {
			t.Errorf("tracking record %+v", r)
		}
	}
	if got := []string{recs[0].Email, recs[1].Email}; !slices.Equal(got, []string{johnEmail, janeEmail}) {
		t.Errorf("tracked emails %v (sorted by user id)", got)
	}
	if evs := e.eventsWhere(func(ev *orgsyncv1.Event) bool { return ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED }); len(evs) != 0 {
		t.Errorf("failed events for a good request: %v", evs)
	}
}

func TestChangeEventReextractsTrackedUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	req := cloneRequest("req-track", byID(janeID))
	req.TargetOrgs = []string{"t1"}
	e.publishClone(req, "req-track")
	req2 := cloneRequest("req-track-2", byID(janeID))
	req2.TargetOrgs = []string{"t3"}
	req2.Options = &orgsyncv1.CloneOptions{Include: []orgsyncv1.Component{orgsyncv1.Component_COMPONENT_SKILLS}}
	e.publishClone(req2, "req-track-2")
	dry := cloneRequest("req-dry", byID(johnID))
	dry.Options = &orgsyncv1.CloneOptions{DryRun: true}
	e.publishClone(dry, "req-dry")
	e.waitSettled(natsx.StreamClone, extractor.CloneDurable)

	rec, ok, err := e.svc.Tracking().Get(ctx, "src", janeID)
	if err != nil || !ok {
		t.Fatalf("Jane not tracked: %v", err)
	}
	if !slices.Equal(rec.Targets, []string{"t1", "t3"}) || !slices.Equal(rec.Include, []string{"COMPONENT_SKILLS"}) {
		t.Errorf("tracking after two requests: %+v (targets are a union, options the latest)", rec)
	}
	if _, ok, _ := e.svc.Tracking().Get(ctx, "src", johnID); ok {
		t.Error("a dry run was tracked")
	}

	subj, _ := natsx.ChangeSubject("src")
	eventTime := timestamppb.New(time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)) // the audit event's eventTime
	for _, ev := range []*orgsyncv1.ChangeEvent{
		{EventId: "audit-1", SourceOrg: "src", UserId: janeID, Source: orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION, OccurredAt: eventTime},
		{EventId: "audit-2", SourceOrg: "src", UserId: johnID, Source: orgsyncv1.ChangeSource_CHANGE_SOURCE_WEBHOOK}, // untracked
	} {
		if err := natsx.Publish(ctx, e.js, subj, ev.GetEventId(), ev); err != nil {
			t.Fatal(err)
		}
	}
	e.waitSettled(natsx.StreamChanges, "extractor-changes")
	var change *orgsyncv1.Snapshot
	for _, s := range e.snapshots("src") {
		if s.GetRequestId() == "audit-1" {
			change = s
		}
		if s.GetRequestId() == "audit-2" {
			t.Errorf("snapshot for an untracked user: %v", s)
		}
	}
	if change == nil {
		t.Fatal("no snapshot for the change of a tracked user")
	}
	if change.GetTrigger() != orgsyncv1.Trigger_TRIGGER_CHANGE || !slices.Equal(change.GetTargetOrgs(), []string{"t1", "t3"}) ||
		len(change.GetUsers()) != 1 || change.GetUsers()[0].GetSourceUserId() != janeID ||
		!slices.Equal(change.GetOptions().GetInclude(), []orgsyncv1.Component{orgsyncv1.Component_COMPONENT_SKILLS}) {
		t.Errorf("change snapshot %v", change)
	}
	if u := change.GetUsers()[0]; !u.GetSourceChangedAt().AsTime().Equal(eventTime.AsTime()) || u.GetDateModified() != nil {
		t.Errorf("change snapshot: source_changed_at %v, date_modified %v; want the event's occurred_at %v and no date_modified",
			u.GetSourceChangedAt(), u.GetDateModified(), eventTime)
	}
}

// badCase is a clone request that must be rejected as a whole.
type badCase struct {
	name    string
	subject string // default orgsync.clone.src
	req     *orgsyncv1.CloneRequest
	raw     []byte // published instead of req
	org     string // org of the failed event (default src)
	reason  string // substring of the event's reason
}

func TestBadCloneRequestsFailOnceWithReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := func(id string, edit func(r *orgsyncv1.CloneRequest)) *orgsyncv1.CloneRequest {
		r := cloneRequest(id, byID(johnID), byEmail(janeEmail))
		edit(r)
		return r
	}
	cases := []badCase{
		{name: "malformed payload", raw: []byte{0xff, 0xff, 0x01}, reason: "malformed clone request"},
		{name: "missing request id", req: good("", func(r *orgsyncv1.CloneRequest) {}), reason: "request_id is missing"},
		{name: "invalid request id", req: good("no spaces allowed", func(r *orgsyncv1.CloneRequest) {}), reason: `request_id "no spaces allowed" is invalid`},
		{name: "unknown source org", subject: "orgsync.clone.nope", org: "nope",
			req: good("bad-src", func(r *orgsyncv1.CloneRequest) { r.SourceOrg = "nope" }), reason: `source org "nope": unknown org`},
		{name: "missing credentials", subject: "orgsync.clone.nocreds", org: "nocreds",
			req: good("bad-nocreds", func(r *orgsyncv1.CloneRequest) { r.SourceOrg = "nocreds" }), reason: "ClientID and ClientSecret are required"},
		{name: "wrong credentials", subject: "orgsync.clone.badcreds", org: "badcreds",
			req: good("bad-creds", func(r *orgsyncv1.CloneRequest) { r.SourceOrg = "badcreds" }), reason: "401"},
		{name: "unknown targets", req: good("bad-targets", func(r *orgsyncv1.CloneRequest) { r.TargetOrgs = []string{"t1", "x9", "y8"} }),
			reason: "unknown target org(s): x9, y8"},
		{name: "target is source", req: good("bad-self", func(r *orgsyncv1.CloneRequest) { r.TargetOrgs = []string{"t1", "src"} }),
			reason: `target org "src" is the source org`},
		{name: "no targets", req: good("bad-no-targets", func(r *orgsyncv1.CloneRequest) { r.TargetOrgs = nil }), reason: "no target orgs"},
		{name: "no users", req: good("bad-no-users", func(r *orgsyncv1.CloneRequest) { r.Users = nil }), reason: "no users"},
		{name: "empty selector", req: good("bad-selector", func(r *orgsyncv1.CloneRequest) { r.Users = append(r.Users, &orgsyncv1.UserSelector{}) }),
			reason: "users[2]: empty selector"},
		{name: "user not found by email", req: good("bad-ghost", func(r *orgsyncv1.CloneRequest) { r.Users = append(r.Users, byEmail("ghost@acme.example")) }),
			reason: "user not found in source org src: email ghost@acme.example"},
		{name: "user not found by id", req: good("bad-ghost-id", func(r *orgsyncv1.CloneRequest) {
			r.Users = []*orgsyncv1.UserSelector{byID("00000000-0000-4000-8000-00000000dead")}
		}), reason: "user not found in source org src: id 00000000-0000-4000-8000-00000000dead"},
		{name: "invalid email mapping", req: good("bad-mapping", func(r *orgsyncv1.CloneRequest) {
			r.Options = &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t1": {FromDomain: "acme.example"}}}
		}), reason: "options.email_mapping[t1]: to_domain is empty"},
		{name: "email mapping for a non-target", req: good("bad-mapping-2", func(r *orgsyncv1.CloneRequest) {
			r.Options = &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t9": {ToDomain: "t9.example"}}}
		}), reason: `options.email_mapping names "t9"`},
	}
	ctx := context.Background()
	for i, tc := range cases {
		subj := tc.subject
		if subj == "" {
			subj = "orgsync.clone.src"
		}
		data := tc.raw
		var err error
		if tc.req != nil {
			err = natsx.Publish(ctx, e.js, subj, "msg-"+tc.name, tc.req)
		} else {
			_, err = e.js.Publish(ctx, subj, data, jetstream.WithMsgID("msg-"+tc.name))
		}
		if err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		org := tc.org
		if org == "" {
			org = "src"
		}
		ev := e.waitEvent(tc.name+": failed REQUEST event", func(ev *orgsyncv1.Event) bool {
			return ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_REQUEST && ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED &&
				ev.GetAttributes()["stream_sequence"] == strconv.Itoa(i+1)
		})
		t.Logf("%-32s → orgsync.event.%s.request: %s", tc.name, ev.GetOrg(), ev.GetReason())
		if ev.GetOrg() != org || !strings.Contains(ev.GetReason(), tc.reason) {
			t.Errorf("%s: event org %q reason %q; want org %q, reason containing %q", tc.name, ev.GetOrg(), ev.GetReason(), org, tc.reason)
		}
		if strings.Contains(ev.GetReason(), "secret") && !strings.Contains(ev.GetReason(), "ClientSecret are required") {
			t.Errorf("%s: reason may leak a secret: %q", tc.name, ev.GetReason())
		}
		if tc.req != nil && ev.GetRequestId() != tc.req.GetRequestId() {
			t.Errorf("%s: event request id %q", tc.name, ev.GetRequestId())
		}
	}
	info := e.waitSettled(natsx.StreamClone, extractor.CloneDurable)
	if info.NumRedelivered != 0 || info.Delivered.Stream != uint64(len(cases)) || info.Delivered.Consumer != uint64(len(cases)) {
		t.Errorf("consumer: %d redelivered, %d deliveries for %d messages (want exactly one each)",
			info.NumRedelivered, info.Delivered.Consumer, len(cases))
	}
	if n := e.streamMsgs(natsx.StreamSnapshots); n != 0 {
		t.Errorf("%d snapshots published for bad requests", n)
	}
	failed := e.eventsWhere(func(ev *orgsyncv1.Event) bool { return ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED })
	if len(failed) != len(cases) {
		t.Errorf("%d failed events for %d bad requests", len(failed), len(cases))
	}
	if recs, _ := e.svc.Tracking().List(ctx, "src"); len(recs) != 0 {
		t.Errorf("bad requests tracked users: %+v", recs)
	}
}

func TestTransientSourceErrorsAreRedeliveredNotFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sim.SetFaults(sourceOrgID, gcsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	e.publishClone(cloneRequest("req-flaky", byID(janeID)), "req-flaky")
	natsxtest.Eventually(t, 15*time.Second, "request redelivered after 503s", func() bool {
		return e.consumer(natsx.StreamClone, extractor.CloneDurable).NumRedelivered > 0
	})
	if err := e.sim.SetFaults(sourceOrgID, gcsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(natsx.StreamClone, extractor.CloneDurable)
	if snaps := e.snapshots("src"); len(snaps) != 1 || snaps[0].GetRequestId() != "req-flaky" {
		t.Fatalf("snapshots after recovery: %v", snaps)
	}
	if evs := e.eventsWhere(func(ev *orgsyncv1.Event) bool { return ev.GetStatus() == orgsyncv1.Status_STATUS_FAILED }); len(evs) != 0 {
		t.Errorf("transient errors reported as failure: %v", evs)
	}
}
