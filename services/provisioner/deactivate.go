package provisioner

import (
	"context"
	"fmt"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// A deactivate plan (a sync set's onRemove: deactivate) carries users whose
// only step is STEP_KIND_DEACTIVATE. It goes through the same consumer, user
// locks, journal and events as a clone, but none of a clone's phases: the
// user is found by its id translation or external id only (never created,
// never adopted by email), its state set to inactive (never deleted), and
// its baseline kept (a member who rejoins is cloned again from it).

// isDeactivatePlan reports whether every user of plan only deactivates.
func isDeactivatePlan(plan *orgsyncv1.Plan) bool {
	if len(plan.GetUsers()) == 0 {
		return false
	}
	for _, up := range plan.GetUsers() {
		if len(up.GetSteps()) != 1 || up.GetSteps()[0].GetKind() != orgsyncv1.StepKind_STEP_KIND_DEACTIVATE {
			return false
		}
	}
	return true
}

// applyDeactivate runs a deactivate plan.
func (e *Engine) applyDeactivate(ctx context.Context, plan *orgsyncv1.Plan) (*PlanResult, error) {
	r, err := e.newRun(plan)
	if err != nil {
		e.emitTargetFailed(ctx, plan, err)
		return nil, err
	}
	release, err := e.locks.acquire(ctx, r.org, r.userIDs())
	if err != nil {
		return nil, fmt.Errorf("provisioner: plan %s: waiting for user locks: %w", plan.GetPlanId(), err)
	}
	defer release()
	r.runPhase(ctx, phase{kind: orgsyncv1.StepKind_STEP_KIND_DEACTIVATE, each: (*run).deactivateUser})
	res := &PlanResult{PlanID: plan.GetPlanId()}
	changed, failed := 0, 0
	var evs []*orgsyncv1.Event
	for i, u := range r.users {
		ur := UserResult{ExternalID: u.ext, TargetUserID: u.id, Steps: u.stepStatus()}
		switch {
		case u.retry != nil:
			return res, fmt.Errorf("provisioner: plan %s in %s unfinished (resumes on redelivery): user %s: %w", plan.GetPlanId(), r.org, u.ext, u.retry)
		case u.failed != nil:
			ur.Status, ur.Reason = orgsyncv1.Status_STATUS_FAILED, u.failed.Error()
			failed++
		case u.changed():
			ur.Status = orgsyncv1.Status_STATUS_CHANGED
			changed++
		default:
			ur.Status = orgsyncv1.Status_STATUS_UNCHANGED
		}
		res.Users = append(res.Users, ur)
		evs = append(evs, &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_USER, Status: ur.Status,
			UserExternalId: u.ext, TargetUserId: u.id, Reason: ur.Reason,
			Message: fmt.Sprintf("user %s %s", u.d.GetEmail(), statusWord(ur.Status)), Done: int32(i + 1), Total: int32(len(r.users))})
	}
	r.emitAll(ctx, []*orgsyncv1.Event{events.Batch(orgsyncv1.EventKind_EVENT_KIND_USER, evs)})
	res.Status = orgsyncv1.Status_STATUS_UNCHANGED
	switch {
	case failed > 0:
		res.Status = orgsyncv1.Status_STATUS_FAILED
	case changed > 0:
		res.Status = orgsyncv1.Status_STATUS_CHANGED
	}
	res.Calls = r.m.plan().proto()
	ev := &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_TARGET, Status: res.Status, ApiCalls: res.Calls,
		Done: int32(len(r.users)), Total: int32(len(r.users)),
		Message: fmt.Sprintf("%d users to deactivate: %d deactivated, %d failed, %d already inactive or absent", len(r.users), changed, failed, len(r.users)-changed-failed)}
	if err := r.emitErr(ctx, ev); err != nil {
		return res, fmt.Errorf("provisioner: plan %s: %w", plan.GetPlanId(), err)
	}
	return res, nil
}

// deactivateUser sets one user's state to inactive. A user the target does
// not have (never cloned there, or deleted) is left alone: UNCHANGED.
func (r *run) deactivateUser(ctx context.Context, u *userRun) stepResult {
	id, ok, err := r.e.deps.Store.TargetID(r.org, u.ext)
	if err != nil {
		return failed(err)
	}
	var gu *genesys.User
	err = r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
		if ok {
			gu, err = r.c.GetUser(ctx, id)
		}
		if !ok || genesys.IsNotFound(err) {
			gu, err = r.c.GetUserByExternalID(ctx, extid.Authority, u.ext)
		}
		return err
	})
	switch {
	case genesys.IsNotFound(err):
		return stepResult{status: orgsyncv1.Status_STATUS_UNCHANGED, msg: "not in the target"}
	case err != nil:
		return failed(fmt.Errorf("find user: %w", err))
	}
	u.id = gu.ID
	if gu.State == "inactive" || gu.State == "deleted" {
		return stepResult{status: orgsyncv1.Status_STATUS_UNCHANGED, msg: "already " + gu.State}
	}
	inactive := "inactive"
	err = r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
		_, err := r.c.PatchUserAtVersion(ctx, gu.ID, gu.Version, genesys.UserPatch{State: &inactive})
		return err
	})
	if err != nil {
		return failed(fmt.Errorf("deactivate user %s: %w", gu.ID, err))
	}
	return changedIf(true, []*orgsyncv1.FieldDiff{{Field: "state", Want: "inactive", Got: gu.State}}, "deactivated (left sync set)")
}
