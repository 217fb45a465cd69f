package orgsync

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/services/gcsim"
)

// ChangeSkillsAndConverge changes, through the Genesys API, the skills of
// the reference user email in the source org — one skill added (one the
// user lacks, the org's last such skill), the first skill's proficiency
// moved by one — and waits until the user's copy in every target has
// exactly the source's skills: the continuous sync path (Notifications API
// → reconciler → extractor → resolver → provisioner delta plans). It first
// waits until the reconciler follows the source (a Notifications API socket
// is open), so the change is heard rather than left to a sweep. It returns
// the time from the change to the last target converged.
func (d *Dev) ChangeSkillsAndConverge(ctx context.Context, source, email string, targets []string, timeout time.Duration) (time.Duration, error) {
	sim, srcID := d.Sim, d.OrgIDs[source]
	if sim == nil {
		return 0, fmt.Errorf("source change: the dev environment runs no gcsim")
	}
	if err := pollUntil(ctx, timeout, "the reconciler's Notifications API socket on "+source, func() bool { return sim.SocketCount(srcID) > 0 }); err != nil {
		return 0, err
	}
	client, err := orgs.NewRegistry(d.Orgs.OrgConfigs()).Client(source)
	if err != nil {
		return 0, err
	}
	user, ok := sim.UserByEmail(srcID, email)
	if !ok {
		return 0, fmt.Errorf("source change: no user %s in %s", email, source)
	}
	change, err := skillChange(ctx, sim, client, srcID, user)
	if err != nil {
		return 0, fmt.Errorf("source change of %s: %w", email, err)
	}
	start := time.Now()
	if err := client.ReplaceUserRoutingSkills(ctx, user.ID, change); err != nil {
		return 0, fmt.Errorf("source change of %s: %w", email, err)
	}
	changed, _ := sim.UserByEmail(srcID, email)
	err = pollUntil(ctx, timeout, "every target to converge on the changed skills of "+email, func() bool {
		for _, t := range targets {
			got, ok := sim.UserByEmail(d.OrgIDs[t], email)
			if !ok || !maps.Equal(got.Skills, changed.Skills) {
				return false
			}
		}
		return true
	})
	return time.Since(start), err
}

// skillChange is the new skill list of ChangeSkillsAndConverge.
func skillChange(ctx context.Context, sim *gcsim.Sim, src *genesys.Client, srcID string, user gcsim.UserState) ([]genesys.SkillProficiency, error) {
	have, err := src.ListUserRoutingSkills(ctx, user.ID)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("the user has no skills to change")
	}
	org, _ := sim.OrgState(srcID)
	add := ""
	for _, name := range org.Skills {
		if _, held := user.Skills[name]; !held {
			add = name
		}
	}
	if add == "" {
		return nil, fmt.Errorf("the user holds every skill of the org")
	}
	skill, ok, err := src.FindSkillByName(ctx, add)
	if err != nil || !ok {
		return nil, fmt.Errorf("find skill %q: found %v: %v", add, ok, err)
	}
	out := []genesys.SkillProficiency{{ID: skill.ID, Proficiency: 4}}
	for i, s := range have {
		p := s.Proficiency
		if i == 0 {
			p = float64(int(p)%5 + 1)
		}
		out = append(out, genesys.SkillProficiency{ID: s.ID, Proficiency: p})
	}
	return out, nil
}
