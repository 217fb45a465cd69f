package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Delta plans. Every plan — CLONE, CHANGE or SWEEP — runs the same steps;
// each step converges one component of a user from three inputs:
//
//   - desired (D): the plan's UserConfig, fresh from the source;
//   - baseline (B): the UserConfig orgsync applied to this user in this
//     target before (bbolt), nil when there is none;
//   - actual (A): what the target holds, read (or, outside a sweep, taken
//     from the baseline when orgsync applied exactly that before).
//
// Per item (a skill, a language, a queue, a grant, the team, a profile
// field) the rule is:
//
//   - D differs from B (the source changed, or the item is new to
//     orgsync): write D — additions, updates and removals. Removals are
//     computed as B minus D, so they only ever touch what orgsync applied.
//   - D equals B (source unchanged) but A differs (drift: edited by hand in
//     the target): policy "enforce" (default) restores D, policy "report"
//     writes nothing for the item.
//   - Items the target holds that neither B nor D know (manual additions)
//     are drift too: removed under "enforce", left under "report". Without a
//     baseline (first clone) only skills and languages are replaced whole
//     (the routing profile is a value object); grants, queues and team
//     memberships held before orgsync came are left alone.
//
// A SWEEP plan additionally reads every component back (no trust in the
// baseline) and reports A-vs-B differences as DRIFT events (drift.go).

// Drift policies (Config.DriftPolicy values).
const (
	// DriftEnforce restores the source configuration over manual edits.
	DriftEnforce = "enforce"
	// DriftReport only reports drift; drifted items are not written.
	DriftReport = "report"
)

// ValidDriftPolicy reports whether p is a known policy ("" = enforce).
func ValidDriftPolicy(p string) bool { return p == "" || p == DriftEnforce || p == DriftReport }

// deltaState is the per-user state of the delta logic (userRun.dx).
type deltaState struct {
	// verify: a sweep or a dry run — read every component back (a sweep
	// also reports drift against the baseline, drift.go).
	verify bool
	mu     sync.Mutex
	drift  []*orgsyncv1.FieldDiff
	// kept: desired items left as the target holds them by the report
	// policy ("<component>:<target id>"); verification does not expect them.
	kept map[string]bool
}

// markKept records that the desired item id of component (skills,
// languages, queues) was left drifted on purpose (policy report).
func (u *userRun) markKept(component, id string) {
	u.dx.mu.Lock()
	defer u.dx.mu.Unlock()
	if u.dx.kept == nil {
		u.dx.kept = map[string]bool{}
	}
	u.dx.kept[component+":"+id] = true
}

// keptByPolicy reports whether item id of component was left drifted on
// purpose, so post-bind verification must not expect the desired value.
func (u *userRun) keptByPolicy(component, id string) bool {
	u.dx.mu.Lock()
	defer u.dx.mu.Unlock()
	return u.dx.kept[component+":"+id]
}

// markKeptValues marks the desired items converge left differing.
func markKeptValues[V comparable](u *userRun, component string, want, converged map[string]V) {
	for k, w := range want {
		if c, ok := converged[k]; !ok || c != w {
			u.markKept(component, k)
		}
	}
}

func (u *userRun) addDrift(d ...*orgsyncv1.FieldDiff) {
	if len(d) == 0 {
		return
	}
	u.dx.mu.Lock()
	defer u.dx.mu.Unlock()
	u.dx.drift = append(u.dx.drift, d...)
}

func (u *userRun) driftDiffs() []*orgsyncv1.FieldDiff {
	u.dx.mu.Lock()
	defer u.dx.mu.Unlock()
	out := append([]*orgsyncv1.FieldDiff(nil), u.dx.drift...)
	sortDiffs(out)
	return out
}

// policy is the drift policy of the plan's target org.
func (r *run) policy() string {
	if p := r.e.cfg.DriftPolicy[r.org]; p != "" {
		return p
	}
	return DriftEnforce
}

