package gcsim

import (
	"net/http"
	"strconv"
	"strings"
)

// skillKind / languageKind parameterize the shared skill-and-language code.
type entityKind struct {
	kind     string // "skill" or "language" (Stats.Creates key, messages)
	basePath string // "/api/v2/routing/skills"
	pick     func(o *org) map[string]*namedEntity
}

var (
	skillKind    = entityKind{"skill", "/api/v2/routing/skills", func(o *org) map[string]*namedEntity { return o.skills }}
	languageKind = entityKind{"language", "/api/v2/routing/languages", func(o *org) map[string]*namedEntity { return o.languages }}
)

func (k entityKind) render(e *namedEntity) map[string]any {
	return map[string]any{
		"id":           e.id,
		"name":         e.name,
		"dateModified": fmtTime(e.modified),
		"state":        "active",
		"version":      strconv.Itoa(e.version),
		"selfUri":      k.basePath + "/" + e.id,
	}
}

// list serves GET /routing/skills and /routing/languages: `name` is a
// case-insensitive PREFIX filter (as in the real API), `id` filters by ids.
func (s *Sim) listNamed(k entityKind) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		prefix := r.URL.Query().Get("name")
		ids := idFilter(r, "id")
		var out []map[string]any
		for _, e := range sortedBy(k.pick(o), func(e *namedEntity) string { return e.name }, func(e *namedEntity) string { return e.id }) {
			if (prefix != "" && !hasPrefixFold(e.name, prefix)) || (ids != nil && !ids[e.id]) {
				continue
			}
			out = append(out, k.render(e))
		}
		p, err := paginate(r, out)
		if err != nil {
			return 0, nil, err
		}
		return 200, p, nil
	}
}

// create serves POST: names are unique per org case-insensitively (409).
func (s *Sim) createNamed(k entityKind) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		var b struct {
			Name string `json:"name"`
		}
		if err := decodeBody(r, &b); err != nil {
			return 0, nil, err
		}
		if strings.TrimSpace(b.Name) == "" {
			return 0, nil, badRequest("%s name is required", k.kind)
		}
		if e, ok := findByNameFold(k.pick(o), b.Name, func(e *namedEntity) string { return e.name }); ok {
			return 0, nil, errf(409, "general.conflict", "a %s named %q already exists (id %s)", k.kind, e.name, e.id)
		}
		now := s.now()
		e := &namedEntity{id: newID(), name: b.Name, created: now, modified: now, version: 1}
		k.pick(o)[e.id] = e
		s.recordCreate(o.id, k.kind)
		return 200, k.render(e), nil
	}
}

// get serves GET by id; skills honour the post-create 404 window.
func (s *Sim) getNamed(k entityKind, param string) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		e := k.pick(o)[r.PathValue(param)]
		if e == nil || (k.kind == "skill" && s.now().Before(e.created.Add(s.cfg.NotFoundAfterCreate))) {
			return 0, nil, notFound("%s %s not found", k.kind, r.PathValue(param))
		}
		return 200, k.render(e), nil
	}
}

// delete serves DELETE by id and removes the entity from every user.
func (s *Sim) deleteNamed(k entityKind, param string) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		id := r.PathValue(param)
		if k.pick(o)[id] == nil {
			return 0, nil, notFound("%s %s not found", k.kind, id)
		}
		delete(k.pick(o), id)
		for _, u := range o.users {
			m, aspect := u.skills, "skills"
			if k.kind == "language" {
				m, aspect = u.languages, "languages"
			}
			if _, ok := m[id]; ok {
				delete(m, id)
				s.userChanged(o, u.id, aspect)
			}
		}
		if k.kind == "language" {
			return 204, nil, nil
		}
		return 200, nil, nil
	}
}

// userSkills renders u's routing skills (UserRoutingSkill), sorted by name.
func (o *org) userSkills(u *user) []map[string]any {
	return o.userNamed(u, skillKind, u.skills, "routingskills", "skillUri")
}

// userLanguages renders u's routing languages (UserRoutingLanguage).
func (o *org) userLanguages(u *user) []map[string]any {
	return o.userNamed(u, languageKind, u.languages, "routinglanguages", "languageUri")
}

func (o *org) userNamed(u *user, k entityKind, held map[string]float64, sub, uriField string) []map[string]any {
	out := []map[string]any{}
	all := k.pick(o)
	// Sort only what u holds (a few), not every entity of the org.
	mine := make([]*namedEntity, 0, len(held))
	for id := range held {
		if e := all[id]; e != nil {
			mine = append(mine, e)
		}
	}
	sortByName(mine, func(e *namedEntity) string { return e.name }, func(e *namedEntity) string { return e.id })
	for _, e := range mine {
		prof := held[e.id]
		out = append(out, map[string]any{
			"id":          e.id,
			"name":        e.name,
			"proficiency": prof,
			"state":       "active",
			uriField:      k.basePath + "/" + e.id,
			"selfUri":     "/api/v2/users/" + u.id + "/" + sub + "/" + e.id,
		})
	}
	return out
}

