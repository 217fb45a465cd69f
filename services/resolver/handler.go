package resolver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// targetOutcome is what resolving one target produced: a plan to publish,
// or the reason the target fails.
type targetOutcome struct {
	target string
	plan   *orgsyncv1.Plan
	failed error
	usage  *orgsyncv1.ApiUsage
}

// handleSnapshot resolves every target of a snapshot. All pre-flights run
// (read-only) before anything is published, so a transient API error
// redelivers the snapshot with nothing half-done; a republished plan or
// event is dropped by JetStream (deterministic ids).
func (s *Service) handleSnapshot(ctx context.Context, m natsx.Msg) error {
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var snap orgsyncv1.Snapshot
	if err := natsx.Decode(m, &snap); err != nil {
		return s.reject(ctx, m, "", subjectOrg, fmt.Errorf("malformed snapshot: %w", err))
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.snapshot", trace.WithAttributes(
		attribute.String("orgsync.request_id", snap.GetRequestId()), attribute.String("orgsync.snapshot_id", snap.GetSnapshotId()),
		attribute.String("orgsync.source_org", snap.GetSourceOrg())))
	defer span.End()
	if err := validateSnapshot(&snap, subjectOrg); err != nil {
		span.SetStatus(codes.Error, err.Error())
		org := snap.GetSourceOrg()
		if natsx.ValidateOrgKey(org) != nil {
			org = subjectOrg
		}
		return s.reject(ctx, m, snap.GetRequestId(), org, err)
	}

	srcDefault, err := s.sourceDefault(ctx, &snap)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		if isPermanentAPI(err) {
			return s.reject(ctx, m, snap.GetRequestId(), snap.GetSourceOrg(), err)
		}
		return err // transient: redeliver, nothing published yet
	}
	targets := uniqueSorted(snap.GetTargetOrgs())
	outcomes := make([]targetOutcome, 0, len(targets))
	for _, target := range targets {
		out, err := s.resolveTarget(ctx, &snap, target, srcDefault)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			return err // transient: redeliver, nothing published yet
		}
		outcomes = append(outcomes, out)
	}

	var planned, failed []string
	for _, o := range outcomes {
		if o.failed != nil {
			failed = append(failed, o.target)
			if err := s.deps.Events.Emit(ctx, &orgsyncv1.Event{
				Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED,
				RequestId: snap.GetRequestId(), PlanId: planID(&snap, o.target), Org: o.target, SourceOrg: snap.GetSourceOrg(),
				Message:   fmt.Sprintf("no plan for %s: nothing will be written there", o.target),
				Reason:    o.failed.Error(),
				ApiCalls:  o.usage,
				Total:     int32(len(snap.GetUsers())),
				PlanParts: snap.GetParts(),
			}); err != nil {
				return err
			}
			continue
		}
		planned = append(planned, o.target)
		subj, err := natsx.PlanSubject(o.target)
		if err != nil {
			return natsx.Permanent(err)
		}
		if err := natsx.Publish(ctx, s.deps.JS, subj, o.plan.GetPlanId(), o.plan); err != nil {
			return fmt.Errorf("resolver: %w", err)
		}
		if err := s.auditCapacityRepairs(ctx, o.plan); err != nil {
			return err
		}
	}
	span.SetAttributes(attribute.StringSlice("orgsync.planned_targets", planned), attribute.StringSlice("orgsync.failed_targets", failed))
	s.log.Info("snapshot resolved", "request_id", snap.GetRequestId(), "snapshot_id", snap.GetSnapshotId(),
		"planned", planned, "failed", failed)
	return s.deps.Events.Emit(ctx, &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_RUNNING,
		RequestId: snap.GetRequestId(), Org: snap.GetSourceOrg(), SourceOrg: snap.GetSourceOrg(),
		Message: fmt.Sprintf("planned %d of %d target(s)", len(planned), len(targets)),
		Total:   int32(len(planned)),
		Attributes: map[string]string{
			"planned_targets": strings.Join(planned, ","),
			"failed_targets":  strings.Join(failed, ","),
			"snapshot_id":     snap.GetSnapshotId(),
			"trigger":         snap.GetTrigger().String(),
			"users":           strconv.Itoa(len(snap.GetUsers())),
		},
	})
}

