package gcsim

import (
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"
)

// UserChange is the internal "user changed" event, raised on every change of
// a user's configuration. It is the hook for the Notifications API and the
// fake CRM: subscribe with Sim.OnUserChanged.
type UserChange struct {
	OrgID  string
	UserID string
	// Aspect names what changed: "created", "deleted", "profile",
	// "addresses", "skills", "languages", "utilization", "team", "queues",
	// "grants", "licenses", "externalid".
	Aspect string
	At     time.Time
	// ClientID and RemoteIP identify the API call that made the change
	// (the OAuth client of its token, the caller's address); empty for
	// changes made outside the API.
	ClientID, RemoteIP string
	// UserName is the user's name (before a deletion).
	UserName string
	// Changes are the audited properties of Aspect with their values
	// before and after. Computed only while a connected channel listens to
	// the user's audit topic (nobody else reads them). OldValues are known
	// when the call names the user in its path (PATCH /users/{userId},
	// PUT /users/{userId}/routingskills/bulk, ...); for calls on a group
	// (queue or team members, license batches) they are empty.
	Changes []PropertyChange
	// TeamLeft and TeamJoined are, for aspect "team", the ids of the teams
	// the user left and joined (empty when none): the change also goes to
	// those teams' audit topics.
	TeamLeft, TeamJoined string
}

// PropertyChange is one changed property of an audit event, the SDK's
// AuditTopicPropertyChange.
type PropertyChange struct {
	Property  string   `json:"property"`
	OldValues []string `json:"oldValues"`
	NewValues []string `json:"newValues"`
}

// OnUserChanged registers fn to be called after every user change. fn runs
// on the goroutine that made the change, after the org lock is released, so
// it may call back into the Sim; it must not block for long.
func (s *Sim) OnUserChanged(fn func(UserChange)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

// userChanged queues a change event; o.mu must be held.
func (s *Sim) userChanged(o *org, userID, aspect string) {
	o.pending = append(o.pending, UserChange{OrgID: o.id, UserID: userID, Aspect: aspect, At: s.now()})
}

// teamChanged queues the "team" change of a user moved from team old to
// team new (either may be ""); o.mu must be held.
func (s *Sim) teamChanged(o *org, userID, old, new string) {
	o.pending = append(o.pending, UserChange{OrgID: o.id, UserID: userID, Aspect: "team", At: s.now(),
		TeamLeft: old, TeamJoined: new})
}

// lock acquires o.mu and returns the matching unlock, which delivers the
// events queued meanwhile to the listeners.
func (s *Sim) lock(o *org) (unlock func()) {
	o.mu.Lock()
	return s.release(o, nil, auditTrail{})
}

// lockCall is lock for the API call r: its events name the caller, and the
// user its path names is audited with the values it had before the call.
func (s *Sim) lockCall(r *http.Request, o *org) (unlock func()) {
	o.mu.Lock()
	return s.release(o, r, s.beginAudit(r, o))
}

func (s *Sim) release(o *org, r *http.Request, trail auditTrail) func() {
	return func() {
		s.describeChanges(o, r, trail)
		events := o.pending
		o.pending = nil
		o.mu.Unlock()
		if len(events) == 0 {
			return
		}
		s.mu.RLock()
		listeners := append([]func(UserChange){}, s.listeners...)
		s.mu.RUnlock()
		for _, ev := range events {
			for _, fn := range listeners {
				fn(ev)
			}
		}
	}
}

// auditTrail is what an API call remembers of the user its path names, so
// its audit events can say what the values were.
type auditTrail struct {
	userID, name string
	before       map[string][]string // nil: not captured
}

// beginAudit captures the audited properties of the user named in r's path
// when r may change it and a channel listens to that user; o.mu held.
func (s *Sim) beginAudit(r *http.Request, o *org) auditTrail {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return auditTrail{}
	}
	var id string
	for _, p := range []string{"userId", "subjectId", "memberId"} {
		if id = r.PathValue(p); id != "" {
			break
		}
	}
	u := o.users[id]
	if u == nil || !s.auditWatched(o.id, id) {
		return auditTrail{}
	}
	return auditTrail{userID: id, name: u.name, before: s.auditedValues(o, u)}
}

