package provisioner

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// ensureUsers finds or creates every pending user, cheapest evidence first:
//
//  1. the id journaled by an earlier attempt of this plan, else the bbolt
//     translation — verified with one batched GET /users?id=... (a stale
//     translation is forgotten);
//  2. in a dry run, GET /users/externalid/orgsync/<external id> (the stamp
//     survives a lost bbolt file);
//  3. one batched exact email search — a same-email user carrying orgsync's
//     stamp (GET /users/{id}/externalid, for such hits only) is found, one
//     orgsync did not stamp is adopted, skipped or failed per
//     plan.existing_users;
//  4. POST /users {name, email, divisionId, title, department}; should
//     another user hold the stamp (state lost and the email changed in the
//     source), the stamp step answers 409 and takes that user instead
//     (takeStampedUser).
//
// Every read asks for expand=skills,languages,team so later steps compare
// against what it returned instead of reading again.
func (r *run) ensureUsers(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	store := r.e.deps.Store

	// 1. Known ids: the journal's (an earlier attempt of this plan) and the
	// translation, read in one call; the first still there wins. A
	// translation whose user is gone is forgotten.
	type knownIDs struct{ journal, translation string }
	cands := map[*userRun]knownIDs{}
	gone := map[*userRun]string{} // translations of deleted users
	var ids, exts []string
	for _, u := range pending {
		// u.baseline: loaded by prepareUsers under the same user locks.
		var k knownIDs
		if e, ok, err := store.StepDone(r.org, r.plan.GetPlanId(), u.ext, u.steps[orgsyncv1.StepKind_STEP_KIND_ENSURE_USER]); err == nil && ok {
			k.journal = e.TargetUserID
		}
		var err error
		if k.translation, _, err = store.TargetID(r.org, u.ext); err != nil {
			out[u] = failed(err)
			continue
		}
		if k == (knownIDs{}) {
			continue
		}
		cands[u] = k
		exts = append(exts, u.ext)
		for _, id := range []string{k.journal, k.translation} {
			if id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) > 0 {
		var got []genesys.User
		err := r.m.call(ctx, exts, func(ctx context.Context) (err error) {
			got, err = r.c.ListUsersByID(ctx, ids, userExpand...)
			return err
		})
		if err != nil {
			for u := range cands {
				out[u] = failed(fmt.Errorf("read users by id: %w", err))
			}
		} else {
			byID := map[string]genesys.User{}
			for _, gu := range got {
				if gu.State != "deleted" {
					byID[gu.ID] = gu
				}
			}
			for u, k := range cands {
				if gu, ok := byID[k.journal]; ok {
					u.found = foundJournal
					u.setUser(&gu)
					r.doubtBaseline(u)
				} else if gu, ok := byID[k.translation]; ok {
					u.found = foundTranslation
					u.setUser(&gu)
					r.doubtBaseline(u)
				} else if k.translation != "" {
					// Deleted behind our back: forget it; looked up again below.
					gone[u] = k.translation
					if err := store.ForgetTargetID(r.org, u.ext, k.translation); err != nil {
						out[u] = failed(err)
					}
				}
			}
		}
	}

	// 2. External id: in a dry run only, one read per user. A clone
	// learns the same from step 3 (a same-email user's ids) and from the
	// stamp step (a user created while another holds the stamp: 409),
	// instead of one read per user of every fresh clone.
	var rest []*userRun
	for _, u := range pending {
		if _, done := out[u]; !done && u.user == nil {
			rest = append(rest, u)
		}
	}
	byExt := map[*userRun]stepResult{}
	if r.dry {
		byExt = r.lookUpExternalIDs(ctx, rest)
	} else {
		for _, u := range rest {
			byExt[u] = stepResult{}
		}
	}
	rest = rest[:0]
	for u, res := range byExt {
		if res.err != nil {
			out[u] = res
		} else if u.user == nil {
			rest = append(rest, u)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].ext < rest[j].ext })

	// 3. Email.
	if len(rest) > 0 {
		emails := make([]string, len(rest))
		for i, u := range rest {
			emails[i] = u.d.GetEmail()
		}
		var hits map[string]genesys.User
		err := r.m.call(ctx, extsOf(rest), func(ctx context.Context) (err error) {
			hits, err = r.c.FindUsersByEmails(ctx, emails, userExpand...)
			return err
		})
		if err != nil {
			for _, u := range rest {
				out[u] = failed(fmt.Errorf("search users by email: %w", err))
			}
			rest = nil
		}
		var create []*userRun
		for _, u := range rest {
			gu, ok := hits[strings.ToLower(u.d.GetEmail())]
			if !ok {
				create = append(create, u)
				continue
			}
			if !r.dry {
				// orgsync's own user (stamped, its translation lost) is
				// found, not adopted: no policy applies.
				stamped, err := r.holdsStamp(ctx, u, gu.ID)
				if err != nil {
					out[u] = failed(err)
					continue
				}
				if stamped {
					u.found = foundExternalID
					u.setUser(&gu)
					continue
				}
			}
			switch r.plan.GetExistingUsers() {
			case orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_SKIP:
				u.skipped = fmt.Sprintf("a user with email %s (%s) already exists in %s and the policy is SKIP", u.d.GetEmail(), gu.ID, r.org)
				out[u] = stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, reason: u.skipped}
				continue
			case orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_FAIL:
				out[u] = failed(failUser("a user with email %s (%s) already exists in %s and the policy is FAIL", u.d.GetEmail(), gu.ID, r.org))
				continue
			}
			u.found = foundEmail
			u.setUser(&gu)
		}

		// 4. Create.
		created := r.forEach(ctx, create, func(ctx context.Context, u *userRun) stepResult {
			return r.createUser(ctx, u)
		})
		for u, res := range created {
			out[u] = res
		}
	}

	for _, u := range pending {
		if k, ok := cands[u]; ok && u.id != "" && (k.journal != "" && u.id != k.journal || k.translation != "" && u.id != k.translation) {
			r.renew(u.ext) // another user than the one steps were done to (a manager, say)
		}
		// The baseline is what orgsync applied to the user it translated;
		// another user (that one was deleted) holds none of it.
		if u.found == foundCreated || u.found == foundNew || (gone[u] != "" && u.id != gone[u]) {
			u.baseline = nil
		}
		switch {
		case u.stale == "":
		case u.baseline == nil: // what the newer configuration was applied to is gone
			u.stale = ""
		case out[u].err == nil:
			u.skipped = u.stale
			out[u] = stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, reason: u.skipped}
		}
		if _, done := out[u]; done {
			continue
		}
		if u.found != foundJournal && u.found != foundTranslation && !r.dry {
			if err := store.PutTargetID(r.org, u.ext, u.id); err != nil {
				out[u] = failed(err)
				continue
			}
		}
		res := stepResult{status: orgsyncv1.Status_STATUS_UNCHANGED, msg: fmt.Sprintf("user %s found (%s)", u.d.GetEmail(), u.found),
			attrs: map[string]string{"found_by": u.found}}
		if u.found == foundEmail {
			res.msg = fmt.Sprintf("existing user %s adopted (policy ADOPT)", u.d.GetEmail())
		}
		out[u] = res
	}
	return out
}