func (r *run) report() bool { return r.policy() == DriftReport }

func (r *run) sweep() bool { return r.plan.GetTrigger() == orgsyncv1.Trigger_TRIGGER_SWEEP }

// prepareUsers loads every user's baseline (under the user locks) and marks
// users whose plan carries an older source configuration than the one
// applied already: a plan redelivered or replayed out of order must not roll
// a target back. Such a user is skipped — after ENSURE_USER, which lets it
// through when the target user the baseline was applied to is gone (deleted
// behind orgsync's back, or a target started afresh): there is nothing to
// roll back, and skipping would leave the user missing.
func (r *run) prepareUsers() {
	for _, u := range r.users {
		b, err := r.e.deps.Store.Baseline(r.org, u.ext)
		if err != nil {
			u.retry = err
			continue
		}
		u.baseline = b
		// A dry run (`orgsync plan`) reads every component back as a sweep
		// does: it reports what differs from the target's actual state, not
		// from what orgsync applied last.
		u.dx.verify = r.sweep() || r.dry
		if reason := staleReason(u.d, b); reason != "" {
			if _, ensured := u.steps[orgsyncv1.StepKind_STEP_KIND_ENSURE_USER]; ensured {
				u.stale = reason
			} else {
				u.skipped = reason
			}
		}
	}
}

// staleReason says why desired is older than the applied baseline, or "".
// The source version (User.version) decides; source_changed_at (the audit
// event's eventTime, a sweep's or clone's start) breaks ties, because the
// version moves only with profile changes. A plan without a version (0) is
// not judged; the deprecated date_modified of older baselines is ignored.
// Versions count the changes of one source user: a user deleted in the
// source and created again with the same email (the same external id, a new
// source user id) starts again at version 1, and is not older for it.
func staleReason(desired, applied *orgsyncv1.UserConfig) string {
	if applied == nil || desired.GetSourceVersion() == 0 {
		return ""
	}
	if d, a := desired.GetSourceUserId(), applied.GetSourceUserId(); d != "" && a != "" && d != a {
		return ""
	}
	if desired.GetSourceVersion() < applied.GetSourceVersion() {
		return fmt.Sprintf("stale: source version %d < applied %d", desired.GetSourceVersion(), applied.GetSourceVersion())
	}
	d, a := desired.GetSourceChangedAt(), applied.GetSourceChangedAt()
	if desired.GetSourceVersion() == applied.GetSourceVersion() && d != nil && a != nil && d.AsTime().Before(a.AsTime()) {
		return fmt.Sprintf("stale: source changed %s < applied %s (version %d)",
			d.AsTime().UTC().Format("2006-01-02T15:04:05.000Z"), a.AsTime().UTC().Format("2006-01-02T15:04:05.000Z"), desired.GetSourceVersion())
	}
	return ""
}

// refID translates a reference into its target id: the plan's resolution,
// else the bbolt translation, else a lookup by exact name (recorded). ""
// means the target has no such object, so it holds nothing to remove.
func (r *run) refID(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	if id := r.id(ref); id != "" {
		return id, nil
	}
	id, ok, err := r.e.deps.Store.TargetID(r.org, ref)
	if err != nil {
		return "", err
	}
	if !ok {
		// Not translated here yet (pre-flight ids are not recorded, or the
		// file was lost): look it up, never create it.
		x, err := extid.Parse(ref)
		if err != nil {
			return "", nil
		}
		res := &orgsyncv1.Resource{ExternalId: ref, Type: x.Type, Name: x.Name}
		switch x.Type {
		case orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE, orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM:
			found := false
			if id, found, err = r.findShared(ctx, res); err != nil {
				return "", fmt.Errorf("look up %s %q in %s: %w", typeWord(x.Type), x.Name, r.org, err)
			}
			if !found {
				return "", nil
			}
			if err := r.e.deps.Store.PutTargetID(r.org, ref, id); err != nil {
				return "", err
			}
		case orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE, orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE, orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION:
			if id, err = r.lookupExisting(ctx, res); err != nil {
				if IsPlanFailure(err) {
					return "", nil // does not exist in the target
				}
				return "", err
			}
		default:
			return "", nil
		}
	}
	r.setID(ref, id)
	return id, nil
}

