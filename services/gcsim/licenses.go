package gcsim

import (
	"net/http"
	"sort"
)

func (o *org) renderLicense(l *licenseDef) map[string]any {
	return map[string]any{
		"id":            l.id,
		"description":   l.description,
		"prerequisites": []any{},
		"comprises":     []any{},
		"selfUri":       "/api/v2/license/definitions/" + l.id,
	}
}

func (o *org) sortedLicenses() []*licenseDef {
	return sortedBy(o.licenses, func(l *licenseDef) string { return l.id }, func(l *licenseDef) string { return l.id })
}

// GET /api/v2/license/definitions
func (s *Sim) listLicenseDefinitions(r *http.Request, o *org) (int, any, *apiError) {
	out := []map[string]any{}
	for _, l := range o.sortedLicenses() {
		out = append(out, o.renderLicense(l))
	}
	return 200, out, nil
}

// GET /api/v2/license/definitions/{licenseId}
func (s *Sim) getLicenseDefinition(r *http.Request, o *org) (int, any, *apiError) {
	l := o.licenses[r.PathValue("licenseId")]
	if l == nil {
		return 0, nil, notFound("license definition %s not found", r.PathValue("licenseId"))
	}
	return 200, o.renderLicense(l), nil
}

type licenseAssignment struct {
	LicenseID     string   `json:"licenseId"`
	UserIDsAdd    []string `json:"userIdsAdd"`
	UserIDsRemove []string `json:"userIdsRemove"`
}

// POST /api/v2/license/organization: batch assignment. Unknown licenses are
// a 400 (nothing applied); unknown users get result "UserNotFound".
func (s *Sim) assignLicenses(r *http.Request, o *org) (int, any, *apiError) {
	var b struct {
		Assignments []licenseAssignment `json:"assignments"`
	}
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if len(b.Assignments) == 0 {
		return 0, nil, badRequest("LicenseBatchAssignmentRequest.assignments must not be empty")
	}
	for i, a := range b.Assignments {
		if o.licenses[a.LicenseID] == nil {
			return 0, nil, badRequest("assignments[%d].licenseId %q is not a license of this organization", i, a.LicenseID)
		}
	}
	out := []map[string]any{}
	apply := func(lic, uid string, add bool) {
		u := o.users[uid]
		result := "Success"
		switch {
		case u == nil:
			result = "UserNotFound"
		case add && !u.licenses[lic]:
			u.licenses[lic] = true
			s.userChanged(o, uid, "licenses")
		case !add && u.licenses[lic]:
			delete(u.licenses, lic)
			s.userChanged(o, uid, "licenses")
		}
		out = append(out, map[string]any{"userId": uid, "licenseId": lic, "result": result})
	}
	for _, a := range b.Assignments {
		for _, uid := range a.UserIDsAdd {
			apply(a.LicenseID, uid, true)
		}
		for _, uid := range a.UserIDsRemove {
			apply(a.LicenseID, uid, false)
		}
	}
	return 200, out, nil
}

func sortedLicenseIDs(u *user) []string {
	ids := make([]string, 0, len(u.licenses))
	for id := range u.licenses {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// GET /api/v2/license/users/{userId}
func (s *Sim) getLicenseUser(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	return 200, o.renderLicenseUser(u), nil
}

// renderLicenseUser is the spec's LicenseUser: u with its licenses.
func (o *org) renderLicenseUser(u *user) map[string]any {
	lics := []map[string]any{}
	for _, id := range sortedLicenseIDs(u) {
		if l := o.licenses[id]; l != nil {
			lics = append(lics, o.renderLicense(l))
		}
	}
	return map[string]any{"id": u.id, "licenses": lics, "selfUri": "/api/v2/license/users/" + u.id}
}

// GET /api/v2/license/users: licensed users with their license ids.
func (s *Sim) listLicenseUsers(r *http.Request, o *org) (int, any, *apiError) {
	var licensed []*user
	for _, u := range o.users {
		if u.hasLicense() {
			licensed = append(licensed, u)
		}
	}
	sortByName(licensed, userID, userID)
	p, err := paginate(r, licensed)
	if err != nil {
		return 0, nil, err
	}
	return 200, mapPage(p, func(u *user) map[string]any {
		return map[string]any{"id": u.id, "licenses": sortedLicenseIDs(u), "selfUri": "/api/v2/license/users/" + u.id}
	}).withoutURIs(), nil
}

// POST /api/v2/license/users: the licenses of the users whose ids the body
// lists, keyed by user id (users not in the org are left out).
func (s *Sim) batchLicenseUsers(r *http.Request, o *org) (int, any, *apiError) {
	var ids []string
	if err := decodeBody(r, &ids); err != nil {
		return 0, nil, err
	}
	if len(ids) > maxPageSize {
		return 0, nil, badRequest("at most %d user ids per call, got %d", maxPageSize, len(ids))
	}
	out := map[string]any{}
	for _, id := range ids {
		if u := o.users[id]; u != nil {
			out[id] = o.renderLicenseUser(u)
		}
	}
	return 200, out, nil
}
