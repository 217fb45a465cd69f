package gcsim

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// timeFormat is how Genesys renders date-times.
const timeFormat = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// expandSet parses the multi-valued, comma-tolerant `expand` parameter.
func expandSet(r *http.Request) map[string]bool {
	set := map[string]bool{}
	for _, v := range r.URL.Query()["expand"] {
		for _, e := range strings.Split(v, ",") {
			set[strings.TrimSpace(e)] = true
		}
	}
	return set
}

func (o *org) divisionRef(id string) map[string]any {
	d := o.divisions[id]
	if d == nil {
		return map[string]any{"id": id, "selfUri": "/api/v2/authorization/divisions/" + id}
	}
	return map[string]any{"id": d.id, "name": d.name, "selfUri": "/api/v2/authorization/divisions/" + d.id}
}

// renderUser builds the Genesys User representation. expand supports
// skills, languages, team and authorization (best effort, as the real API).
func (s *Sim) renderUser(o *org, u *user, expand map[string]bool) map[string]any {
	addrs := make([]contact, 0, len(u.addresses))
	for _, a := range u.addresses {
		a.Display = a.Address
		addrs = append(addrs, a)
	}
	m := map[string]any{
		"id":                 u.id,
		"name":               u.name,
		"email":              u.email,
		"username":           u.email,
		"division":           o.divisionRef(u.divisionID),
		"chat":               map[string]any{"jabberId": u.id + "@" + o.id + ".orgspan.com"},
		"primaryContactInfo": []contact{{Address: u.email, Display: u.email, MediaType: "EMAIL", Type: "PRIMARY"}},
		"addresses":          addrs,
		"state":              u.stateAt(s.now()),
		"version":            u.version,
		"acdAutoAnswer":      false,
		"selfUri":            "/api/v2/users/" + u.id,
	}
	if u.title != "" {
		m["title"] = u.title
	}
	if u.department != "" {
		m["department"] = u.department
	}
	if mgr := o.users[u.managerID]; mgr != nil {
		// User.manager is itself a User, whose schema requires version.
		m["manager"] = map[string]any{"id": mgr.id, "version": mgr.version, "selfUri": "/api/v2/users/" + mgr.id}
	}
	if expand["skills"] {
		m["skills"] = o.userSkills(u)
	}
	if expand["languages"] {
		m["languages"] = o.userLanguages(u)
	}
	if expand["team"] && u.teamID != "" {
		if t := o.teams[u.teamID]; t != nil {
			m["team"] = o.renderTeam(t)
		}
	}
	if expand["authorization"] {
		m["authorization"] = o.userAuthorization(u)
	}
	return m
}

// userVisible applies the post-create 404 window to GET by id.
func (s *Sim) userVisible(u *user) bool {
	return !s.now().Before(u.created.Add(s.cfg.NotFoundAfterCreate))
}

// lookupUser returns the user or a 404 ErrorBody naming the id.
func (o *org) lookupUser(id string) (*user, *apiError) {
	u := o.users[id]
	if u == nil {
		return nil, notFound("user %s not found", id)
	}
	return u, nil
}

// GET /api/v2/users
func (s *Sim) listUsers(r *http.Request, o *org) (int, any, *apiError) {
	state := r.URL.Query().Get("state")
	if state == "" {
		state = "active"
	}
	if !slices.Contains([]string{"active", "inactive", "deleted", "any"}, state) {
		return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [state]. Allowable values are: active, inactive, deleted, any", state)
	}
	ids := idFilter(r, "id")
	expand := expandSet(r)
	now := s.now()
	// Select, sort and page the users; render only the page.
	var users []*user
	keep := func(u *user) {
		if state == "any" || u.stateAt(now) == state {
			users = append(users, u)
		}
	}
	if ids != nil {
		for id := range ids {
			if u := o.users[id]; u != nil {
				keep(u)
			}
		}
	} else {
		for _, u := range o.users {
			keep(u)
		}
	}
	sortByName(users, userName, userID)
	p, err := paginate(r, users)
	if err != nil {
		return 0, nil, err
	}
	return 200, mapPage(p, func(u *user) map[string]any { return s.renderUser(o, u, expand) }), nil
}

