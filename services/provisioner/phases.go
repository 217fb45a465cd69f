package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// A plan runs phase by phase: each phase is one step kind, run for every user
// of the plan whose steps include it, before the next phase starts. The
// phase order is a topological order of the step graph (DESIGN.md section 5)
// and lets steps batch across users (licenses in one call, queue and team
// members per resource, one DID listing).
type phase struct {
	kind orgsyncv1.StepKind
	// batch handles all pending users at once; each handles one user (the
	// runner spreads users over EngineConfig.UserConcurrency workers).
	batch func(r *run, ctx context.Context, pending []*userRun) map[*userRun]stepResult
	each  func(r *run, ctx context.Context, u *userRun) stepResult
}

var phases = []phase{
	{kind: orgsyncv1.StepKind_STEP_KIND_ENSURE_USER, batch: (*run).ensureUsers},
	{kind: orgsyncv1.StepKind_STEP_KIND_STAMP_EXTERNAL_ID, each: (*run).stampExternalID},
	{kind: orgsyncv1.StepKind_STEP_KIND_LICENSE, batch: (*run).assignLicenses},
	{kind: orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE, batch: (*run).waitActive},
	{kind: orgsyncv1.StepKind_STEP_KIND_PROFILE, each: (*run).applyProfile},
	{kind: orgsyncv1.StepKind_STEP_KIND_ROUTING, each: (*run).applyRouting},
	{kind: orgsyncv1.StepKind_STEP_KIND_GRANTS, each: (*run).applyGrants},
	{kind: orgsyncv1.StepKind_STEP_KIND_QUEUES, batch: (*run).applyQueues},
	{kind: orgsyncv1.StepKind_STEP_KIND_TEAM, batch: (*run).applyTeams},
	{kind: orgsyncv1.StepKind_STEP_KIND_PHONE, each: (*run).applyPhone},
	{kind: orgsyncv1.StepKind_STEP_KIND_VERIFY, batch: (*run).verifyUsers}, // verify.go
}

var phaseByKind = func() map[orgsyncv1.StepKind]phase {
	m := map[orgsyncv1.StepKind]phase{}
	for _, p := range phases {
		m[p.kind] = p
	}
	return m
}()

// stepResult is the outcome of one step of one user.
type stepResult struct {
	status orgsyncv1.Status
	diffs  []*orgsyncv1.FieldDiff
	msg    string
	reason string
	attrs  map[string]string
	err    error
}

func changedIf(changed bool, diffs []*orgsyncv1.FieldDiff, msg string) stepResult {
	if changed {
		return stepResult{status: orgsyncv1.Status_STATUS_CHANGED, diffs: diffs, msg: msg}
	}
	return stepResult{status: orgsyncv1.Status_STATUS_UNCHANGED, msg: msg}
}

func failed(err error) stepResult { return stepResult{err: err} }

// userFailure marks an error that dooms one user (not the plan, not
// transient): a 4xx answer, a policy refusal, a reference that cannot be
// resolved.
type userFailure struct{ err error }

func (u *userFailure) Error() string { return u.err.Error() }
func (u *userFailure) Unwrap() error { return u.err }

func failUser(format string, args ...any) error {
	return &userFailure{err: fmt.Errorf(format, args...)}
}

// permanentForUser reports whether err dooms the user rather than asking for
// a retry: a userFailure, or a permanent API error (genesys.IsPermanent)
// other than an API 401, which a redelivery may cure (the auth service can
// hand out a revoked token until it refreshes it). Cancellation, 429, 5xx
// but 501, and network errors are transient.
func permanentForUser(err error) bool {
	var uf *userFailure
	if errors.As(err, &uf) {
		return true
	}
	return genesys.IsPermanent(err) && genesys.StatusOf(err) != http.StatusUnauthorized
}

