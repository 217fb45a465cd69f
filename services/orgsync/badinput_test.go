package orgsync

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/resolver"
)

// TestBadInputEndToEnd sends what can never succeed through the whole
// system: each case ends in one failed event with a reason a user can act
// on, nothing is written to any org, and no message is redelivered.
func TestBadInputEndToEnd(t *testing.T) {
	t.Parallel()
	// "nocreds" is configured (URLs) but has no client credentials.
	h := startHarness(t, nil, func(simURL string, o map[string]orgconfig.Org) {
		o["nocreds"] = orgconfig.Org{APIBaseURL: simURL, LoginBaseURL: simURL}
	})
	jane := []string{"jane.doe@acme.example"}

	t.Run("malformed payload", func(t *testing.T) {
		ack, err := h.client.JS.PublishMsg(context.Background(), &nats.Msg{Subject: "orgsync.clone.source", Data: []byte("\xff\xffnot a protobuf"), Header: nats.Header{}},
			jetstream.WithMsgID("malformed-1"))
		if err != nil {
			t.Fatal(err)
		}
		seq := strconv.FormatUint(ack.Sequence, 10)
		e := h.failedEvent(func(e *orgsyncv1.Event) bool {
			return e.GetKind() == orgsyncv1.EventKind_EVENT_KIND_REQUEST && e.GetAttributes()["stream_sequence"] == seq
		}, "the malformed payload")
		assertReason(t, e.GetReason(), "malformed clone request")
		if e.GetOrg() != "source" {
			t.Errorf("event org %q, want the subject's org source", e.GetOrg())
		}
	})

	for _, tc := range []struct {
		name string
		spec CloneSpec
		// raw publishes without the CLI's own validation (another system).
		raw  func(*orgsyncv1.CloneRequest)
		want []string
	}{
		{name: "unknown source org", spec: CloneSpec{SourceOrg: "nosuch", Users: jane, Targets: []string{"target1"}},
			want: []string{`"nosuch"`, "unknown org"}},
		{name: "unknown target org", spec: CloneSpec{SourceOrg: "source", Users: jane, Targets: []string{"target1", "nosuch"}},
			want: []string{"nosuch", "unknown"}},
		{name: "user not found", spec: CloneSpec{SourceOrg: "source", Users: []string{"nobody@acme.example"}, Targets: []string{"target1"}},
			want: []string{"not found", "nobody@acme.example"}},
		{name: "missing credentials of the source", spec: CloneSpec{SourceOrg: "nocreds", Users: jane, Targets: []string{"target1"}},
			want: []string{`"nocreds" has no client credentials`}},
		{name: "missing credentials of a target", spec: CloneSpec{SourceOrg: "source", Users: jane, Targets: []string{"nocreds"}},
			want: []string{`"nocreds" has no client credentials`}},
		{name: "invalid email mapping", spec: CloneSpec{SourceOrg: "source", Users: jane, Targets: []string{"target1"}},
			raw: func(r *orgsyncv1.CloneRequest) {
				r.Options.EmailMapping = map[string]*orgsyncv1.EmailMapping{"target1": {ToDomain: "not a domain"}}
			},
			want: []string{"options.email_mapping[target1]: to_domain", `"not a domain"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := tc.spec.Build()
			if err != nil {
				t.Fatal(err)
			}
			if tc.raw != nil {
				tc.raw(req)
			}
			rep := h.submitRaw(t, req)
			if rep.Status != ReportFailed {
				t.Fatalf("status %s, want failed:\n%s", rep.Status, reportJSON(rep))
			}
			reason := rep.Reason
			for _, tr := range rep.Targets {
				if tr.Status == "failed" {
					reason += " " + tr.Reason
				}
			}
			assertReason(t, reason, tc.want...)
			t.Logf("reason: %s", oneLine(reason))
		})
	}

	t.Run("nothing written, nothing redelivered", func(t *testing.T) {
		for _, org := range []string{"source", "target1", "target2", "target3"} {
			if n := SimWrites(h.stats(org)); n != 0 {
				t.Errorf("%s: %d write requests: %v", org, n, simWriteOps(h.stats(org)))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range []struct{ stream, durable string }{
			{natsx.StreamClone, extractor.CloneDurable}, {natsx.StreamSnapshots, resolver.Durable},
		} {
			cons, err := h.client.JS.Consumer(ctx, c.stream, c.durable)
			if err != nil {
				t.Fatal(err)
			}
			// The failed event goes out just before the message is
			// terminated: wait for the consumer to settle, then check that
			// nothing was ever delivered twice.
			var info *jetstream.ConsumerInfo
			natsxtest.Eventually(t, 10*time.Second, "consumer "+c.durable+" settles", func() bool {
				info, err = cons.Info(ctx)
				return err == nil && info.NumAckPending == 0 && info.NumPending == 0
			})
			if info.NumRedelivered != 0 || info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("consumer %s/%s: redelivered %d, ack pending %d, pending %d; want every message handled once",
					c.stream, c.durable, info.NumRedelivered, info.NumAckPending, info.NumPending)
			}
		}
	})
}

// submitRaw publishes req as another system would (no client-side
// validation) and waits for its report.
func (h *harness) submitRaw(t *testing.T, req *orgsyncv1.CloneRequest) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	from, err := h.client.eventsEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req.RequestedAt = timestamppb.Now()
	subject, err := natsx.CloneSubject(req.GetSourceOrg())
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.Publish(ctx, h.client.JS, subject, req.GetRequestId(), req); err != nil {
		t.Fatal(err)
	}
	rep, err := h.client.Wait(ctx, &Submitted{Request: req, eventsFrom: from + 1}, nil)
	if err != nil {
		t.Fatalf("no final outcome for %s: %v\n%s", req.GetRequestId(), err, reportJSON(rep))
	}
	return rep
}

func assertReason(t *testing.T, reason string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(reason, w) {
			t.Errorf("reason %q lacks %q", reason, w)
		}
	}
}
