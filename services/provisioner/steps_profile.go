package provisioner

import (
	"context"
	"fmt"
	"strings"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// profileDiffs compares title, department and manager (a target user id;
// "" = leave the manager alone) with the user's representation.
func profileDiffs(d *orgsyncv1.UserConfig, managerID string, gu *genesys.User) []*orgsyncv1.FieldDiff {
	var out []*orgsyncv1.FieldDiff
	if d.GetTitle() != gu.Title {
		out = append(out, &orgsyncv1.FieldDiff{Field: "title", Want: d.GetTitle(), Got: gu.Title})
	}
	if d.GetDepartment() != gu.Department {
		out = append(out, &orgsyncv1.FieldDiff{Field: "department", Want: d.GetDepartment(), Got: gu.Department})
	}
	got := ""
	if gu.Manager != nil {
		got = gu.Manager.ID
	}
	if managerID != "" && managerID != got {
		out = append(out, &orgsyncv1.FieldDiff{Field: "manager", Want: managerID, Got: got})
	}
	return out
}

// applyProfile sets title, department and manager when they differ. The
// manager is another user of this plan (already ensured: managers come
// first), a user orgsync translated before, or found by the manager's
// mapped email; a manager missing from the target is reported, not fatal.
func (r *run) applyProfile(ctx context.Context, u *userRun) stepResult {
	managerID, reason, err := r.managerOf(ctx, u)
	if err != nil {
		return failed(err)
	}
	diffs := r.profileDelta(u, profileDiffs(u.d, managerID, u.user))
	if len(diffs) == 0 || r.dry {
		if r.dry {
			diffs = r.namedManagers(diffs)
		}
		res := changedIf(len(diffs) > 0, diffs, "profile")
		res.reason = reason
		return res
	}
	patch := genesys.UserPatch{}
	for _, df := range diffs {
		v := df.Want
		switch df.Field {
		case "title":
			patch.Title = &v
		case "department":
			patch.Department = &v
		case "manager":
			patch.Manager = &v
		}
	}
	// A user about to get a work number gets it with this PATCH rather than
	// a second one (the phone step, which depends on this one, then finds
	// the number in place): one write instead of two per new user.
	if typ, ok := r.wantsNewPhone(u); ok {
		res := r.patchWithNumber(ctx, u, typ, patch, diffs)
		if res.err == nil {
			res.msg, res.reason = "profile updated, "+res.msg, reason
		}
		return res
	}
	var gu *genesys.User
	err = r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
		gu, err = r.c.PatchUserAtVersion(ctx, u.id, u.user.Version, patch)
		return err
	})
	if err != nil {
		return failed(fmt.Errorf("patch profile: %w", err))
	}
	u.absorb(gu)
	res := changedIf(true, diffs, "profile updated")
	res.reason = reason
	return res
}

// absorb takes the profile fields and version of a PATCH answer, keeping
// the expanded parts of the earlier read.
func (u *userRun) absorb(gu *genesys.User) {
	u.user.Version, u.user.Title, u.user.Department, u.user.Manager, u.user.Addresses =
		gu.Version, gu.Title, gu.Department, gu.Manager, gu.Addresses
	if gu.State != "" {
		u.user.State = gu.State
	}
}

// managerOf resolves the desired manager to a target user id ("" with a
// reason when there is none to set).
func (r *run) managerOf(ctx context.Context, u *userRun) (string, string, error) {
	d := u.d
	if d.GetManagerRef() == "" && d.GetManagerEmail() == "" {
		return "", "", nil
	}
	if m, ok := r.byExt[d.GetManagerRef()]; ok && m.id != "" {
		return m.id, "", nil
	} else if ok && m.found == foundNew {
		return newUserID(m), "", nil // dry run: the manager would be created first
	}
	if d.GetManagerRef() != "" {
		if id, ok, err := r.e.deps.Store.TargetID(r.org, d.GetManagerRef()); err != nil {
			return "", "", err
		} else if ok {
			return id, "", nil
		}
	}
	email := strings.ToLower(d.GetManagerEmail())
	if email == "" {
		return "", fmt.Sprintf("manager %s is not in %s", d.GetManagerRef(), r.org), nil
	}
	r.mgrMu.Lock()
	id, cached := r.managers[email]
	r.mgrMu.Unlock()
	if !cached {
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
			gu, found, err := r.c.FindUserByEmail(ctx, email)
			if found {
				id = gu.ID
			}
			return err
		})
		if err != nil {
			return "", "", fmt.Errorf("look up manager %s: %w", email, err)
		}
		r.mgrMu.Lock()
		r.managers[email] = id
		r.mgrMu.Unlock()
	}
	if id == "" {
		if d.GetManagerRef() != "" && r.plan.GetPart() > 1 && !r.dry {
			// The manager is cloned by this request in an earlier part
			// (managers come first), whose plan runs concurrently with
			// this one and has not created it yet (or the search does not
			// show it yet): retry the plan, never leave the manager unset.
			r.mgrMu.Lock()
			delete(r.managers, email)
			r.mgrMu.Unlock()
			return "", "", fmt.Errorf("manager %s, cloned by this request in an earlier part, is not in %s yet", email, r.org)
		}
		return "", fmt.Sprintf("manager %s does not exist in %s; manager left unset", email, r.org), nil
	}
	return id, "", nil
}

// newUserID stands for the id of a user a dry run would create.
func newUserID(u *userRun) string { return "new:" + u.d.GetEmail() }

// namedManagers renders the manager ids of a dry run's profile differences
// as the emails of the plan's users (a plan is read by people).
func (r *run) namedManagers(diffs []*orgsyncv1.FieldDiff) []*orgsyncv1.FieldDiff {
	name := func(id string) string {
		for _, m := range r.users {
			if id != "" && (m.id == id || newUserID(m) == id) {
				return m.d.GetEmail()
			}
		}
		return id
	}
	for i, d := range diffs {
		if d.GetField() == "manager" {
			diffs[i] = &orgsyncv1.FieldDiff{Field: d.GetField(), Want: name(d.GetWant()), Got: name(d.GetGot())}
		}
	}
	return diffs
}
