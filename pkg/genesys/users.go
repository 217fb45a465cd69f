package genesys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

var (
	opGetUser             = op(http.MethodGet, "/api/v2/users/{userId}")
	opCreateUser          = op(http.MethodPost, "/api/v2/users")
	opPatchUser           = op(http.MethodPatch, "/api/v2/users/{userId}")
	opSearchUsers         = op(http.MethodPost, "/api/v2/users/search")
	opGetUserByExternalID = op(http.MethodGet, "/api/v2/users/externalid/{authorityName}/{externalKey}")
	opAddUserExternalID   = op(http.MethodPost, "/api/v2/users/{userId}/externalid")
	opListUserExternalIDs = op(http.MethodGet, "/api/v2/users/{userId}/externalid")
	opListUsers           = op(http.MethodGet, "/api/v2/users")
	opDeleteUser          = op(http.MethodDelete, "/api/v2/users/{userId}")
)

// userExpands are the expand values the spec allows on GET /users/{userId}
// that the pipeline reads.
var userExpands = map[string]bool{"skills": true, "languages": true, "team": true, "authorization": true,
	"profileSkills": true, "certifications": true, "locations": true, "groups": true, "employerInfo": true, "biography": true}

// GetUser reads a user, with optional expands ("skills", "languages",
// "team", "authorization"; sent as repeated expand parameters). Expanded
// skills and languages are best effort: read /routingskills and
// /routinglanguages for the authoritative lists.
//
// When this client created the user within ConsistencyWindow, a 404 is
// retried with backoff until the window has passed (Genesys is eventually
// consistent right after a create).
func (c *Client) GetUser(ctx context.Context, userID string, expand ...string) (*User, error) {
	q := url.Values{}
	for _, e := range expand {
		if !userExpands[e] {
			return nil, invalidArg(opGetUser, "unknown expand %q", e)
		}
		q.Add("expand", e)
	}
	var u User
	get := func() error {
		return c.do(ctx, request{op: opGetUser, params: []string{userID}, query: q, out: &u, idempotent: true})
	}
	err := get()
	if IsNotFound(err) {
		if deadline, ok := c.recentlyCreated(userID); ok {
			err = c.pollUntil(ctx, deadline, func() (bool, error) {
				if err := get(); err != nil {
					return false, err
				}
				return true, nil
			})
		}
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// WaitUserActive polls GET /users/{id} with backoff and jitter until the user
// is readable and its state is "active"; 404s are expected meanwhile. It
// gives up when ctx is done or after ConsistencyWindow without success,
// whichever is first.
func (c *Client) WaitUserActive(ctx context.Context, userID string) (*User, error) {
	var u User
	deadline := time.Now().Add(c.cfg.ConsistencyWindow)
	err := c.pollUntil(ctx, deadline, func() (bool, error) {
		if err := c.do(ctx, request{op: opGetUser, params: []string{userID}, out: &u, idempotent: true}); err != nil {
			return false, err
		}
		return u.State == "active", nil
	})
	if err != nil {
		return nil, fmt.Errorf("genesys: wait for user %s to be active (org %s): %w", userID, c.cfg.OrgID, err)
	}
	return &u, nil
}

// WaitUsersActive is WaitUserActive for many users at once: it polls
// GET /users?id=… (up to 100 ids a call) with backoff and jitter until every
// user is listed with state "active" — a user not yet readable is simply
// absent — and gives up after ConsistencyWindow. It returns the users that
// became active, by id; when some did not, the error names them.
func (c *Client) WaitUsersActive(ctx context.Context, userIDs []string) (map[string]User, error) {
	active := make(map[string]User, len(userIDs))
	waiting := slices.Clone(userIDs)
	deadline := time.Now().Add(c.cfg.ConsistencyWindow)
	err := c.pollUntil(ctx, deadline, func() (bool, error) {
		got, err := c.ListUsersByID(ctx, waiting)
		if err != nil {
			return false, err
		}
		for _, u := range got {
			if u.State == "active" {
				active[u.ID] = u
			}
		}
		waiting = slices.DeleteFunc(waiting, func(id string) bool { _, ok := active[id]; return ok })
		return len(waiting) == 0, nil
	})
	if err != nil {
		return active, fmt.Errorf("genesys: wait for users %s to be active (org %s): %w", strings.Join(waiting, ", "), c.cfg.OrgID, err)
	}
	return active, nil
}

// pollUntil calls try until it reports done, retrying 404s (and not-done
// results) with full-jitter backoff until deadline. Other errors end it.
func (c *Client) pollUntil(ctx context.Context, deadline time.Time, try func() (bool, error)) error {
	for n := 1; ; n++ {
		done, err := try()
		if err == nil && done {
			return nil
		}
		if err != nil && !IsNotFound(err) {
			return err
		}
		wait := c.retry.backoff(n)
		if time.Now().Add(wait).After(deadline) {
			if err == nil {
				err = errors.New("condition not met")
			}
			return fmt.Errorf("%w (still so after %d polls)", err, n)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) recentlyCreated(userID string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.created[userID]
	if !ok {
		return time.Time{}, false
	}
	deadline := at.Add(c.cfg.ConsistencyWindow)
	if time.Now().After(deadline) {
		delete(c.created, userID)
		return time.Time{}, false
	}
	return deadline, true
}

// CreateUser creates a user. It never creates a duplicate: if the answer is
// lost, the user is looked up by email before anything is re-posted, and an
// existing user found that way is returned as the result.
func (c *Client) CreateUser(ctx context.Context, in CreateUser) (*User, error) {
	if strings.TrimSpace(in.Name) == "" || strings.TrimSpace(in.Email) == "" || strings.TrimSpace(in.DivisionID) == "" {
		return nil, invalidArg(opCreateUser, "name, email and divisionId are required")
	}
	var u User
	err := createOnce(ctx, c, request{op: opCreateUser, body: in}, &u, func(ctx context.Context) (User, bool, error) {
		return c.FindUserByEmail(ctx, in.Email)
	})
	if err != nil {
		return nil, err
	}
	c.rememberCreated(u.ID, time.Now())
	return &u, nil
}

// rememberCreated records that this client created userID at now, and
// forgets the users created more than ConsistencyWindow before: a 404 on
// them is no longer waited out, and a provisioner that creates 200,000
// users kept every id (24 MB) when they left only as they were read.
func (c *Client) rememberCreated(userID string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.createdOrder
	for len(old) > 0 && now.Sub(old[0].at) > c.cfg.ConsistencyWindow {
		if c.created[old[0].id].Equal(old[0].at) { // not created again since
			delete(c.created, old[0].id)
		}
		old = old[1:]
	}
	c.created[userID] = now
	c.createdOrder = append(old, createdUser{userID, now})
}

// FindUserByEmail searches users with an EXACT match on email
// (POST /api/v2/users/search) and returns the one whose email equals email
// (case-insensitively, as Genesys compares emails).
func (c *Client) FindUserByEmail(ctx context.Context, email string) (User, bool, error) {
	if strings.TrimSpace(email) == "" {
		return User{}, false, invalidArg(opSearchUsers, "empty email")
	}
	body := userSearchRequest{PageSize: 25, PageNumber: 1,
		Query: []userSearchCriteria{{Type: "EXACT", Fields: []string{"email"}, Value: email}}}
	var resp usersSearchResponse
	if err := c.do(ctx, request{op: opSearchUsers, body: body, out: &resp, idempotent: true}); err != nil {
		return User{}, false, err
	}
	for _, u := range resp.Results {
		if strings.EqualFold(u.Email, email) {
			return u, true, nil
		}
	}
	return User{}, false, nil
}

// ListUsers lists the org's users (page-number listing).
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	return collect(listByPageNumber[User](ctx, c, request{op: opListUsers}))
}

// PatchUser changes the profile fields set in patch. It sends the user's
// current version; when Genesys answers that the version is stale (409, or
// 400 mentioning the version) it re-reads the user and tries again, up to
// DefaultVersionConflictTry times.
func (c *Client) PatchUser(ctx context.Context, userID string, patch UserPatch) (*User, error) {
	var lastErr error
	for range DefaultVersionConflictTry {
		cur, err := c.GetUser(ctx, userID)
		if err != nil {
			return nil, err
		}
		body := updateUser{Name: patch.Name, Title: patch.Title, Department: patch.Department, Email: patch.Email,
			Manager: patch.Manager, Addresses: patch.Addresses, State: patch.State, Version: cur.Version}
		var out User
		err = c.do(ctx, request{op: opPatchUser, params: []string{userID}, body: body, out: &out, idempotent: true})
		if err == nil {
			return &out, nil
		}
		if !isVersionConflict(err) {
			return nil, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%w (version still conflicting after %d re-reads)", lastErr, DefaultVersionConflictTry)
}

// GetUserByExternalID reads the user holding an external id; IsNotFound(err)
// when none does.
func (c *Client) GetUserByExternalID(ctx context.Context, authority, key string) (*User, error) {
	var u User
	if err := c.do(ctx, request{op: opGetUserByExternalID, params: []string{authority, key}, out: &u, idempotent: true}); err != nil {
		return nil, err
	}
	return &u, nil
}

// AddUserExternalID stamps an external id on a user (idempotent: the same
// authority and key again is a no-op); the answer (the user's external ids) is not decoded.
func (c *Client) AddUserExternalID(ctx context.Context, userID string, id ExternalID) error {
	if id.AuthorityName == "" || id.ExternalKey == "" {
		return invalidArg(opAddUserExternalID, "authorityName and externalKey are required")
	}
	return c.do(ctx, request{op: opAddUserExternalID, params: []string{userID}, body: id, idempotent: true})
}

// DeleteUser deletes a user (the provisioner deletes only a user it has
// just created by mistake: see its STAMP_EXTERNAL_ID step).
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	if userID == "" {
		return invalidArg(opDeleteUser, "empty user id")
	}
	return c.do(ctx, request{op: opDeleteUser, params: []string{userID}, idempotent: true})
}

// ListUserExternalIDs returns the external ids of a user.
func (c *Client) ListUserExternalIDs(ctx context.Context, userID string) ([]ExternalID, error) {
	var out []ExternalID
	err := c.do(ctx, request{op: opListUserExternalIDs, params: []string{userID}, out: &out, idempotent: true})
	return out, err
}
