package gcsim

import (
	"net/http"
	"slices"
)

func (o *org) renderDivision(d *division) map[string]any {
	return map[string]any{
		"id":           d.id,
		"name":         d.name,
		"description":  d.description, // required by AuthzDivision
		"homeDivision": d.id == o.homeDivisionID,
		"selfUri":      "/api/v2/authorization/divisions/" + d.id,
	}
}

func (o *org) renderRole(rl *role) map[string]any {
	return map[string]any{
		"id":          rl.id,
		"name":        rl.name,
		"description": rl.description,
		"permissions": append([]string{}, rl.permissions...),
		"userCount":   o.roleUserCount(rl.id),
		"default":     false,
		"base":        false,
		"selfUri":     "/api/v2/authorization/roles/" + rl.id,
	}
}

func (o *org) roleUserCount(roleID string) int {
	n := 0
	for _, u := range o.users {
		if slices.ContainsFunc(u.grants, func(g grant) bool { return g.roleID == roleID }) {
			n++
		}
	}
	return n
}

// GET /api/v2/authorization/divisions (name is a case-insensitive prefix,
// id filters by ids).
func (s *Sim) listDivisions(r *http.Request, o *org) (int, any, *apiError) {
	name := r.URL.Query().Get("name")
	ids := idFilter(r, "id")
	var out []map[string]any
	for _, d := range sortedBy(o.divisions, func(d *division) string { return d.name }, func(d *division) string { return d.id }) {
		if (name != "" && !hasPrefixFold(d.name, name)) || (ids != nil && !ids[d.id]) {
			continue
		}
		out = append(out, o.renderDivision(d))
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// GET /api/v2/authorization/divisions/home
func (s *Sim) homeDivision(r *http.Request, o *org) (int, any, *apiError) {
	d := o.divisions[o.homeDivisionID]
	if d == nil {
		return 0, nil, notFound("organization %s has no home division", o.id)
	}
	return 200, o.renderDivision(d), nil
}

// GET /api/v2/authorization/roles (name is a case-insensitive prefix).
func (s *Sim) listRoles(r *http.Request, o *org) (int, any, *apiError) {
	prefix := r.URL.Query().Get("name")
	ids := idFilter(r, "id")
	var out []map[string]any
	for _, rl := range sortedBy(o.roles, func(rl *role) string { return rl.name }, func(rl *role) string { return rl.id }) {
		if (prefix != "" && !hasPrefixFold(rl.name, prefix)) || (ids != nil && !ids[rl.id]) {
			continue
		}
		out = append(out, o.renderRole(rl))
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// renderSubject is the AuthzSubject of u.
func (o *org) renderSubject(u *user) map[string]any {
	grants := []map[string]any{}
	for _, g := range u.grants {
		gm := map[string]any{"subjectId": u.id, "grantMadeAt": fmtTime(g.madeAt)}
		if d := o.divisions[g.divisionID]; d != nil {
			gm["division"] = o.renderDivision(d)
		}
		if rl := o.roles[g.roleID]; rl != nil {
			gm["role"] = map[string]any{"id": rl.id, "name": rl.name, "description": rl.description, "default": false, "selfUri": "/api/v2/authorization/roles/" + rl.id}
		}
		grants = append(grants, gm)
	}
	return map[string]any{"id": u.id, "name": u.name, "grants": grants, "version": 1, "selfUri": "/api/v2/authorization/subjects/" + u.id}
}

// userAuthorization is the UserAuthorization of u (distinct roles).
func (o *org) userAuthorization(u *user) map[string]any {
	roles := []map[string]any{}
	perms := []string{}
	seen := map[string]bool{}
	for _, g := range u.grants {
		rl := o.roles[g.roleID]
		if rl == nil || seen[rl.id] {
			continue
		}
		seen[rl.id] = true
		roles = append(roles, map[string]any{"id": rl.id, "name": rl.name})
		for _, p := range rl.permissions {
			if !slices.Contains(perms, p) {
				perms = append(perms, p)
			}
		}
	}
	return map[string]any{"roles": roles, "unusedRoles": []any{}, "permissions": perms, "permissionPolicies": []any{}}
}

// GET /api/v2/authorization/subjects/{subjectId}
func (s *Sim) getSubject(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("subjectId"))
	if err != nil {
		return 0, nil, err
	}
	return 200, o.renderSubject(u), nil
}

// GET /api/v2/users/{subjectId}/roles
func (s *Sim) getUserRoles(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("subjectId"))
	if err != nil {
		return 0, nil, err
	}
	return 200, o.userAuthorization(u), nil
}

type roleDivisionPair struct {
	RoleID     string `json:"roleId"`
	DivisionID string `json:"divisionId"`
}

func (o *org) decodeGrants(r *http.Request) ([]roleDivisionPair, *apiError) {
	var b struct {
		Grants []roleDivisionPair `json:"grants"`
	}
	if err := decodeBody(r, &b); err != nil {
		return nil, err
	}
	for i, g := range b.Grants {
		if o.roles[g.RoleID] == nil {
			return nil, badRequest("grants[%d].roleId %q is not a role of this organization", i, g.RoleID)
		}
		if o.divisions[g.DivisionID] == nil {
			return nil, badRequest("grants[%d].divisionId %q is not a division of this organization", i, g.DivisionID)
		}
	}
	return b.Grants, nil
}

func hasGrant(u *user, g roleDivisionPair) bool {
	return slices.ContainsFunc(u.grants, func(x grant) bool { return x.roleID == g.RoleID && x.divisionID == g.DivisionID })
}

// grantsOp implements bulkadd / bulkremove / bulkreplace (204).
func (s *Sim) grantsOp(mode string) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		u, err := o.lookupUser(r.PathValue("subjectId"))
		if err != nil {
			return 0, nil, err
		}
		pairs, err := o.decodeGrants(r)
		if err != nil {
			return 0, nil, err
		}
		now := s.now()
		if mode == "replace" {
			u.grants = nil
		}
		for _, g := range pairs {
			switch {
			case mode == "remove":
				u.grants = slices.DeleteFunc(u.grants, func(x grant) bool { return x.roleID == g.RoleID && x.divisionID == g.DivisionID })
			case !hasGrant(u, g):
				u.grants = append(u.grants, grant{roleID: g.RoleID, divisionID: g.DivisionID, madeAt: now})
			}
		}
		s.userChanged(o, u.id, "grants")
		return 204, nil, nil
	}
}

// POST|DELETE /api/v2/authorization/subjects/{subjectId}/divisions/{divisionId}/roles/{roleId}
func (s *Sim) singleGrant(add bool) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		u, err := o.lookupUser(r.PathValue("subjectId"))
		if err != nil {
			return 0, nil, err
		}
		g := roleDivisionPair{RoleID: r.PathValue("roleId"), DivisionID: r.PathValue("divisionId")}
		if o.roles[g.RoleID] == nil {
			return 0, nil, notFound("role %s not found", g.RoleID)
		}
		if o.divisions[g.DivisionID] == nil {
			return 0, nil, notFound("division %s not found", g.DivisionID)
		}
		if add && !hasGrant(u, g) {
			u.grants = append(u.grants, grant{roleID: g.RoleID, divisionID: g.DivisionID, madeAt: s.now()})
			s.userChanged(o, u.id, "grants")
		}
		if !add && hasGrant(u, g) {
			u.grants = slices.DeleteFunc(u.grants, func(x grant) bool { return x.roleID == g.RoleID && x.divisionID == g.DivisionID })
			s.userChanged(o, u.id, "grants")
		}
		return 204, nil, nil
	}
}
