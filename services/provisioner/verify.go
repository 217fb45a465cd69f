package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// verifyUsers is the VERIFY phase: after every binding step it reads the
// users back and proves each agent can receive work —
//
//   - every desired skill (and language) present with its proficiency,
//   - capacity > 0 in the target for every media type the user can handle
//     in the source (agent utilization, or the source org's default from
//     Plan.source_org_utilization when the user inherits it),
//   - membership of every desired queue.
//
// A shortfall fails the user with one FieldDiff per missing fact (want =
// source, got = target), never a silent success.
//
// What this attempt wrote is read back; what a step of this attempt read
// from the API and left alone is reused (the call budget: a re-run that
// changes nothing verifies without reading anything twice):
//   - one batch user read (expand skills, languages) per 100 users whose
//     skills or languages were written or never read,
//   - for the users added to a queue (or whose membership was never read
//     nor applied by orgsync before: baseline), one member listing per
//     queue, or one queue list per user when that is fewer calls
//     (readQueues),
//   - a user's utilization only when the routing step did not learn it,
//     and the org default once when some user inherits it.
func (r *run) verifyUsers(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	if r.dry {
		for _, u := range pending {
			out[u] = stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, msg: "dry run: nothing bound, nothing to verify"}
		}
		return out
	}
	v := &verification{r: r, users: pending}
	if err := v.readUsers(ctx); err != nil {
		for _, u := range pending {
			out[u] = failed(err)
		}
		return out
	}
	if err := v.readQueues(ctx); err != nil {
		for _, u := range pending {
			out[u] = failed(err)
		}
		return out
	}
	return r.forEach(ctx, pending, v.check)
}

// verification holds the plan-wide reads of one VERIFY phase.
type verification struct {
	r     *run
	users []*userRun

	byID    map[string]genesys.User    // batch read, by user id
	members map[string]map[string]bool // queue id → member user ids

	orgMu   sync.Mutex
	orgUtil *genesys.Utilization // target org default, read on first need
}

func (v *verification) exts() []string {
	out := make([]string, len(v.users))
	for i, u := range v.users {
		out[i] = u.ext
	}
	return out
}

// wrote reports whether step kind k of u changed the target (this attempt,
// or an earlier attempt of the plan that journaled it).
func (u *userRun) wrote(k orgsyncv1.StepKind) bool {
	id, ok := u.steps[k]
	return ok && u.stepStatus()[id] == orgsyncv1.Status_STATUS_CHANGED
}

// needsRoutingRead reports whether u's skills or languages must be read
// back: written, created with the user, or never read in this attempt.
func (u *userRun) needsRoutingRead() bool {
	wantsSkills := u.included(orgsyncv1.Component_COMPONENT_SKILLS) && len(u.d.GetSkills()) > 0
	wantsLangs := u.included(orgsyncv1.Component_COMPONENT_LANGUAGES) && len(u.d.GetLanguages()) > 0
	if !wantsSkills && !wantsLangs {
		return false
	}
	return u.found == foundCreated || u.wrote(orgsyncv1.StepKind_STEP_KIND_ROUTING) ||
		(wantsSkills && u.act.skills == nil) || (wantsLangs && u.act.languages == nil)
}

