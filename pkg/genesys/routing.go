package genesys

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

var (
	opListSkills         = op(http.MethodGet, "/api/v2/routing/skills")
	opCreateSkill        = op(http.MethodPost, "/api/v2/routing/skills")
	opListLanguages      = op(http.MethodGet, "/api/v2/routing/languages")
	opCreateLanguage     = op(http.MethodPost, "/api/v2/routing/languages")
	opListUserSkills     = op(http.MethodGet, "/api/v2/users/{userId}/routingskills")
	opReplaceUserSkills  = op(http.MethodPut, "/api/v2/users/{userId}/routingskills/bulk")
	opAddUserSkills      = op(http.MethodPatch, "/api/v2/users/{userId}/routingskills/bulk")
	opRemoveUserSkill    = op(http.MethodDelete, "/api/v2/users/{userId}/routingskills/{skillId}")
	opListUserLanguages  = op(http.MethodGet, "/api/v2/users/{userId}/routinglanguages")
	opAddUserLanguages   = op(http.MethodPatch, "/api/v2/users/{userId}/routinglanguages/bulk")
	opRemoveUserLanguage = op(http.MethodDelete, "/api/v2/users/{userId}/routinglanguages/{languageId}")
	opGetUserUtilization = op(http.MethodGet, "/api/v2/routing/users/{userId}/utilization")
	opSetUserUtilization = op(http.MethodPut, "/api/v2/routing/users/{userId}/utilization")
	opGetOrgUtilization  = op(http.MethodGet, "/api/v2/routing/utilization")
)

func nameQuery(prefix string) url.Values {
	q := url.Values{}
	if prefix != "" {
		q.Set("name", prefix)
	}
	return q
}

// ListSkills lists routing skills whose name starts with prefix (all when "").
// Genesys' name filter is a prefix match: use FindSkillByName for one name.
func (c *Client) ListSkills(ctx context.Context, prefix string) ([]RoutingSkill, error) {
	return collect(listByPageNumber[RoutingSkill](ctx, c, request{op: opListSkills, query: nameQuery(prefix)}))
}

// FindSkillByName returns the skill named exactly name.
func (c *Client) FindSkillByName(ctx context.Context, name string) (RoutingSkill, bool, error) {
	if strings.TrimSpace(name) == "" {
		return RoutingSkill{}, false, invalidArg(opListSkills, "empty skill name")
	}
	return findExact(listByPageNumber[RoutingSkill](ctx, c, request{op: opListSkills, query: nameQuery(name)}), name)
}

