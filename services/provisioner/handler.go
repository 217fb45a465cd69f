package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

var tracer = otel.Tracer("orgsync/provisioner")

// Service consumes plans of its target orgs and applies them.
type Service struct {
	cfg    Config
	deps   Deps
	orgs   []string
	store  *Store
	engine *Engine
	log    *slog.Logger

	bound atomic.Int32 // consumers bound
}

// New validates cfg, opens the state file and builds the service. Close
// happens when Run returns.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if deps.JS == nil || deps.Clients == nil || deps.Events == nil {
		return nil, errors.New("provisioner: Deps.JS, Deps.Clients and Deps.Events are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	owned := cfg.Orgs
	if len(owned) == 0 {
		l, ok := deps.Clients.(OrgLister)
		if !ok {
			return nil, errors.New("provisioner: Config.Orgs is empty and Deps.Clients cannot list its orgs")
		}
		owned = l.Orgs()
		if len(owned) == 0 {
			return nil, errors.New("provisioner: no orgs to own (Config.Orgs empty, registry has none)")
		}
	}
	for _, o := range owned {
		if _, err := deps.Clients.Client(o); err != nil {
			return nil, fmt.Errorf("provisioner: owned org %q: %w", o, err)
		}
	}
	store, err := OpenStore(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	log := deps.Logger.With("instance", cfg.Instance) // the runtime adds service=provisioner
	var integrations IntegrationPublisher
	if !cfg.NoIntegrationRequests {
		integrations = NATSIntegrationPublisher(deps.JS)
	}
	eng := NewEngine(EngineDeps{Clients: deps.Clients, Store: store, Events: deps.Events, Logger: log, Observer: deps.Observer, Integrations: integrations},
		EngineConfig{UserConcurrency: cfg.UserConcurrency, DriftPolicy: cfg.DriftPolicy, Phones: cfg.Phones})
	return &Service{cfg: cfg, deps: deps, orgs: owned, store: store, engine: eng, log: log}, nil
}

// Orgs are the target orgs this service owns.
func (s *Service) Orgs() []string { return append([]string(nil), s.orgs...) }

// Engine is the domain engine (for callers that apply plans directly).
func (s *Service) Engine() *Engine { return s.engine }

// Ready reports whether every org's consumer is bound.
func (s *Service) Ready() bool { return int(s.bound.Load()) == len(s.orgs) }

// Run ensures the streams, binds one pinned consumer per owned org and
// applies plans until ctx is done. It closes the state file before returning.
func (s *Service) Run(ctx context.Context) error {
	defer s.store.Close()
	if err := natsx.EnsureStreams(ctx, s.deps.JS, s.cfg.Topology); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	drift, err := OpenDriftKV(ctx, s.deps.JS, s.cfg.Topology)
	if err != nil {
		return err
	}
	s.engine.deps.Drift = drift // before any consumer runs
	var wg sync.WaitGroup
	errs := make([]error, len(s.orgs))
	for i, org := range s.orgs {
		subj, err := natsx.PlanSubject(org)
		if err != nil {
			return fmt.Errorf("provisioner: %w", err)
		}
		spec := natsx.ConsumerSpec{
			Stream:          natsx.StreamPlans,
			Durable:         "provisioner-" + org,
			FilterSubjects:  []string{subj},
			AckWait:         s.cfg.AckWait,
			MaxDeliver:      s.cfg.MaxDeliver,
			Backoff:         s.cfg.Backoff,
			Concurrency:     s.cfg.Concurrency,
			Pinned:          true,
			PinnedTTL:       s.cfg.PinnedTTL,
			InProgressEvery: s.cfg.InProgressEvery,
			OnTerminate:     s.onTerminate(org),
			Logger:          s.log,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.bound.Add(1)
			defer s.bound.Add(-1)
			errs[i] = natsx.Consume(ctx, s.deps.JS, spec, func(hctx context.Context, m natsx.Msg) error {
				// Stopping aborts running plans at once instead of letting
				// them finish during the drain: the journal makes the
				// redelivery (here or on the standby) resume where they stopped.
				hctx, cancel := context.WithCancel(hctx)
				defer context.AfterFunc(ctx, cancel)()
				defer cancel()
				return s.handle(hctx, org, m)
			})
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handle decodes and applies one plan. Ack policy: an undecodable or invalid
// plan, or one that can never succeed (a shared resource missing in the
// target), is Permanent; a transient failure (5xx, 429 after retries,
// network) returns the error for redelivery, and the journal makes the next
// attempt resume at the first unfinished step.
func (s *Service) handle(ctx context.Context, org string, m natsx.Msg) error {
	ctx, span := tracer.Start(ctx, "provisioner.plan")
	defer span.End()
	var plan orgsyncv1.Plan
	if err := natsx.Decode(m, &plan); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return natsx.Permanent(fmt.Errorf("provisioner: plan on %s: %w", m.Subject(), err))
	}
	span.SetAttributes(attribute.String("orgsync.plan_id", plan.GetPlanId()), attribute.String("orgsync.org", org),
		attribute.Int("orgsync.users", len(plan.GetUsers())), attribute.Int64("orgsync.delivery", int64(m.Delivered())))
	if plan.GetTargetOrg() != org {
		return natsx.Permanent(fmt.Errorf("provisioner: plan %s targets %q but arrived on %s", plan.GetPlanId(), plan.GetTargetOrg(), m.Subject()))
	}
	started := time.Now()
	res, err := s.engine.Apply(ctx, &plan)
	if err == nil || IsPlanFailure(err) {
		s.dropJournal(org, plan.GetPlanId()) // the plan has ended
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		if IsPlanFailure(err) {
			metrics.PlanDuration(ctx, org, time.Since(started), metrics.PlanFailed)
			return natsx.Permanent(err)
		}
		metrics.PlanDuration(ctx, org, time.Since(started), metrics.PlanRetry)
		s.log.Warn("plan attempt failed; will be redelivered", "plan", plan.GetPlanId(), "delivery", m.Delivered(), "err", err)
		return err
	}
	metrics.PlanDuration(ctx, org, time.Since(started), metrics.PlanSucceeded)
	logFailedUsers(s.log, org, res)
	return nil
}

// dropJournal deletes the journal of an ended plan (Store.DropJournal); a
// failure only leaves the records behind, so it is logged, not returned.
func (s *Service) dropJournal(org, planID string) {
	if err := s.store.DropJournal(org, planID); err != nil {
		s.log.Warn("journal of an ended plan kept", "plan", planID, "org", org, "err", err)
	}
}

// logFailedUsers says at WARN which users of a finished plan failed (the
// events say it too, but an operator reads the log first). Reasons are API
// answers and validation messages: they never hold credentials.
func logFailedUsers(log *slog.Logger, org string, res *PlanResult) {
	if res == nil || res.Status != orgsyncv1.Status_STATUS_FAILED {
		return
	}
	const shown = 10 // per plan: a plan of 2,000 failing users must not flood the log
	failed := 0
	for _, u := range res.Users {
		if u.Status != orgsyncv1.Status_STATUS_FAILED {
			continue
		}
		if failed++; failed <= shown {
			log.Warn("user provisioning failed", "plan", res.PlanID, "org", org, "user", u.ExternalID, "reason", u.Reason)
		}
	}
	if failed > shown {
		log.Warn("more users failed in this plan (see its events)", "plan", res.PlanID, "org", org, "failed", failed, "logged", shown)
	}
}

// onTerminate reports a terminated plan as a failed TARGET event.
func (s *Service) onTerminate(org string) natsx.TerminateHook {
	return func(ctx context.Context, m natsx.Msg, reason error) {
		var plan orgsyncv1.Plan
		_ = natsx.Decode(m, &plan) // best effort: an undecodable plan still gets its event
		ev := &orgsyncv1.Event{
			Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED,
			RequestId: plan.GetRequestId(), PlanId: plan.GetPlanId(), Org: org, SourceOrg: plan.GetSourceOrg(),
			Message: "plan failed", Reason: reason.Error(), Total: int32(len(plan.GetUsers())), PlanParts: plan.GetParts(),
		}
		if plan.GetPlanId() == "" {
			ev.PlanId = fmt.Sprintf("undecodable:%s:%d", org, m.StreamSequence())
		}
		if err := s.deps.Events.Emit(ctx, ev); err != nil {
			s.log.Error("emit failed target event", "plan", ev.PlanId, "err", err)
		}
	}
}