// lookUpExternalIDs looks every user of us up by orgsync's external id
// (GET /users/externalid/orgsync/<ext>, one read each) and takes the user
// found.
func (r *run) lookUpExternalIDs(ctx context.Context, us []*userRun) map[*userRun]stepResult {
	return r.forEach(ctx, us, func(ctx context.Context, u *userRun) stepResult {
		var gu *genesys.User
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
			gu, err = r.c.GetUserByExternalIDExpand(ctx, extid.Authority, u.ext, userExpand...)
			return err
		})
		switch {
		case genesys.IsNotFound(err):
			return stepResult{}
		case err != nil:
			return failed(fmt.Errorf("look up user by external id: %w", err))
		}
		u.found = foundExternalID
		u.setUser(gu)
		return stepResult{}
	})
}

// holdsStamp reports whether target user id carries orgsync's external id
// of u.
func (r *run) holdsStamp(ctx context.Context, u *userRun, id string) (bool, error) {
	var ids []genesys.ExternalID
	err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
		ids, err = r.c.ListUserExternalIDs(ctx, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read external ids of user %s: %w", id, err)
	}
	return slices.Contains(ids, genesys.ExternalID{AuthorityName: extid.Authority, ExternalKey: u.ext}), nil
}

// createUser creates (or, in a dry run, plans) a user that was not found.
func (r *run) createUser(ctx context.Context, u *userRun) stepResult {
	d := u.d
	div := r.id(d.GetDivisionRef())
	if r.dry {
		u.found, u.act = foundNew, fresh()
		u.user = &genesys.User{Name: d.GetName(), Email: d.GetEmail(), Title: d.GetTitle(), Department: d.GetDepartment(), State: "active"}
		// The profile fields the create sets (the profile step then finds
		// them in place) are part of the planned creation.
		diffs := []*orgsyncv1.FieldDiff{{Field: "user", Want: d.GetEmail()}}
		for _, f := range [][2]string{{"name", d.GetName()}, {"title", d.GetTitle()}, {"department", d.GetDepartment()}} {
			if f[1] != "" {
				diffs = append(diffs, &orgsyncv1.FieldDiff{Field: f[0], Want: f[1]})
			}
		}
		return stepResult{status: orgsyncv1.Status_STATUS_CHANGED, msg: "user " + d.GetEmail() + " would be created", diffs: diffs}
	}
	if div == "" {
		return failed(failUser("division %s of user %s is not resolved in %s", d.GetDivisionRef(), u.ext, r.org))
	}
	var gu *genesys.User
	err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
		gu, err = r.c.CreateUser(ctx, genesys.CreateUser{Name: d.GetName(), Email: d.GetEmail(), DivisionID: div,
			Title: d.GetTitle(), Department: d.GetDepartment()})
		return err
	})
	if err != nil {
		return failed(fmt.Errorf("create user %s: %w", d.GetEmail(), err))
	}
	u.id, u.found, u.user, u.act = gu.ID, foundCreated, gu, fresh()
	// Record at once: a crash before the journal entry must not lose the id.
	if err := r.e.deps.Store.PutTargetID(r.org, u.ext, u.id); err != nil {
		return failed(err)
	}
	return stepResult{status: orgsyncv1.Status_STATUS_CHANGED, msg: "user " + d.GetEmail() + " created",
		attrs: map[string]string{"found_by": foundCreated}}
}