func (v *verification) readUsers(ctx context.Context) error {
	v.byID = map[string]genesys.User{}
	var ids, exts []string
	for _, u := range v.users {
		if u.needsRoutingRead() {
			ids, exts = append(ids, u.id), append(exts, u.ext)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return v.r.m.call(ctx, exts, func(ctx context.Context) error {
		got, err := v.r.c.ListUsersByID(ctx, ids, "skills", "languages")
		if err != nil {
			return fmt.Errorf("verify: read back %d user(s): %w", len(ids), err)
		}
		for _, gu := range got {
			v.byID[gu.ID] = gu
		}
		return nil
	})
}

// readQueues reads the memberships VERIFY must prove, by whichever read
// costs fewer calls: one member listing per queue (O(queue size) each), or
// one queue list per user (GET /users/{id}/queues: the queues the user is
// joined to). A small queue is cheaper listed; plans of 20 users in queues
// of 2,000 are cheaper read per user. A queue missing from a user's own
// list is not proof either way (a member can be unjoined), so those
// queues are listed after all.
func (v *verification) readQueues(ctx context.Context) error {
	need := map[string][]string{} // queue id → users wanting it
	var users []*userRun          // the users in need, once each
	for _, u := range v.users {
		if !u.included(orgsyncv1.Component_COMPONENT_QUEUES) {
			continue
		}
		// Memberships read by the queues step and left alone are current.
		if u.act.queues != nil && !u.wrote(orgsyncv1.StepKind_STEP_KIND_QUEUES) && u.found != foundCreated {
			continue
		}
		wants := false
		for _, ref := range u.d.GetQueueRefs() {
			if q := v.r.id(ref); q != "" {
				need[q] = append(need[q], u.ext)
				wants = true
			}
		}
		if wants {
			users = append(users, u)
		}
	}
	v.members = map[string]map[string]bool{}
	listing := 0
	for q, exts := range need {
		listing += v.r.queueListingPages(q, len(exts))
	}
	if len(users) < listing {
		var err error
		if need, err = v.readUserQueues(ctx, users); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	for _, q := range sortedKeys(need) {
		err := v.r.m.call(ctx, need[q], func(ctx context.Context) error {
			set, err := v.r.queueMembers(ctx, q)
			v.members[q] = set
			return err
		})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	return nil
}

// readUserQueues reads the queue list of each of users and records the
// memberships it shows in v.members; it returns the queues some user's
// list lacks (queue id → those users), which must still be listed.
func (v *verification) readUserQueues(ctx context.Context, users []*userRun) (map[string][]string, error) {
	var mu sync.Mutex
	joined := map[*userRun]map[string]bool{}
	res := v.r.forEach(ctx, users, func(ctx context.Context, u *userRun) stepResult {
		err := v.r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
			qs, err := v.r.c.ListUserQueues(ctx, u.id)
			if err != nil {
				return fmt.Errorf("list queues of user %s: %w", u.id, err)
			}
			set := make(map[string]bool, len(qs))
			for _, q := range qs {
				set[q.ID] = true
			}
			mu.Lock()
			joined[u] = set
			mu.Unlock()
			return nil
		})
		return failed(err)
	})
	for _, u := range users {
		if err := res[u].err; err != nil {
			return nil, err
		}
	}
	rest := map[string][]string{}
	for _, u := range users {
		for _, ref := range u.d.GetQueueRefs() {
			q := v.r.id(ref)
			switch {
			case q == "":
			case joined[u][q]:
				if v.members[q] == nil {
					v.members[q] = map[string]bool{}
				}
				v.members[q][u.id] = true
			default:
				rest[q] = append(rest[q], u.ext)
			}
		}
	}
	return rest, nil
}

// check verifies one user against the shared reads.
func (v *verification) check(ctx context.Context, u *userRun) stepResult {
	r := v.r
	gu, read := v.byID[u.id]
	if !read && u.needsRoutingRead() {
		return failed(fmt.Errorf("verify: user %s (%s) is not readable in %s", u.id, u.d.GetEmail(), r.org))
	}
	var diffs []*orgsyncv1.FieldDiff
	var facts []string

	for _, part := range []struct {
		comp  orgsyncv1.Component
		field string
		want  []*orgsyncv1.Proficiency
		got   func(ctx context.Context) (map[string]float64, error)
	}{
		{orgsyncv1.Component_COMPONENT_SKILLS, "skills", u.d.GetSkills(), func(ctx context.Context) (map[string]float64, error) {
			if !read {
				return u.act.skills, nil // read by this attempt, not written since
			}
			if gu.Skills != nil {
				return skillMap(gu.Skills), nil
			}
			var got []genesys.UserRoutingSkill
			err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
				got, err = r.c.ListUserRoutingSkills(ctx, u.id)
				return err
			})
			return skillMap(got), err
		}},
		{orgsyncv1.Component_COMPONENT_LANGUAGES, "languages", u.d.GetLanguages(), func(ctx context.Context) (map[string]float64, error) {
			if !read {
				return u.act.languages, nil
			}
			if gu.Languages != nil {
				return languageMap(gu.Languages), nil
			}
			var got []genesys.UserRoutingLanguage
			err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
				got, err = r.c.ListUserRoutingLanguages(ctx, u.id)
				return err
			})
			return languageMap(got), err
		}},
	} {
		if !u.included(part.comp) || len(part.want) == 0 {
			continue
		}
		want, err := r.wantProficiencies(part.want)
		if err != nil {
			return failed(err)
		}
		got, err := part.got(ctx)
		if err != nil {
			return failed(fmt.Errorf("verify: read %s of %s: %w", part.field, u.d.GetEmail(), err))
		}
		for id, w := range want {
			if u.keptByPolicy(part.field, id) {
				continue // drift left in place by the report policy (delta.go)
			}
			if g, ok := got[id]; !ok || g != w {
				d := &orgsyncv1.FieldDiff{Field: fmt.Sprintf("%s[%s].proficiency", part.field, r.nameOf(id)), Want: fmtProf(w)}
				if ok {
					d.Got = fmtProf(g)
				}
				diffs = append(diffs, d)
			}
		}
		facts = append(facts, fmt.Sprintf("%d %s", len(want), part.field))
	}

	capDiffs, capFacts, err := v.checkCapacity(ctx, u)
	if err != nil {
		return failed(err)
	}
	diffs = append(diffs, capDiffs...)
	facts = append(facts, capFacts)

	if u.included(orgsyncv1.Component_COMPONENT_QUEUES) && len(u.d.GetQueueRefs()) > 0 {
		for _, ref := range u.d.GetQueueRefs() {
			q := r.id(ref)
			member := u.act.queues[q]
			if m, listed := v.members[q]; listed {
				member = m[u.id]
			}
			if (q == "" || !member) && !u.keptByPolicy("queues", q) {
				diffs = append(diffs, &orgsyncv1.FieldDiff{Field: fmt.Sprintf("queues[%s]", r.nameOfRef(ref)), Want: "member", Got: "not a member"})
			}
		}
		facts = append(facts, fmt.Sprintf("%d queue(s)", len(u.d.GetQueueRefs())))
	}

	if len(diffs) > 0 {
		sortDiffs(diffs)
		parts := make([]string, len(diffs))
		for i, d := range diffs {
			parts[i] = fmt.Sprintf("%s want %q got %q", d.GetField(), d.GetWant(), d.GetGot())
		}
		return stepResult{diffs: diffs, err: failUser("verification: agent %s in %s cannot receive work as in the source: %s",
			u.d.GetEmail(), r.org, strings.Join(parts, "; "))}
	}
	return stepResult{status: orgsyncv1.Status_STATUS_UNCHANGED, msg: "verified: agent can receive work (" + strings.Join(facts, ", ") + ")",
		attrs: map[string]string{"verified": "true"}}
}