// baseProficiencies translates the baseline's skills or languages (ok false
// without a baseline).
func (r *run) baseProficiencies(ctx context.Context, u *userRun, ps []*orgsyncv1.Proficiency) (map[string]float64, bool, error) {
	if u.baseline == nil {
		return nil, false, nil
	}
	out := map[string]float64{}
	for _, p := range ps {
		id, err := r.refID(ctx, p.GetRef())
		if err != nil {
			return nil, false, err
		}
		if id != "" {
			out[id] = p.GetProficiency()
		}
	}
	return out, true, nil
}

// baseSet translates a list of baseline references into a set of target ids.
func (r *run) baseSet(ctx context.Context, u *userRun, refs []string) (map[string]bool, bool, error) {
	if u.baseline == nil {
		return nil, false, nil
	}
	out := map[string]bool{}
	for _, ref := range refs {
		id, err := r.refID(ctx, ref)
		if err != nil {
			return nil, false, err
		}
		if id != "" {
			out[id] = true
		}
	}
	return out, true, nil
}

// convergeValues returns the state a keyed component (id → value) must be
// brought to, by the rule of this file. act must be complete (every item the
// target holds); replaceWithoutBase: without a baseline, items D lacks are
// removed under enforce (skills, languages).
func convergeValues[V comparable](r *run, want, base, act map[string]V, hasBase, replaceWithoutBase bool) map[string]V {
	out := map[string]V{}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range act {
		keys[k] = true
	}
	for k := range keys {
		w, wok := want[k]
		a, aok := act[k]
		if keepActual(r, k, want, base, hasBase, replaceWithoutBase) {
			if aok {
				out[k] = a
			}
			continue
		}
		if wok {
			out[k] = w
		}
	}
	return out
}

// keepActual decides whether item k stays as the target holds it.
func keepActual[V comparable](r *run, k string, want, base map[string]V, hasBase, replaceWithoutBase bool) bool {
	w, wok := want[k]
	if !hasBase {
		// First time: what D names is written; the rest (held before
		// orgsync came) is replaced only for value objects under enforce.
		return !wok && (r.report() || !replaceWithoutBase)
	}
	b, bok := base[k]
	sourceUnchanged := wok == bok && (!wok || w == b)
	return sourceUnchanged && r.report()
}

// convergeSet is convergeValues for plain sets (queues, grants): what to add
// and what to remove. act may be partial when complete is false: then only
// items of want or base are judged (unknown extras are not touched).
func convergeSet[K comparable](r *run, want, base, act map[K]bool, hasBase bool) (add, remove []K) {
	for k := range want {
		if act[k] {
			continue
		}
		if hasBase && base[k] && r.report() {
			continue // drift (removed by hand), source unchanged: report only
		}
		add = append(add, k)
	}
	for k := range act {
		if !act[k] || want[k] {
			continue
		}
		switch {
		case hasBase && base[k]:
			remove = append(remove, k) // removed at the source
		case hasBase && !r.report():
			remove = append(remove, k) // added by hand, enforce
		}
	}
	return add, remove
}

// setDrift lists the differences between the baseline set and the actual
// one (field "<field>[<name>]", want/got "member" or "").
func (r *run) setDrift(field string, base, act map[string]bool, word string) []*orgsyncv1.FieldDiff {
	var out []*orgsyncv1.FieldDiff
	for k := range base {
		if !act[k] {
			out = append(out, &orgsyncv1.FieldDiff{Field: field + "[" + r.nameOf(k) + "]", Want: word})
		}
	}
	for k, in := range act {
		if in && !base[k] {
			out = append(out, &orgsyncv1.FieldDiff{Field: field + "[" + r.nameOf(k) + "]", Got: word})
		}
	}
	sortDiffs(out)
	return out
}

