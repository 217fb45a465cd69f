package gcsim

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

//go:embed fixtures/demo.json
var demoFixture []byte

// DemoFixture returns the embedded demo fixture (fixtures/demo.json): one
// source org with reference users and three target orgs. See README.md.
func DemoFixture() *Fixture {
	f, err := ParseFixture(demoFixture)
	if err != nil {
		panic("gcsim: embedded demo fixture is invalid: " + err.Error()) // caught by tests
	}
	return f
}

// Fixture is the initial state of a set of organizations. Objects reference
// each other by name (users reference their manager by email); ids are
// optional except for orgs and are derived deterministically from the org id
// and the name when omitted. The format is documented in README.md.
type Fixture struct {
	Orgs []FixtureOrg `json:"orgs"`
}

// FixtureOrg is one organization.
type FixtureOrg struct {
	ID           string                             `json:"id"`
	Name         string                             `json:"name"`
	Clients      []FixtureClient                    `json:"clients"`
	Divisions    []FixtureDivision                  `json:"divisions"`
	Roles        []FixtureRole                      `json:"roles"`
	Licenses     []FixtureLicense                   `json:"licenses"`
	Skills       []FixtureNamed                     `json:"skills"`
	Languages    []FixtureNamed                     `json:"languages"`
	Teams        []FixtureTeam                      `json:"teams"`
	Queues       []FixtureQueue                     `json:"queues"`
	DIDPools     []FixtureDIDPool                   `json:"didPools"`
	Integrations []FixtureIntegration               `json:"integrations"`
	Utilization  map[string]FixtureMediaUtilization `json:"utilization"`
	Users        []FixtureUser                      `json:"users"`
	// CRMAPIKey, when set, enables the fake CRM for this org: requests to
	// /crm/v1/ carrying it in X-CRM-Key act on this org's records. Unique
	// across orgs; never shown in state dumps.
	CRMAPIKey string `json:"crmApiKey,omitempty"`
}

// FixtureClient is an OAuth client (client credentials grant). Client ids
// are unique across all loaded orgs: they decide the org of a token.
type FixtureClient struct {
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
}

// FixtureDivision is an authorization division; exactly one per org has
// home=true (if none does, the first division is home).
type FixtureDivision struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Home        bool   `json:"home"`
}

// FixtureRole is an authorization role.
type FixtureRole struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Permissions []string `json:"permissions"`
}

// FixtureLicense is a license definition, e.g. {"id":"cx2","description":"Genesys Cloud CX 2"}.
type FixtureLicense struct {
	ID          string `json:"id"`
	Description string `json:"description"`
}

// FixtureNamed is a routing skill or language.
type FixtureNamed struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// FixtureTeam is a team; division is a division name (default: home).
type FixtureTeam struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Division    string `json:"division"`
}

// FixtureQueue is a routing queue; division is a division name (default: home).
type FixtureQueue struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Division    string `json:"division"`
}

// FixtureDIDPool is a DID pool. Its numbers are every number from
// startPhoneNumber to endPhoneNumber (E.164, same length, at most 10000).
type FixtureDIDPool struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Description      string `json:"description"`
	StartPhoneNumber string `json:"startPhoneNumber"`
	EndPhoneNumber   string `json:"endPhoneNumber"`
}

// FixtureIntegration is an installed integration instance; reportedState is
// ACTIVE (default), ACTIVATING, INACTIVE, DEACTIVATING or ERROR.
type FixtureIntegration struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Type          string `json:"type"`
	ReportedState string `json:"reportedState"`
}

// FixtureMediaUtilization is a MediaUtilization.
type FixtureMediaUtilization struct {
	MaximumCapacity         int      `json:"maximumCapacity"`
	InterruptableMediaTypes []string `json:"interruptableMediaTypes"`
	IncludeNonAcd           bool     `json:"includeNonAcd"`
}

// FixtureProficiency assigns a skill or language by name.
type FixtureProficiency struct {
	Name        string  `json:"name"`
	Proficiency float64 `json:"proficiency"`
}

// FixtureGrant grants a role (by name) in a division (by name).
type FixtureGrant struct {
	Role     string `json:"role"`
	Division string `json:"division"`
}

