package genesys

import (
	"context"
	"net/http"
	"strings"
)

var (
	opListDivisions   = op(http.MethodGet, "/api/v2/authorization/divisions")
	opGetHomeDivision = op(http.MethodGet, "/api/v2/authorization/divisions/home")
	opListRoles       = op(http.MethodGet, "/api/v2/authorization/roles")
	opGetSubject      = op(http.MethodGet, "/api/v2/authorization/subjects/{subjectId}")
	opGrantRoles      = op(http.MethodPost, "/api/v2/authorization/subjects/{subjectId}/bulkadd")
	opRevokeRoles     = op(http.MethodPost, "/api/v2/authorization/subjects/{subjectId}/bulkremove")
)

// ListDivisions lists the org's divisions.
func (c *Client) ListDivisions(ctx context.Context) ([]AuthzDivision, error) {
	return collect(listByPageNumber[AuthzDivision](ctx, c, request{op: opListDivisions}))
}

// GetHomeDivision reads the org's home division.
func (c *Client) GetHomeDivision(ctx context.Context) (*AuthzDivision, error) {
	var d AuthzDivision
	err := c.do(ctx, request{op: opGetHomeDivision, out: &d, idempotent: true})
	return &d, err
}

// ListRoles lists roles whose name matches the filter (all when "").
func (c *Client) ListRoles(ctx context.Context, name string) ([]Role, error) {
	return collect(listByPageNumber[Role](ctx, c, request{op: opListRoles, query: nameQuery(name)}))
}

// FindRoleByName returns the role named exactly name.
func (c *Client) FindRoleByName(ctx context.Context, name string) (Role, bool, error) {
	if strings.TrimSpace(name) == "" {
		return Role{}, false, invalidArg(opListRoles, "empty role name")
	}
	return findExact(listByPageNumber[Role](ctx, c, request{op: opListRoles, query: nameQuery(name)}), name)
}

// GetSubject reads the role grants of a user.
func (c *Client) GetSubject(ctx context.Context, userID string) (*AuthzSubject, error) {
	var s AuthzSubject
	err := c.do(ctx, request{op: opGetSubject, params: []string{userID}, out: &s, idempotent: true})
	return &s, err
}

// GrantRoles grants roles in divisions to a user (bulkadd; granting a held
// grant is a no-op).
func (c *Client) GrantRoles(ctx context.Context, userID string, grants []RoleDivision) error {
	return c.roleGrants(ctx, opGrantRoles, userID, grants)
}

// RevokeRoles removes role grants from a user (bulkremove).
func (c *Client) RevokeRoles(ctx context.Context, userID string, grants []RoleDivision) error {
	return c.roleGrants(ctx, opRevokeRoles, userID, grants)
}

func (c *Client) roleGrants(ctx context.Context, o operation, userID string, grants []RoleDivision) error {
	if len(grants) == 0 {
		return invalidArg(o, "no grants")
	}
	for _, g := range grants {
		if g.RoleID == "" || g.DivisionID == "" {
			return invalidArg(o, "grant needs roleId and divisionId")
		}
	}
	return c.do(ctx, request{op: o, params: []string{userID}, body: map[string]any{"grants": grants}, idempotent: true})
}