// refName names a reference for messages: the resource name of an external id.
func refName(ref string) string {
	if id, err := extid.Parse(ref); err == nil {
		return id.Name
	}
	return ref
}

// baseGrants translates the baseline's grants (ok false without a baseline).
func (r *run) baseGrants(ctx context.Context, u *userRun) (map[genesys.RoleDivision]bool, bool, error) {
	if u.baseline == nil {
		return nil, false, nil
	}
	out := map[genesys.RoleDivision]bool{}
	for _, g := range u.baseline.GetGrants() {
		role, err := r.refID(ctx, g.GetRoleRef())
		if err != nil {
			return nil, false, err
		}
		div, err := r.refID(ctx, g.GetDivisionRef())
		if err != nil {
			return nil, false, err
		}
		if role != "" && div != "" {
			out[genesys.RoleDivision{RoleID: role, DivisionID: div}] = true
		}
	}
	return out, true, nil
}

func (r *run) grantField(g genesys.RoleDivision) string {
	return fmt.Sprintf("grants[%s@%s]", r.nameOf(g.RoleID), r.nameOf(g.DivisionID))
}

// grantDrift lists baseline grants the user lost and grants it gained.
func (r *run) grantDrift(base, act map[genesys.RoleDivision]bool) []*orgsyncv1.FieldDiff {
	var out []*orgsyncv1.FieldDiff
	for g := range base {
		if !act[g] {
			out = append(out, &orgsyncv1.FieldDiff{Field: r.grantField(g), Want: "granted"})
		}
	}
	for g, in := range act {
		if in && !base[g] {
			out = append(out, &orgsyncv1.FieldDiff{Field: r.grantField(g), Got: "granted"})
		}
	}
	sortDiffs(out)
	return out
}

func sortGrants(gs []genesys.RoleDivision) {
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].RoleID != gs[j].RoleID {
			return gs[i].RoleID < gs[j].RoleID
		}
		return gs[i].DivisionID < gs[j].DivisionID
	})
}

// profileDelta applies the delta rule to the profile differences (desired
// vs actual) of u: in a sweep it reports title and department drift (actual
// vs baseline); under the report policy it drops the differences of fields
// the source did not change.
func (r *run) profileDelta(u *userRun, diffs []*orgsyncv1.FieldDiff) []*orgsyncv1.FieldDiff {
	b := u.baseline
	if b == nil || u.user == nil {
		return diffs
	}
	base := map[string]string{"title": b.GetTitle(), "department": b.GetDepartment()}
	got := map[string]string{"title": u.user.Title, "department": u.user.Department}
	want := map[string]string{"title": u.d.GetTitle(), "department": u.d.GetDepartment()}
	if u.dx.verify {
		for _, f := range []string{"department", "title"} {
			if base[f] != got[f] {
				u.addDrift(&orgsyncv1.FieldDiff{Field: f, Want: base[f], Got: got[f]})
			}
		}
	}
	if !r.report() {
		return diffs
	}
	out := diffs[:0:0]
	for _, d := range diffs {
		if f := d.GetField(); (f == "title" || f == "department") && base[f] == want[f] {
			continue // source unchanged: a drifted field is only reported
		}
		out = append(out, d)
	}
	return out
}

// ParseDriftPolicy parses "org=enforce|report,..." (the --drift-policy flag).
func ParseDriftPolicy(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		org, policy, ok := strings.Cut(part, "=")
		org, policy = strings.TrimSpace(org), strings.ToLower(strings.TrimSpace(policy))
		if !ok || org == "" || (policy != DriftEnforce && policy != DriftReport) {
			return nil, fmt.Errorf("--drift-policy: %q is not org=%s or org=%s", part, DriftEnforce, DriftReport)
		}
		out[org] = policy
	}
	return out, nil
}
