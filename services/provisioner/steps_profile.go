package provisioner

import (
	"context"
	"fmt"
	"slices"
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
		return "", fmt.Sprintf("manager %s does not exist in %s; manager left unset", email, r.org), nil
	}
	return id, "", nil
}

// workPhone returns the user's current phone address of type typ.
func workPhone(gu *genesys.User, typ string) (genesys.Contact, bool) {
	for _, a := range gu.Addresses {
		if a.MediaType == "PHONE" && strings.EqualFold(a.Type, typ) && a.Address != "" {
			return a, true
		}
	}
	return genesys.Contact{}, false
}

// applyPhone gives the user a work number from the target's free DIDs,
// keeping a number the user already has. Numbers come from one listing per
// plan (ListUnassignedDIDs), handed out one by one; a 409 (someone took it
// meanwhile) moves on to the next. The choice is recorded as an AUDIT event.
func (r *run) applyPhone(ctx context.Context, u *userRun) stepResult {
	if len(u.d.GetPhones()) == 0 {
		return stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, msg: "the source user has no phone"}
	}
	typ := u.d.GetPhones()[0].GetType()
	if typ == "" {
		typ = "WORK"
	}
	if cur, ok := workPhone(u.user, typ); ok {
		return changedIf(false, nil, "user keeps number "+cur.Address)
	}
	return r.patchWithNumber(ctx, u, typ, genesys.UserPatch{}, nil)
}

// wantsNewPhone reports whether the phone step will have to give u a number
// (it is included, pending and u has none), and of which address type.
func (r *run) wantsNewPhone(u *userRun) (string, bool) {
	stepID, ok := u.steps[orgsyncv1.StepKind_STEP_KIND_PHONE]
	if !ok || len(u.d.GetPhones()) == 0 || r.dry {
		return "", false
	}
	if _, done, err := r.e.deps.Store.StepDone(r.org, r.plan.GetPlanId(), u.ext, stepID); err != nil || done {
		return "", false
	}
	typ := u.d.GetPhones()[0].GetType()
	if typ == "" {
		typ = "WORK"
	}
	if _, has := workPhone(u.user, typ); has {
		return "", false
	}
	return typ, true
}

// patchWithNumber PATCHes the user with patch plus a free number as its
// phone of type typ, moving on to the next free number on a 409 (taken
// meanwhile), and records the choice as an AUDIT event.
func (r *run) patchWithNumber(ctx context.Context, u *userRun, typ string, patch genesys.UserPatch, diffs []*orgsyncv1.FieldDiff) stepResult {
	for attempt := 0; ; attempt++ {
		number, err := r.nextDID(ctx, u)
		if err != nil {
			return failed(err)
		}
		if number == "" {
			return failed(failUser("no free DID left in %s for %s", r.org, u.d.GetEmail()))
		}
		all := append(slices.Clone(diffs), &orgsyncv1.FieldDiff{Field: "addresses[PHONE/" + typ + "]", Want: number})
		if r.dry {
			return changedIf(true, all, "would assign "+number)
		}
		addrs := make([]genesys.Contact, 0, len(u.user.Addresses)+1)
		for _, a := range u.user.Addresses {
			if !(a.MediaType == "PHONE" && strings.EqualFold(a.Type, typ)) {
				addrs = append(addrs, genesys.Contact{Address: a.Address, MediaType: a.MediaType, Type: a.Type, Extension: a.Extension, CountryCode: a.CountryCode})
			}
		}
		addrs = append(addrs, genesys.Contact{Address: number, MediaType: "PHONE", Type: typ})
		patch.Addresses = &addrs
		var gu *genesys.User
		err = r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
			gu, err = r.c.PatchUserAtVersion(ctx, u.id, u.user.Version, patch)
			return err
		})
		if genesys.IsConflict(err) && attempt < 20 {
			continue // taken meanwhile: next number
		}
		if err != nil {
			return failed(fmt.Errorf("patch user with number %s: %w", number, err))
		}
		u.absorb(gu)
		r.emit(ctx, &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: orgsyncv1.Status_STATUS_CHANGED,
			UserExternalId: u.ext, TargetUserId: u.id, Step: u.steps[orgsyncv1.StepKind_STEP_KIND_PHONE],
			Message:    fmt.Sprintf("assigned %s to %s as %s phone", number, u.d.GetEmail(), typ),
			Attributes: map[string]string{"number": number, "type": typ, "source_number": u.d.GetPhones()[0].GetSourceNumber(), "attempts": fmt.Sprint(attempt + 1)}})
		res := changedIf(true, all, "assigned "+number)
		res.attrs = map[string]string{"number": number}
		return res
	}
}

// nextDID hands out the next free number of the plan's DID listing (listed
// on first use), or "" when none is left.
func (r *run) nextDID(ctx context.Context, u *userRun) (string, error) {
	r.didMu.Lock()
	defer r.didMu.Unlock()
	if !r.didOK {
		var dids []genesys.DIDNumber
		err := r.m.call(ctx, nil, func(ctx context.Context) (err error) {
			dids, err = r.c.ListUnassignedDIDs(ctx)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("list free DIDs: %w", err)
		}
		for _, d := range dids {
			if !d.Assigned && d.Number != "" {
				r.dids = append(r.dids, d.Number)
			}
		}
		r.didOK = true
	}
	if len(r.dids) == 0 {
		return "", nil
	}
	n := r.dids[0]
	r.dids = r.dids[1:]
	return n, nil
}
