package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"golang.org/x/sync/singleflight"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// StepObserver is told about every finished and journaled step (never in a
// dry run). It runs on the engine's goroutine: a test may cancel the
// provisioner from it to simulate a crash at a step boundary.
type StepObserver func(ctx context.Context, org, planID, userExtID, step string, status orgsyncv1.Status)

// EngineDeps are the Engine's collaborators. Events may be nil (no events).
type EngineDeps struct {
	Clients  orgs.Clients
	Store    *Store
	Events   *events.Emitter
	Logger   *slog.Logger
	Observer StepObserver
	// Drift records the current drift per target and user (nil: not recorded).
	Drift DriftRecorder
	// Integrations, when set, gets the CRM sync request of every user whose
	// core provisioning finished (integration.go).
	Integrations IntegrationPublisher
}

// EngineConfig tunes the Engine.
type EngineConfig struct {
	// UserConcurrency is how many users of a plan are worked on at once
	// within one step (default 4).
	UserConcurrency int
	// DriftPolicy per target org: DriftEnforce (default) or DriftReport (delta.go).
	DriftPolicy map[string]string
	// Phones is the phone alias policy per target org key (phone_alias.go);
	// a target without one gives any free DID, with no fallback.
	Phones map[string]PhonePolicy
}

// Engine applies plans. It is safe for concurrent use: plans of one org run
// concurrently, but a user is only ever worked on by one plan at a time
// (per-user locks), and a shared resource is created at most once
// (singleflight per org and external id, plus lookup-before-create).
type Engine struct {
	deps   EngineDeps
	cfg    EngineConfig
	log    *slog.Logger
	locks  *userLocks
	reads  *sharedReads // reads coalesced across concurrent plans
	dids   didClaims    // free numbers handed to running plans (phone_alias.go)
	flight singleflight.Group
}