func (u *userRun) setUser(gu *genesys.User) {
	u.id, u.user, u.act = gu.ID, gu, fromUser(gu)
}

func extsOf(us []*userRun) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ext
	}
	return out
}

// stampExternalID puts orgsync's external id on the user unless it was found
// by it, or orgsync completed this very user before (baseline via translation).
func (r *run) stampExternalID(ctx context.Context, u *userRun) stepResult {
	if u.found == foundExternalID || u.baselineHeld() {
		return changedIf(false, nil, "external id already stamped")
	}
	if u.found == foundTranslation || u.found == foundJournal {
		// orgsync stamped it, unless its configuration never finished or
		// was lost since (doubt): read rather than write blindly.
		stamped, err := r.holdsStamp(ctx, u, u.id)
		if err != nil {
			return failed(err)
		}
		if stamped {
			return changedIf(false, nil, "external id already stamped")
		}
	}
	if r.dry {
		return changedIf(true, []*orgsyncv1.FieldDiff{{Field: "externalId." + extid.Authority, Want: u.ext}}, "external id would be stamped")
	}
	err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
		err := r.c.AddUserExternalID(ctx, u.id, genesys.ExternalID{AuthorityName: extid.Authority, ExternalKey: u.ext})
		return err
	})
	if genesys.StatusOf(err) == http.StatusConflict && u.found == foundCreated {
		return r.takeStampedUser(ctx, u)
	}
	if err != nil {
		return failed(fmt.Errorf("stamp external id: %w", err))
	}
	return changedIf(true, nil, "external id stamped")
}