type createUserBody struct {
	Name       string    `json:"name"`
	Email      string    `json:"email"`
	DivisionID string    `json:"divisionId"`
	Department string    `json:"department"`
	Title      string    `json:"title"`
	Addresses  []contact `json:"addresses"`
	Password   string    `json:"password"`
	State      string    `json:"state"`
}

// POST /api/v2/users
func (s *Sim) createUser(r *http.Request, o *org) (int, any, *apiError) {
	var b createUserBody
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	switch {
	case strings.TrimSpace(b.Name) == "":
		return 0, nil, badRequest("CreateUser.name is required")
	case !strings.Contains(b.Email, "@"):
		return 0, nil, badRequest("CreateUser.email %q is not a valid email address", b.Email)
	case b.DivisionID == "":
		return 0, nil, badRequest("CreateUser.divisionId is required")
	case o.divisions[b.DivisionID] == nil:
		return 0, nil, badRequest("CreateUser.divisionId %s is not a division of this organization", b.DivisionID)
	}
	if other := o.findUserByEmail(b.Email); other != nil {
		return 0, nil, errf(409, "general.conflict", "a user with email %s already exists (user %s)", b.Email, other.id)
	}
	if err := o.checkAddresses("", b.Addresses); err != nil {
		return 0, nil, err
	}
	now := s.now()
	u := &user{
		id: newID(), name: b.Name, email: b.Email, title: b.Title, department: b.Department,
		divisionID: b.DivisionID, version: 1,
		created: now, activeAt: now.Add(s.cfg.ActivationDelay),
		skills: map[string]float64{}, languages: map[string]float64{}, licenses: map[string]bool{},
	}
	o.users[u.id] = u
	o.indexEmail(u, true)
	o.setAddresses(u, b.Addresses)
	s.recordCreate(o.id, "user")
	s.userChanged(o, u.id, "created")
	return 200, s.renderUser(o, u, nil), nil
}

// checkAddresses validates contacts and enforces DID ownership: a PHONE
// number held by another user than selfID is a 409.
func (o *org) checkAddresses(selfID string, addrs []contact) *apiError {
	for i, a := range addrs {
		if !slices.Contains([]string{"PHONE", "EMAIL", "SMS"}, a.MediaType) {
			return badRequest("addresses[%d].mediaType %q must be PHONE, EMAIL or SMS", i, a.MediaType)
		}
		if a.Type != "" && !slices.Contains([]string{"PRIMARY", "WORK", "WORK2", "WORK3", "WORK4", "HOME", "MOBILE", "MAIN", "OTHER"}, a.Type) {
			return badRequest("addresses[%d].type %q is not a valid contact type", i, a.Type)
		}
		if a.MediaType == "PHONE" {
			if normalizePhone(a.Address) == "" {
				return badRequest("addresses[%d].address %q is not a phone number", i, a.Address)
			}
			if owner := o.phoneOwner(a.Address); owner != nil && owner.id != selfID {
				return errf(409, "general.conflict", "phone number %s is already assigned to user %s", a.Address, owner.id)
			}
		}
	}
	return nil
}

// GET /api/v2/users/{userId}
func (s *Sim) getUser(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	if !s.userVisible(u) {
		return 0, nil, notFound("user %s not found", u.id)
	}
	return 200, s.renderUser(o, u, expandSet(r)), nil
}

type updateUserBody struct {
	Name       *string    `json:"name"`
	Email      *string    `json:"email"`
	Title      *string    `json:"title"`
	Department *string    `json:"department"`
	Addresses  *[]contact `json:"addresses"`
	Manager    *string    `json:"manager"`
	Version    *int       `json:"version"`
	State      *string    `json:"state"`
}