// runPhase runs one phase for every live user that has its step and has not
// journaled it yet (in a dry run nothing is journaled).
func (r *run) runPhase(ctx context.Context, ph phase) {
	var pending, journaled, todo []*userRun
	var qs []StepQuery
	for _, u := range r.users {
		stepID, ok := u.steps[ph.kind]
		if !ok || !u.alive() {
			continue
		}
		todo = append(todo, u)
		qs = append(qs, StepQuery{UserExtID: u.ext, StepID: stepID})
	}
	// ENSURE_USER always runs: even when journaled it (re)loads the
	// user's current state, which later steps compare against.
	answers := make([]StepAnswer, len(qs))
	if ph.kind != orgsyncv1.StepKind_STEP_KIND_ENSURE_USER && !r.dry && len(qs) > 0 {
		var err error
		if answers, err = r.e.deps.Store.StepsDone(r.org, r.plan.GetPlanId(), qs); err != nil {
			for i := range answers {
				answers[i].Err = err
			}
		}
	}
	for i, u := range todo {
		a := answers[i]
		switch {
		case a.Err != nil:
			u.retry = fmt.Errorf("read journal of step %s: %w", qs[i].StepID, a.Err)
			continue
		// A step done to another target user (since deleted) is not done.
		case a.Done && (a.Entry.TargetUserID == "" || a.Entry.TargetUserID == u.id):
			u.setStatus(qs[i].StepID, a.Entry.Status)
			journaled = append(journaled, u)
			continue
		}
		pending = append(pending, u)
	}
	// Steps an earlier attempt journaled with an id renewed since (heal.go) run again.
	redo, journaled := r.redoJournaled(ph.kind, journaled)
	if pending = append(pending, redo...); len(pending) == 0 {
		return
	}
	ctx, span := tracer.Start(ctx, "provisioner.step."+stepName(ph.kind),
		// one span per phase: the step across the plan's users
		trace.WithAttributes(attribute.String("orgsync.plan_id", r.plan.GetPlanId()), attribute.Int("orgsync.users", len(pending))))
	defer span.End()
	results := r.execPhase(ctx, ph, pending)
	r.healStaleIDs(ctx, ph, pending, results)
	if redo, _ = r.redoJournaled(ph.kind, journaled); len(redo) > 0 {
		// This phase's healing renewed ids other users' journaled steps used.
		again := r.execPhase(ctx, ph, redo)
		r.healStaleIDs(ctx, ph, redo, again)
		for u, res := range again {
			results[u] = res
		}
		pending = append(pending, redo...)
	}
	for _, u := range pending {
		if res, ok := results[u]; ok && res.err != nil {
			span.SetStatus(codes.Error, res.err.Error())
		}
	}
	r.finishSteps(ctx, ph.kind, pending, results)
}

// execPhase runs the step of phase ph for users.
func (r *run) execPhase(ctx context.Context, ph phase, users []*userRun) map[*userRun]stepResult {
	if ph.batch != nil {
		return ph.batch(r, ctx, users)
	}
	return r.forEach(ctx, users, func(ctx context.Context, u *userRun) stepResult { return ph.each(r, ctx, u) })
}

