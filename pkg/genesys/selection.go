package genesys

import (
	"context"
	"strings"
)

// Reads that select users by what they belong to, for sync sets: users
// search on any field UserSearchCriteria declares (x-genesys-search-fields:
// department, title, state, divisionId, teamId, ...), team and queue members
// (teams.go, queues.go).

// SearchCriterion is one criterion of a users search; criteria are ANDed,
// the values of one criterion ORed.
type SearchCriterion struct {
	// Field of UserSearchCriteria.fields, e.g. "department", "divisionId".
	Field string
	// Values, any of which matches.
	Values []string
	// Type: EXACT (default), CONTAINS or STARTS_WITH.
	Type string
}

// SearchUsers returns every user matching all criteria
// (POST /api/v2/users/search, every page).
func (c *Client) SearchUsers(ctx context.Context, criteria []SearchCriterion) ([]User, error) {
	if len(criteria) == 0 {
		return nil, invalidArg(opSearchUsers, "no search criteria")
	}
	query := make([]userSearchValuesCriter, len(criteria))
	for i, cr := range criteria {
		if cr.Field == "" || len(cr.Values) == 0 {
			return nil, invalidArg(opSearchUsers, "criterion %d needs a field and values", i+1)
		}
		typ := strings.ToUpper(cr.Type)
		if typ == "" {
			typ = "EXACT"
		}
		query[i] = userSearchValuesCriter{Type: typ, Fields: []string{cr.Field}, Values: cr.Values}
	}
	var out []User
	for page := 1; ; page++ {
		body := userSearchValues{PageSize: MaxPageSize, PageNumber: page, Query: query}
		var resp usersSearchResponse
		if err := c.do(ctx, request{op: opSearchUsers, body: body, out: &resp, idempotent: true}); err != nil {
			return nil, err
		}
		out = append(out, resp.Results...)
		if page >= resp.PageCount || len(resp.Results) == 0 {
			return out, nil
		}
	}
}

// AuditTopic is the notification topic of audit events of one entity:
// v2.audits.entitytype.{type}.entityid.{id}, type e.g. USER or TEAM.
func AuditTopic(entityType, entityID string) string {
	return "v2.audits.entitytype." + entityType + ".entityid." + entityID
}