// resolveTarget builds and pre-flights the plan of one target. A returned
// error is transient (the snapshot is redelivered); a failure of the target
// itself is in the outcome.
func (s *Service) resolveTarget(ctx context.Context, snap *orgsyncv1.Snapshot, target string, srcDefault *orgsyncv1.Utilization) (targetOutcome, error) {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.target", trace.WithAttributes(attribute.String("orgsync.target_org", target)))
	defer span.End()
	out := targetOutcome{target: target}
	fail := func(err error) (targetOutcome, error) {
		span.SetStatus(codes.Error, err.Error())
		out.failed = err
		return out, nil
	}
	plan, err := BuildPlan(PlanInput{Snapshot: snap, Target: target, EmailRule: s.cfg.EmailMapping[target]})
	if err != nil {
		return fail(err)
	}
	c, err := s.deps.Clients.Client(target)
	if err != nil {
		if errors.Is(err, orgs.ErrUnknownOrg) {
			return fail(fmt.Errorf("target org %q is not configured in the resolver", target))
		}
		return fail(err)
	}
	cctx, counter := orgs.WithCounter(ctx)
	err = preflight(cctx, c, plan, s.lookups)
	if err == nil {
		err = CheckCapacity(cctx, c, plan, srcDefault, s.cfg.CapacityPolicy[target])
	}
	out.usage = counter.Usage()
	var pf *PreflightError
	var ce *CapacityError
	switch {
	case errors.As(err, &pf), errors.As(err, &ce):
		return fail(err)
	case isPermanentAPI(err):
		return fail(fmt.Errorf("pre-flight in %s: %w", target, err))
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
		return out, fmt.Errorf("resolver: target %s: %w", target, err)
	}
	out.plan = plan
	return out, nil
}

// validateSnapshot checks what planning relies on; a violation is permanent.
func validateSnapshot(snap *orgsyncv1.Snapshot, subjectOrg string) error {
	var errs []string
	if snap.GetRequestId() == "" {
		errs = append(errs, "request_id is missing")
	}
	if err := natsx.ValidateOrgKey(snap.GetSourceOrg()); err != nil {
		errs = append(errs, "source_org: "+err.Error())
	} else if snap.GetSourceOrg() != subjectOrg {
		errs = append(errs, fmt.Sprintf("source_org %q does not match the subject's org %q", snap.GetSourceOrg(), subjectOrg))
	}
	if len(snap.GetTargetOrgs()) == 0 {
		errs = append(errs, "no target orgs")
	}
	for _, t := range snap.GetTargetOrgs() {
		if err := natsx.ValidateOrgKey(t); err != nil {
			errs = append(errs, "target org: "+err.Error())
		}
	}
	if len(snap.GetUsers()) == 0 {
		errs = append(errs, "no users")
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid snapshot %s: %s", snap.GetSnapshotId(), strings.Join(errs, "; "))
	}
	return nil
}

// planID is the id of the plan of snap for target: "<request id>|<target>",
// plus "|part-<i>-of-<n>" for a part of a request extracted in parts.
func planID(snap *orgsyncv1.Snapshot, target string) string {
	id := snap.GetRequestId() + "|" + target
	if snap.GetParts() > 1 {
		id += fmt.Sprintf("|part-%d-of-%d", snap.GetPart(), snap.GetParts())
	}
	return id
}

func uniqueSorted(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// reject reports a snapshot that can never be planned as a failed REQUEST
// event and returns the reason as Permanent (message terminated).
func (s *Service) reject(ctx context.Context, m natsx.Msg, requestID, org string, reason error) error {
	if natsx.ValidateOrgKey(org) != nil {
		s.log.Warn("rejected snapshot names no valid org; no event emitted", "msg", m.String(), "reason", reason)
		return natsx.Permanent(reason)
	}
	ev := &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_REQUEST, Status: orgsyncv1.Status_STATUS_FAILED,
		RequestId: requestID, Org: org, SourceOrg: org,
		Message:    "snapshot rejected by the resolver; nothing was written to any target",
		Reason:     reason.Error(),
		Attributes: map[string]string{"subject": m.Subject(), "stream_sequence": strconv.FormatUint(m.StreamSequence(), 10)},
	}
	if requestID == "" {
		ev.EventId = events.ID("resolver-reject", m.Subject(), strconv.FormatUint(m.StreamSequence(), 10))
	}
	if err := s.deps.Events.Emit(ctx, ev); err != nil {
		return fmt.Errorf("resolver: report rejected %s (%v): %w", m, reason, err)
	}
	return natsx.Permanent(reason)
}

// onTerminated reports a snapshot abandoned after its last delivery failed
// on transient errors (permanent failures were reported by reject).
func (s *Service) onTerminated(ctx context.Context, m natsx.Msg, reason error) {
	if natsx.IsPermanent(reason) || !errors.Is(reason, natsx.ErrMaxDeliveries) {
		return
	}
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var snap orgsyncv1.Snapshot
	_ = natsx.Decode(m, &snap)
	if err := s.reject(ctx, m, snap.GetRequestId(), subjectOrg, reason); !natsx.IsPermanent(err) {
		s.log.Error("could not report an abandoned snapshot", "msg", m.String(), "err", err)
	}
}
