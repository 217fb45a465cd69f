package gcsim

import (
	"net/http"
	"strings"
)

// maxTeamMemberChange is the per-call limit of team member adds/removes.
const maxTeamMemberChange = 25

func (o *org) renderTeam(t *team) map[string]any {
	m := map[string]any{
		"id":           t.id,
		"name":         t.name,
		"division":     o.divisionRef(t.divisionID),
		"dateCreated":  fmtTime(t.created),
		"dateModified": fmtTime(t.modified),
		"memberCount":  len(t.members),
		"selfUri":      "/api/v2/teams/" + t.id,
	}
	if t.description != "" {
		m["description"] = t.description
	}
	return m
}

func (o *org) lookupTeam(id string) (*team, *apiError) {
	t := o.teams[id]
	if t == nil {
		return nil, notFound("team %s not found", id)
	}
	return t, nil
}

// GET /api/v2/teams: cursor listing, `name` is a case-insensitive prefix.
func (s *Sim) listTeams(r *http.Request, o *org) (int, any, *apiError) {
	prefix := r.URL.Query().Get("name")
	var teams []*team
	for _, t := range sortedBy(o.teams, func(t *team) string { return t.name }, func(t *team) string { return t.id }) {
		if prefix == "" || hasPrefixFold(t.name, prefix) {
			teams = append(teams, t)
		}
	}
	p, err := cursorPaginate(r, teams, func(t *team) string { return t.id })
	if err != nil {
		return 0, nil, err
	}
	out := cursorPage[map[string]any]{Entities: []map[string]any{}, NextURI: p.NextURI, SelfURI: p.SelfURI, PreviousURI: p.PreviousURI}
	for _, t := range p.Entities {
		out.Entities = append(out.Entities, o.renderTeam(t))
	}
	return 200, out, nil
}

type teamBody struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Division    *struct {
		ID string `json:"id"`
	} `json:"division"`
}

func (o *org) applyTeamBody(t *team, b teamBody) *apiError {
	if b.Name != nil {
		if strings.TrimSpace(*b.Name) == "" {
			return badRequest("Team.name must not be empty")
		}
		if other, ok := findByNameFold(o.teams, *b.Name, func(t *team) string { return t.name }); ok && other.id != t.id {
			return errf(409, "general.conflict", "a team named %q already exists (id %s)", other.name, other.id)
		}
	}
	if b.Division != nil && b.Division.ID != "" && o.divisions[b.Division.ID] == nil {
		return badRequest("Team.division.id %s is not a division of this organization", b.Division.ID)
	}
	if b.Name != nil {
		t.name = *b.Name
	}
	if b.Description != nil {
		t.description = *b.Description
	}
	if b.Division != nil && b.Division.ID != "" {
		t.divisionID = b.Division.ID
	}
	return nil
}

// POST /api/v2/teams: names are unique per org (409).
func (s *Sim) createTeam(r *http.Request, o *org) (int, any, *apiError) {
	var b teamBody
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if b.Name == nil {
		return 0, nil, badRequest("Team.name is required")
	}
	now := s.now()
	t := &team{id: newID(), divisionID: o.homeDivisionID, created: now, modified: now, members: map[string]bool{}}
	if err := o.applyTeamBody(t, b); err != nil {
		return 0, nil, err
	}
	o.teams[t.id] = t
	s.recordCreate(o.id, "team")
	return 200, o.renderTeam(t), nil
}

// GET /api/v2/teams/{teamId} (honours the post-create 404 window).
func (s *Sim) getTeam(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	if s.now().Before(t.created.Add(s.cfg.NotFoundAfterCreate)) {
		return 0, nil, notFound("team %s not found", t.id)
	}
	return 200, o.renderTeam(t), nil
}

// PATCH /api/v2/teams/{teamId}
func (s *Sim) patchTeam(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	var b teamBody
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if err := o.applyTeamBody(t, b); err != nil {
		return 0, nil, err
	}
	t.modified = s.now()
	return 200, o.renderTeam(t), nil
}

// DELETE /api/v2/teams/{teamId}: members become team-less.
func (s *Sim) deleteTeam(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	for id := range t.members {
		o.setTeam(o.users[id], "")
		s.teamChanged(o, id, t.id, "")
	}
	delete(o.teams, t.id)
	return 204, nil, nil
}

// GET /api/v2/teams/{teamId}/members (cursor listing).
func (s *Sim) listTeamMembers(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	members := make([]*user, 0, len(t.members))
	for id := range t.members {
		members = append(members, o.users[id])
	}
	sortByName(members, userName, userID)
	p, err := cursorPaginate(r, members, func(u *user) string { return u.id })
	if err != nil {
		return 0, nil, err
	}
	out := cursorPage[map[string]any]{Entities: []map[string]any{}, NextURI: p.NextURI, SelfURI: p.SelfURI, PreviousURI: p.PreviousURI}
	for _, u := range p.Entities {
		out.Entities = append(out.Entities, map[string]any{"id": u.id, "name": u.name, "selfUri": "/api/v2/users/" + u.id})
	}
	return 200, out, nil
}

// POST /api/v2/teams/{teamId}/members {memberIds}: a user belongs to at most
// one team, so adding moves the user out of its previous team. Unknown users
// are reported in failures with reason UserNotFound.
func (s *Sim) addTeamMembers(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	var b struct {
		MemberIDs []string `json:"memberIds"`
	}
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if len(b.MemberIDs) == 0 {
		return 0, nil, badRequest("TeamMembers.memberIds must not be empty")
	}
	if len(b.MemberIDs) > maxTeamMemberChange {
		return 0, nil, badRequest("at most %d team members can be added at a time, got %d", maxTeamMemberChange, len(b.MemberIDs))
	}
	added, failures := []map[string]any{}, []map[string]any{}
	for _, id := range b.MemberIDs {
		u := o.users[id]
		if u == nil {
			failures = append(failures, map[string]any{"id": id, "reason": "UserNotFound"})
			continue
		}
		if old := u.teamID; old != t.id {
			o.setTeam(u, t.id)
			s.teamChanged(o, u.id, old, t.id)
		}
		added = append(added, map[string]any{"id": u.id, "selfUri": "/api/v2/users/" + u.id})
	}
	return 200, map[string]any{"entities": added, "failures": failures}, nil
}

// DELETE /api/v2/teams/{teamId}/members?id=a,b (at most 25).
func (s *Sim) removeTeamMembers(r *http.Request, o *org) (int, any, *apiError) {
	t, err := o.lookupTeam(r.PathValue("teamId"))
	if err != nil {
		return 0, nil, err
	}
	ids := idFilter(r, "id")
	if len(ids) == 0 {
		return 0, nil, badRequest("query parameter id (comma separated member ids) is required")
	}
	if len(ids) > maxTeamMemberChange {
		return 0, nil, errf(400, "max.user.ids", "Only %d members can be deleted at a time.", maxTeamMemberChange)
	}
	for id := range ids {
		if u := o.users[id]; u != nil && u.teamID == t.id {
			o.setTeam(u, "")
			s.teamChanged(o, u.id, t.id, "")
		}
	}
	return 204, nil, nil
}
