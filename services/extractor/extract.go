package extractor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

const tracerName = "orgsync/extractor"

// UserNotFoundError says selectors name no user of the source org. It can
// never succeed on retry.
type UserNotFoundError struct {
	SourceOrg string
	// Selectors naming nobody, in request order: "id 5f0c..." or "email jane@...".
	Selectors []string
}

// notFoundShown is how many missing users an error names; the rest are counted.
const notFoundShown = 20

func (e *UserNotFoundError) Error() string {
	if len(e.Selectors) == 1 {
		return fmt.Sprintf("user not found in source org %s: %s", e.SourceOrg, e.Selectors[0])
	}
	shown := e.Selectors[:min(len(e.Selectors), notFoundShown)]
	msg := fmt.Sprintf("%d users not found in source org %s: %s", len(e.Selectors), e.SourceOrg, strings.Join(shown, ", "))
	if rest := len(e.Selectors) - len(shown); rest > 0 {
		msg += fmt.Sprintf(" and %d more", rest)
	}
	return msg
}

// Extracted is the configuration graph of the reference users of one request.
type Extracted struct {
	// Users in selector order (duplicates removed).
	Users []*orgsyncv1.UserConfig
	// Resources referenced by any user, once per external id, sorted by it.
	Resources []*orgsyncv1.Resource
}

// Extract reads each selected user of sourceOrg and every object its
// configuration references, and returns them in source terms with
// deterministic external ids. Components not in include (empty = all) are
// not read at all, which saves their API calls. Errors: *UserNotFoundError
// for a selector naming nobody; API errors as the client returns them (use
// IsPermanent to tell what retrying cannot fix).
func Extract(ctx context.Context, c *genesys.Client, sourceOrg string, selectors []*orgsyncv1.UserSelector, include []orgsyncv1.Component) (*Extracted, error) {
	var out *Extracted
	err := ExtractParts(ctx, c, sourceOrg, selectors, include, PartSizes{}, func(ex *Extracted, _, _ int) error {
		out = ex
		return nil
	})
	return out, err
}

// PartSizes bound the snapshot parts of a request: the first part holds
// at most First users (0: all users in one part), each next part four
// times the previous, up to Max (default First). The first part is small so the
// targets start early; the later ones grow because every plan pays its
// batched calls once — a member call per queue and team, the email search,
// the license batch, the activation poll, the read-back — whatever its
// size (100-user parts instead of 20: about a call per user less).
type PartSizes struct{ First, Max int }

// Ends returns the end index of each part of n users.
func (z PartSizes) Ends(n int) []int {
	if z.First <= 0 || z.First >= n {
		return []int{n}
	}
	var ends []int
	size := z.First
	for end := 0; end < n; {
		end = min(end+size, n)
		ends = append(ends, end)
		size = min(size*4, max(z.Max, z.First))
	}
	return ends
}

// ExtractParts is Extract delivering the users in parts (sizes), each
// handed to emit — with its part number (1-based) and the number of parts
// — as soon as its users are read, so the pipeline can provision the first
// users while the rest are read.
// Every selector is resolved before the first part (a user not found fails
// the whole extraction, before anything is emitted). With several parts,
// managers come before the users they manage, and each part carries every
// resource read so far (a superset of what its users reference). An error
// from emit stops the extraction and is returned.
func ExtractParts(ctx context.Context, c *genesys.Client, sourceOrg string, selectors []*orgsyncv1.UserSelector, include []orgsyncv1.Component,
	sizes PartSizes, emit func(ex *Extracted, part, parts int) error) error {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "extractor.extract")
	defer span.End()
	span.SetAttributes(attribute.String("orgsync.source_org", sourceOrg), attribute.Int("orgsync.users", len(selectors)))

	x := &extraction{c: c, src: sourceOrg, include: include, cat: newCatalog(c),
		resources: map[string]*orgsyncv1.Resource{}, emails: map[string]string{}}

	// Read every reference user first: a manager's reference depends on
	// whether the manager is part of the request.
	users, err := x.readUsers(ctx, selectors)
	if err != nil {
		return err
	}
	for _, u := range users {
		x.emails[u.ID] = u.Email
	}
	inRequest := map[string]bool{}
	for _, u := range users {
		inRequest[u.ID] = true
	}
	ends := sizes.Ends(len(users))
	if len(ends) > 1 {
		managersFirst(users)
	}
	for p, end := range ends {
		part := &Extracted{}
		start := 0
		if p > 0 {
			start = ends[p-1]
		}
		partUsers := users[start:end]
		if err := x.readLicenses(ctx, partUsers); err != nil {
			return err
		}
		for _, u := range partUsers {
			cfg, err := x.userConfig(ctx, u, inRequest)
			if err != nil {
				return fmt.Errorf("extract user %s (%s) of %s: %w", u.Email, u.ID, sourceOrg, err)
			}
			part.Users = append(part.Users, cfg)
		}
		for _, r := range x.resources {
			part.Resources = append(part.Resources, r)
		}
		sort.Slice(part.Resources, func(i, j int) bool { return part.Resources[i].GetExternalId() < part.Resources[j].GetExternalId() })
		if err := emit(part, p+1, len(ends)); err != nil {
			return err
		}
		// The part's users are read: let them go while later parts are
		// read (10,000 source users held some 30 MB to the end).
		clear(partUsers)
	}
	return nil
}

