package extractor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// handleClone handles one CloneRequest: validate, extract, publish the
// snapshot — in parts of at most Config.SnapshotUsers users, each as soon as
// it is read — and record tracking. A request that can never succeed is reported
// as a failed REQUEST event and terminated; nothing is published downstream,
// so nothing is written to any target.
func (s *Service) handleClone(ctx context.Context, m natsx.Msg) error {
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var req orgsyncv1.CloneRequest
	if err := natsx.Decode(m, &req); err != nil {
		return s.reject(ctx, m, "", subjectOrg, fmt.Errorf("malformed clone request: %w", err), nil)
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "extractor.clone", trace.WithAttributes(
		attribute.String("orgsync.request_id", req.GetRequestId()), attribute.String("orgsync.source_org", req.GetSourceOrg())))
	defer span.End()
	org := req.GetSourceOrg()
	if natsx.ValidateOrgKey(org) != nil {
		org = subjectOrg
	}

	v, err := validateRequest(&req, subjectOrg, s.deps.Clients)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return s.reject(ctx, m, req.GetRequestId(), org, err, nil)
	}
	client, err := s.deps.Clients.Client(v.src)
	if err != nil { // validated above; a registry that changed under us
		return s.reject(ctx, m, req.GetRequestId(), org, err, nil)
	}
	cctx, counter := orgs.WithCounter(ctx)
	// Of each user read, only what tracking needs is kept to the end: the
	// configurations of 10,000 users held some 23 MB until the last part.
	var users []trackedUser
	err = ExtractParts(cctx, client, v.src, req.GetUsers(), req.GetOptions().GetInclude(), PartSizes{First: s.cfg.SnapshotUsers, Max: s.cfg.SnapshotUsersMax}, func(ex *Extracted, part, parts int) error {
		// The request was made before anything was read: what is read is at
		// least that recent (and a replay stamps the same time).
		if req.GetRequestedAt() != nil {
			stampChangedAt(ex.Users, req.GetRequestedAt().AsTime())
		}
		snap, err := NewSnapshot(req.GetRequestId(), v.src, v.targets, req.GetOptions(), orgsyncv1.Trigger_TRIGGER_CLONE, ex, s.cfg.Now())
		if err != nil {
			return natsx.Permanent(err)
		}
		if parts > 1 {
			snap.Part, snap.Parts = int32(part), int32(parts)
		}
		if err := s.publish(ctx, snap); err != nil {
			return err
		}
		for _, u := range ex.Users {
			users = append(users, trackedUser{id: u.GetSourceUserId(), email: u.GetEmail()})
		}
		s.log.Info("snapshot published", "request_id", req.GetRequestId(), "source_org", v.src, "snapshot_id", snap.GetSnapshotId(),
			"part", part, "parts", parts, "users", len(snap.GetUsers()), "resources", len(snap.GetResources()), "targets", v.targets, "api_calls", counter.Total())
		return nil
	})
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		if IsPermanent(err) && !natsx.IsPermanent(err) {
			return s.reject(ctx, m, req.GetRequestId(), org, err, counter.Usage())
		}
		return err // transient: redelivered; parts already published are deduplicated
	}
	span.SetAttributes(attribute.Int("orgsync.api_calls", counter.Total()))
	// Progress for `orgsync clone --wait`: the source is read, pre-flight
	// in the targets is next. Best effort: the snapshot is what matters.
	if err := s.deps.Events.Emit(ctx, &orgsyncv1.Event{
		EventId: events.ID("extracted", req.GetRequestId()),
		Kind:    orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_RUNNING,
		RequestId: req.GetRequestId(), Org: v.src, SourceOrg: v.src,
		Message: fmt.Sprintf("read %d user(s) from %s; pre-flight in %d target(s)", len(users), v.src, len(v.targets)),
	}); err != nil {
		s.log.Warn("extracted event not emitted", "request_id", req.GetRequestId(), "err", err)
	}

	// A dry run changes nothing anywhere, so it tracks nothing either.
	if req.GetOptions().GetDryRun() {
		return nil
	}
	tr := s.tracking.Load()
	for _, u := range users {
		if err := tr.Track(ctx, v.src, u.id, u.email, v.targets, req.GetOptions(), req.GetRequestId(), m.StreamSequence()); err != nil {
			return err // redelivery re-extracts; the snapshot publish is deduplicated
		}
	}
	return nil
}

