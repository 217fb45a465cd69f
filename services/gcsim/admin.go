package gcsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// LoadFixture adds the fixture's orgs to the simulator. An org whose id is
// already loaded is replaced entirely (its tokens are revoked). Client ids
// must stay unique across all loaded orgs.
func (s *Sim) LoadFixture(f *Fixture) error {
	if f == nil {
		return fmt.Errorf("gcsim: LoadFixture: nil fixture")
	}
	orgs, err := buildOrgs(f)
	if err != nil {
		return err
	}
	// Fixture objects exist "since before": outside the 404 window, active.
	t0 := s.now().Add(-s.cfg.NotFoundAfterCreate)
	for _, o := range orgs {
		for _, u := range o.users {
			u.created, u.activeAt = t0, t0
		}
		for _, e := range o.skills {
			e.created, e.modified = t0, t0
		}
		for _, e := range o.languages {
			e.created, e.modified = t0, t0
		}
		for _, t := range o.teams {
			t.created, t.modified = t0, t0
		}
		for _, q := range o.queues {
			q.created = t0
		}
		for _, in := range o.integrations {
			in.created = t0
		}
		for _, u := range o.users {
			for i := range u.grants {
				u.grants[i].madeAt = t0
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	replacing := map[string]bool{}
	for _, o := range orgs {
		replacing[o.id] = true
	}
	for _, o := range orgs {
		for cid := range o.clients {
			if owner, ok := s.clientOrg[cid]; ok && !replacing[owner] {
				return fmt.Errorf("gcsim: LoadFixture: org %q: clientId %q is already used by loaded org %s", o.name, cid, owner)
			}
		}
		for id, other := range s.orgs {
			if o.crmKey != "" && other.crmKey == o.crmKey && !replacing[id] {
				return fmt.Errorf("gcsim: LoadFixture: org %q: crmApiKey is already used by loaded org %s", o.name, id)
			}
		}
	}
	for _, o := range orgs {
		if old := s.orgs[o.id]; old != nil {
			for cid := range old.clients {
				delete(s.clientOrg, cid)
			}
			for v, t := range s.tokens {
				if t.org == old {
					delete(s.tokens, v)
				}
			}
		}
		s.orgs[o.id] = o
		for cid := range o.clients {
			s.clientOrg[cid] = o.id
		}
	}
	return nil
}

// OrgIDs lists the loaded org ids, sorted.
func (s *Sim) OrgIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.orgs))
	for id := range s.orgs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// UserState is the complete configuration of one user, by names, as tests
// assert it.
type UserState struct {
	ID          string                      `json:"id"`
	Name        string                      `json:"name"`
	Email       string                      `json:"email"`
	Title       string                      `json:"title,omitempty"`
	Department  string                      `json:"department,omitempty"`
	Division    string                      `json:"division"`
	Manager     string                      `json:"manager,omitempty"` // manager's email
	State       string                      `json:"state"`
	Version     int                         `json:"version"`
	Licenses    []string                    `json:"licenses"`
	Skills      map[string]float64          `json:"skills"`                // name -> proficiency
	Languages   map[string]float64          `json:"languages"`             // name -> proficiency
	Utilization map[string]mediaUtilization `json:"utilization,omitempty"` // nil: org level
	Team        string                      `json:"team,omitempty"`
	Queues      []string                    `json:"queues"`
	Grants      []FixtureGrant              `json:"grants"`
	Addresses   []contact                   `json:"addresses"`
	ExternalIDs []externalID                `json:"externalIds"`
}

// OrgState is a dump of an org (without OAuth secrets).
type OrgState struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Skills    []string    `json:"skills"`
	Languages []string    `json:"languages"`
	Teams     []string    `json:"teams"`
	Queues    []string    `json:"queues"`
	Users     []UserState `json:"users"`
}

