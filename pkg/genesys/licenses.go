package genesys

import (
	"context"
	"net/http"
)

var (
	opListLicenseDefinitions = op(http.MethodGet, "/api/v2/license/definitions")
	opAssignLicenses         = op(http.MethodPost, "/api/v2/license/organization")
	opGetUserLicenses        = op(http.MethodGet, "/api/v2/license/users/{userId}")
	opBatchUserLicenses      = op(http.MethodPost, "/api/v2/license/users")
)

// ListLicenseDefinitions lists the licenses the org can assign.
func (c *Client) ListLicenseDefinitions(ctx context.Context) ([]LicenseDefinition, error) {
	var out []LicenseDefinition
	err := c.do(ctx, request{op: opListLicenseDefinitions, out: &out, idempotent: true})
	return out, err
}

// AssignLicenses adds and removes licenses of users in one batch
// (POST /api/v2/license/organization); assigning a held license is a no-op.
func (c *Client) AssignLicenses(ctx context.Context, assignments []LicenseAssignment) ([]LicenseUpdateStatus, error) {
	if len(assignments) == 0 {
		return nil, invalidArg(opAssignLicenses, "no assignments")
	}
	for i := range assignments {
		a := &assignments[i]
		if a.LicenseID == "" {
			return nil, invalidArg(opAssignLicenses, "assignment %d has no licenseId", i)
		}
		// Both lists are required by the spec, even when empty.
		if a.UserIDsAdd == nil {
			a.UserIDsAdd = []string{}
		}
		if a.UserIDsRemove == nil {
			a.UserIDsRemove = []string{}
		}
	}
	var out []LicenseUpdateStatus
	err := c.do(ctx, request{op: opAssignLicenses, body: map[string]any{"assignments": assignments}, out: &out, idempotent: true})
	return out, err
}

// GetUserLicenses reads the licenses of a user.
func (c *Client) GetUserLicenses(ctx context.Context, userID string) (*LicenseUser, error) {
	var out LicenseUser
	err := c.do(ctx, request{op: opGetUserLicenses, params: []string{userID}, out: &out, idempotent: true})
	return &out, err
}

// GetUsersLicenses reads the licenses of many users in batches of 100
// (POST /api/v2/license/users), keyed by user id. A user the answer leaves
// out holds no license.
func (c *Client) GetUsersLicenses(ctx context.Context, userIDs []string) (map[string]LicenseUser, error) {
	out := map[string]LicenseUser{}
	for _, chunk := range chunks(userIDs, maxUsersPerBatch) {
		var page map[string]LicenseUser
		if err := c.do(ctx, request{op: opBatchUserLicenses, body: chunk, out: &page, idempotent: true}); err != nil {
			return nil, err
		}
		for id, l := range page {
			out[id] = l
		}
	}
	return out, nil
}