// takeStampedUser handles a user just created while another user holds
// its external id: orgsync's own user, whose translation was lost (a new
// state file) and whose email changed in the source since, so neither the
// translation nor the email search found it. The user created by mistake
// is deleted and the stamped one carries on, as if found by external id.
func (r *run) takeStampedUser(ctx context.Context, u *userRun) stepResult {
	created := u.id
	var owner *genesys.User
	err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
		owner, err = r.c.GetUserByExternalIDExpand(ctx, extid.Authority, u.ext, userExpand...)
		return err
	})
	if err != nil {
		return failed(fmt.Errorf("stamp external id: another user holds it, and reading it failed: %w", err))
	}
	err = r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
		return r.c.DeleteUser(ctx, created)
	})
	if err != nil && !genesys.IsNotFound(err) {
		return failed(fmt.Errorf("delete user %s created while user %s holds external id %s: %w", created, owner.ID, u.ext, err))
	}
	if err := r.e.deps.Store.PutTargetID(r.org, u.ext, owner.ID); err != nil {
		return failed(err)
	}
	u.found = foundExternalID
	u.setUser(owner)
	u.baseline = nil
	r.renew(u.ext) // steps done to the deleted user are not done to this one
	return stepResult{status: orgsyncv1.Status_STATUS_CHANGED, diffs: []*orgsyncv1.FieldDiff{{Field: "user", Want: owner.ID, Got: created}},
		msg:   fmt.Sprintf("user %s already in %s by external id (email %s); user %s created by mistake deleted", owner.ID, r.org, owner.Email, created),
		attrs: map[string]string{"found_by": foundExternalID}}
}

// assignLicenses gives every pending user the licenses it lacks, in one
// POST /license/organization for the whole plan. Users just created lack
// everything; users whose baseline holds the same licenses are trusted;
// the others are read (GET /license/users/{id}).
func (r *run) assignLicenses(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	missing := map[*userRun][]string{}
	var toRead []*userRun
	for _, u := range pending {
		if !u.included(orgsyncv1.Component_COMPONENT_LICENSE) && len(u.d.GetLicenseRefs()) == 0 {
			out[u] = stepResult{status: orgsyncv1.Status_STATUS_SKIPPED, msg: "license not included"}
			continue
		}
		switch {
		case u.act.licenses != nil:
		case u.trusted(func(a, b *orgsyncv1.UserConfig) bool { return sameRefs(a.GetLicenseRefs(), b.GetLicenseRefs()) }):
			u.act.licenses = map[string]bool{}
			for _, ref := range u.d.GetLicenseRefs() {
				u.act.licenses[r.id(ref)] = true
			}
		case u.found == foundNew:
			u.act.licenses = map[string]bool{}
		default:
			toRead = append(toRead, u)
		}
	}
	read := r.forEach(ctx, toRead, func(ctx context.Context, u *userRun) stepResult {
		var lu *genesys.LicenseUser
		err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) (err error) {
			lu, err = r.c.GetUserLicenses(ctx, u.id)
			return err
		})
		if err != nil {
			return failed(fmt.Errorf("read licenses: %w", err))
		}
		u.act.licenses = map[string]bool{}
		for _, l := range lu.Licenses {
			u.act.licenses[l.ID] = true
		}
		return stepResult{}
	})
	for u, res := range read {
		if res.err != nil {
			out[u] = res
		}
	}
	byLicense := map[string][]string{}
	var batch []*userRun
	for _, u := range pending {
		if _, done := out[u]; done {
			continue
		}
		for _, ref := range u.d.GetLicenseRefs() {
			id := r.id(ref)
			if id == "" {
				out[u] = failed(failUser("license %s is not resolved in %s", ref, r.org))
				break
			}
			if !u.act.licenses[id] {
				missing[u] = append(missing[u], id)
				byLicense[id] = append(byLicense[id], u.id)
			}
		}
		if _, done := out[u]; !done && len(missing[u]) > 0 {
			batch = append(batch, u)
		}
	}
	if len(byLicense) > 0 && !r.dry {
		var assignments []genesys.LicenseAssignment
		for _, lic := range sortedKeys(byLicense) {
			assignments = append(assignments, genesys.LicenseAssignment{LicenseID: lic, UserIDsAdd: byLicense[lic]})
		}
		var statuses []genesys.LicenseUpdateStatus
		err := r.m.call(ctx, extsOf(batch), func(ctx context.Context) (err error) {
			statuses, err = r.c.AssignLicenses(ctx, assignments)
			return err
		})
		if err != nil {
			for _, u := range batch {
				out[u] = failed(fmt.Errorf("assign licenses: %w", err))
			}
		}
		bad := map[string]string{}
		for _, s := range statuses {
			if s.Result != "" && !strings.EqualFold(s.Result, "success") {
				bad[s.UserID] = fmt.Sprintf("license %s: %s", s.LicenseID, s.Result)
			}
		}
		for _, u := range batch {
			if reason, ok := bad[u.id]; ok {
				out[u] = failed(failUser("assign licenses: %s", reason))
			}
		}
	}
	for _, u := range pending {
		if _, done := out[u]; done {
			continue
		}
		var diffs []*orgsyncv1.FieldDiff
		for _, id := range missing[u] {
			diffs = append(diffs, &orgsyncv1.FieldDiff{Field: "licenses[" + r.nameOf(id) + "]", Want: "assigned"})
			u.act.licenses[id] = true
		}
		out[u] = changedIf(len(diffs) > 0, diffs, fmt.Sprintf("%d license(s) assigned", len(diffs)))
	}
	return out
}