// OrgState dumps org orgID, sorted by names; ok is false for unknown orgs.
func (s *Sim) OrgState(orgID string) (OrgState, bool) {
	o := s.lookupOrg(orgID)
	if o == nil {
		return OrgState{}, false
	}
	unlock := s.lock(o)
	defer unlock()
	st := OrgState{ID: o.id, Name: o.name, Skills: []string{}, Languages: []string{}, Teams: []string{}, Queues: []string{}, Users: []UserState{}}
	for _, e := range sortedBy(o.skills, func(e *namedEntity) string { return e.name }, func(e *namedEntity) string { return e.id }) {
		st.Skills = append(st.Skills, e.name)
	}
	for _, e := range sortedBy(o.languages, func(e *namedEntity) string { return e.name }, func(e *namedEntity) string { return e.id }) {
		st.Languages = append(st.Languages, e.name)
	}
	for _, t := range sortedBy(o.teams, func(t *team) string { return t.name }, func(t *team) string { return t.id }) {
		st.Teams = append(st.Teams, t.name)
	}
	for _, q := range sortedBy(o.queues, func(q *queue) string { return q.name }, func(q *queue) string { return q.id }) {
		st.Queues = append(st.Queues, q.name)
	}
	for _, u := range sortedBy(o.users, func(u *user) string { return u.email }, func(u *user) string { return u.id }) {
		st.Users = append(st.Users, s.userState(o, u))
	}
	return st, true
}

func (s *Sim) userState(o *org, u *user) UserState {
	us := UserState{
		ID: u.id, Name: u.name, Email: u.email, Title: u.title, Department: u.department,
		State: u.stateAt(s.now()), Version: u.version,
		Licenses: sortedLicenseIDs(u), Skills: map[string]float64{}, Languages: map[string]float64{},
		Utilization: cloneUtilization(u.utilization), Queues: []string{}, Grants: []FixtureGrant{},
		Addresses: append([]contact{}, u.addresses...), ExternalIDs: append([]externalID{}, u.externalIDs...),
	}
	if d := o.divisions[u.divisionID]; d != nil {
		us.Division = d.name
	}
	if m := o.users[u.managerID]; m != nil {
		us.Manager = m.email
	}
	for id, p := range u.skills {
		if e := o.skills[id]; e != nil {
			us.Skills[e.name] = p
		}
	}
	for id, p := range u.languages {
		if e := o.languages[id]; e != nil {
			us.Languages[e.name] = p
		}
	}
	if t := o.teams[u.teamID]; t != nil {
		us.Team = t.name
	}
	for _, q := range o.queues {
		if q.members[u.id] {
			us.Queues = append(us.Queues, q.name)
		}
	}
	sort.Strings(us.Queues)
	for _, g := range u.grants {
		fg := FixtureGrant{}
		if r := o.roles[g.roleID]; r != nil {
			fg.Role = r.name
		}
		if d := o.divisions[g.divisionID]; d != nil {
			fg.Division = d.name
		}
		us.Grants = append(us.Grants, fg)
	}
	sort.Slice(us.Grants, func(i, j int) bool {
		return us.Grants[i].Role+"\x00"+us.Grants[i].Division < us.Grants[j].Role+"\x00"+us.Grants[j].Division
	})
	return us
}

// UserByEmail returns the state of the user with that email in orgID.
func (s *Sim) UserByEmail(orgID, email string) (UserState, bool) {
	o := s.lookupOrg(orgID)
	if o == nil {
		return UserState{}, false
	}
	unlock := s.lock(o)
	defer unlock()
	u := o.findUserByEmail(email)
	if u == nil {
		return UserState{}, false
	}
	return s.userState(o, u), true
}

// CountUsersByEmail counts users with that email (case-insensitive) in orgID:
// duplicates created by a faulty pipeline would show up as > 1 only if the
// API allowed them, so tests typically compare against 1.
func (s *Sim) CountUsersByEmail(orgID, email string) int {
	return s.count(orgID, func(o *org) int { return len(o.emails[foldKey(email)]) })
}

// CountSkillsByName counts routing skills whose name equals name
// (case-insensitive) in orgID.
func (s *Sim) CountSkillsByName(orgID, name string) int {
	return s.count(orgID, func(o *org) int { return countNamed(o.skills, name) })
}

// CountLanguagesByName counts routing languages named name in orgID.
func (s *Sim) CountLanguagesByName(orgID, name string) int {
	return s.count(orgID, func(o *org) int { return countNamed(o.languages, name) })
}

