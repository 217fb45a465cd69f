package orgsync

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// tracerName names the CLI's tracer; the CLI's "clone" span is the root of
// a clone request's trace.
const tracerName = "orgsync/cli"

// Client submits clone requests and follows their events. It needs only a
// JetStream context: it works against any orgsync deployment.
type Client struct {
	JS jetstream.JetStream
}

// Submitted is the outcome of publishing a request.
type Submitted struct {
	Request *orgsyncv1.CloneRequest
	// Duplicate: the CLONE stream already held this request id (within its
	// dedupe window), so the pipeline does not run again; its earlier
	// events are the answer.
	Duplicate bool
	// eventsFrom is the EVENTS stream sequence from which this request's
	// events can appear.
	eventsFrom uint64
	// trace is the request's root span context, for spans around waiting.
	trace trace.SpanContext
}

// Submit validates req and publishes it on orgsync.clone.<source> with
// Nats-Msg-Id = request id, inside a new root span "orgsync clone" whose
// trace the whole pipeline continues.
func (c *Client) Submit(ctx context.Context, req *orgsyncv1.CloneRequest) (*Submitted, error) {
	if err := ValidateRequest(req); err != nil {
		return nil, err
	}
	subject, err := natsx.CloneSubject(req.GetSourceOrg())
	if err != nil {
		return nil, err
	}
	// Remember where the EVENTS stream ends before publishing: every event
	// of a new request comes after it, whatever the clocks say.
	from, err := c.eventsEnd(ctx)
	if err != nil {
		return nil, err
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "orgsync clone",
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("orgsync.request_id", req.GetRequestId()),
			attribute.String("orgsync.source_org", req.GetSourceOrg()),
			attribute.StringSlice("orgsync.target_orgs", req.GetTargetOrgs()),
			attribute.Int("orgsync.users", len(req.GetUsers())),
			attribute.Bool("orgsync.dry_run", req.GetOptions().GetDryRun()),
		))
	defer span.End()
	ack, err := natsx.PublishAck(ctx, c.JS, subject, req.GetRequestId(), req)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("submit clone request %s: %w", req.GetRequestId(), err)
	}
	s := &Submitted{Request: req, Duplicate: ack.Duplicate, eventsFrom: from + 1, trace: span.SpanContext()}
	if ack.Duplicate {
		s.eventsFrom = 1 // the earlier run's events are older than our mark
		// The stream dropped our request as a copy of the one stored under
		// this id: following it is right only when it asks the same.
		if err := c.checkSameRequest(ctx, req, ack.Sequence); err != nil {
			span.SetStatus(codes.Error, err.Error())
			return nil, err
		}
	}
	return s, nil
}

// checkSameRequest compares req with the request stored at seq in stream
// CLONE (a duplicate's ack carries the sequence of the stored message) and
// fails when they differ in anything but when and by whom they were sent.
// A stored message that cannot be read is not an error: nothing to compare.
func (c *Client) checkSameRequest(ctx context.Context, req *orgsyncv1.CloneRequest, seq uint64) error {
	st, err := c.JS.Stream(ctx, natsx.StreamClone)
	if err != nil {
		return nil
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil
	}
	var stored orgsyncv1.CloneRequest
	if err := unmarshal(raw.Data, &stored); err != nil || stored.GetRequestId() != req.GetRequestId() {
		return nil
	}
	if diffs := requestDiff(&stored, req); len(diffs) > 0 {
		return fmt.Errorf("request id %s was already used for a different request (%s); it is not run again: "+
			"submit it under a new --request-id (or none, for a generated one)", req.GetRequestId(), strings.Join(diffs, "; "))
	}
	return nil
}

// requestDiff lists what differs between a stored request and a submitted
// one with the same id, ignoring when and by whom each was sent.
func requestDiff(stored, submitted *orgsyncv1.CloneRequest) []string {
	var diffs []string
	field := func(name, was, now string) {
		if was != now {
			diffs = append(diffs, fmt.Sprintf("%s: stored %s, submitted %s", name, was, now))
		}
	}
	field("source", stored.GetSourceOrg(), submitted.GetSourceOrg())
	field("targets", strings.Join(stored.GetTargetOrgs(), ","), strings.Join(submitted.GetTargetOrgs(), ","))
	selectors := func(r *orgsyncv1.CloneRequest) string {
		var out []string
		for _, u := range r.GetUsers() {
			out = append(out, u.GetEmail()+u.GetUserId())
		}
		return strings.Join(out, ",")
	}
	field("users", selectors(stored), selectors(submitted))
	if !proto.Equal(stored.GetOptions(), submitted.GetOptions()) {
		diffs = append(diffs, "options (dry run, --include, --existing or --map-email) differ")
	}
	return diffs
}

// eventsEnd returns the last sequence of the EVENTS stream (0 when empty).
func (c *Client) eventsEnd(ctx context.Context) (uint64, error) {
	st, err := c.JS.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("open stream %s (is orgsync running against this NATS?): %w", natsx.StreamEvents, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", natsx.StreamEvents, err)
	}
	return info.State.LastSeq, nil
}