// forEach runs fn for every user, UserConcurrency at a time.
func (r *run) forEach(ctx context.Context, users []*userRun, fn func(context.Context, *userRun) stepResult) map[*userRun]stepResult {
	out := make(map[*userRun]stepResult, len(users))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(r.e.cfg.UserConcurrency)
	for _, u := range users {
		g.Go(func() error {
			res := fn(ctx, u)
			mu.Lock()
			out[u] = res
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // fn reports through its result, never an error
	return out
}

// finishSteps records the outcomes of one phase: the journal (not in a dry
// run; one transaction for the phase), one STEP event with a row per user,
// observer. A
// failure dooms the user (permanent) or ends its work for this attempt
// (transient, resumed on redelivery). Events follow the journal, so an
// event never announces a step that a restart would run again.
func (r *run) finishSteps(ctx context.Context, kind orgsyncv1.StepKind, users []*userRun, results map[*userRun]stepResult) {
	type outcome struct {
		u       *userRun
		ev      *orgsyncv1.Event
		journal bool // a finished step to journal (not a failure, not a dry run)
	}
	outs := make([]outcome, 0, len(users))
	recs := make([]StepRecord, 0, len(users))
	var audits []*orgsyncv1.Event
	for _, u := range users {
		audits = append(audits, u.audits...)
		u.audits = nil
		stepID := u.steps[kind]
		res, ok := results[u]
		if !ok {
			res = failed(fmt.Errorf("internal: step %s produced no result", stepName(kind)))
		}
		if res.err != nil {
			if !permanentForUser(res.err) {
				u.retry = res.err
				continue
			}
			u.failed = fmt.Errorf("step %s: %w", stepID, res.err)
			u.setStatus(stepID, orgsyncv1.Status_STATUS_FAILED)
			outs = append(outs, outcome{u: u, ev: &orgsyncv1.Event{Status: orgsyncv1.Status_STATUS_FAILED,
				UserExternalId: u.ext, TargetUserId: u.id, Step: stepID, Reason: res.err.Error(), Diffs: res.diffs,
				Message: fmt.Sprintf("%s of %s failed", stepID, u.d.GetEmail())}})
			continue
		}
		if r.dry && res.status == orgsyncv1.Status_STATUS_CHANGED {
			res.status = orgsyncv1.Status_STATUS_PLANNED
		}
		u.setStatus(stepID, res.status)
		if !r.dry {
			recs = append(recs, StepRecord{UserExtID: u.ext, StepID: stepID,
				Entry: JournalEntry{Status: res.status, TargetUserID: u.id, At: time.Now().UTC()}})
		}
		outs = append(outs, outcome{u: u, journal: !r.dry, ev: &orgsyncv1.Event{Status: res.status,
			UserExternalId: u.ext, TargetUserId: u.id, Step: stepID, Message: res.msg, Reason: res.reason,
			Diffs: res.diffs, Attributes: res.attrs}})
	}
	journalErr := r.e.deps.Store.MarkStepsDone(r.org, r.plan.GetPlanId(), recs...)
	evs := make([]*orgsyncv1.Event, 0, len(outs))
	for _, o := range outs {
		if o.journal && journalErr != nil {
			// Nothing of the phase is journaled: the user resumes at this
			// step, and its event waits for that attempt.
			o.u.retry = fmt.Errorf("journal step %s: %w", o.u.steps[kind], journalErr)
			continue
		}
		evs = append(evs, o.ev)
	}
	// One STEP event for the phase, a row per user (events.Batch), and one
	// AUDIT event with the decisions its users' steps made — each once: a
	// step healed and run again decides again, and unbatched the same
	// decision (same id) was dropped by JetStream as a duplicate.
	type decision struct {
		user, step string
		status     orgsyncv1.Status
	}
	seen := map[decision]bool{}
	audits = slices.DeleteFunc(audits, func(a *orgsyncv1.Event) bool {
		d := decision{a.GetUserExternalId(), a.GetStep(), a.GetStatus()}
		dup := seen[d]
		seen[d] = true
		return dup
	})
	var batches []*orgsyncv1.Event
	if len(evs) > 0 {
		batches = append(batches, events.Batch(orgsyncv1.EventKind_EVENT_KIND_STEP, evs))
	}
	if len(audits) > 0 {
		batches = append(batches, events.Batch(orgsyncv1.EventKind_EVENT_KIND_AUDIT, audits))
	}
	r.emitAll(ctx, batches)
	if r.e.deps.Observer == nil || journalErr != nil {
		return
	}
	for _, o := range outs {
		if o.journal {
			r.e.deps.Observer(ctx, r.org, r.plan.GetPlanId(), o.u.ext, o.u.steps[kind], o.ev.GetStatus())
		}
	}
}

func stepName(k orgsyncv1.StepKind) string {
	switch k {
	case orgsyncv1.StepKind_STEP_KIND_ENSURE_USER:
		return "ensure-user"
	case orgsyncv1.StepKind_STEP_KIND_STAMP_EXTERNAL_ID:
		return "external-id"
	case orgsyncv1.StepKind_STEP_KIND_LICENSE:
		return "license"
	case orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE:
		return "wait-active"
	case orgsyncv1.StepKind_STEP_KIND_PROFILE:
		return "profile"
	case orgsyncv1.StepKind_STEP_KIND_ROUTING:
		return "routing"
	case orgsyncv1.StepKind_STEP_KIND_GRANTS:
		return "grants"
	case orgsyncv1.StepKind_STEP_KIND_QUEUES:
		return "queues"
	case orgsyncv1.StepKind_STEP_KIND_TEAM:
		return "team"
	case orgsyncv1.StepKind_STEP_KIND_PHONE:
		return "phone"
	case orgsyncv1.StepKind_STEP_KIND_VERIFY:
		return "verify"
	case orgsyncv1.StepKind_STEP_KIND_DEACTIVATE:
		return "deactivate"
	}
	return k.String()
}
