package provisioner

import (
	"context"
	"net/http"
	"slices"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// The target ids a plan works with — bbolt translations, the pre-flight ids
// the resolver put in the plan (known_target_ids, cached there for a
// minute), the ids of baseline references — are a cache of the target org
// (DESIGN.md section 5). An administrator may delete what they name, and a
// restarted `orgsync dev` starts its targets afresh. A step that the API
// answers 404, or 400 (how Genesys refuses an unknown id in a body: a skill
// in routingskills/bulk, a role in a grant, a manager, a division), may have
// used such an id. Then, once per phase, healStaleIDs forgets the ids the
// failed steps used, resolves them again — skills, languages and teams by
// exact name, created when missing; queues, roles, divisions and licenses
// looked up, never created (gone: the user fails saying so) — and runs the
// step again for the users whose ids changed. A user deleted behind
// orgsync's back is found again by ENSURE_USER (steps_user.go).

// mayBeStaleID reports whether err may come from an id the target no longer
// knows.
func mayBeStaleID(err error) bool {
	s := genesys.StatusOf(err)
	return s == http.StatusNotFound || s == http.StatusBadRequest
}

// stepRefs lists the references whose target ids step kind sends for u.
func (r *run) stepRefs(kind orgsyncv1.StepKind, u *userRun) []string {
	var refs []string
	profs := func(ps ...[]*orgsyncv1.Proficiency) {
		for _, l := range ps {
			for _, p := range l {
				refs = append(refs, p.GetRef())
			}
		}
	}
	grants := func(gs []*orgsyncv1.Grant) {
		for _, g := range gs {
			refs = append(refs, g.GetRoleRef(), g.GetDivisionRef())
		}
	}
	d, b := u.d, u.baseline
	switch kind {
	case orgsyncv1.StepKind_STEP_KIND_ENSURE_USER:
		refs = append(refs, d.GetDivisionRef())
	case orgsyncv1.StepKind_STEP_KIND_LICENSE:
		refs = append(refs, d.GetLicenseRefs()...)
	case orgsyncv1.StepKind_STEP_KIND_PROFILE:
		refs = append(refs, d.GetManagerRef())
	case orgsyncv1.StepKind_STEP_KIND_ROUTING:
		profs(d.GetSkills(), d.GetLanguages(), b.GetSkills(), b.GetLanguages())
	case orgsyncv1.StepKind_STEP_KIND_GRANTS:
		grants(d.GetGrants())
		grants(b.GetGrants())
	case orgsyncv1.StepKind_STEP_KIND_QUEUES:
		refs = append(append(refs, d.GetQueueRefs()...), b.GetQueueRefs()...)
	case orgsyncv1.StepKind_STEP_KIND_TEAM:
		refs = append(refs, d.GetTeamRef(), b.GetTeamRef())
	case orgsyncv1.StepKind_STEP_KIND_VERIFY:
		profs(d.GetSkills(), d.GetLanguages())
		refs = append(refs, d.GetQueueRefs()...)
	}
	return refs
}

// forgetActual drops what u's actual state says about the component of step
// kind, so its re-run reads it afresh instead of comparing with ids that
// changed; and the baseline is no longer taken as what the user holds.
func (u *userRun) forgetActual(kind orgsyncv1.StepKind) {
	u.doubt = true
	switch kind {
	case orgsyncv1.StepKind_STEP_KIND_LICENSE:
		u.act.licenses = nil
	case orgsyncv1.StepKind_STEP_KIND_ROUTING:
		u.act.skills, u.act.languages = nil, nil
	case orgsyncv1.StepKind_STEP_KIND_GRANTS:
		u.act.grants = nil
	case orgsyncv1.StepKind_STEP_KIND_QUEUES:
		u.act.queues = nil
	case orgsyncv1.StepKind_STEP_KIND_TEAM:
		u.act.teamID, u.act.teamKnown = "", false
	}
}

// healStaleIDs re-resolves the ids used by the users whose step failed with
// a possibly stale id and runs the phase again for those whose ids changed,
// and for those whose step went through with an id now renewed (taken on
// trust from the baseline). A re-run may meet other stale ids: each
// reference is re-resolved at most once per phase, so it ends. A reference
// that cannot be resolved any more fails its users with the reason.
func (r *run) healStaleIDs(ctx context.Context, ph phase, pending []*userRun, results map[*userRun]stepResult) {
	resolved := map[string]bool{} // references re-resolved in this phase
	changed, failures := map[string]bool{}, map[string]error{}
	for users := pending; len(users) > 0; {
		fresh := map[string]bool{}
		for _, u := range users {
			if res, ok := results[u]; ok && res.err != nil && mayBeStaleID(res.err) {
				for _, ref := range r.stepRefs(ph.kind, u) {
					if ref != "" && !resolved[ref] {
						fresh[ref] = true
					}
				}
			}
		}
		if len(fresh) == 0 {
			return
		}
		for _, ref := range sortedKeys(fresh) {
			resolved[ref] = true
			c, err := r.reresolve(ctx, ref)
			if err != nil {
				failures[ref] = err
			}
			changed[ref] = c
		}
		var again []*userRun
		for _, u := range pending {
			refs := r.stepRefs(ph.kind, u)
			res := results[u]
			if i := slices.IndexFunc(refs, func(ref string) bool { return fresh[ref] && failures[ref] != nil }); i >= 0 && res.err != nil {
				err := failures[refs[i]]
				if IsPlanFailure(err) {
					err = &userFailure{err: err} // gone from the target: this user cannot be finished
				}
				results[u] = failed(err)
				continue
			}
			if slices.ContainsFunc(refs, func(ref string) bool { return fresh[ref] && changed[ref] }) {
				again = append(again, u)
			}
		}
		if len(again) == 0 {
			return
		}
		r.e.log.Info("target ids were stale: re-resolved, step runs again", "plan", r.plan.GetPlanId(), "org", r.org,
			"step", stepName(ph.kind), "users", len(again))
		for _, u := range again {
			u.forgetActual(ph.kind)
		}
		for u, res := range r.execPhase(ctx, ph, again) {
			if prev := results[u]; res.err == nil && prev.err == nil && prev.status == orgsyncv1.Status_STATUS_CHANGED && res.status != orgsyncv1.Status_STATUS_CHANGED {
				continue // the first run made the changes; the second found them
			}
			results[u] = res
		}
		users = again
	}
}

// reresolve forgets the target id of ref and resolves it again; changed
// says the id is not the one the plan used.
func (r *run) reresolve(ctx context.Context, ref string) (changed bool, err error) {
	x, perr := extid.Parse(ref)
	if perr != nil {
		return false, nil // not a reference orgsync translates
	}
	old := r.id(ref)
	store := r.e.deps.Store
	if x.Type == orgsyncv1.ResourceType_RESOURCE_TYPE_USER {
		// A manager outside the plan (one of the plan's users was just
		// read by ENSURE_USER): forgotten, managerOf finds it by email.
		id, ok, err := store.TargetID(r.org, ref)
		if m := r.byExt[ref]; err != nil || !ok || r.dry || (m != nil && m.id != "") {
			return false, err
		}
		r.renew(ref)
		return true, store.ForgetTargetID(r.org, ref, id)
	}
	if old == "" {
		if old, _, err = store.TargetID(r.org, ref); err != nil {
			return false, err
		}
	}
	if !r.dry && old != "" {
		if err := store.ForgetTargetID(r.org, ref, old); err != nil {
			return false, err
		}
	}
	res := r.resources[ref]
	var id string
	switch {
	case x.Type == orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL || x.Type == orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE ||
		x.Type == orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM:
		if res == nil || r.dry {
			// A baseline reference (never created: only what the plan
			// wants is), or a dry run: looked up only.
			probe := &orgsyncv1.Resource{ExternalId: ref, Type: x.Type, Name: x.Name}
			found := false
			if id, found, err = r.findShared(ctx, probe); err != nil {
				return false, r.resourceErr(probe, "look up", err)
			}
			if !found && res != nil {
				id = placeholder(res)
			}
			if found && !r.dry {
				err = store.PutTargetID(r.org, ref, id)
			}
		} else {
			id, err = r.ensureShared(ctx, res)
		}
	default: // must pre-exist: never created
		if res == nil {
			res = &orgsyncv1.Resource{ExternalId: ref, Type: x.Type, Name: x.Name}
		}
		id, err = r.lookupByName(ctx, res)
		if err != nil && IsPlanFailure(err) && r.resources[ref] == nil {
			id, err = "", nil // a baseline reference gone: nothing left to remove
		}
	}
	if err != nil {
		return false, err
	}
	r.setID(ref, id)
	if id != old {
		r.renew(ref)
	}
	return id != old, nil
}

// renew records that the target id of ref changed during this attempt:
// steps an earlier attempt journaled with the old one are done again.
func (r *run) renew(ref string) {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	r.renewed[ref] = true
}

// redoJournaled splits journaled (users whose step kind an earlier attempt
// journaled) into those whose step used a reference renewed since — a user
// deleted and re-created, a resource re-created: its effect may be gone —
// and the rest.
func (r *run) redoJournaled(kind orgsyncv1.StepKind, journaled []*userRun) (redo, rest []*userRun) {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	if len(r.renewed) == 0 {
		return nil, journaled
	}
	for _, u := range journaled {
		if slices.ContainsFunc(r.stepRefs(kind, u), func(ref string) bool { return r.renewed[ref] }) {
			redo = append(redo, u)
		} else {
			rest = append(rest, u)
		}
	}
	return redo, rest
}

// doubtBaseline checks the baseline of a user found by its translation
// against what the user read holds (skills, languages, team: the expanded
// read, no extra call): when they disagree the user lost what orgsync
// applied — edited by hand, or the target was rebuilt (a restarted
// simulator keeps its fixture users' ids) — and the baseline is not taken
// on trust for the other components either.
func (r *run) doubtBaseline(u *userRun) {
	b := u.baseline
	if b == nil || u.doubt {
		return
	}
	same := func(c orgsyncv1.Component, ps []*orgsyncv1.Proficiency, got map[string]float64) bool {
		if got == nil || !u.included(c) {
			return true // not read, or not orgsync's to apply
		}
		for _, p := range ps {
			if r.id(p.GetRef()) == "" {
				return true // the plan no longer names it: cannot tell
			}
		}
		if len(got) != len(ps) {
			return false
		}
		for _, p := range ps {
			if v, ok := got[r.id(p.GetRef())]; !ok || v != p.GetProficiency() {
				return false
			}
		}
		return true
	}
	bt := b.GetTeamRef()
	team := !u.act.teamKnown || !u.included(orgsyncv1.Component_COMPONENT_TEAM) || (bt != "" && r.id(bt) == "") || u.act.teamID == r.id(bt)
	if !same(orgsyncv1.Component_COMPONENT_SKILLS, b.GetSkills(), u.act.skills) ||
		!same(orgsyncv1.Component_COMPONENT_LANGUAGES, b.GetLanguages(), u.act.languages) || !team {
		u.doubt = true
	}
}
