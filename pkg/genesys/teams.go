package genesys

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

var (
	opListTeams         = op(http.MethodGet, "/api/v2/teams")
	opCreateTeam        = op(http.MethodPost, "/api/v2/teams")
	opListTeamMembers   = op(http.MethodGet, "/api/v2/teams/{teamId}/members")
	opAddTeamMembers    = op(http.MethodPost, "/api/v2/teams/{teamId}/members")
	opRemoveTeamMembers = op(http.MethodDelete, "/api/v2/teams/{teamId}/members")
)

// teamMemberChunk is how many member ids one add/remove call carries
// (Genesys accepts at most 25 per call).
const teamMemberChunk = 25

// ListTeams lists teams whose name starts with prefix (cursor listing).
func (c *Client) ListTeams(ctx context.Context, prefix string) ([]Team, error) {
	return collect(listByCursor[Team](ctx, c, request{op: opListTeams, query: nameQuery(prefix)}))
}

// FindTeamByName returns the team named exactly name.
func (c *Client) FindTeamByName(ctx context.Context, name string) (Team, bool, error) {
	if strings.TrimSpace(name) == "" {
		return Team{}, false, invalidArg(opListTeams, "empty team name")
	}
	return findExact(listByCursor[Team](ctx, c, request{op: opListTeams, query: nameQuery(name)}), name)
}

// CreateTeam creates a team (divisionID may be empty for the home division)
// without ever duplicating it.
func (c *Client) CreateTeam(ctx context.Context, name, description, divisionID string) (*Team, error) {
	if strings.TrimSpace(name) == "" {
		return nil, invalidArg(opCreateTeam, "empty team name")
	}
	body := teamCreate{Name: name, Description: description}
	if divisionID != "" {
		body.Division = &Division{ID: divisionID}
	}
	var t Team
	err := createOnce(ctx, c, request{op: opCreateTeam, body: body}, &t,
		func(ctx context.Context) (Team, bool, error) { return c.FindTeamByName(ctx, name) })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// EnsureTeam returns the team named exactly name, creating it when absent.
func (c *Client) EnsureTeam(ctx context.Context, name, description, divisionID string) (Team, bool, error) {
	return ensure(ctx, name, c.FindTeamByName, func(ctx context.Context, name string) (*Team, error) {
		return c.CreateTeam(ctx, name, description, divisionID)
	})
}

// ListTeamMembers lists a team's members, following nextUri.
func (c *Client) ListTeamMembers(ctx context.Context, teamID string) ([]UserRef, error) {
	return collect(listByNextURI[UserRef](ctx, c, request{op: opListTeamMembers, params: []string{teamID}}))
}

// AddTeamMembers adds users to a team, 25 per call; adding a member twice is
// a no-op. Failures the server reports per member are returned merged.
func (c *Client) AddTeamMembers(ctx context.Context, teamID string, userIDs []string) (TeamMemberAddResult, error) {
	var all TeamMemberAddResult
	for _, chunk := range chunks(userIDs, teamMemberChunk) {
		var res TeamMemberAddResult
		err := c.do(ctx, request{op: opAddTeamMembers, params: []string{teamID},
			body: map[string][]string{"memberIds": chunk}, out: &res, idempotent: true})
		if err != nil {
			return all, err
		}
		all.Entities = append(all.Entities, res.Entities...)
		all.Failures = append(all.Failures, res.Failures...)
	}
	return all, nil
}

// RemoveTeamMembers removes users from a team, 25 per call.
func (c *Client) RemoveTeamMembers(ctx context.Context, teamID string, userIDs []string) error {
	for _, chunk := range chunks(userIDs, teamMemberChunk) {
		q := url.Values{"id": {strings.Join(chunk, ",")}}
		if err := c.do(ctx, request{op: opRemoveTeamMembers, params: []string{teamID}, query: q, idempotent: true}); err != nil {
			return err
		}
	}
	return nil
}

// chunks splits ids into slices of at most n, skipping empty ids.
func chunks(ids []string, n int) [][]string {
	var out [][]string
	var cur []string
	for _, id := range ids {
		if strings.TrimSpace(id) == "" {
			continue
		}
		cur = append(cur, id)
		if len(cur) == n {
			out = append(out, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