// FixtureUser is a user. manager is the manager's email; division, team,
// queues, skills, languages, roles and licenses are referenced by name (id
// for licenses). Users are active from the start.
type FixtureUser struct {
	ID          string                             `json:"id"`
	Name        string                             `json:"name"`
	Email       string                             `json:"email"`
	Title       string                             `json:"title"`
	Department  string                             `json:"department"`
	Division    string                             `json:"division"`
	Manager     string                             `json:"manager"`
	Licenses    []string                           `json:"licenses"`
	Skills      []FixtureProficiency               `json:"skills"`
	Languages   []FixtureProficiency               `json:"languages"`
	Team        string                             `json:"team"`
	Queues      []string                           `json:"queues"`
	Grants      []FixtureGrant                     `json:"grants"`
	Utilization map[string]FixtureMediaUtilization `json:"utilization"`
	Addresses   []contact                          `json:"addresses"`
	ExternalIDs []externalID                       `json:"externalIds"`
}

// ParseFixture decodes and validates a fixture. Errors name the org, the
// object and the field at fault; unknown JSON fields are rejected.
func ParseFixture(data []byte) (*Fixture, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Fixture
	if err := dec.Decode(&f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
			return nil, fmt.Errorf("fixture: malformed JSON at line %d (offset %d): %v", line, se.Offset, err)
		}
		return nil, fmt.Errorf("fixture: %v", err)
	}
	if len(f.Orgs) == 0 {
		return nil, errors.New("fixture: no orgs")
	}
	if _, err := buildOrgs(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// uniq tracks names (case-insensitive) or ids already used in one scope.
type uniq map[string]bool

func (u uniq) add(key string) bool {
	k := strings.ToLower(key)
	if u[k] {
		return false
	}
	u[k] = true
	return true
}

// buildOrgs validates f and builds fresh org states from it.
func buildOrgs(f *Fixture) ([]*org, error) {
	orgIDs, clientIDs, crmKeys := uniq{}, uniq{}, uniq{}
	var out []*org
	for i, fo := range f.Orgs {
		where := fmt.Sprintf("fixture: orgs[%d]", i)
		if fo.Name != "" {
			where = fmt.Sprintf("fixture: org %q", fo.Name)
		}
		if !isUUID(fo.ID) {
			return nil, fmt.Errorf("%s: id %q must be a UUID", where, fo.ID)
		}
		if strings.TrimSpace(fo.Name) == "" {
			return nil, fmt.Errorf("%s: name is required", where)
		}
		if !orgIDs.add(fo.ID) {
			return nil, fmt.Errorf("%s: duplicate org id %s", where, fo.ID)
		}
		where = fmt.Sprintf("fixture: org %q (%s)", fo.Name, fo.ID)
		if len(fo.Clients) == 0 {
			return nil, fmt.Errorf("%s: clients: at least one OAuth client is required", where)
		}
		for j, c := range fo.Clients {
			if c.ClientID == "" || c.ClientSecret == "" {
				return nil, fmt.Errorf("%s: clients[%d]: clientId and clientSecret are required", where, j)
			}
			if !clientIDs.add(c.ClientID) {
				return nil, fmt.Errorf("%s: clients[%d]: clientId %q is already used (client ids must be unique across orgs)", where, j, c.ClientID)
			}
		}
		if fo.CRMAPIKey != "" && !crmKeys.add(fo.CRMAPIKey) {
			return nil, fmt.Errorf("%s: crmApiKey is already used by another org (CRM keys must be unique across orgs)", where)
		}
		o, err := buildOrg(fo, where)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func idOr(id string, parts ...string) (string, error) {
	if id == "" {
		return stableID(parts...), nil
	}
	if !isUUID(id) {
		return "", fmt.Errorf("id %q must be a UUID", id)
	}
	return id, nil
}

// buildOrg builds one org; where prefixes every error.
func buildOrg(fo FixtureOrg, where string) (*org, error) {
	o := newOrg(fo.ID, fo.Name)
	o.crmKey = fo.CRMAPIKey
	for _, c := range fo.Clients {
		o.clients[c.ClientID] = c.ClientSecret
	}
	ids := uniq{}
	// newObj validates name uniqueness within kind and id uniqueness in org.
	newObj := func(kind string, idx int, id, name string, names uniq) (string, error) {
		if strings.TrimSpace(name) == "" {
			return "", fmt.Errorf("%s: %s[%d]: name is required", where, kind, idx)
		}
		if !names.add(name) {
			return "", fmt.Errorf("%s: %s[%d]: duplicate name %q", where, kind, idx, name)
		}
		oid, err := idOr(id, fo.ID, kind, strings.ToLower(name))
		if err != nil {
			return "", fmt.Errorf("%s: %s %q: %v", where, kind, name, err)
		}
		if !ids.add(oid) {
			return "", fmt.Errorf("%s: %s %q: duplicate id %s", where, kind, name, oid)
		}
		return oid, nil
	}

	if len(fo.Divisions) == 0 {
		fo.Divisions = []FixtureDivision{{Name: "Home", Description: "Home division", Home: true}}
	}
	names := uniq{}
	divByName := map[string]string{}
	for i, d := range fo.Divisions {
		id, err := newObj("divisions", i, d.ID, d.Name, names)
		if err != nil {
			return nil, err
		}
		o.divisions[id] = &division{id: id, name: d.Name, description: d.Description}
		divByName[strings.ToLower(d.Name)] = id
		if d.Home {
			if o.homeDivisionID != "" {
				return nil, fmt.Errorf("%s: divisions[%d] %q: only one division can be home", where, i, d.Name)
			}
			o.homeDivisionID = id
		}
	}
	if o.homeDivisionID == "" {
		o.homeDivisionID = divByName[strings.ToLower(fo.Divisions[0].Name)]
	}
	divisionRef := func(obj, name string) (string, error) {
		if name == "" {
			return o.homeDivisionID, nil
		}
		id, ok := divByName[strings.ToLower(name)]
		if !ok {
			return "", fmt.Errorf("%s: %s: division: unknown division %q", where, obj, name)
		}
		return id, nil
	}

	names = uniq{}
	roleByName := map[string]string{}
	for i, r := range fo.Roles {
		id, err := newObj("roles", i, r.ID, r.Name, names)
		if err != nil {
			return nil, err
		}
		o.roles[id] = &role{id: id, name: r.Name, description: r.Description, permissions: r.Permissions}
		roleByName[strings.ToLower(r.Name)] = id
	}
	for i, l := range fo.Licenses {
		if l.ID == "" {
			return nil, fmt.Errorf("%s: licenses[%d]: id is required", where, i)
		}
		if o.licenses[l.ID] != nil {
			return nil, fmt.Errorf("%s: licenses[%d]: duplicate license id %q", where, i, l.ID)
		}
		o.licenses[l.ID] = &licenseDef{id: l.ID, description: l.Description}
	}
	named := func(kind string, list []FixtureNamed, dst map[string]*namedEntity) (map[string]string, error) {
		byName, names := map[string]string{}, uniq{}
		for i, n := range list {
			id, err := newObj(kind, i, n.ID, n.Name, names)
			if err != nil {
				return nil, err
			}
			dst[id] = &namedEntity{id: id, name: n.Name, version: 1}
			byName[strings.ToLower(n.Name)] = id
		}
		return byName, nil
	}
	skillByName, err := named("skills", fo.Skills, o.skills)
	if err != nil {
		return nil, err
	}
	langByName, err := named("languages", fo.Languages, o.languages)
	if err != nil {
		return nil, err
	}
	names = uniq{}
	teamByName := map[string]string{}
	for i, t := range fo.Teams {
		id, err := newObj("teams", i, t.ID, t.Name, names)
		if err != nil {
			return nil, err
		}
		div, err := divisionRef(fmt.Sprintf("team %q", t.Name), t.Division)
		if err != nil {
			return nil, err
		}
		o.teams[id] = &team{id: id, name: t.Name, description: t.Description, divisionID: div, members: map[string]bool{}}
		teamByName[strings.ToLower(t.Name)] = id
	}
	names = uniq{}
	queueByName := map[string]string{}
	for i, q := range fo.Queues {
		id, err := newObj("queues", i, q.ID, q.Name, names)
		if err != nil {
			return nil, err
		}
		div, err := divisionRef(fmt.Sprintf("queue %q", q.Name), q.Division)
		if err != nil {
			return nil, err
		}
		o.queues[id] = &queue{id: id, name: q.Name, description: q.Description, divisionID: div, members: map[string]bool{}}
		queueByName[strings.ToLower(q.Name)] = id
	}
	names = uniq{}
	poolNumbers := map[string]string{}
	for i, p := range fo.DIDPools {
		id, err := newObj("didPools", i, p.ID, p.Name, names)
		if err != nil {
			return nil, err
		}
		nums, err := expandDIDRange(p.StartPhoneNumber, p.EndPhoneNumber)
		if err != nil {
			return nil, fmt.Errorf("%s: didPool %q: %v", where, p.Name, err)
		}
		for _, n := range nums {
			if other, dup := poolNumbers[n]; dup {
				return nil, fmt.Errorf("%s: didPool %q: number %s is already in pool %q", where, p.Name, n, other)
			}
			poolNumbers[n] = p.Name
		}
		o.didPools[id] = &didPool{id: id, name: p.Name, description: p.Description, start: p.StartPhoneNumber, end: p.EndPhoneNumber, numbers: nums}
	}
	o.indexDIDs()
	names = uniq{}
	for i, in := range fo.Integrations {
		id, err := newObj("integrations", i, in.ID, in.Name, names)
		if err != nil {
			return nil, err
		}
		state := in.ReportedState
		if state == "" {
			state = "ACTIVE"
		}
		switch state {
		case "ACTIVE", "ACTIVATING", "INACTIVE", "DEACTIVATING", "ERROR":
		default:
			return nil, fmt.Errorf("%s: integration %q: reportedState %q is not one of ACTIVE, ACTIVATING, INACTIVE, DEACTIVATING, ERROR", where, in.Name, state)
		}
		typ := in.Type
		if typ == "" {
			typ = "custom-crm"
		}
		o.integrations[id] = &integration{id: id, name: in.Name, typeID: typ, reportedState: state}
	}
	if fo.Utilization != nil {
		u, err := fixtureUtilization(fo.Utilization)
		if err != nil {
			return nil, fmt.Errorf("%s: utilization: %v", where, err)
		}
		o.orgUtilization = u
	}

	// Users: first pass creates them (emails unique), second resolves managers.
	emails := uniq{}
	byEmail := map[string]*user{}
	for i, fu := range fo.Users {
		obj := fmt.Sprintf("users[%d]", i)
		if fu.Email != "" {
			obj = fmt.Sprintf("user %q", fu.Email)
		}
		if strings.TrimSpace(fu.Name) == "" {
			return nil, fmt.Errorf("%s: %s: name is required", where, obj)
		}
		if !strings.Contains(fu.Email, "@") {
			return nil, fmt.Errorf("%s: %s: email %q is not a valid email address", where, obj, fu.Email)
		}
		if !emails.add(fu.Email) {
			return nil, fmt.Errorf("%s: %s: duplicate email %q", where, obj, fu.Email)
		}
		id, err := idOr(fu.ID, fo.ID, "user", strings.ToLower(fu.Email))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", where, obj, err)
		}
		if !ids.add(id) {
			return nil, fmt.Errorf("%s: %s: duplicate id %s", where, obj, id)
		}
		div, err := divisionRef(obj, fu.Division)
		if err != nil {
			return nil, err
		}
		u := &user{
			id: id, name: fu.Name, email: fu.Email, title: fu.Title, department: fu.Department,
			divisionID: div, version: 1,
			skills: map[string]float64{}, languages: map[string]float64{}, licenses: map[string]bool{},
		}
		for j, l := range fu.Licenses {
			if o.licenses[l] == nil {
				return nil, fmt.Errorf("%s: %s: licenses[%d]: unknown license %q", where, obj, j, l)
			}
			u.licenses[l] = true
		}
		assign := func(field string, list []FixtureProficiency, byName map[string]string, dst map[string]float64) error {
			for j, p := range list {
				id, ok := byName[strings.ToLower(p.Name)]
				if !ok {
					return fmt.Errorf("%s: %s: %s[%d]: unknown %s %q", where, obj, field, j, strings.TrimSuffix(field, "s"), p.Name)
				}
				if p.Proficiency < 0 || p.Proficiency > 5 {
					return fmt.Errorf("%s: %s: %s[%d]: proficiency %v must be within 0..5", where, obj, field, j, p.Proficiency)
				}
				dst[id] = p.Proficiency
			}
			return nil
		}
		if err := assign("skills", fu.Skills, skillByName, u.skills); err != nil {
			return nil, err
		}
		if err := assign("languages", fu.Languages, langByName, u.languages); err != nil {
			return nil, err
		}
		if (len(u.skills) > 0 || len(u.languages) > 0 || len(fu.Queues) > 0 || fu.Utilization != nil) && !u.hasLicense() {
			return nil, fmt.Errorf("%s: %s: skills, languages, queues and utilization require a license (licenses is empty)", where, obj)
		}
		if fu.Team != "" {
			tid, ok := teamByName[strings.ToLower(fu.Team)]
			if !ok {
				return nil, fmt.Errorf("%s: %s: team: unknown team %q", where, obj, fu.Team)
			}
			o.setTeam(u, tid)
		}
		for j, qn := range fu.Queues {
			qid, ok := queueByName[strings.ToLower(qn)]
			if !ok {
				return nil, fmt.Errorf("%s: %s: queues[%d]: unknown queue %q", where, obj, j, qn)
			}
			o.queues[qid].members[u.id] = true
		}
		for j, g := range fu.Grants {
			rid, ok := roleByName[strings.ToLower(g.Role)]
			if !ok {
				return nil, fmt.Errorf("%s: %s: grants[%d].role: unknown role %q", where, obj, j, g.Role)
			}
			did, err := divisionRef(fmt.Sprintf("%s: grants[%d]", obj, j), g.Division)
			if err != nil {
				return nil, err
			}
			u.grants = append(u.grants, grant{roleID: rid, divisionID: did})
		}
		if fu.Utilization != nil {
			util, err := fixtureUtilization(fu.Utilization)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: utilization: %v", where, obj, err)
			}
			u.utilization = util
		}
		for j, a := range fu.Addresses {
			if a.MediaType == "PHONE" {
				if owner := o.phoneOwner(a.Address); owner != nil {
					return nil, fmt.Errorf("%s: %s: addresses[%d]: phone number %s is already held by %q", where, obj, j, a.Address, owner.email)
				}
			}
		}
		if err := o.checkAddresses(u.id, fu.Addresses); err != nil {
			return nil, fmt.Errorf("%s: %s: %s", where, obj, err.msg)
		}
		o.setAddresses(u, fu.Addresses)
		for j, e := range fu.ExternalIDs {
			if e.AuthorityName == "" || e.ExternalKey == "" {
				return nil, fmt.Errorf("%s: %s: externalIds[%d]: authorityName and externalKey are required", where, obj, j)
			}
			// u's own ids are indexed after the loop: a pair listed twice
			// on one user is accepted, as before the index.
			if owner := o.userByExternalID(e.AuthorityName, e.ExternalKey); owner != nil {
				return nil, fmt.Errorf("%s: %s: externalIds[%d]: %s/%s already belongs to %q", where, obj, j, e.AuthorityName, e.ExternalKey, owner.email)
			}
			u.externalIDs = append(u.externalIDs, e)
		}
		o.users[u.id] = u
		o.indexExternalIDs(u, true)
		o.indexEmail(u, true)
		byEmail[strings.ToLower(u.email)] = u
	}
	for _, fu := range fo.Users {
		if fu.Manager == "" {
			continue
		}
		m, ok := byEmail[strings.ToLower(fu.Manager)]
		if !ok {
			return nil, fmt.Errorf("%s: user %q: manager: unknown user email %q", where, fu.Email, fu.Manager)
		}
		u := byEmail[strings.ToLower(fu.Email)]
		if m == u {
			return nil, fmt.Errorf("%s: user %q: manager: a user cannot manage themselves", where, fu.Email)
		}
		u.managerID = m.id
	}
	return o, nil
}

func fixtureUtilization(in map[string]FixtureMediaUtilization) (map[string]mediaUtilization, error) {
	out := map[string]mediaUtilization{}
	for k, v := range in {
		known := false
		for _, m := range mediaTypes {
			known = known || m == k
		}
		if !known {
			return nil, fmt.Errorf("unknown media type %q (allowed: %v)", k, mediaTypes)
		}
		if v.MaximumCapacity < 0 || v.MaximumCapacity > 25 {
			return nil, fmt.Errorf("%s.maximumCapacity %d must be within 0..25", k, v.MaximumCapacity)
		}
		im := v.InterruptableMediaTypes
		if im == nil {
			im = []string{}
		}
		out[k] = mediaUtilization{MaximumCapacity: v.MaximumCapacity, InterruptableMediaTypes: im, IncludeNonAcd: v.IncludeNonAcd}
	}
	return out, nil
}

// expandDIDRange lists the numbers from start to end inclusive.
func expandDIDRange(start, end string) ([]string, error) {
	s, e := normalizePhone(start), normalizePhone(end)
	if s == "" || s != start || e != end || len(s) != len(e) || len(s) < 4 {
		return nil, fmt.Errorf("startPhoneNumber %q and endPhoneNumber %q must be E.164 numbers (+digits) of equal length", start, end)
	}
	// Compare and step on the trailing digits only (at most 10000 numbers).
	prefixLen := len(s) - 4
	if s[:prefixLen] != e[:prefixLen] || s > e {
		return nil, fmt.Errorf("range %s..%s must differ only in the last 4 digits, start <= end", start, end)
	}
	var lo, hi int
	fmt.Sscanf(s[prefixLen:], "%d", &lo)
	fmt.Sscanf(e[prefixLen:], "%d", &hi)
	out := make([]string, 0, hi-lo+1)
	for n := lo; n <= hi; n++ {
		out = append(out, fmt.Sprintf("%s%04d", s[:prefixLen], n))
	}
	return out, nil
}