// managersFirst orders users (stably) so that every user comes after its
// manager when the manager is among them: by the depth of their manager
// chain within users.
func managersFirst(users []*genesys.User) {
	byID := map[string]*genesys.User{}
	for _, u := range users {
		byID[u.ID] = u
	}
	depth := map[string]int{}
	for _, u := range users {
		d, seen := 0, map[string]bool{u.ID: true}
		for m := u.Manager; m != nil && byID[m.ID] != nil && !seen[m.ID]; m = byID[m.ID].Manager {
			seen[m.ID] = true
			d++
		}
		depth[u.ID] = d
	}
	sort.SliceStable(users, func(i, j int) bool { return depth[users[i].ID] < depth[users[j].ID] })
}

// IsPermanent reports whether an extraction error can never succeed on
// retry: a missing user, or a permanent API error (genesys.IsPermanent:
// invalid input, refused credentials, 4xx other than 408/429, 501).
func IsPermanent(err error) bool {
	var nf *UserNotFoundError
	return errors.As(err, &nf) || genesys.IsPermanent(err)
}

type extraction struct {
	c         *genesys.Client
	src       string
	include   []orgsyncv1.Component
	cat       *catalog
	resources map[string]*orgsyncv1.Resource
	emails    map[string]string // user id → email (reference users and managers read so far)
	// licenses of the users of the part being extracted (readLicenses).
	licenses map[string]genesys.LicenseUser
}

