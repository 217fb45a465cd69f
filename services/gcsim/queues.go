package gcsim

import (
	"net/http"
	"strconv"
	"strings"
)

// maxQueueMemberChange is the per-call limit of POST .../members.
const maxQueueMemberChange = 100

func (o *org) renderQueue(q *queue, joined *bool) map[string]any {
	m := map[string]any{
		"id":                q.id,
		"name":              q.name,
		"division":          o.divisionRef(q.divisionID),
		"dateCreated":       fmtTime(q.created),
		"memberCount":       len(q.members),
		"userMemberCount":   len(q.members),
		"joinedMemberCount": len(q.members),
		"selfUri":           "/api/v2/routing/queues/" + q.id,
	}
	if q.description != "" {
		m["description"] = q.description
	}
	if joined != nil {
		m["joined"] = *joined
	}
	return m
}

// GET /api/v2/routing/queues: name is exact and case-insensitive, with a
// leading and/or trailing * as wildcard (the spec: "Include only queues with
// the given name (leading and trailing asterisks allowed)"); id and
// divisionId filter.
func (s *Sim) listQueues(r *http.Request, o *org) (int, any, *apiError) {
	match := queueNameMatcher(r.URL.Query().Get("name"))
	ids, divs := idFilter(r, "id"), idFilter(r, "divisionId")
	var out []map[string]any
	for _, q := range sortedBy(o.queues, func(q *queue) string { return q.name }, func(q *queue) string { return q.id }) {
		if !match(q.name) || (ids != nil && !ids[q.id]) || (divs != nil && !divs[q.divisionID]) {
			continue
		}
		out = append(out, o.renderQueue(q, nil))
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// queueNameMatcher is the queue name filter: "" matches all, "*x*" contains,
// "x*" starts with, "*x" ends with, "x" equals; always case-insensitive.
func queueNameMatcher(filter string) func(string) bool {
	if filter == "" {
		return func(string) bool { return true }
	}
	core := strings.ToLower(filter)
	lead := strings.HasPrefix(core, "*")
	core = strings.TrimPrefix(core, "*")
	trail := strings.HasSuffix(core, "*")
	core = strings.TrimSuffix(core, "*")
	return func(name string) bool {
		n := strings.ToLower(name)
		switch {
		case lead && trail:
			return strings.Contains(n, core)
		case lead:
			return strings.HasSuffix(n, core)
		case trail:
			return strings.HasPrefix(n, core)
		}
		return n == core
	}
}

func (o *org) lookupQueue(id string) (*queue, *apiError) {
	q := o.queues[id]
	if q == nil {
		return nil, notFound("queue %s not found", id)
	}
	return q, nil
}

// GET /api/v2/routing/queues/{queueId}/members: name filters on the member's
// name (contains, case-insensitive), joined and memberBy (user|group) as
// documented. Every simulated member is a user who has joined. The listing
// is QueueMemberEntityListing: no total, pageCount or lastUri.
func (s *Sim) listQueueMembers(r *http.Request, o *org) (int, any, *apiError) {
	q, err := o.lookupQueue(r.PathValue("queueId"))
	if err != nil {
		return 0, nil, err
	}
	joined, err := boolParam(r, "joined")
	if err != nil {
		return 0, nil, err
	}
	memberBy := r.URL.Query().Get("memberBy")
	if memberBy != "" && memberBy != "user" && memberBy != "group" {
		return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [memberBy]. Allowable values are: user, group", memberBy)
	}
	name := strings.ToLower(r.URL.Query().Get("name"))
	members := make([]*user, 0, len(q.members))
	if (joined == nil || *joined) && memberBy != "group" {
		for id := range q.members {
			if u := o.users[id]; u != nil && strings.Contains(strings.ToLower(u.name), name) {
				members = append(members, u)
			}
		}
	}
	sortByName(members, userName, userID)
	p, err := paginate(r, members)
	if err != nil {
		return 0, nil, err
	}
	return 200, mapPage(p, func(u *user) map[string]any {
		return map[string]any{
			"id": u.id, "name": u.name, "ringNumber": 1, "joined": true, "memberBy": "user",
			"selfUri": "/api/v2/routing/queues/" + q.id + "/members/" + u.id,
		}
	}).withoutCounts(), nil
}

// boolParam reads an optional boolean query parameter (nil when absent).
func boolParam(r *http.Request, key string) (*bool, *apiError) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [%s]. Allowable values are: true, false", v, key)
	}
	return &b, nil
}

// POST /api/v2/routing/queues/{queueId}/members[?delete=true]: body is a list
// of {id}; at most 100 per call. Adding requires licensed users. 204.
func (s *Sim) postQueueMembers(r *http.Request, o *org) (int, any, *apiError) {
	q, err := o.lookupQueue(r.PathValue("queueId"))
	if err != nil {
		return 0, nil, err
	}
	delParam, err := boolParam(r, "delete")
	if err != nil {
		return 0, nil, err
	}
	del := delParam != nil && *delParam
	var items []struct {
		ID string `json:"id"`
	}
	if err := decodeBody(r, &items); err != nil {
		return 0, nil, err
	}
	if len(items) == 0 {
		return 0, nil, badRequest("queue members body must list at least one member")
	}
	if len(items) > maxQueueMemberChange {
		return 0, nil, badRequest("Invalid request data. Make sure you submit a valid number of queue members: at most %d per call, got %d", maxQueueMemberChange, len(items))
	}
	for i, it := range items {
		u := o.users[it.ID]
		if u == nil {
			return 0, nil, badRequest("[%d].id %q is not a user of this organization", i, it.ID)
		}
		if !del {
			if err := requireLicense(u, "queue membership"); err != nil {
				return 0, nil, err
			}
		}
	}
	for _, it := range items {
		if del == q.members[it.ID] {
			if del {
				delete(q.members, it.ID)
			} else {
				q.members[it.ID] = true
			}
			s.userChanged(o, it.ID, "queues")
		}
	}
	return 204, nil, nil
}

// DELETE /api/v2/routing/queues/{queueId}/members/{memberId}
func (s *Sim) deleteQueueMember(r *http.Request, o *org) (int, any, *apiError) {
	q, err := o.lookupQueue(r.PathValue("queueId"))
	if err != nil {
		return 0, nil, err
	}
	id := r.PathValue("memberId")
	if !q.members[id] {
		return 0, nil, notFound("user %s is not a member of queue %s", id, q.id)
	}
	delete(q.members, id)
	s.userChanged(o, id, "queues")
	return 204, nil, nil
}

// GET /api/v2/users/{userId}/queues: queues the user is a member of.
func (s *Sim) listUserQueues(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	divs := idFilter(r, "divisionId")
	want, err := boolParam(r, "joined")
	if err != nil {
		return 0, nil, err
	}
	// Every simulated membership is joined: joined=false lists none.
	joined := true
	var out []map[string]any
	for _, q := range sortedBy(o.queues, func(q *queue) string { return q.name }, func(q *queue) string { return q.id }) {
		if q.members[u.id] && (divs == nil || divs[q.divisionID]) && (want == nil || *want == joined) {
			out = append(out, o.renderQueue(q, &joined))
		}
	}
	p, err := paginate(r, out)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}
