package resolver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// targetOutcome is what resolving one target produced: a plan to publish,
// the reason the target fails for good, or (retry) the transient error
// that leaves it open for the snapshot's next delivery.
type targetOutcome struct {
	target string
	plan   *orgsyncv1.Plan
	failed error
	retry  error
	usage  *orgsyncv1.ApiUsage
}

// openTargets is the error of a delivery that left targets open: each
// target's own transient error (every one names its target).
type openTargets map[string]error

func (o openTargets) Error() string {
	parts := make([]string, 0, len(o))
	for _, t := range slices.Sorted(maps.Keys(o)) {
		parts = append(parts, o[t].Error())
	}
	return strings.Join(parts, "; ")
}

// handleSnapshot resolves every target of a snapshot, each on its own
// (DESIGN: one failing target never holds back the others). Targets are
// resolved concurrently; a target that passes pre-flight has its plan
// published at once, a target that fails for good (permanent API error,
// missing objects, bad rule) gets its failed TARGET event at once. A
// target that failed transiently (5xx, 429, network, after the client's
// own retries) stays open: the snapshot is redelivered with backoff and
// the redelivery resolves only the open targets (s.progress remembers the
// settled ones; on another instance they are resolved again, and the
// republished plan and events are dropped by JetStream: deterministic
// ids). On the last allowed delivery an open target fails with its last
// error and the snapshot is terminated.
func (s *Service) handleSnapshot(ctx context.Context, m natsx.Msg) error {
	subjectOrg, _ := natsx.OrgFromSubject(m.Subject())
	var snap orgsyncv1.Snapshot
	if err := natsx.Decode(m, &snap); err != nil {
		return s.reject(ctx, m, "", subjectOrg, fmt.Errorf("malformed snapshot: %w", err))
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.snapshot", trace.WithAttributes(
		attribute.String("orgsync.request_id", snap.GetRequestId()), attribute.String("orgsync.snapshot_id", snap.GetSnapshotId()),
		attribute.String("orgsync.source_org", snap.GetSourceOrg()), attribute.Int64("orgsync.delivery", int64(m.Delivered()))))
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
		if genesys.IsPermanent(err) {
			return s.reject(ctx, m, snap.GetRequestId(), snap.GetSourceOrg(), err)
		}
		return err // the source org's trouble concerns every target: redeliver, nothing published
	}
	targets := uniqueSorted(snap.GetTargetOrgs())
	prog := s.progress.get(m.StreamSequence())
	var open []string
	for _, t := range targets {
		if !prog.settled(t) {
			open = append(open, t)
		}
	}
	outcomes := make([]targetOutcome, len(open))
	var wg sync.WaitGroup
	for i, target := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[i] = s.settleTarget(ctx, &snap, target, srcDefault)
		}()
	}
	wg.Wait()

	retry := openTargets{}
	for _, o := range outcomes {
		switch {
		case o.retry != nil:
			retry[o.target] = o.retry
		default:
			prog.settle(o.target, o.plan != nil)
		}
	}
	if len(retry) > 0 {
		if ctx.Err() != nil { // stopping: the redelivery resumes, nothing to report
			return retry
		}
		last := int(m.Delivered()) >= s.cfg.MaxDeliver
		for _, t := range slices.Sorted(maps.Keys(retry)) {
			if err := s.reportOpen(ctx, &snap, t, retry[t], m.Delivered(), last); err != nil {
				return fmt.Errorf("%w (and reporting it failed: %v)", retry, err)
			}
			if last {
				prog.settle(t, false)
			}
		}
		if !last {
			span.SetStatus(codes.Error, retry.Error())
			return retry // redelivered with backoff; only these targets are resolved again
		}
	}
	planned, failed := prog.split(targets)
	span.SetAttributes(attribute.StringSlice("orgsync.planned_targets", planned), attribute.StringSlice("orgsync.failed_targets", failed))
	s.log.Info("snapshot resolved", "request_id", snap.GetRequestId(), "snapshot_id", snap.GetSnapshotId(),
		"planned", planned, "failed", failed, "deliveries", m.Delivered())
	if err := s.deps.Events.Emit(ctx, &orgsyncv1.Event{
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
	}); err != nil {
		return err
	}
	s.progress.forget(m.StreamSequence())
	if len(retry) > 0 {
		// Terminated rather than acked: the failed targets' events are out,
		// and the dead letter keeps the snapshot for a retry.
		span.SetStatus(codes.Error, retry.Error())
		return natsx.Permanent(fmt.Errorf("gave up on %d target(s) after %d deliveries: %w", len(retry), m.Delivered(), retry))
	}
	return nil
}

