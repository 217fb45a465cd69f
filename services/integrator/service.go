package integrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

var tracer = otel.Tracer("orgsync/integrator")

// Service is the integrator.
type Service struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	http  *http.Client
	kv    jetstream.KeyValue
	ready atomic.Bool

	// health keeps the per-org counts from a watch of the state bucket
	// and raises the failure-rate alert.
	health *tracker

	users    keyedMutex // per user and target: one sync at a time
	checking keyedMutex // per target: one integration check at a time
	checkMu  sync.Mutex
	active   map[string]time.Time // target\x00instance → ACTIVE until
}

// New checks cfg and deps and returns an unstarted service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil || deps.Clients == nil {
		return nil, errors.New("integrator: Deps.JS and Deps.Clients are required")
	}
	if deps.Events == nil {
		deps.Events = events.New(deps.JS)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	hc := deps.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Service{cfg: cfg.WithDefaults(), deps: deps, log: deps.Logger, http: hc,
		active: map[string]time.Time{}}
	s.health = newTracker(s)
	return s, nil
}

// Ready reports whether the request consumer is bound.
func (s *Service) Ready() bool { return s.ready.Load() }

func (s *Service) spec() natsx.ConsumerSpec {
	spec := s.cfg.Spec(natsx.StreamIntegrations, Durable)
	spec.FilterSubjects = []string{natsx.SubjectRoot + ".integration.>"}
	spec.Logger, spec.OnTerminate = s.log, s.onTerminated
	return spec
}

