package provisioner

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// applyRouting brings the user's "routing profile" — skills with
// proficiency, languages with proficiency, agent utilization — to the
// desired state, writing only the parts that differ. (A skill or language
// id that turns out stale is healed by the phase runner, heal.go.)
func (r *run) applyRouting(ctx context.Context, u *userRun) stepResult {
	var diffs []*orgsyncv1.FieldDiff
	changed := false
	call := func(fn func(ctx context.Context) error) error { return r.m.call(ctx, []string{u.ext}, fn) }

	if u.included(orgsyncv1.Component_COMPONENT_SKILLS) {
		want, err := r.wantProficiencies(u.d.GetSkills())
		if err != nil {
			return failed(err)
		}
		if u.act.skills == nil {
			err := call(func(ctx context.Context) error {
				got, err := r.c.ListUserRoutingSkills(ctx, u.id)
				u.act.skills = map[string]float64{}
				for _, s := range got {
					u.act.skills[s.ID] = s.Proficiency
				}
				return err
			})
			if err != nil {
				return failed(fmt.Errorf("read skills: %w", err))
			}
		}
		base, hasBase, err := r.baseProficiencies(ctx, u, u.baseline.GetSkills())
		if err != nil {
			return failed(err)
		}
		if u.dx.verify && hasBase {
			u.addDrift(r.proficiencyDiffs("skills", base, u.act.skills)...)
		}
		conv := convergeValues(r, want, base, u.act.skills, hasBase, true)
		markKeptValues(u, "skills", want, conv)
		want = conv
		if d := r.proficiencyDiffs("skills", want, u.act.skills); len(d) > 0 {
			diffs, changed = append(diffs, d...), true
			if !r.dry {
				err := call(func(ctx context.Context) error {
					err := r.c.ReplaceUserRoutingSkills(ctx, u.id, proficiencyList(want))
					return err
				})
				if err != nil {
					return failed(fmt.Errorf("replace skills: %w", err))
				}
				u.act.skills = want
			}
		}
	}

	if u.included(orgsyncv1.Component_COMPONENT_LANGUAGES) {
		want, err := r.wantProficiencies(u.d.GetLanguages())
		if err != nil {
			return failed(err)
		}
		if u.act.languages == nil {
			err := call(func(ctx context.Context) error {
				got, err := r.c.ListUserRoutingLanguages(ctx, u.id)
				u.act.languages = map[string]float64{}
				for _, l := range got {
					u.act.languages[l.ID] = l.Proficiency
				}
				return err
			})
			if err != nil {
				return failed(fmt.Errorf("read languages: %w", err))
			}
		}
		base, hasBase, err := r.baseProficiencies(ctx, u, u.baseline.GetLanguages())
		if err != nil {
			return failed(err)
		}
		if u.dx.verify && hasBase {
			u.addDrift(r.proficiencyDiffs("languages", base, u.act.languages)...)
		}
		conv := convergeValues(r, want, base, u.act.languages, hasBase, true)
		markKeptValues(u, "languages", want, conv)
		want = conv
		if d := r.proficiencyDiffs("languages", want, u.act.languages); len(d) > 0 {
			diffs, changed = append(diffs, d...), true
			if !r.dry {
				upsert := map[string]float64{}
				for id, p := range want {
					if g, ok := u.act.languages[id]; !ok || g != p {
						upsert[id] = p
					}
				}
				if len(upsert) > 0 {
					err := call(func(ctx context.Context) error {
						err := r.c.AddUserRoutingLanguages(ctx, u.id, proficiencyList(upsert))
						return err
					})
					if err != nil {
						return failed(fmt.Errorf("add languages: %w", err))
					}
				}
				for id := range u.act.languages {
					if _, ok := want[id]; ok {
						continue
					}
					if err := call(func(ctx context.Context) error { return r.c.RemoveUserRoutingLanguage(ctx, u.id, id) }); err != nil && !genesys.IsNotFound(err) {
						return failed(fmt.Errorf("remove language %s: %w", id, err))
					}
				}
				u.act.languages = want
			}
		}
	}

	if u.included(orgsyncv1.Component_COMPONENT_UTILIZATION) {
		if want := wantUtilization(u.d.GetUtilization()); want != nil {
			if !u.act.utilKnown && u.trusted(func(a, b *orgsyncv1.UserConfig) bool { return proto.Equal(a.GetUtilization(), b.GetUtilization()) }) {
				u.act.util, u.act.utilKnown = want, true // applied by orgsync, source unchanged
			}
			if !u.act.utilKnown {
				err := call(func(ctx context.Context) error {
					got, err := r.c.GetUserUtilization(ctx, u.id)
					if err == nil {
						u.act.utilKnown = true
						if got.Level == "Agent" {
							u.act.util = got
						}
					}
					return err
				})
				if err != nil {
					return failed(fmt.Errorf("read utilization: %w", err))
				}
			}
			base := wantUtilization(u.baseline.GetUtilization())
			if u.dx.verify && base != nil {
				u.addDrift(utilizationDiffs(base, u.act.util)...)
			}
			if base != nil && r.report() && len(utilizationDiffs(base, want)) == 0 {
				want = u.act.util // source unchanged: a drifted capacity is only reported
			}
			// want is nil when the report policy keeps a drifted org default.
			if d := utilizationDiffs(want, u.act.util); want != nil && len(d) > 0 {
				diffs, changed = append(diffs, d...), true
				if !r.dry {
					err := call(func(ctx context.Context) error {
						err := r.c.SetUserUtilization(ctx, u.id, *want)
						return err
					})
					if err != nil {
						return failed(fmt.Errorf("set utilization: %w", err))
					}
					u.act.util = want
				}
			}
		}
	}
	return changedIf(changed, diffs, "routing profile")
}