// Wait follows the events of a submitted request until its report is
// complete (every target final, or the request failed) or ctx ends, calling
// progress (may be nil) after every event of the request. It returns the
// report so far with ctx's error when ctx ends first.
func (c *Client) Wait(ctx context.Context, s *Submitted, progress func(*Report)) (*Report, error) {
	rep := NewReport(s.Request.GetRequestId(), s.Request.GetSourceOrg(), s.Request.GetTargetOrgs())
	if s.trace.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, s.trace)
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "orgsync wait")
	defer span.End()
	err := followReportEvents(ctx, c.JS, s.eventsFrom, 0, func(e *orgsyncv1.Event) bool {
		if e.GetRequestId() != rep.RequestID {
			return false
		}
		rep.Apply(e)
		if progress != nil {
			progress(rep)
		}
		return rep.Complete()
	})
	if err != nil {
		return rep, err
	}
	span.SetAttributes(attribute.String("orgsync.status", rep.Status))
	return rep, nil
}

// Status builds the report of requestID from everything the EVENTS stream
// holds now. The expected targets come from the request itself when the
// CLONE stream still has it; found is false when neither stream knows the id.
func (c *Client) Status(ctx context.Context, requestID string) (rep *Report, found bool, err error) {
	req, err := c.findRequest(ctx, requestID)
	if err != nil {
		return nil, false, err
	}
	if req != nil {
		rep = NewReport(requestID, req.GetSourceOrg(), req.GetTargetOrgs())
	} else {
		rep = NewReport(requestID, "", nil)
	}
	end, err := c.eventsEnd(ctx)
	if err != nil {
		return nil, false, err
	}
	seen := req != nil
	if end > 0 {
		err = followReportEvents(ctx, c.JS, 1, end, func(e *orgsyncv1.Event) bool {
			if e.GetRequestId() == requestID {
				seen = true
				rep.Apply(e)
			}
			return false
		})
		if err != nil {
			return nil, false, err
		}
	}
	rep.recompute()
	return rep, seen, nil
}

// findRequest scans the CLONE stream for the request with id (nil when it
// is not there: expired, or never published).
func (c *Client) findRequest(ctx context.Context, id string) (*orgsyncv1.CloneRequest, error) {
	st, err := c.JS.Stream(ctx, natsx.StreamClone)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", natsx.StreamClone, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", natsx.StreamClone, err)
	}
	if info.State.LastSeq == 0 {
		return nil, nil
	}
	var found *orgsyncv1.CloneRequest
	err = followRaw(ctx, c.JS, natsx.StreamClone, nil, 1, info.State.LastSeq, func(m jetstream.Msg) bool {
		if m.Headers().Get(jetstream.MsgIDHeader) != id {
			return false
		}
		var req orgsyncv1.CloneRequest
		if err := unmarshal(m.Data(), &req); err == nil && req.GetRequestId() == id {
			found = &req
			return true
		}
		return false
	})
	return found, err
}

// followEvents decodes the events of stream EVENTS (of org, or all orgs when
// org is empty) from sequence from, calling fn for each; it stops when fn
// returns true, after the message with sequence until (when until > 0), or
// when ctx ends (returning ctx's error). Undecodable messages are skipped:
// the event stream is an audit trail, not a contract we can reject.
func followEvents(ctx context.Context, js jetstream.JetStream, org string, from, until uint64, fn func(*orgsyncv1.Event) bool) error {
	filter, err := natsx.EventFilter(org)
	if err != nil {
		return err
	}
	return followEventsOn(ctx, js, []string{filter}, from, until, fn)
}

// reportKinds are the event kinds a job report folds (Report.Apply): the
// audit trail and drift records are not read, nor decoded, to follow a job.
var reportKinds = []orgsyncv1.EventKind{orgsyncv1.EventKind_EVENT_KIND_REQUEST, orgsyncv1.EventKind_EVENT_KIND_TARGET,
	orgsyncv1.EventKind_EVENT_KIND_USER, orgsyncv1.EventKind_EVENT_KIND_STEP}

// followReportEvents is followEvents for every org, on the kinds of
// reportKinds only.
func followReportEvents(ctx context.Context, js jetstream.JetStream, from, until uint64, fn func(*orgsyncv1.Event) bool) error {
	filters, err := natsx.EventKindFilters("", reportKinds...)
	if err != nil {
		return err
	}
	return followEventsOn(ctx, js, filters, from, until, fn)
}

func followEventsOn(ctx context.Context, js jetstream.JetStream, filters []string, from, until uint64, fn func(*orgsyncv1.Event) bool) error {
	return followRaw(ctx, js, natsx.StreamEvents, filters, from, until, func(m jetstream.Msg) bool {
		var e orgsyncv1.Event
		if err := unmarshal(m.Data(), &e); err != nil {
			return false
		}
		// A batch's rows are the events (events.Expand).
		for _, row := range events.Expand(&e) {
			if fn(row) {
				return true
			}
		}
		return false
	})
}

// followRaw reads stream from sequence from with natsx.Follow (in order,
// each message once, surviving a NATS node failure); see followEvents.
func followRaw(ctx context.Context, js jetstream.JetStream, stream string, filters []string, from, until uint64, fn func(jetstream.Msg) bool) error {
	if from == 0 {
		from = 1
	}
	if until > 0 && from > until {
		return nil
	}
	err := natsx.Follow(ctx, js, stream, filters, from, func(m jetstream.Msg) bool {
		meta, merr := m.Metadata()
		if fn(m) {
			return true
		}
		if until > 0 && merr == nil && meta.Sequence.Stream >= until {
			return true
		}
		return until > 0 && merr == nil && meta.NumPending == 0 // filtered: nothing more up to now
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("follow stream %s: %w", stream, err)
	}
	return err
}

// waitTimeout is the default bound of --wait.
const waitTimeout = 30 * time.Minute