// describeChanges completes the events queued under o.mu with the caller
// (r, nil outside the API) and, for users a channel listens to, the
// changed properties; o.mu held.
func (s *Sim) describeChanges(o *org, r *http.Request, trail auditTrail) {
	if len(o.pending) == 0 {
		return
	}
	var clientID, remoteIP string
	if r != nil {
		if tok := s.tokenFrom(r); tok != nil {
			clientID = tok.clientID
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			remoteIP = host
		}
	}
	after := map[string]map[string][]string{}
	watched := map[string]bool{} // per user: one scan of the channels per call
	for i := range o.pending {
		ev := &o.pending[i]
		ev.ClientID, ev.RemoteIP = clientID, remoteIP
		u := o.users[ev.UserID]
		switch {
		case u != nil:
			ev.UserName = u.name
		case ev.UserID == trail.userID:
			ev.UserName = trail.name
		}
		w, seen := watched[ev.UserID]
		if !seen {
			w = s.auditWatched(o.id, ev.UserID)
			watched[ev.UserID] = w
		}
		if !w {
			continue
		}
		now, ok := after[ev.UserID]
		if !ok {
			now = map[string][]string{"state": {"deleted"}}
			if u != nil {
				now = s.auditedValues(o, u)
			}
			after[ev.UserID] = now
		}
		var before map[string][]string
		if ev.UserID == trail.userID {
			before = trail.before
		}
		ev.Changes = propertyChanges(auditedProperties[ev.Aspect], before, now)
	}
}

// auditedProperties are the properties an audit event of each aspect
// reports, named as in the User model where it has them.
var auditedProperties = map[string][]string{
	"created":     {"name", "email", "title", "department", "division", "manager", "state"},
	"profile":     {"name", "email", "title", "department", "division", "manager"},
	"deleted":     {"state"},
	"addresses":   {"addresses"},
	"skills":      {"skills"},
	"languages":   {"languages"},
	"utilization": {"utilization"},
	"team":        {"team"},
	"queues":      {"queues"},
	"grants":      {"roles"},
	"licenses":    {"licenses"},
	"externalid":  {"externalIds"},
}

// propertyChanges lists the properties whose values differ between before
// (nil: unknown, then every property with a value is listed) and after.
func propertyChanges(props []string, before, after map[string][]string) []PropertyChange {
	out := []PropertyChange{}
	for _, p := range props {
		oldV, newV := before[p], after[p]
		if before != nil && slices.Equal(oldV, newV) || before == nil && len(newV) == 0 {
			continue
		}
		out = append(out, PropertyChange{Property: p, OldValues: nonNil(oldV), NewValues: nonNil(newV)})
	}
	return out
}

// nonNil makes an empty list encode as [] (the SDK's arrays), not null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

// auditedValues renders every audited property of u as audit values
// (strings, multi-valued properties sorted); o.mu held.
func (s *Sim) auditedValues(o *org, u *user) map[string][]string {
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	m := map[string][]string{
		"name": one(u.name), "email": one(u.email), "title": one(u.title), "department": one(u.department),
		"manager": one(u.managerID), "state": one(u.stateAt(s.now())),
	}
	if d := o.divisions[u.divisionID]; d != nil {
		m["division"] = one(d.name)
	}
	for _, a := range u.addresses {
		m["addresses"] = append(m["addresses"], a.MediaType+" "+a.Type+" "+a.Address+a.Extension)
	}
	named := func(held map[string]float64, all map[string]*namedEntity) (out []string) {
		for id, p := range held {
			if e := all[id]; e != nil {
				out = append(out, e.name+": "+strconv.FormatFloat(p, 'f', -1, 64))
			}
		}
		return out
	}
	m["skills"], m["languages"] = named(u.skills, o.skills), named(u.languages, o.languages)
	for media, c := range u.utilization {
		m["utilization"] = append(m["utilization"], media+": "+strconv.Itoa(c.MaximumCapacity))
	}
	if t := o.teams[u.teamID]; t != nil {
		m["team"] = one(t.name)
	}
	for _, q := range o.queues {
		if q.members[u.id] {
			m["queues"] = append(m["queues"], q.name)
		}
	}
	for _, g := range u.grants {
		role, div := g.roleID, g.divisionID
		if rl := o.roles[g.roleID]; rl != nil {
			role = rl.name
		}
		if d := o.divisions[g.divisionID]; d != nil {
			div = d.name
		}
		m["roles"] = append(m["roles"], role+" in "+div)
	}
	for id := range u.licenses {
		m["licenses"] = append(m["licenses"], id)
	}
	for _, x := range u.externalIDs {
		m["externalIds"] = append(m["externalIds"], x.AuthorityName+": "+x.ExternalKey)
	}
	for _, v := range m {
		sort.Strings(v)
	}
	return m
}