// trackedUser is a user of a clone request as tracking records it.
type trackedUser struct{ id, email string }

// handleChange re-extracts a tracked source user that changed and publishes
// a snapshot (trigger CHANGE, or SWEEP for the periodic sweep) for the
// targets that track it. Changes of untracked users are acknowledged and
// ignored.
func (s *Service) handleChange(ctx context.Context, m natsx.Msg) error {
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var ev orgsyncv1.ChangeEvent
	if err := natsx.Decode(m, &ev); err != nil {
		return s.reject(ctx, m, "", subjectOrg, fmt.Errorf("malformed change event: %w", err), nil)
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "extractor.change", trace.WithAttributes(
		attribute.String("orgsync.request_id", ev.GetEventId()), attribute.String("orgsync.source_org", ev.GetSourceOrg()),
		attribute.String("orgsync.source_user_id", ev.GetUserId())))
	defer span.End()
	src := ev.GetSourceOrg()
	if src == "" {
		src = subjectOrg
	}
	var errs []error
	if !ValidChangeEventID(ev.GetEventId()) {
		errs = append(errs, fmt.Errorf("event_id %q is missing or invalid (want 1..200 of [A-Za-z0-9_.:-])", truncate(ev.GetEventId(), 210)))
	}
	if err := natsx.ValidateOrgKey(src); err != nil {
		errs = append(errs, fmt.Errorf("source_org: %w", err))
		src = subjectOrg
	} else if src != subjectOrg {
		errs = append(errs, fmt.Errorf("source_org %q does not match the subject's org %q", src, subjectOrg))
	}
	if !kvKeyToken.MatchString(ev.GetUserId()) {
		errs = append(errs, fmt.Errorf("user_id %q is missing or invalid", ev.GetUserId()))
	}
	if len(errs) > 0 {
		return s.reject(ctx, m, ev.GetEventId(), src, fmt.Errorf("invalid change event: %w", joinErrors(errs)), nil)
	}
	client, err := s.deps.Clients.Client(src)
	if err != nil {
		return s.reject(ctx, m, ev.GetEventId(), src, fmt.Errorf("source org %q: %w", src, clientErr(err)), nil)
	}
	rec, ok, err := s.tracking.Load().Get(ctx, src, ev.GetUserId())
	if err != nil {
		return err
	}
	if !ok {
		s.log.Debug("change of an untracked user ignored", "source_org", src, "user_id", ev.GetUserId(), "event_id", ev.GetEventId())
		return nil
	}
	var targets []string
	for _, t := range rec.Targets {
		if _, err := s.deps.Clients.Client(t); err != nil {
			s.log.Warn("tracked target is no longer configured; skipped", "target", t, "source_org", src, "user_id", ev.GetUserId())
			continue
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return s.reject(ctx, m, ev.GetEventId(), src, fmt.Errorf("tracked user %s of %s: none of its targets %v is configured", ev.GetUserId(), src, rec.Targets), nil)
	}
	opts := rec.Options()
	cctx, counter := orgs.WithCounter(ctx)
	sel := []*orgsyncv1.UserSelector{{Selector: &orgsyncv1.UserSelector_UserId{UserId: ev.GetUserId()}}}
	ex, err := Extract(cctx, client, src, sel, opts.GetInclude())
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		if IsPermanent(err) {
			return s.reject(ctx, m, ev.GetEventId(), src, fmt.Errorf("re-extract tracked user: %w", err), counter.Usage())
		}
		return err
	}
	if ev.GetOccurredAt() != nil {
		stampChangedAt(ex.Users, ev.GetOccurredAt().AsTime())
	}
	trigger := orgsyncv1.Trigger_TRIGGER_CHANGE
	if ev.GetSource() == orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP {
		trigger = orgsyncv1.Trigger_TRIGGER_SWEEP
	}
	snap, err := NewSnapshot(ev.GetEventId(), src, targets, opts, trigger, ex, s.cfg.Now())
	if err != nil {
		return natsx.Permanent(err)
	}
	return s.publish(ctx, snap)
}