func proficiencyList(m map[string]float64) []genesys.SkillProficiency {
	out := make([]genesys.SkillProficiency, 0, len(m))
	for id, p := range m {
		out = append(out, genesys.SkillProficiency{ID: id, Proficiency: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// wantGrants translates the desired role grants.
func (r *run) wantGrants(u *userRun) ([]genesys.RoleDivision, error) {
	var out []genesys.RoleDivision
	for _, g := range u.d.GetGrants() {
		role, div := r.id(g.GetRoleRef()), r.id(g.GetDivisionRef())
		if role == "" || div == "" {
			return nil, failUser("grant %s in %s is not resolved in %s", g.GetRoleRef(), g.GetDivisionRef(), r.org)
		}
		out = append(out, genesys.RoleDivision{RoleID: role, DivisionID: div})
	}
	return out, nil
}

// applyGrants grants the desired roles the user lacks (GET subject, bulkadd
// of the missing ones). A user created by this attempt holds nothing worth
// reading: every desired grant is added (bulkadd ignores held ones).
func (r *run) applyGrants(ctx context.Context, u *userRun) stepResult {
	want, err := r.wantGrants(u)
	if err != nil {
		return failed(err)
	}
	if len(want) == 0 && len(u.baseline.GetGrants()) == 0 && !u.dx.verify {
		return changedIf(false, nil, "no grants wanted")
	}
	if u.act.grants == nil && u.baselineHeld() {
		// orgsync applied the baseline's grants to this very user: take
		// them as held (drift is the sweep's business), as for queues.
		base, _, err := r.baseGrants(ctx, u)
		if err != nil {
			return failed(err)
		}
		u.act.grants = base
	}
	if u.act.grants == nil {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
			s, err := r.c.GetSubject(ctx, u.id)
			if err != nil {
				return err
			}
			u.act.grants = map[genesys.RoleDivision]bool{}
			for _, g := range s.Grants {
				u.act.grants[genesys.RoleDivision{RoleID: g.Role.ID, DivisionID: g.Division.ID}] = true
			}
			return nil
		})
		if err != nil {
			return failed(fmt.Errorf("read grants: %w", err))
		}
	}
	wantSet := map[genesys.RoleDivision]bool{}
	for _, g := range want {
		wantSet[g] = true
	}
	base, hasBase, err := r.baseGrants(ctx, u)
	if err != nil {
		return failed(err)
	}
	if u.dx.verify && hasBase {
		u.addDrift(r.grantDrift(base, u.act.grants)...)
	}
	missing, revoke := convergeSet(r, wantSet, base, u.act.grants, hasBase)
	sortGrants(missing)
	sortGrants(revoke)
	var diffs []*orgsyncv1.FieldDiff
	for _, g := range missing {
		diffs = append(diffs, &orgsyncv1.FieldDiff{Field: r.grantField(g), Want: "granted"})
	}
	for _, g := range revoke {
		diffs = append(diffs, &orgsyncv1.FieldDiff{Field: r.grantField(g), Got: "granted"})
	}
	if len(missing) > 0 && !r.dry {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error { return r.c.GrantRoles(ctx, u.id, missing) })
		if err != nil {
			return failed(fmt.Errorf("grant roles: %w", err))
		}
		for _, g := range missing {
			u.act.grants[g] = true
		}
	}
	if len(revoke) > 0 && !r.dry {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error { return r.c.RevokeRoles(ctx, u.id, revoke) })
		if err != nil {
			return failed(fmt.Errorf("revoke roles: %w", err))
		}
		for _, g := range revoke {
			delete(u.act.grants, g)
		}
	}
	return changedIf(len(diffs) > 0, diffs, fmt.Sprintf("%d grant(s) added, %d revoked", len(missing), len(revoke)))
}