// CreateSkill creates a skill; a lost answer never yields a duplicate (the
// skill is looked up by exact name before any re-post).
func (c *Client) CreateSkill(ctx context.Context, name string) (*RoutingSkill, error) {
	if strings.TrimSpace(name) == "" {
		return nil, invalidArg(opCreateSkill, "empty skill name")
	}
	var s RoutingSkill
	err := createOnce(ctx, c, request{op: opCreateSkill, body: map[string]string{"name": name}}, &s,
		func(ctx context.Context) (RoutingSkill, bool, error) { return c.FindSkillByName(ctx, name) })
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// EnsureSkill returns the skill named exactly name, creating it when absent;
// created says which happened.
func (c *Client) EnsureSkill(ctx context.Context, name string) (s RoutingSkill, created bool, err error) {
	return ensure(ctx, name, c.FindSkillByName, c.CreateSkill)
}

// ListLanguages lists routing languages whose name starts with prefix.
func (c *Client) ListLanguages(ctx context.Context, prefix string) ([]Language, error) {
	return collect(listByPageNumber[Language](ctx, c, request{op: opListLanguages, query: nameQuery(prefix)}))
}

// FindLanguageByName returns the routing language named exactly name.
func (c *Client) FindLanguageByName(ctx context.Context, name string) (Language, bool, error) {
	if strings.TrimSpace(name) == "" {
		return Language{}, false, invalidArg(opListLanguages, "empty language name")
	}
	return findExact(listByPageNumber[Language](ctx, c, request{op: opListLanguages, query: nameQuery(name)}), name)
}

// CreateLanguage creates a routing language without ever duplicating it.
func (c *Client) CreateLanguage(ctx context.Context, name string) (*Language, error) {
	if strings.TrimSpace(name) == "" {
		return nil, invalidArg(opCreateLanguage, "empty language name")
	}
	var l Language
	err := createOnce(ctx, c, request{op: opCreateLanguage, body: map[string]string{"name": name}}, &l,
		func(ctx context.Context) (Language, bool, error) { return c.FindLanguageByName(ctx, name) })
	if err != nil {
		return nil, err
	}
	return &l, nil
}

// EnsureLanguage returns the language named exactly name, creating it when absent.
func (c *Client) EnsureLanguage(ctx context.Context, name string) (Language, bool, error) {
	return ensure(ctx, name, c.FindLanguageByName, c.CreateLanguage)
}

func ensure[T any](ctx context.Context, name string,
	find func(context.Context, string) (T, bool, error), create func(context.Context, string) (*T, error)) (T, bool, error) {
	v, found, err := find(ctx, name)
	if err != nil || found {
		return v, false, err
	}
	created, err := create(ctx, name)
	if err != nil {
		var zero T
		return zero, false, err
	}
	return *created, true, nil
}

// ListUserRoutingSkills returns a user's skills with proficiencies.
func (c *Client) ListUserRoutingSkills(ctx context.Context, userID string) ([]UserRoutingSkill, error) {
	return collect(listByPageNumber[UserRoutingSkill](ctx, c, request{op: opListUserSkills, params: []string{userID}}))
}

// ReplaceUserRoutingSkills sets exactly these skills on the user (PUT bulk):
// skills not listed are removed.
func (c *Client) ReplaceUserRoutingSkills(ctx context.Context, userID string, skills []SkillProficiency) error {
	return c.bulkSkills(ctx, opReplaceUserSkills, userID, skills)
}

// AddUserRoutingSkills adds or updates these skills (PATCH bulk), keeping others.
func (c *Client) AddUserRoutingSkills(ctx context.Context, userID string, skills []SkillProficiency) error {
	return c.bulkSkills(ctx, opAddUserSkills, userID, skills)
}

// The answer (the user's skills) is not decoded: nobody reads it, and a
// bulk call per user is a large share of a clone's JSON decoding.
func (c *Client) bulkSkills(ctx context.Context, o operation, userID string, skills []SkillProficiency) error {
	if err := checkProficiencies(o, skills); err != nil {
		return err
	}
	if skills == nil {
		skills = []SkillProficiency{}
	}
	return c.do(ctx, request{op: o, params: []string{userID}, body: skills, idempotent: true})
}

// RemoveUserRoutingSkill removes one skill from a user.
func (c *Client) RemoveUserRoutingSkill(ctx context.Context, userID, skillID string) error {
	return c.do(ctx, request{op: opRemoveUserSkill, params: []string{userID, skillID}, idempotent: true})
}

// ListUserRoutingLanguages returns a user's languages with proficiencies.
func (c *Client) ListUserRoutingLanguages(ctx context.Context, userID string) ([]UserRoutingLanguage, error) {
	return collect(listByPageNumber[UserRoutingLanguage](ctx, c, request{op: opListUserLanguages, params: []string{userID}}))
}

// AddUserRoutingLanguages adds or updates these languages (PATCH bulk).
func (c *Client) AddUserRoutingLanguages(ctx context.Context, userID string, langs []SkillProficiency) error {
	if err := checkProficiencies(opAddUserLanguages, langs); err != nil {
		return err
	}
	if langs == nil {
		langs = []SkillProficiency{}
	}
	return c.do(ctx, request{op: opAddUserLanguages, params: []string{userID}, body: langs, idempotent: true})
}

// RemoveUserRoutingLanguage removes one language from a user.
func (c *Client) RemoveUserRoutingLanguage(ctx context.Context, userID, languageID string) error {
	return c.do(ctx, request{op: opRemoveUserLanguage, params: []string{userID, languageID}, idempotent: true})
}

func checkProficiencies(o operation, items []SkillProficiency) error {
	for _, it := range items {
		if strings.TrimSpace(it.ID) == "" {
			return invalidArg(o, "empty id in bulk assignment")
		}
		if it.Proficiency < 0 || it.Proficiency > 5 {
			return invalidArg(o, "proficiency %g of %s out of range 0..5", it.Proficiency, it.ID)
		}
	}
	return nil
}

// GetUserUtilization reads a user's utilization (Level says whether it is
// the user's own or inherited from the org).
func (c *Client) GetUserUtilization(ctx context.Context, userID string) (*Utilization, error) {
	var u Utilization
	err := c.do(ctx, request{op: opGetUserUtilization, params: []string{userID}, out: &u, idempotent: true})
	return &u, err
}

// SetUserUtilization sets a user's own utilization.
func (c *Client) SetUserUtilization(ctx context.Context, userID string, u Utilization) error {
	u.Level = "" // response-only field
	return c.do(ctx, request{op: opSetUserUtilization, params: []string{userID}, body: u, idempotent: true})
}

// GetOrgUtilization reads the org default utilization.
func (c *Client) GetOrgUtilization(ctx context.Context) (*Utilization, error) {
	var u Utilization
	err := c.do(ctx, request{op: opGetOrgUtilization, out: &u, idempotent: true})
	return &u, err
}