// requireLicense is the license gate: unlicensed users cannot receive routing
// configuration.
func requireLicense(u *user, what string) *apiError {
	if !u.hasLicense() {
		return badRequest("user %s has no license: %s requires a licensed user (assign a license with POST /api/v2/license/organization first)", u.id, what)
	}
	return nil
}

type proficiencyPost struct {
	ID          string   `json:"id"`
	Proficiency *float64 `json:"proficiency"`
}

// validateAssignments checks ids exist in the org and proficiency is 0..5.
func validateAssignments(k entityKind, o *org, items []proficiencyPost) *apiError {
	for i, it := range items {
		if it.ID == "" {
			return badRequest("[%d].id is required", i)
		}
		if k.pick(o)[it.ID] == nil {
			return badRequest("[%d].id %s is not a %s of this organization", i, it.ID, k.kind)
		}
		if it.Proficiency == nil {
			return badRequest("[%d].proficiency is required", i)
		}
		if *it.Proficiency < 0 || *it.Proficiency > 5 {
			return badRequest("[%d].proficiency %v must be within 0..5", i, *it.Proficiency)
		}
	}
	return nil
}

// userAssignments implements the user routingskills / routinglanguages
// endpoints for kind k.
type userAssignments struct {
	s        *Sim
	k        entityKind
	sub      string // "routingskills"
	aspect   string // "skills"
	held     func(u *user) map[string]float64
	render   func(o *org, u *user) []map[string]any
	idParam  string
	maxBulk  int
	singular string // "routing skill"
}

func (ua userAssignments) list(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	p, err := paginate(r, ua.render(o, u))
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

// post adds or updates one assignment; the response is the single entity.
func (ua userAssignments) post(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	var b proficiencyPost
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if err := requireLicense(u, ua.singular+" assignment"); err != nil {
		return 0, nil, err
	}
	if err := validateAssignments(ua.k, o, []proficiencyPost{b}); err != nil {
		return 0, nil, err
	}
	ua.held(u)[b.ID] = *b.Proficiency
	ua.s.userChanged(o, u.id, ua.aspect)
	return 200, ua.one(o, u, b.ID), nil
}

func (ua userAssignments) one(o *org, u *user, id string) map[string]any {
	for _, e := range ua.render(o, u) {
		if e["id"] == id {
			return e
		}
	}
	return nil
}

// bulk replaces (replace=true, PUT) or merges (PATCH) the assignments and
// returns the full resulting listing.
func (ua userAssignments) bulk(replace bool) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		u, err := o.lookupUser(r.PathValue("userId"))
		if err != nil {
			return 0, nil, err
		}
		var items []proficiencyPost
		if err := decodeBody(r, &items); err != nil {
			return 0, nil, err
		}
		if len(items) > ua.maxBulk {
			return 0, nil, badRequest("at most %d %ss per bulk request, got %d", ua.maxBulk, ua.singular, len(items))
		}
		if len(items) > 0 || !replace {
			if err := requireLicense(u, ua.singular+" assignment"); err != nil {
				return 0, nil, err
			}
		}
		if err := validateAssignments(ua.k, o, items); err != nil {
			return 0, nil, err
		}
		held := ua.held(u)
		if replace {
			clear(held)
		}
		for _, it := range items {
			held[it.ID] = *it.Proficiency
		}
		ua.s.userChanged(o, u.id, ua.aspect)
		all := ua.render(o, u)
		p, err := paginate(r, all)
		if err != nil {
			return 0, nil, err
		}
		// Bulk responses return every assignment in one page.
		p.Entities, p.PageSize, p.PageCount = all, max(len(all), 1), 1
		return 200, p, nil
	}
}

// putOne sets one assignment's proficiency (PUT/PATCH .../{id}).
func (ua userAssignments) putOne(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	var b proficiencyPost
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	b.ID = r.PathValue(ua.idParam)
	if err := requireLicense(u, ua.singular+" assignment"); err != nil {
		return 0, nil, err
	}
	if err := validateAssignments(ua.k, o, []proficiencyPost{b}); err != nil {
		return 0, nil, err
	}
	ua.held(u)[b.ID] = *b.Proficiency
	ua.s.userChanged(o, u.id, ua.aspect)
	return 200, ua.one(o, u, b.ID), nil
}

// deleteOne removes one assignment (idempotent on an absent assignment).
func (ua userAssignments) deleteOne(status int) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		u, err := o.lookupUser(r.PathValue("userId"))
		if err != nil {
			return 0, nil, err
		}
		id := r.PathValue(ua.idParam)
		if _, ok := ua.held(u)[id]; ok {
			delete(ua.held(u), id)
			ua.s.userChanged(o, u.id, ua.aspect)
		}
		return status, nil, nil
	}
}