// settleTarget resolves one target and acts on the outcome: the plan is
// published (and announced), a failure is reported. A failure to publish
// leaves the target open like a transient API error.
func (s *Service) settleTarget(ctx context.Context, snap *orgsyncv1.Snapshot, target string, srcDefault *orgsyncv1.Utilization) targetOutcome {
	o := s.resolveTarget(ctx, snap, target, srcDefault)
	switch {
	case o.retry != nil:
	case o.failed != nil:
		if err := s.deps.Events.Emit(ctx, s.targetFailed(snap, target, o.failed, o.usage)); err != nil {
			o.retry = fmt.Errorf("report the failure of %s: %w", target, err)
		}
	default:
		if err := s.publishPlan(ctx, snap, o.plan); err != nil {
			o.retry = err
		}
	}
	return o
}

// publishPlan publishes a target's plan, its capacity repairs' audit
// event, and a TARGET event saying pre-flight passed (the target is no
// longer pending while its provisioner picks the plan up).
func (s *Service) publishPlan(ctx context.Context, snap *orgsyncv1.Snapshot, plan *orgsyncv1.Plan) error {
	subj, err := natsx.PlanSubject(plan.GetTargetOrg())
	if err != nil {
		return err
	}
	if err := natsx.Publish(ctx, s.deps.JS, subj, plan.GetPlanId(), plan); err != nil {
		return fmt.Errorf("resolver: publish the plan of %s: %w", plan.GetTargetOrg(), err)
	}
	if err := s.auditCapacityRepairs(ctx, plan); err != nil {
		return err
	}
	return s.deps.Events.Emit(ctx, &orgsyncv1.Event{
		// Own id: the provisioner's TARGET RUNNING event of the plan must
		// not be taken for a duplicate of this one.
		EventId: events.ID("resolver-planned", plan.GetPlanId()),
		Kind:    orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_RUNNING,
		RequestId: plan.GetRequestId(), PlanId: plan.GetPlanId(), Org: plan.GetTargetOrg(), SourceOrg: snap.GetSourceOrg(),
		Message:   fmt.Sprintf("pre-flight passed; plan of %d user(s) published", len(plan.GetUsers())),
		Total:     int32(len(plan.GetUsers())),
		PlanParts: snap.GetParts(),
	})
}

// targetFailed is the failed TARGET event of a target that gets no plan.
func (s *Service) targetFailed(snap *orgsyncv1.Snapshot, target string, reason error, usage *orgsyncv1.ApiUsage) *orgsyncv1.Event {
	return &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED,
		RequestId: snap.GetRequestId(), PlanId: planID(snap, target), Org: target, SourceOrg: snap.GetSourceOrg(),
		Message:   fmt.Sprintf("no plan for %s: nothing will be written there", target),
		Reason:    reason.Error(),
		ApiCalls:  usage,
		Total:     int32(len(snap.GetUsers())),
		PlanParts: snap.GetParts(),
	}
}

// reportOpen tells the target's watchers that its resolution failed
// transiently: a RUNNING event saying it will be retried, or, on the last
// delivery, its failed event with the last error.
func (s *Service) reportOpen(ctx context.Context, snap *orgsyncv1.Snapshot, target string, err error, delivery uint64, last bool) error {
	if last {
		return s.deps.Events.Emit(ctx, s.targetFailed(snap, target,
			fmt.Errorf("%w; the last of %d attempts at this target", err, delivery), nil))
	}
	s.log.Warn("target not resolved; retried with the snapshot's next delivery", "request_id", snap.GetRequestId(),
		"target", target, "delivery", delivery, "max_deliver", s.cfg.MaxDeliver, "err", err)
	return s.deps.Events.Emit(ctx, &orgsyncv1.Event{
		// One event per attempt; the reason stays in the message so that it
		// does not stick to the target once it succeeds.
		EventId: events.ID("resolver-retry", planID(snap, target), strconv.FormatUint(delivery, 10)),
		Kind:    orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_RUNNING,
		RequestId: snap.GetRequestId(), PlanId: planID(snap, target), Org: target, SourceOrg: snap.GetSourceOrg(),
		Message:   fmt.Sprintf("attempt %d of %d failed, will retry: %v", delivery, s.cfg.MaxDeliver, err),
		Total:     int32(len(snap.GetUsers())),
		PlanParts: snap.GetParts(),
	})
}

// resolveTarget builds and pre-flights the plan of one target. Errors name
// the target and their operation once.
func (s *Service) resolveTarget(ctx context.Context, snap *orgsyncv1.Snapshot, target string, srcDefault *orgsyncv1.Utilization) targetOutcome {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.target", trace.WithAttributes(attribute.String("orgsync.target_org", target)))
	defer span.End()
	out := targetOutcome{target: target}
	fail := func(err error) targetOutcome {
		span.SetStatus(codes.Error, err.Error())
		out.failed = err
		return out
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
	case errors.As(err, &pf), errors.As(err, &ce), genesys.IsPermanent(err):
		return fail(err)
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
		out.retry = err
		return out
	}
	out.plan = plan
	return out
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
// on a transient error of the snapshot itself (the source org, NATS).
// Permanent failures were reported already: by reject, or, for targets
// given up on, by handleSnapshot.
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