// CountTeamsByName counts teams named name in orgID.
func (s *Sim) CountTeamsByName(orgID, name string) int {
	return s.count(orgID, func(o *org) int {
		n := 0
		for _, t := range o.teams {
			if strings.EqualFold(t.name, name) {
				n++
			}
		}
		return n
	})
}

func countNamed(m map[string]*namedEntity, name string) int {
	n := 0
	for _, e := range m {
		if strings.EqualFold(e.name, name) {
			n++
		}
	}
	return n
}

func (s *Sim) count(orgID string, fn func(o *org) int) int {
	o := s.lookupOrg(orgID)
	if o == nil {
		return 0
	}
	unlock := s.lock(o)
	defer unlock()
	return fn(o)
}

// SetIntegrationState sets the reportedState code of the named integration
// (e.g. "ERROR") to exercise integration health checks.
func (s *Sim) SetIntegrationState(orgID, name, code string) error {
	o := s.lookupOrg(orgID)
	if o == nil {
		return fmt.Errorf("gcsim: org %s is not loaded", orgID)
	}
	unlock := s.lock(o)
	defer unlock()
	in, ok := findByNameFold(o.integrations, name, func(i *integration) string { return i.name })
	if !ok {
		return fmt.Errorf("gcsim: org %s: no integration named %q", orgID, name)
	}
	in.reportedState = code
	return nil
}

// adminRoutes mounts the simulator's own endpoints (outside the Genesys
// spec, unauthenticated, not counted in Stats):
//
//	POST /_sim/fixture                 load a fixture (body: fixture JSON)
//	GET  /_sim/orgs                    loaded org ids
//	GET  /_sim/orgs/{orgId}/state      OrgState
//	GET  /_sim/orgs/{orgId}/stats      Stats
//	PUT  /_sim/orgs/{orgId}/faults     set Faults (latency as Go duration string or ns)
//	POST /_sim/stats/reset             ResetStats
func (s *Sim) adminRoutes(mux *http.ServeMux) {
	adminErr := func(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
		writeError(w, r, errf(status, "sim.admin", format, args...))
	}
	mux.HandleFunc("POST /_sim/fixture", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
		if err != nil {
			adminErr(w, r, 400, "read fixture body: %v", err)
			return
		}
		f, err := ParseFixture(data)
		if err == nil {
			err = s.LoadFixture(f)
		}
		if err != nil {
			adminErr(w, r, 400, "%v", err)
			return
		}
		writeJSON(w, 200, map[string]any{"orgs": s.OrgIDs()})
	})
	mux.HandleFunc("GET /_sim/orgs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"orgs": s.OrgIDs()})
	})
	mux.HandleFunc("GET /_sim/orgs/{orgId}/state", func(w http.ResponseWriter, r *http.Request) {
		st, ok := s.OrgState(r.PathValue("orgId"))
		if !ok {
			adminErr(w, r, 404, "org %s is not loaded", r.PathValue("orgId"))
			return
		}
		writeJSON(w, 200, st)
	})
	mux.HandleFunc("GET /_sim/orgs/{orgId}/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, s.Stats(r.PathValue("orgId")))
	})
	mux.HandleFunc("PUT /_sim/orgs/{orgId}/faults", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			ErrorRate   float64         `json:"errorRate"`
			ErrorStatus int             `json:"errorStatus"`
			ResetRate   float64         `json:"resetRate"`
			Latency     json.RawMessage `json:"latency"`
		}
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			adminErr(w, r, 400, "decode faults: %v", err)
			return
		}
		f := Faults{ErrorRate: b.ErrorRate, ErrorStatus: b.ErrorStatus, ResetRate: b.ResetRate}
		if len(b.Latency) > 0 {
			var str string
			var ns int64
			switch {
			case json.Unmarshal(b.Latency, &str) == nil:
				d, err := time.ParseDuration(str)
				if err != nil {
					adminErr(w, r, 400, "faults.latency: %v", err)
					return
				}
				f.Latency = d
			case json.Unmarshal(b.Latency, &ns) == nil:
				f.Latency = time.Duration(ns)
			default:
				adminErr(w, r, 400, "faults.latency must be a duration string like \"200ms\" or nanoseconds")
				return
			}
		}
		if err := s.SetFaults(r.PathValue("orgId"), f); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, 200, f)
	})
	mux.HandleFunc("POST /_sim/stats/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
}