// checkCapacity requires capacity > 0 in the target for every media type
// the user can handle in the source. The source's effective capacity is the
// user's agent utilization, else the source org default the plan carries;
// when neither is known, some media type must have capacity > 0.
func (v *verification) checkCapacity(ctx context.Context, u *userRun) ([]*orgsyncv1.FieldDiff, string, error) {
	src := u.d.GetUtilization()
	if len(src.GetMedia()) == 0 {
		src = v.r.plan.GetSourceOrgUtilization()
	}
	got, level, err := v.effectiveUtilization(ctx, u)
	if err != nil {
		return nil, "", err
	}
	var diffs []*orgsyncv1.FieldDiff
	var caps []string
	if len(src.GetMedia()) == 0 {
		for _, media := range sortedMediaKeys(got.Utilization) {
			if got.Utilization[media].MaximumCapacity > 0 {
				return nil, fmt.Sprintf("capacity %s (%s level; source capacity unknown)", renderCaps(got), level), nil
			}
		}
		return []*orgsyncv1.FieldDiff{{Field: "utilization", Want: "some media type with capacity > 0", Got: renderCaps(got)}}, "", nil
	}
	for _, m := range src.GetMedia() {
		if m.GetMaximumCapacity() <= 0 {
			continue
		}
		g := got.Utilization[m.GetMediaType()].MaximumCapacity
		caps = append(caps, fmt.Sprintf("%s=%d", m.GetMediaType(), g))
		if g <= 0 {
			diffs = append(diffs, &orgsyncv1.FieldDiff{Field: "utilization." + m.GetMediaType() + ".maximumCapacity",
				Want: strconv.Itoa(int(m.GetMaximumCapacity())), Got: strconv.Itoa(g)})
		}
	}
	return diffs, fmt.Sprintf("capacity %s (%s level)", strings.Join(caps, " "), level), nil
}

// effectiveUtilization is what the target gives the user: its agent
// utilization, else the org default. It reuses what the routing step
// learned from the API and reads only what is unknown.
func (v *verification) effectiveUtilization(ctx context.Context, u *userRun) (*genesys.Utilization, string, error) {
	r := v.r
	if !u.act.utilKnown {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
			got, err := r.c.GetUserUtilization(ctx, u.id)
			if err == nil {
				u.act.utilKnown = true
				u.act.util = nil
				if got.Level == "Agent" {
					u.act.util = got
				}
			}
			return err
		})
		if err != nil {
			return nil, "", fmt.Errorf("verify: read utilization of %s: %w", u.d.GetEmail(), err)
		}
	}
	if u.act.util != nil {
		return u.act.util, "agent", nil
	}
	v.orgMu.Lock()
	defer v.orgMu.Unlock()
	if v.orgUtil == nil {
		err := r.m.call(ctx, v.exts(), func(ctx context.Context) (err error) {
			v.orgUtil, err = r.c.GetOrgUtilization(ctx)
			return err
		})
		if err != nil {
			v.orgUtil = nil
			return nil, "", fmt.Errorf("verify: read the default utilization of %s: %w", r.org, err)
		}
	}
	return v.orgUtil, "organization", nil
}

func renderCaps(u *genesys.Utilization) string {
	var parts []string
	for _, m := range sortedMediaKeys(u.Utilization) {
		parts = append(parts, fmt.Sprintf("%s=%d", m, u.Utilization[m].MaximumCapacity))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func sortedMediaKeys(m map[string]genesys.MediaUtilization) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func skillMap(s []genesys.UserRoutingSkill) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s {
		out[x.ID] = x.Proficiency
	}
	return out
}

func languageMap(s []genesys.UserRoutingLanguage) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s {
		out[x.ID] = x.Proficiency
	}
	return out
}

// nameOfRef names a resource external id by its plan resource name.
func (r *run) nameOfRef(ref string) string {
	if res := r.resources[ref]; res != nil {
		return res.GetName()
	}
	return ref
}