// Run ensures the streams and the state bucket, binds the consumer and
// syncs requests until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if err := natsx.EnsureStreams(ctx, s.deps.JS, s.cfg.Topology); err != nil {
		return fmt.Errorf("integrator: %w", err)
	}
	kv, err := EnsureBucket(ctx, s.deps.JS, s.cfg.Topology)
	if err != nil {
		return err
	}
	s.kv = kv
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched, err := s.health.start(watchCtx, kv)
	if err != nil {
		return err
	}
	defer func() { stopWatch(); <-watched }()
	unregister := s.registerMetrics()
	defer unregister()
	spec := s.spec()
	if _, err := s.deps.JS.CreateOrUpdateConsumer(ctx, spec.Stream, spec.ConsumerConfig()); err != nil {
		return fmt.Errorf("integrator: create consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	s.ready.Store(true)
	defer s.ready.Store(false)
	return natsx.Consume(ctx, s.deps.JS, spec, s.handle)
}

// handle syncs the users of one request: a batch (a plan's users,
// IntegrationRequest.users) or a single user. Ack policy: an undecodable
// or invalid request is Permanent (an invalid row of a batch is logged and
// left out: the others are valid work); a Genesys check that failed
// transiently is redelivered — users whose sync already ended are not
// synced again; every CRM outcome (provisioned, rejected, deadline) is
// final and acked — a later provisioning run of the user publishes a new
// request.
func (s *Service) handle(ctx context.Context, m natsx.Msg) error {
	ctx, span := tracer.Start(ctx, "integrator.sync")
	defer span.End()
	var req orgsyncv1.IntegrationRequest
	if err := natsx.Decode(m, &req); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return natsx.Permanent(fmt.Errorf("integrator: request on %s: %w", m.Subject(), err))
	}
	subjOrg, _ := natsx.OrgFromSubject(m.Subject())
	rows := requestUsers(&req)
	if len(req.GetUsers()) > 0 {
		rows = slices.DeleteFunc(rows, func(row *orgsyncv1.IntegrationRequest) bool {
			err := validRequest(row, subjOrg, m.Subject())
			if err != nil {
				s.log.Warn("CRM sync request left out of its batch", "batch", req.GetRequestId(), "err", err)
			}
			return err != nil
		})
	} else if err := validRequest(&req, subjOrg, m.Subject()); err != nil {
		return natsx.Permanent(err)
	}
	span.SetAttributes(attribute.String("orgsync.org", req.GetTargetOrg()), attribute.Int("orgsync.users", len(rows)))
	evs := make([]*orgsyncv1.Event, len(rows))
	errs := make([]error, len(rows))
	var g errgroup.Group // the users of a batch, Concurrency at a time
	g.SetLimit(s.cfg.Concurrency)
	for i, row := range rows {
		g.Go(func() error {
			evs[i], errs[i] = s.syncUser(ctx, m, row)
			return nil // each user's outcome is its own (errs)
		})
	}
	_ = g.Wait()
	// One AUDIT event for the request's outcomes (a row per user).
	if evs = slices.DeleteFunc(evs, func(e *orgsyncv1.Event) bool { return e == nil }); len(evs) > 0 {
		b := events.Batch(orgsyncv1.EventKind_EVENT_KIND_AUDIT, evs)
		b.RequestId, b.PlanId, b.Org, b.SourceOrg = req.GetOriginRequestId(), req.GetPlanId(), req.GetTargetOrg(), req.GetSourceOrg()
		if err := s.deps.Events.Emit(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("integrator: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	return nil
}

// requestUsers returns the single-user requests req stands for: its rows
// completed with the batch's envelope, or req itself.
func requestUsers(req *orgsyncv1.IntegrationRequest) []*orgsyncv1.IntegrationRequest {
	if len(req.GetUsers()) == 0 {
		return []*orgsyncv1.IntegrationRequest{req}
	}
	for _, row := range req.GetUsers() {
		row.TargetOrg, row.OriginRequestId, row.PlanId, row.SourceOrg = req.GetTargetOrg(), req.GetOriginRequestId(), req.GetPlanId(), req.GetSourceOrg()
	}
	return slices.Clone(req.GetUsers())
}

// validRequest checks one user's request received on subject.
func validRequest(req *orgsyncv1.IntegrationRequest, subjOrg, subject string) error {
	if req.GetTargetOrg() != subjOrg || req.GetUserExternalId() == "" || req.GetRequestId() == "" || req.GetEmail() == "" {
		return fmt.Errorf("integrator: request %q on %s is invalid (target %q, user %q, email %q)",
			req.GetRequestId(), subject, req.GetTargetOrg(), req.GetUserExternalId(), req.GetEmail())
	}
	return nil
}

// syncUser syncs one user and records the outcome; it returns the AUDIT
// event to send (nil when the sync had already ended) or the transient
// error to redeliver the request for.
func (s *Service) syncUser(ctx context.Context, m natsx.Msg, req *orgsyncv1.IntegrationRequest) (*orgsyncv1.Event, error) {
	// One sync per user at a time in this instance: a duplicate delivered
	// while the first runs waits for it, then finds it done below.
	defer s.users.lock(recordKey(req.GetTargetOrg(), req.GetUserExternalId()))()
	// A redelivered request (its ack lost, or a replay) that already ended
	// is not synced again: one CRM upsert per request.
	if prev, ok, err := s.getState(ctx, req); err != nil {
		return nil, err
	} else if ok && prev.RequestID == req.GetRequestId() && final(prev.State) {
		s.log.Debug("CRM sync already done", "org", req.GetTargetOrg(), "user", req.GetUserExternalId(), "state", prev.State)
		return nil, nil
	}
	// PENDING while a CRM call is under way (a target without an adapter
	// ends at once: SKIPPED is its only state).
	if _, adapter := s.cfg.Targets[req.GetTargetOrg()]; adapter {
		if err := s.putState(ctx, req, StatePending, Outcome{}); err != nil {
			return nil, err
		}
	}
	out, err := s.Sync(ctx, req)
	if err == nil && ctx.Err() != nil {
		// Shutdown interrupted the sync: not its outcome. The request is
		// handed back (natsx naks it) and the next instance finishes it.
		err = fmt.Errorf("integrator: CRM sync of %s in %s interrupted: %w", req.GetUserExternalId(), req.GetTargetOrg(), ctx.Err())
	}
	if err != nil {
		s.log.Warn("CRM sync will be retried", "org", req.GetTargetOrg(), "user", req.GetUserExternalId(), "delivery", m.Delivered(), "err", err)
		return nil, err
	}
	if out.State == StateFailed {
		trace.SpanFromContext(ctx).SetStatus(codes.Error, out.Reason)
	}
	return s.record(ctx, req, out)
}

// finish records an outcome and sends its AUDIT event.
func (s *Service) finish(ctx context.Context, req *orgsyncv1.IntegrationRequest, out Outcome) error {
	ev, err := s.record(ctx, req, out)
	if err != nil {
		return err
	}
	if err := s.deps.Events.Emit(ctx, ev); err != nil {
		return fmt.Errorf("integrator: %w", err)
	}
	return nil
}

// record writes an outcome into the state bucket (whose watch keeps the
// counts and the alert) and returns its AUDIT event.
func (s *Service) record(ctx context.Context, req *orgsyncv1.IntegrationRequest, out Outcome) (*orgsyncv1.Event, error) {
	if err := s.putState(ctx, req, out.State, out); err != nil {
		return nil, err
	}
	status, msg := orgsyncv1.Status_STATUS_CHANGED, fmt.Sprintf("CRM record of %s provisioned", req.GetEmail())
	switch out.State {
	case StateFailed:
		status, msg = orgsyncv1.Status_STATUS_FAILED, fmt.Sprintf("CRM sync of %s failed; the user's Genesys provisioning stands", req.GetEmail())
	case StateSkipped:
		status, msg = orgsyncv1.Status_STATUS_SKIPPED, fmt.Sprintf("CRM sync of %s skipped: no CRM adapter for %s", req.GetEmail(), req.GetTargetOrg())
	}
	ev := &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: status,
		RequestId: req.GetOriginRequestId(), PlanId: req.GetPlanId(), Org: req.GetTargetOrg(), SourceOrg: req.GetSourceOrg(),
		UserExternalId: req.GetUserExternalId(), TargetUserId: req.GetTargetUserId(), Step: "crm",
		Message: msg, Reason: out.Reason,
		Attributes: map[string]string{"workflow": "crm", "state": out.State, "crm_status": out.CRMStatus, "stage": out.Stage,
			"external_key": req.GetUserExternalId(), "integration_request_id": req.GetRequestId(),
			"calls": strconv.Itoa(out.Calls), "polls": strconv.Itoa(out.Polls), "rate_limited": strconv.Itoa(out.RateLimited)},
	}
	return ev, nil
}

// onTerminated records a request abandoned after its last delivery failed
// transiently as a failed sync.
func (s *Service) onTerminated(ctx context.Context, m natsx.Msg, reason error) {
	if natsx.IsPermanent(reason) {
		return
	}
	var req orgsyncv1.IntegrationRequest
	if natsx.Decode(m, &req) != nil || req.GetTargetOrg() == "" || s.kv == nil {
		return
	}
	out := Outcome{State: StateFailed, Stage: "integration", Reason: fmt.Sprintf("gave up after %d deliveries: %v", m.Delivered(), reason)}
	for _, row := range requestUsers(&req) {
		// Users of a batch whose sync ended keep their outcome.
		if prev, ok, err := s.getState(ctx, row); err == nil && ok && prev.RequestID == row.GetRequestId() && final(prev.State) {
			continue
		}
		if err := s.finish(ctx, row, out); err != nil {
			s.log.Error("record abandoned CRM sync", "org", row.GetTargetOrg(), "user", row.GetUserExternalId(), "err", err)
		}
	}
}