// waitActive waits until the plan's new users are readable and active, with
// one batched poll for all of them (GET /users?id=…); a user already seen
// active (the create response, a read) costs nothing.
func (r *run) waitActive(ctx context.Context, pending []*userRun) map[*userRun]stepResult {
	out := map[*userRun]stepResult{}
	var wait []*userRun
	reactivated := map[*userRun]*orgsyncv1.FieldDiff{}
	for _, u := range pending {
		switch {
		case u.user != nil && u.user.State == "active":
			out[u] = changedIf(false, nil, "user is active")
		case u.user != nil && u.user.State == "inactive" && u.found != foundCreated && u.found != foundJournal:
			// An existing user deactivated in the target (a sync set's
			// onRemove, or an admin) while the request clones the user:
			// active again, or every later step and clone would wait for
			// nothing. (A user this plan created is inactive until the
			// platform activates it: that is waited for, not patched.)
			d := &orgsyncv1.FieldDiff{Field: "state", Want: "active", Got: "inactive"}
			if r.dry {
				out[u] = changedIf(true, []*orgsyncv1.FieldDiff{d}, "user would be reactivated")
				continue
			}
			active := "active"
			err := r.m.call(ctx, []string{u.ext}, func(ctx context.Context) error {
				gu, err := r.c.PatchUserAtVersion(ctx, u.id, u.user.Version, genesys.UserPatch{State: &active})
				if err == nil {
					u.user.Version = gu.Version
				}
				return err
			})
			if err != nil {
				out[u] = failed(fmt.Errorf("reactivate user %s: %w", u.id, err))
				continue
			}
			reactivated[u] = d
			wait = append(wait, u)
		case r.dry:
			out[u] = changedIf(false, nil, "user would be waited for")
		default:
			wait = append(wait, u)
		}
	}
	if len(wait) == 0 {
		return out
	}
	ids := make([]string, len(wait))
	for i, u := range wait {
		ids[i] = u.id
	}
	var active map[string]genesys.User
	err := r.m.call(ctx, extsOf(wait), func(ctx context.Context) (err error) {
		active, err = r.c.WaitUsersActive(ctx, ids)
		return err
	})
	for _, u := range wait {
		gu, ok := active[u.id]
		if !ok {
			if err == nil {
				err = fmt.Errorf("user %s was not listed active", u.id)
			}
			out[u] = failed(err)
			continue
		}
		u.user.State, u.user.Version = gu.State, gu.Version
		if d := reactivated[u]; d != nil {
			out[u] = changedIf(true, []*orgsyncv1.FieldDiff{d}, "user reactivated")
			continue
		}
		out[u] = changedIf(false, nil, "user became active")
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