// PATCH /api/v2/users/{userId}: optimistic concurrency on version (409 when
// stale); each successful PATCH increments the version.
func (s *Sim) patchUser(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	var b updateUserBody
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if b.Version == nil {
		return 0, nil, badRequest("UpdateUser.version is required")
	}
	if *b.Version != u.version {
		return 0, nil, errf(409, "general.conflict", "The version supplied (%d) does not match the current version of the user (%d)", *b.Version, u.version)
	}
	if b.Email != nil && !strings.EqualFold(*b.Email, u.email) {
		if !strings.Contains(*b.Email, "@") {
			return 0, nil, badRequest("UpdateUser.email %q is not a valid email address", *b.Email)
		}
		if other := o.findUserByEmail(*b.Email); other != nil {
			return 0, nil, errf(409, "general.conflict", "a user with email %s already exists (user %s)", *b.Email, other.id)
		}
	}
	if b.Name != nil && strings.TrimSpace(*b.Name) == "" {
		return 0, nil, badRequest("UpdateUser.name must not be empty")
	}
	if b.Manager != nil && *b.Manager != "" {
		if *b.Manager == u.id {
			return 0, nil, badRequest("UpdateUser.manager: a user cannot be their own manager")
		}
		if o.users[*b.Manager] == nil {
			return 0, nil, badRequest("UpdateUser.manager %s is not a user of this organization", *b.Manager)
		}
	}
	if b.Addresses != nil {
		if err := o.checkAddresses(u.id, *b.Addresses); err != nil {
			return 0, nil, err
		}
	}
	if b.State != nil && *b.State != "active" && *b.State != "inactive" {
		return 0, nil, badRequest("UpdateUser.state %q is not supported (active or inactive)", *b.State)
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&u.name, b.Name)
	if b.Email != nil {
		o.indexEmail(u, false)
		u.email = *b.Email
		o.indexEmail(u, true)
	}
	set(&u.title, b.Title)
	set(&u.department, b.Department)
	set(&u.managerID, b.Manager)
	if b.State != nil {
		if *b.State == "active" && s.now().Before(u.activeAt) {
			u.activeAt = s.now()
		}
		u.deactivated = *b.State == "inactive"
	}
	if b.Name != nil || b.Email != nil || b.Title != nil || b.Department != nil || b.Manager != nil || b.State != nil {
		s.userChanged(o, u.id, "profile")
	}
	if b.Addresses != nil {
		o.setAddresses(u, append([]contact{}, (*b.Addresses)...))
		s.userChanged(o, u.id, "addresses")
	}
	u.version++
	return 200, s.renderUser(o, u, nil), nil
}

// DELETE /api/v2/users/{userId}
func (s *Sim) deleteUser(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	o.setAddresses(u, nil)
	o.setTeam(u, "")
	o.indexEmail(u, false)
	o.indexExternalIDs(u, false)
	delete(o.users, u.id)
	for _, q := range o.queues {
		delete(q.members, u.id)
	}
	for _, other := range o.users {
		if other.managerID == u.id {
			other.managerID = ""
			s.userChanged(o, other.id, "profile")
		}
	}
	s.userChanged(o, u.id, "deleted")
	return 200, map[string]any{}, nil
}

type searchCriteria struct {
	Type   string           `json:"type"`
	Fields []string         `json:"fields,omitempty"`
	Value  string           `json:"value,omitempty"`
	Values []string         `json:"values,omitempty"`
	Group  []searchCriteria `json:"group,omitempty"`
}

type userSearchBody struct {
	PageSize   int              `json:"pageSize"`
	PageNumber int              `json:"pageNumber"`
	Expand     []string         `json:"expand,omitempty"`
	Query      []searchCriteria `json:"query"`
}

// pageURI is the GET /api/v2/users/search?q64= address of page n of the
// search b, as Genesys puts it in currentPage, nextPage and previousPage.
func (b userSearchBody) pageURI(n int) string {
	b.PageNumber = n
	raw, _ := json.Marshal(b) // plain structs: cannot fail
	return "/api/v2/users/search?q64=" + url.QueryEscape(base64.StdEncoding.EncodeToString(raw))
}

// criterion is a searchCriteria prepared once per search: values merged
// and lower-cased, EXACT values in a set. match(u) answers exactly as the
// per-user evaluation did (same results, same errors).
type criterion struct {
	c     searchCriteria
	err   *apiError // fails for every user
	lower []string
	exact map[string]bool
}

