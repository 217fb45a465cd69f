package genesys

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Batch user reads and version-aware patches for the provisioner: they read
// many users per call (GET /users?id=..., POST /users/search with values)
// so that a plan spends its API budget on writes, not on lookups.

// maxUsersPerBatch is the most ids (or emails) one batch read carries: the
// page size limit, so one call answers the whole batch.
const maxUsersPerBatch = MaxPageSize

// ListUsersByID reads the users with these ids, any state, with optional
// expands (see GetUser), up to 100 ids per call. Ids that do not exist (or
// are still invisible right after a create) are simply absent from the result.
func (c *Client) ListUsersByID(ctx context.Context, ids []string, expand ...string) ([]User, error) {
	for _, e := range expand {
		if !userExpands[e] {
			return nil, invalidArg(opListUsers, "unknown expand %q", e)
		}
	}
	var out []User
	for _, chunk := range chunks(ids, maxUsersPerBatch) {
		q := url.Values{"id": chunk, "state": {"any"}}
		for _, e := range expand {
			q.Add("expand", e)
		}
		users, err := collect(listByPageNumber[User](ctx, c, request{op: opListUsers, query: q}))
		if err != nil {
			return nil, err
		}
		out = append(out, users...)
	}
	return out, nil
}

// userSearchValues is a UserSearchRequest whose criterion carries several
// values (ORed) and which asks for expands.
type userSearchValues struct {
	PageSize   int                      `json:"pageSize"`
	PageNumber int                      `json:"pageNumber"`
	Expand     []string                 `json:"expand,omitempty"`
	Query      []userSearchValuesCriter `json:"query"`
}

type userSearchValuesCriter struct {
	Type   string   `json:"type"`
	Fields []string `json:"fields"`
	Values []string `json:"values"`
}

// FindUsersByEmails searches users whose email EXACTLY equals one of emails
// (POST /api/v2/users/search, 100 emails per call) and returns them keyed by
// lower-case email. Emails without a user are absent from the map.
func (c *Client) FindUsersByEmails(ctx context.Context, emails []string, expand ...string) (map[string]User, error) {
	for _, e := range expand {
		if !userExpands[e] {
			return nil, invalidArg(opSearchUsers, "unknown expand %q", e)
		}
	}
	want := map[string]bool{}
	for _, e := range emails {
		want[strings.ToLower(e)] = true
	}
	out := map[string]User{}
	for _, chunk := range chunks(emails, maxUsersPerBatch) {
		for page := 1; ; page++ {
			body := userSearchValues{PageSize: maxUsersPerBatch, PageNumber: page, Expand: expand,
				Query: []userSearchValuesCriter{{Type: "EXACT", Fields: []string{"email"}, Values: chunk}}}
			var resp usersSearchResponse
			if err := c.do(ctx, request{op: opSearchUsers, body: body, out: &resp, idempotent: true}); err != nil {
				return nil, err
			}
			for _, u := range resp.Results {
				if k := strings.ToLower(u.Email); want[k] {
					out[k] = u
				}
			}
			if page >= resp.PageCount {
				break
			}
		}
	}
	return out, nil
}

// GetUserByExternalIDExpand is GetUserByExternalID with expands (see GetUser).
func (c *Client) GetUserByExternalIDExpand(ctx context.Context, authority, key string, expand ...string) (*User, error) {
	q := url.Values{}
	for _, e := range expand {
		if !userExpands[e] {
			return nil, invalidArg(opGetUserByExternalID, "unknown expand %q", e)
		}
		q.Add("expand", e)
	}
	var u User
	if err := c.do(ctx, request{op: opGetUserByExternalID, params: []string{authority, key}, query: q, out: &u, idempotent: true}); err != nil {
		return nil, err
	}
	return &u, nil
}

// PatchUserAtVersion is PatchUser for a caller that already knows the
// user's current version (from a create, a read or the previous patch): it
// saves the read. When the version turns out stale it falls back to
// PatchUser (re-read, retry). Other conflicts (409 for a phone number another
// user holds) are returned as they are, so the caller can react to them.
func (c *Client) PatchUserAtVersion(ctx context.Context, userID string, version int, patch UserPatch) (*User, error) {
	if version <= 0 {
		return c.PatchUser(ctx, userID, patch)
	}
	body := updateUser{Name: patch.Name, Title: patch.Title, Department: patch.Department, Email: patch.Email,
		Manager: patch.Manager, Addresses: patch.Addresses, State: patch.State, Version: version}
	var out User
	err := c.do(ctx, request{op: opPatchUser, params: []string{userID}, body: body, out: &out, idempotent: true})
	if err == nil {
		return &out, nil
	}
	if !isStaleVersion(err) {
		return nil, err
	}
	u, err := c.PatchUser(ctx, userID, patch)
	if err != nil {
		return nil, fmt.Errorf("genesys: patch user %s after version %d conflicted: %w", userID, version, err)
	}
	return u, nil
}

// isStaleVersion is isVersionConflict narrowed to answers that name the
// version: a 409 about something else (a taken phone number) is not retried.
func isStaleVersion(err error) bool {
	var e *APIError
	if !errors.As(err, &e) || !isVersionConflict(err) {
		return false
	}
	return strings.Contains(strings.ToLower(e.Message), "version") || strings.Contains(strings.ToLower(e.Code), "version")
}