// NewEngine builds an Engine.
func NewEngine(deps EngineDeps, cfg EngineConfig) *Engine {
	if cfg.UserConcurrency < 1 {
		cfg.UserConcurrency = DefaultUserConcurrency
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Engine{deps: deps, cfg: cfg, log: deps.Logger, locks: newUserLocks(), reads: newSharedReads()}
}

// PlanResult is the outcome of one Apply.
type PlanResult struct {
	PlanID string
	// Status: CHANGED, UNCHANGED, FAILED (some user failed), PLANNED (dry run).
	Status orgsyncv1.Status
	Users  []UserResult
	// Calls are all API calls the attempt made.
	Calls *orgsyncv1.ApiUsage
}

// UserResult is the outcome for one user.
type UserResult struct {
	ExternalID   string
	TargetUserID string
	Status       orgsyncv1.Status
	Reason       string
	Steps        map[string]orgsyncv1.Status
	// Calls attributable to the user (batched and shared calls amortised).
	Calls *orgsyncv1.ApiUsage
	// CallsExact is Calls before rounding (reads + writes).
	CallsExact float64
}

// planFailure marks an error that makes the whole plan impossible (invalid
// plan, a resource the target lacks and orgsync may not create): retrying
// cannot help.
type planFailure struct{ err error }

func (p *planFailure) Error() string { return p.err.Error() }
func (p *planFailure) Unwrap() error { return p.err }

// IsPlanFailure reports whether err means the plan can never succeed.
func IsPlanFailure(err error) bool {
	var p *planFailure
	return errors.As(err, &p)
}

func failPlan(format string, args ...any) error {
	return &planFailure{err: fmt.Errorf(format, args...)}
}

// Apply runs plan against its target org. It returns a result (with per-user
// outcomes, some possibly FAILED for permanent reasons) and nil when every
// user was brought to a final state; an error wrapping a plan failure
// (IsPlanFailure) when the plan can never succeed; any other error when a
// transient failure interrupted some users — applying the same plan again
// resumes at the first unfinished step of each user.
func (e *Engine) Apply(ctx context.Context, plan *orgsyncv1.Plan) (*PlanResult, error) {
	ctx, span := tracer.Start(ctx, "provisioner.apply")
	defer span.End()
	if isDeactivatePlan(plan) {
		return e.applyDeactivate(ctx, plan)
	}
	r, err := e.newRun(plan)
	if err != nil {
		e.emitTargetFailed(ctx, plan, err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.String("orgsync.plan_id", plan.GetPlanId()), attribute.Bool("orgsync.dry_run", r.dry))
	// Shared resources first, outside the user locks: they concern no user,
	// and concurrent plans share their resolution (singleflight).
	if err := r.resolveResources(ctx); err != nil {
		if IsPlanFailure(err) {
			e.emitTargetFailed(ctx, plan, err)
		}
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	release, err := e.locks.acquire(ctx, r.org, r.userIDs())
	if err != nil {
		return nil, fmt.Errorf("provisioner: plan %s: waiting for user locks: %w", plan.GetPlanId(), err)
	}
	defer release()
	defer func() {
		r.phones.mu.Lock()
		defer r.phones.mu.Unlock()
		e.dids.release(r.org, r.phones.mine)
	}()
	r.prepareUsers()
	for _, ph := range phases {
		if err := ctx.Err(); err != nil {
			// Stopped between steps: whoever has not failed resumes later.
			for _, u := range r.users {
				if u.alive() {
					u.retry = fmt.Errorf("stopped before step %s: %w", stepName(ph.kind), err)
				}
			}
			break
		}
		r.runPhase(ctx, ph)
	}
	res, err := r.finish(ctx)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return res, err
}

// run is the state of one Apply.
type run struct {
	e    *Engine
	plan *orgsyncv1.Plan
	org  string
	c    *genesys.Client
	m    *meter
	dry  bool

	resources map[string]*orgsyncv1.Resource // by external id
	ids       map[string]string              // resource external id → target id
	exts      map[string]string              // target id → resource external id (nameOf)
	renewed   map[string]bool                // references whose target id changed during this attempt (heal.go)
	idsMu     sync.Mutex

	users []*userRun
	byExt map[string]*userRun

	mgrMu    sync.Mutex
	managers map[string]string // manager email → target user id ("" = not found)

	phones phoneState // DID allocation (phone_alias.go)

	// creates: in a dry run, the shared resources (skill, language, team)
	// the target lacks and a clone would create, one FieldDiff each (field
	// the resource type, want its name); the TARGET event carries them.
	creates []*orgsyncv1.FieldDiff // guarded by idsMu
}

func (e *Engine) newRun(plan *orgsyncv1.Plan) (*run, error) {
	if err := validatePlan(plan); err != nil {
		return nil, &planFailure{err: err}
	}
	c, err := e.deps.Clients.Client(plan.GetTargetOrg())
	if err != nil {
		return nil, &planFailure{err: fmt.Errorf("provisioner: plan %s: %w", plan.GetPlanId(), err)}
	}
	r := &run{e: e, plan: plan, org: plan.GetTargetOrg(), c: c, m: newMeter(), dry: plan.GetDryRun(),
		resources: map[string]*orgsyncv1.Resource{}, ids: map[string]string{}, exts: map[string]string{}, renewed: map[string]bool{}, byExt: map[string]*userRun{},
		managers: map[string]string{}}
	for _, res := range plan.GetResources() {
		r.resources[res.GetExternalId()] = res
	}
	for _, up := range plan.GetUsers() {
		u := newUserRun(up)
		r.users = append(r.users, u)
		r.byExt[u.ext] = u
	}
	return r, nil
}

func validatePlan(p *orgsyncv1.Plan) error {
	if p.GetPlanId() == "" || p.GetTargetOrg() == "" {
		return errors.New("provisioner: plan has no plan_id or target_org")
	}
	seen := map[string]bool{}
	for i, up := range p.GetUsers() {
		d := up.GetDesired()
		if d.GetExternalId() == "" || d.GetEmail() == "" || d.GetName() == "" {
			return fmt.Errorf("provisioner: plan %s: user %d lacks external id, email or name", p.GetPlanId(), i)
		}
		if seen[d.GetExternalId()] {
			return fmt.Errorf("provisioner: plan %s: user %s appears twice", p.GetPlanId(), d.GetExternalId())
		}
		seen[d.GetExternalId()] = true
		for _, s := range up.GetSteps() {
			if _, ok := phaseByKind[s.GetKind()]; !ok && s.GetKind() != orgsyncv1.StepKind_STEP_KIND_DEACTIVATE {
				return fmt.Errorf("provisioner: plan %s: user %s: unknown step kind %v", p.GetPlanId(), d.GetExternalId(), s.GetKind())
			}
		}
	}
	for _, r := range p.GetResources() {
		if r.GetExternalId() == "" || r.GetName() == "" || r.GetType() == orgsyncv1.ResourceType_RESOURCE_TYPE_UNSPECIFIED {
			return fmt.Errorf("provisioner: plan %s: resource %q lacks external id, name or type", p.GetPlanId(), r.GetExternalId())
		}
	}
	return nil
}

func (r *run) userIDs() []string {
	out := make([]string, len(r.users))
	for i, u := range r.users {
		out[i] = u.ext
	}
	return out
}

// id returns the target id of a resource external id ("" when unresolved).
func (r *run) id(ext string) string {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	return r.ids[ext]
}

func (r *run) setID(ext, id string) {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	if old, ok := r.ids[ext]; ok && r.exts[old] == ext {
		delete(r.exts, old)
	}
	r.ids[ext] = id
	r.exts[id] = ext
}

// finish emits the USER and TARGET events, stores baselines and decides the
// attempt's result.
func (r *run) finish(ctx context.Context) (*PlanResult, error) {
	res := &PlanResult{PlanID: r.plan.GetPlanId()}
	var retry []error
	done, failed, changed, planned := 0, 0, 0, 0
	var finished, baselined []*userRun
	var userEvents []*orgsyncv1.Event
	for _, u := range r.users {
		ur := UserResult{ExternalID: u.ext, TargetUserID: u.id, Steps: u.stepStatus()}
		calls := r.m.user(u.ext, len(r.users))
		ur.Calls, ur.CallsExact = calls.proto(), calls.calls()
		switch {
		case u.retry != nil:
			retry = append(retry, fmt.Errorf("user %s: %w", u.ext, u.retry))
			ur.Status, ur.Reason = orgsyncv1.Status_STATUS_RUNNING, u.retry.Error()
			res.Users = append(res.Users, ur)
			continue
		case u.failed != nil:
			ur.Status, ur.Reason = orgsyncv1.Status_STATUS_FAILED, u.failed.Error()
			failed++
		case u.skipped != "":
			ur.Status, ur.Reason = orgsyncv1.Status_STATUS_SKIPPED, u.skipped
		case r.dry && u.planned():
			ur.Status = orgsyncv1.Status_STATUS_PLANNED
			planned++
		case r.dry:
			ur.Status = orgsyncv1.Status_STATUS_UNCHANGED
		case u.changed():
			ur.Status = orgsyncv1.Status_STATUS_CHANGED
			changed++
		default:
			ur.Status = orgsyncv1.Status_STATUS_UNCHANGED
		}
		done++
		finished = append(finished, u)
		if !r.dry && u.failed == nil && u.skipped == "" {
			baselined = append(baselined, u)
		}
		res.Users = append(res.Users, ur)
		userEvents = append(userEvents, &orgsyncv1.Event{Status: ur.Status,
			UserExternalId: u.ext, TargetUserId: u.id, Reason: ur.Reason, ApiCalls: ur.Calls,
			Message: fmt.Sprintf("user %s %s", u.d.GetEmail(), statusWord(ur.Status)),
			Done:    int32(done), Total: int32(len(r.users))})
	}
	configs := make([]*orgsyncv1.UserConfig, len(baselined))
	for i, u := range baselined {
		configs[i] = u.d
	}
	if err := r.e.deps.Store.PutBaselines(r.org, configs...); err != nil {
		for _, u := range baselined {
			retry = append(retry, fmt.Errorf("user %s: store baseline: %w", u.ext, err))
		}
	} else {
		r.requestIntegrations(ctx, baselined)
	}
	for _, u := range finished {
		r.afterUser(ctx, u)
	}
	if len(userEvents) > 0 {
		// One USER event for the plan, a row per finished user.
		r.emitAll(ctx, []*orgsyncv1.Event{events.Batch(orgsyncv1.EventKind_EVENT_KIND_USER, userEvents)})
	}
	res.Calls = r.m.plan().proto()
	if len(retry) > 0 {
		return res, fmt.Errorf("provisioner: plan %s in %s unfinished (%d of %d users done; resumes on redelivery): %w",
			r.plan.GetPlanId(), r.org, done, len(r.users), errors.Join(retry...))
	}
	// A dry run is PLANNED only when something would change: a user, or a
	// shared resource to create (a plan against a target in sync says
	// UNCHANGED, as the clone would).
	switch {
	case failed > 0:
		res.Status = orgsyncv1.Status_STATUS_FAILED
	case r.dry && (planned > 0 || len(r.creates) > 0):
		res.Status = orgsyncv1.Status_STATUS_PLANNED
	case changed > 0:
		res.Status = orgsyncv1.Status_STATUS_CHANGED
	default:
		res.Status = orgsyncv1.Status_STATUS_UNCHANGED
	}
	ev := &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: res.Status, ApiCalls: res.Calls,
		Done: int32(done), Total: int32(len(r.users)),
		Message: fmt.Sprintf("%d users: %d changed, %d failed, %d unchanged or skipped", len(r.users), changed, failed, done-changed-failed)}
	if r.dry {
		ev.Message = fmt.Sprintf("dry run, %d users: %d would change, %d failed, %d unchanged or skipped; %d shared resource(s) to create",
			len(r.users), planned, failed, done-planned-failed, len(r.creates))
		ev.Diffs = r.creates
	}
	if failed > 0 {
		ev.Reason = fmt.Sprintf("%d of %d users failed", failed, len(r.users))
	}
	if err := r.emitErr(ctx, ev); err != nil {
		return res, fmt.Errorf("provisioner: plan %s: %w", r.plan.GetPlanId(), err)
	}
	return res, nil
}

func statusWord(s orgsyncv1.Status) string {
	switch s {
	case orgsyncv1.Status_STATUS_CHANGED:
		return "changed"
	case orgsyncv1.Status_STATUS_UNCHANGED:
		return "unchanged"
	case orgsyncv1.Status_STATUS_SKIPPED:
		return "skipped"
	case orgsyncv1.Status_STATUS_FAILED:
		return "failed"
	case orgsyncv1.Status_STATUS_PLANNED:
		return "planned"
	}
	return s.String()
}

// emit publishes an event of this plan, logging (not failing) on error:
// progress events are best effort, the TARGET event is not (emitErr).
func (r *run) emit(ctx context.Context, ev *orgsyncv1.Event) {
	if err := r.emitErr(ctx, ev); err != nil {
		r.e.log.Warn("emit event", "plan", r.plan.GetPlanId(), "kind", ev.GetKind(), "err", err)
	}
}

// emitAll publishes events of this plan pipelined, logging (not failing)
// on error, as emit does.
func (r *run) emitAll(ctx context.Context, evs []*orgsyncv1.Event) {
	if r.e.deps.Events == nil {
		return
	}
	evs = slices.DeleteFunc(evs, r.silent)
	if len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		r.stamp(ev)
	}
	if err := r.e.deps.Events.EmitAll(context.WithoutCancel(ctx), evs); err != nil {
		r.e.log.Warn("emit events", "plan", r.plan.GetPlanId(), "events", len(evs), "err", err)
	}
}

// stamp sets the plan's identity on ev; every event of a dry run says so
// (attribute dry_run=true).
func (r *run) stamp(ev *orgsyncv1.Event) {
	ev.RequestId, ev.PlanId, ev.Org, ev.SourceOrg = r.plan.GetRequestId(), r.plan.GetPlanId(), r.org, r.plan.GetSourceOrg()
	ev.PlanParts = r.plan.GetParts()
	if r.dry {
		if ev.Attributes == nil {
			ev.Attributes = map[string]string{}
		}
		ev.Attributes[DryRunAttribute] = "true"
	}
}

// DryRunAttribute is the event attribute that marks every event of a dry
// run ("true").
const DryRunAttribute = "dry_run"

// silent reports whether ev must not be published: a dry run writes
// nothing into the audit trail (what it would decide is in its STEP events).
func (r *run) silent(ev *orgsyncv1.Event) bool {
	return r.dry && ev.GetKind() == orgsyncv1.EventKind_EVENT_KIND_AUDIT
}

func (r *run) emitErr(ctx context.Context, ev *orgsyncv1.Event) error {
	if r.e.deps.Events == nil || r.silent(ev) {
		return nil
	}
	r.stamp(ev)
	return r.e.deps.Events.Emit(context.WithoutCancel(ctx), ev)
}

func (e *Engine) emitTargetFailed(ctx context.Context, plan *orgsyncv1.Plan, err error) {
	if e.deps.Events == nil || plan.GetTargetOrg() == "" {
		return
	}
	ev := &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: orgsyncv1.Status_STATUS_FAILED,
		RequestId: plan.GetRequestId(), PlanId: plan.GetPlanId(), Org: plan.GetTargetOrg(), SourceOrg: plan.GetSourceOrg(),
		Message: "plan failed", Reason: err.Error(), Total: int32(len(plan.GetUsers())), PlanParts: plan.GetParts()}
	if emitErr := e.deps.Events.Emit(context.WithoutCancel(ctx), ev); emitErr != nil {
		e.log.Warn("emit failed target event", "plan", plan.GetPlanId(), "err", emitErr)
	}
}