func (c searchCriteria) compile() criterion {
	values := c.Values
	if c.Value != "" {
		values = append(values[:len(values):len(values)], c.Value)
	}
	cc := criterion{c: c}
	switch {
	case len(values) == 0:
		cc.err = badRequest("search criterion of type %s needs value or values", c.Type)
	case len(c.Fields) == 0:
		cc.err = badRequest("search criterion of type %s needs fields", c.Type)
	}
	for _, v := range values {
		cc.lower = append(cc.lower, strings.ToLower(v))
	}
	if c.Type == "EXACT" || c.Type == "TERM" || c.Type == "TERMS" {
		cc.exact = make(map[string]bool, len(cc.lower))
		for _, v := range cc.lower {
			cc.exact[v] = true
		}
	}
	return cc
}

// match evaluates the criterion against u (fields are ORed, values ORed).
func (cc *criterion) match(u *user, now time.Time) (bool, *apiError) {
	if cc.err != nil {
		return false, cc.err
	}
	for _, f := range cc.c.Fields {
		var field string
		switch f {
		case "email":
			field = u.email
		case "name":
			field = u.name
		case "id":
			field = u.id
		case "title":
			field = u.title
		case "department":
			field = u.department
		case "divisionId":
			field = u.divisionID
		case "teamId":
			field = u.teamID
		case "state":
			field = u.stateAt(now)
		default:
			return false, badRequest("search field %q is not supported (email, name, id, title, department, divisionId, teamId, state)", f)
		}
		lf := strings.ToLower(field)
		switch cc.c.Type {
		case "EXACT", "TERM", "TERMS":
			if cc.exact[lf] {
				return true, nil
			}
		case "CONTAINS":
			for _, lv := range cc.lower {
				if strings.Contains(lf, lv) {
					return true, nil
				}
			}
		case "STARTS_WITH":
			for _, lv := range cc.lower {
				if strings.HasPrefix(lf, lv) {
					return true, nil
				}
			}
		default:
			return false, badRequest("search type %q is not supported (EXACT, CONTAINS, STARTS_WITH, TERM)", cc.c.Type)
		}
	}
	return false, nil
}

// POST /api/v2/users/search: criteria are ANDed; matching is
// case-insensitive.
func (s *Sim) searchUsers(r *http.Request, o *org) (int, any, *apiError) {
	var b userSearchBody
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	return s.search(o, b)
}

// GET /api/v2/users/search?q64=: the search whose request body is q64
// (base64 JSON), as the page links of a search answer carry it.
func (s *Sim) searchUsersQ64(r *http.Request, o *org) (int, any, *apiError) {
	q64 := r.URL.Query().Get("q64")
	raw, err := base64.StdEncoding.DecodeString(q64)
	if q64 == "" || err != nil {
		return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [q64]: base64 of a UserSearchRequest", q64)
	}
	var b userSearchBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return 0, nil, badRequest("q64 does not hold a UserSearchRequest: %v", err)
	}
	return s.search(o, b)
}