// readLicenses reads the licenses of users in one batch (100 a call)
// instead of one call per user, when licenses are needed at all: routing
// components need a license in the target, so they are read whenever any
// of them is cloned (the same rule as the resolver's LICENSE step).
func (x *extraction) readLicenses(ctx context.Context, users []*genesys.User) error {
	x.licenses = nil
	if !x.included(cLicense, cSkills, cLangs, cUtil, cQueues) {
		return nil
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	lics, err := x.c.GetUsersLicenses(ctx, ids)
	if err != nil {
		return fmt.Errorf("extract: read licenses of %d user(s) in %s: %w", len(ids), x.src, err)
	}
	x.licenses = lics
	return nil
}

func (x *extraction) included(cs ...orgsyncv1.Component) bool {
	if len(x.include) == 0 {
		return true
	}
	for _, c := range cs {
		if slices.Contains(x.include, c) {
			return true
		}
	}
	return false
}

// readUsers resolves the selectors to their users (team expanded), in
// selector order without repeats: one batched exact email search and one
// batched listing by id (100 a call) instead of two calls per user. The
// selectors naming nobody (or a deleted user) make one *UserNotFoundError
// naming them all.
func (x *extraction) readUsers(ctx context.Context, selectors []*orgsyncv1.UserSelector) ([]*genesys.User, error) {
	var emails, ids []string
	for _, sel := range selectors {
		if e := sel.GetEmail(); e != "" {
			emails = append(emails, e)
		} else if id := sel.GetUserId(); id != "" {
			ids = append(ids, id)
		}
	}
	// Skills and languages come with the user (expand), which saves two
	// calls per user; userConfig falls back to the per-user listings when
	// an API leaves them out.
	expand := []string{"team"}
	if x.included(cSkills) {
		expand = append(expand, "skills")
	}
	if x.included(cLangs) {
		expand = append(expand, "languages")
	}
	byEmail := map[string]genesys.User{}
	if len(emails) > 0 {
		var err error
		if byEmail, err = x.c.FindUsersByEmails(ctx, emails, expand...); err != nil {
			return nil, fmt.Errorf("extract: find %d user(s) by email in %s: %w", len(emails), x.src, err)
		}
	}
	byID := map[string]genesys.User{}
	if len(ids) > 0 {
		listed, err := x.c.ListUsersByID(ctx, ids, expand...)
		if err != nil {
			return nil, fmt.Errorf("extract: read %d user(s) by id in %s: %w", len(ids), x.src, err)
		}
		for _, u := range listed {
			byID[u.ID] = u
		}
	}
	var users []*genesys.User
	var missing []string
	for _, sel := range selectors {
		var u genesys.User
		var ok bool
		if e := sel.GetEmail(); e != "" {
			u, ok = byEmail[strings.ToLower(e)]
		} else {
			u, ok = byID[sel.GetUserId()]
		}
		if !ok || u.State == "deleted" {
			missing = append(missing, describeSelector(sel))
			continue
		}
		if !slices.ContainsFunc(users, func(o *genesys.User) bool { return o.ID == u.ID }) {
			users = append(users, &u)
		}
	}
	if len(missing) > 0 {
		return nil, &UserNotFoundError{SourceOrg: x.src, Selectors: missing}
	}
	return users, nil
}

func describeSelector(sel *orgsyncv1.UserSelector) string {
	if e := sel.GetEmail(); e != "" {
		return "email " + e
	}
	if id := sel.GetUserId(); id != "" {
		return "id " + id
	}
	return "empty selector"
}

// resource registers the object of kind/id as a snapshot resource (once per
// external id) and returns its external id.
func (x *extraction) resource(ctx context.Context, t orgsyncv1.ResourceType, kind, id string) (string, error) {
	e, err := x.cat.lookup(ctx, kind, id)
	if err != nil {
		return "", err
	}
	ref := extid.Resource(x.src, t, e.name)
	if _, ok := x.resources[ref]; !ok {
		x.resources[ref] = &orgsyncv1.Resource{ExternalId: ref, Type: t, Name: e.name, SourceId: id, Description: e.description}
	}
	return ref, nil
}

var (
	cProfile = orgsyncv1.Component_COMPONENT_PROFILE
	cLicense = orgsyncv1.Component_COMPONENT_LICENSE
	cSkills  = orgsyncv1.Component_COMPONENT_SKILLS
	cLangs   = orgsyncv1.Component_COMPONENT_LANGUAGES
	cUtil    = orgsyncv1.Component_COMPONENT_UTILIZATION
	cRoles   = orgsyncv1.Component_COMPONENT_ROLES
	cQueues  = orgsyncv1.Component_COMPONENT_QUEUES
	cTeam    = orgsyncv1.Component_COMPONENT_TEAM
	cPhone   = orgsyncv1.Component_COMPONENT_PHONE
)

// userConfig builds one user's configuration. Lists are sorted by external
// id so the same source state always yields the same bytes (snapshot id).
func (x *extraction) userConfig(ctx context.Context, u *genesys.User, inRequest map[string]bool) (*orgsyncv1.UserConfig, error) {
	cfg := &orgsyncv1.UserConfig{
		ExternalId:    extid.User(x.src, u.Email),
		SourceUserId:  u.ID,
		Name:          u.Name,
		Email:         u.Email,
		SourceVersion: int64(u.Version),
	}
	var err error
	if u.Division != nil && u.Division.ID != "" {
		if cfg.DivisionRef, err = x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION, kindDivision, u.Division.ID); err != nil {
			return nil, err
		}
	}
	if x.included(cProfile) {
		cfg.Title, cfg.Department = u.Title, u.Department
		if err := x.manager(ctx, u, cfg, inRequest); err != nil {
			return nil, err
		}
	}
	if x.included(cSkills) {
		skills := u.Skills // nil: the API did not expand them
		if skills == nil {
			if skills, err = x.c.ListUserRoutingSkills(ctx, u.ID); err != nil {
				return nil, fmt.Errorf("list routing skills: %w", err)
			}
		}
		for _, s := range skills {
			ref, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, kindSkill, s.ID)
			if err != nil {
				return nil, err
			}
			cfg.Skills = append(cfg.Skills, &orgsyncv1.Proficiency{Ref: ref, Proficiency: s.Proficiency})
		}
		sortProficiencies(cfg.Skills)
	}
	if x.included(cLangs) {
		langs := u.Languages // nil: the API did not expand them
		if langs == nil {
			if langs, err = x.c.ListUserRoutingLanguages(ctx, u.ID); err != nil {
				return nil, fmt.Errorf("list routing languages: %w", err)
			}
		}
		for _, l := range langs {
			ref, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE, kindLanguage, l.ID)
			if err != nil {
				return nil, err
			}
			cfg.Languages = append(cfg.Languages, &orgsyncv1.Proficiency{Ref: ref, Proficiency: l.Proficiency})
		}
		sortProficiencies(cfg.Languages)
	}
	if x.included(cUtil) {
		util, err := x.c.GetUserUtilization(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("read utilization: %w", err)
		}
		cfg.Utilization = agentUtilization(util)
	}
	if x.included(cTeam) && u.Team != nil && u.Team.ID != "" {
		if cfg.TeamRef, err = x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM, kindTeam, u.Team.ID); err != nil {
			return nil, err
		}
	}
	if x.included(cRoles) {
		if cfg.Grants, err = x.grants(ctx, u.ID); err != nil {
			return nil, err
		}
	}
	if x.included(cQueues) {
		queues, err := x.c.ListUserQueues(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("list queues: %w", err)
		}
		for _, q := range queues {
			if !q.Joined {
				continue
			}
			ref, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE, kindQueue, q.ID)
			if err != nil {
				return nil, err
			}
			cfg.QueueRefs = append(cfg.QueueRefs, ref)
		}
		cfg.QueueRefs = sortedUnique(cfg.QueueRefs)
	}
	if x.included(cPhone) {
		cfg.Phones = workPhones(u)
	}
	if x.licenses != nil { // read for the part (readLicenses)
		for _, l := range x.licenses[u.ID].Licenses {
			ref, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE, kindLicense, l.ID)
			if err != nil {
				return nil, err
			}
			cfg.LicenseRefs = append(cfg.LicenseRefs, ref)
		}
		cfg.LicenseRefs = sortedUnique(cfg.LicenseRefs)
	}
	return cfg, nil
}