// stampChangedAt sets source_changed_at of users to t (zero: left unset):
// the source state they were read in is at least as recent as t — the
// eventTime of the audit event that triggered the read, the start of a
// sweep, or when a clone request was made. Only the source's version and
// this time order configurations; the Genesys User has no dateModified.
func stampChangedAt(users []*orgsyncv1.UserConfig, t time.Time) {
	if t.IsZero() {
		return
	}
	ts := timestamppb.New(t)
	for _, u := range users {
		u.SourceChangedAt = ts
	}
}

func (s *Service) publish(ctx context.Context, snap *orgsyncv1.Snapshot) error {
	subj, err := natsx.SnapshotSubject(snap.GetSourceOrg())
	if err != nil {
		return natsx.Permanent(err)
	}
	if err := natsx.Publish(ctx, s.deps.JS, subj, snap.GetSnapshotId(), snap); err != nil {
		return fmt.Errorf("extractor: %w", err)
	}
	return nil
}

// reject reports a request (or change event) that can never succeed as one
// failed REQUEST event on orgsync.event.<org>.request and returns the reason
// as Permanent, so the runner terminates the message. When the event cannot
// be published the error is transient: the redelivery rejects again and
// retries the event, so the failure is never silent.
func (s *Service) reject(ctx context.Context, m natsx.Msg, requestID, org string, reason error, usage *orgsyncv1.ApiUsage) error {
	if natsx.ValidateOrgKey(org) != nil {
		s.log.Warn("rejected message names no valid org; no event emitted", "msg", m.String(), "reason", reason)
		return natsx.Permanent(reason)
	}
	ev := &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_FAILED,
		RequestId: requestID, Org: org, SourceOrg: org,
		Message: "request rejected by the extractor; nothing was written to any target",
		Reason:  reason.Error(), ApiCalls: usage,
		Attributes: map[string]string{"subject": m.Subject(), "stream_sequence": strconv.FormatUint(m.StreamSequence(), 10)},
	}
	if !ValidRequestID(requestID) {
		// No usable request id: key the event by the message itself so
		// distinct bad messages do not collapse into one event.
		ev.EventId = events.ID("extractor-reject", m.Subject(), strconv.FormatUint(m.StreamSequence(), 10))
	}
	if err := s.deps.Events.Emit(ctx, ev); err != nil {
		return fmt.Errorf("extractor: report rejected %s (%v): %w", m, reason, err)
	}
	return natsx.Permanent(reason)
}

// onCloneTerminated reports a clone request that exhausted its deliveries on
// transient errors (permanent failures were reported by reject already).
func (s *Service) onCloneTerminated(ctx context.Context, m natsx.Msg, reason error) {
	if natsx.IsPermanent(reason) || !errors.Is(reason, natsx.ErrMaxDeliveries) {
		return
	}
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var req orgsyncv1.CloneRequest
	_ = natsx.Decode(m, &req)
	if err := s.reject(ctx, m, req.GetRequestId(), subjectOrg, reason, nil); !natsx.IsPermanent(err) {
		s.log.Error("could not report an abandoned clone request", "msg", m.String(), "err", err)
	}
}

// onChangeTerminated is onCloneTerminated for change events.
func (s *Service) onChangeTerminated(ctx context.Context, m natsx.Msg, reason error) {
	if natsx.IsPermanent(reason) || !errors.Is(reason, natsx.ErrMaxDeliveries) {
		return
	}
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var ev orgsyncv1.ChangeEvent
	_ = natsx.Decode(m, &ev)
	if err := s.reject(ctx, m, ev.GetEventId(), subjectOrg, reason, nil); !natsx.IsPermanent(err) {
		s.log.Error("could not report an abandoned change event", "msg", m.String(), "err", err)
	}
}