func (s *Sim) search(o *org, b userSearchBody) (int, any, *apiError) {
	if b.PageSize == 0 {
		b.PageSize = defaultPageSize
	}
	if b.PageNumber == 0 {
		b.PageNumber = 1
	}
	if b.PageSize < 1 || b.PageSize > maxPageSize {
		return 0, nil, badRequest("UserSearchRequest.pageSize %d must be within 1..%d", b.PageSize, maxPageSize)
	}
	if b.PageNumber < 1 {
		return 0, nil, badRequest("UserSearchRequest.pageNumber %d must be >= 1", b.PageNumber)
	}
	if len(b.Query) == 0 {
		return 0, nil, badRequest("UserSearchRequest.query must contain at least one criterion")
	}
	expand := map[string]bool{}
	for _, e := range b.Expand {
		expand[e] = true
	}
	now := s.now()
	crit := make([]criterion, len(b.Query))
	for i, c := range b.Query {
		crit[i] = c.compile()
	}
	// Match first, then sort only the hits and render only the page. The
	// error is the one the first failing user in listing order gets.
	var hits []*user
	var errUser *user
	var errOut *apiError
	for _, u := range o.users {
		ok := true
		var err *apiError
		for i := range crit {
			var m bool
			if m, err = crit[i].match(u, now); err != nil {
				break
			}
			ok = ok && m
		}
		switch {
		case err != nil:
			if errUser == nil || listedBefore(u, errUser) {
				errUser, errOut = u, err
			}
		case ok:
			hits = append(hits, u)
		}
	}
	if errOut != nil {
		return 0, nil, errOut
	}
	sortByName(hits, userName, userID)
	total := len(hits)
	lo := min((b.PageNumber-1)*b.PageSize, total)
	hi := min(lo+b.PageSize, total)
	results := make([]map[string]any, 0, hi-lo)
	for _, u := range hits[lo:hi] {
		results = append(results, s.renderUser(o, u, expand))
	}
	count := (total + b.PageSize - 1) / b.PageSize
	out := map[string]any{
		"total":       total,
		"pageCount":   count,
		"pageSize":    b.PageSize,
		"pageNumber":  b.PageNumber,
		"currentPage": b.pageURI(b.PageNumber),
		"types":       []string{"users"},
		"results":     results,
	}
	if b.PageNumber < count {
		out["nextPage"] = b.pageURI(b.PageNumber + 1)
	}
	if b.PageNumber > 1 {
		out["previousPage"] = b.pageURI(b.PageNumber - 1)
	}
	return 200, out, nil
}

// POST /api/v2/users/{userId}/externalid: external ids are unique per org;
// re-posting the same pair on the same user is a no-op.
func (s *Sim) addExternalID(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	var b externalID
	if err := decodeBody(r, &b); err != nil {
		return 0, nil, err
	}
	if b.AuthorityName == "" || b.ExternalKey == "" {
		return 0, nil, badRequest("UserExternalIdentifier.authorityName and externalKey are required")
	}
	if owner := o.userByExternalID(b.AuthorityName, b.ExternalKey); owner != nil {
		if owner.id != u.id {
			return 0, nil, errf(409, "general.conflict", "external id %s/%s already belongs to user %s", b.AuthorityName, b.ExternalKey, owner.id)
		}
		return 200, u.externalIDs, nil
	}
	u.externalIDs = append(u.externalIDs, b)
	o.extIDs[b] = u
	s.userChanged(o, u.id, "externalid")
	return 200, u.externalIDs, nil
}

func (o *org) userByExternalID(authority, key string) *user {
	return o.extIDs[externalID{AuthorityName: authority, ExternalKey: key}]
}

// GET /api/v2/users/{userId}/externalid
func (s *Sim) listExternalIDs(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	return 200, append([]externalID{}, u.externalIDs...), nil
}

// DELETE /api/v2/users/{userId}/externalid/{authorityName}/{externalKey}
func (s *Sim) deleteExternalID(r *http.Request, o *org) (int, any, *apiError) {
	u, err := o.lookupUser(r.PathValue("userId"))
	if err != nil {
		return 0, nil, err
	}
	a, k := r.PathValue("authorityName"), r.PathValue("externalKey")
	i := slices.IndexFunc(u.externalIDs, func(e externalID) bool { return e.AuthorityName == a && e.ExternalKey == k })
	if i < 0 {
		return 0, nil, notFound("user %s has no external id %s/%s", u.id, a, k)
	}
	e := u.externalIDs[i]
	u.externalIDs = slices.Delete(u.externalIDs, i, i+1)
	if !slices.Contains(u.externalIDs, e) { // a fixture may list a pair twice
		delete(o.extIDs, e)
	}
	s.userChanged(o, u.id, "externalid")
	return 204, nil, nil
}

// GET /api/v2/users/externalid/{authorityName}/{externalKey}
func (s *Sim) getUserByExternalID(r *http.Request, o *org) (int, any, *apiError) {
	a, k := r.PathValue("authorityName"), r.PathValue("externalKey")
	u := o.userByExternalID(a, k)
	if u == nil {
		return 0, nil, notFound("no user with external id %s/%s", a, k)
	}
	return 200, s.renderUser(o, u, expandSet(r)), nil
}