// manager fills manager_email (and manager_ref when the manager is cloned by
// the same request). A manager outside the request costs one GET, cached.
func (x *extraction) manager(ctx context.Context, u *genesys.User, cfg *orgsyncv1.UserConfig, inRequest map[string]bool) error {
	if u.Manager == nil || u.Manager.ID == "" {
		return nil
	}
	email, ok := x.emails[u.Manager.ID]
	if !ok {
		m, err := x.c.GetUser(ctx, u.Manager.ID)
		if genesys.IsNotFound(err) {
			return nil // manager deleted meanwhile: nothing to point at
		}
		if err != nil {
			return fmt.Errorf("read manager %s: %w", u.Manager.ID, err)
		}
		email = m.Email
		x.emails[m.ID] = email
	}
	cfg.ManagerEmail = email
	if inRequest[u.Manager.ID] {
		cfg.ManagerRef = extid.User(x.src, email)
	}
	return nil
}

// grants reads the user's role grants (role + division).
func (x *extraction) grants(ctx context.Context, userID string) ([]*orgsyncv1.Grant, error) {
	subj, err := x.c.GetSubject(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("read role grants: %w", err)
	}
	var out []*orgsyncv1.Grant
	seen := map[string]bool{}
	for _, g := range subj.Grants {
		role, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE, kindRole, g.Role.ID)
		if err != nil {
			return nil, err
		}
		div, err := x.resource(ctx, orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION, kindDivision, g.Division.ID)
		if err != nil {
			return nil, err
		}
		if seen[role+"\x00"+div] {
			continue
		}
		seen[role+"\x00"+div] = true
		out = append(out, &orgsyncv1.Grant{RoleRef: role, DivisionRef: div})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].RoleRef != out[j].RoleRef {
			return out[i].RoleRef < out[j].RoleRef
		}
		return out[i].DivisionRef < out[j].DivisionRef
	})
	return out, nil
}

// agentUtilization converts the user's utilization; org-level (inherited)
// utilization is not the user's own and yields nil.
func agentUtilization(u *genesys.Utilization) *orgsyncv1.Utilization {
	if u == nil || !strings.EqualFold(u.Level, "Agent") {
		return nil
	}
	out := &orgsyncv1.Utilization{}
	for media, m := range u.Utilization {
		mc := &orgsyncv1.MediaCapacity{MediaType: media, MaximumCapacity: int32(m.MaximumCapacity), IncludeNonAcd: m.IncludeNonAcd}
		mc.InterruptibleMediaTypes = append([]string(nil), m.InterruptableMediaTypes...)
		sort.Strings(mc.InterruptibleMediaTypes)
		out.Media = append(out.Media, mc)
	}
	sort.Slice(out.Media, func(i, j int) bool { return out.Media[i].MediaType < out.Media[j].MediaType })
	return out
}

// workPhones abstracts the user's PHONE addresses of the WORK family to
// logical aliases "<lower-case email>/<lower-case type>" (e.g.
// "jane@acme.example/work"): source numbers never exist in a target, the
// provisioner allocates one per alias there.
func workPhones(u *genesys.User) []*orgsyncv1.Phone {
	var out []*orgsyncv1.Phone
	seen := map[string]bool{}
	for _, a := range u.Addresses {
		if !strings.EqualFold(a.MediaType, "PHONE") || !strings.HasPrefix(strings.ToUpper(a.Type), "WORK") || a.Address == "" {
			continue
		}
		alias := strings.ToLower(strings.TrimSpace(u.Email)) + "/" + strings.ToLower(a.Type)
		if seen[alias] {
			continue
		}
		seen[alias] = true
		out = append(out, &orgsyncv1.Phone{Alias: alias, SourceNumber: a.Address, Type: strings.ToUpper(a.Type)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Alias < out[j].Alias })
	return out
}

func sortProficiencies(p []*orgsyncv1.Proficiency) {
	sort.Slice(p, func(i, j int) bool { return p[i].Ref < p[j].Ref })
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}
