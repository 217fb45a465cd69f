package reconciler

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/orgsync/orgsync/pkg/emailmap"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// SyncSetNamePattern is the name rule of a sync set (a KV key and part of
// request ids).
var SyncSetNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// DefaultSyncSetMaxUsers bounds a selection unless the set says otherwise.
const DefaultSyncSetMaxUsers = 5000

// fieldErrors collects invalid fields by path.
type fieldErrors []*orgsyncv1.FieldError

func (f *fieldErrors) add(path, format string, args ...any) {
	*f = append(*f, &orgsyncv1.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// validateSyncSet checks what needs the org registry but not the source org:
// name, orgs known, selector, email mappings. It returns the target orgs.
func validateSyncSet(set *orgsyncv1.SyncSet, reg *orgconfig.Config) ([]string, fieldErrors) {
	var errs fieldErrors
	if !SyncSetNamePattern.MatchString(set.GetName()) {
		errs.add("name", "%q must be 1..63 lower-case letters, digits and '-', starting with a letter or digit", set.GetName())
	}
	src := set.GetSourceOrg()
	switch {
	case src == "":
		errs.add("source", "the source org is required")
	case natsx.ValidateOrgKey(src) != nil:
		errs.add("source", "%v", natsx.ValidateOrgKey(src))
	case reg != nil && !reg.Has(src):
		errs.add("source", "unknown org %q (configured: %s)", src, strings.Join(reg.Keys(), ", "))
	}
	sel := set.GetSelect()
	if len(sel.GetEmails())+len(sel.GetUserIds())+len(sel.GetTeams())+len(sel.GetDivisions())+len(sel.GetQueues())+len(sel.GetSearch()) == 0 {
		errs.add("select", "empty selection: give at least one of emails, ids, teams, divisions, queues, search")
	}
	for i, c := range sel.GetSearch() {
		if c.GetField() == "" || len(c.GetValues()) == 0 {
			errs.add(fmt.Sprintf("select.search[%d]", i), "a search criterion needs a field and at least one value")
		}
		switch strings.ToUpper(c.GetType()) {
		case "", "EXACT", "CONTAINS", "STARTS_WITH":
		default:
			errs.add(fmt.Sprintf("select.search[%d].type", i), "%q: want EXACT, CONTAINS or STARTS_WITH", c.GetType())
		}
	}
	seen := map[string]bool{}
	var targets []string
	addTarget := func(path, t string) {
		switch {
		case t == src:
			errs.add(path, "target %q is the source org", t)
		case reg != nil && !reg.Has(t):
			errs.add(path, "unknown org %q (configured: %s)", t, strings.Join(reg.Keys(), ", "))
		case !seen[t]:
			seen[t] = true
			targets = append(targets, t)
		}
	}
	for i, t := range set.GetTargets().GetOrgs() {
		addTarget(fmt.Sprintf("targets.orgs[%d]", i), t)
	}
	if s := set.GetTargets().GetSelector(); s != "" {
		parsed, err := orgconfig.ParseSelector(s)
		switch {
		case err != nil:
			errs.add("targets.selector", "%v", err)
		case reg != nil:
			matched := reg.Matching(parsed)
			if len(matched) == 0 {
				errs.add("targets.selector", "label selector %q matches no org", s)
			}
			for _, t := range matched {
				if t != src {
					addTarget("targets.selector", t)
				}
			}
		}
	}
	if len(set.GetTargets().GetOrgs()) == 0 && set.GetTargets().GetSelector() == "" {
		errs.add("targets", "at least one target org or a label selector is required")
	}
	for t, rule := range set.GetOptions().GetEmailMapping() {
		if !seen[t] {
			errs.add("options.emailMapping."+t, "%q is not a target of this set", t)
		}
		if err := emailmap.Validate(rule); err != nil {
			errs.add("options.emailMapping."+t, "%v", err)
		}
	}
	if set.GetMaxUsers() < 0 {
		errs.add("maxUsers", "must not be negative")
	}
	sort.Strings(targets)
	return targets, errs
}

// selected is the resolution of a selection: members by source user id,
// plus the team ids whose audit topics report joins.
type selected struct {
	users map[string]genesys.User
	teams []string
}

// resolveSelection reads the selection from the source org. Names that do
// not exist are field errors (a typo must not select nobody silently).
func resolveSelection(ctx context.Context, c *genesys.Client, sel *orgsyncv1.SyncSelection) (selected, fieldErrors, error) {
	out := selected{users: map[string]genesys.User{}}
	var errs fieldErrors
	var ids []string
	addRefs := func(refs []string) { ids = append(ids, refs...) }
	if emails := sel.GetEmails(); len(emails) > 0 {
		found, err := c.FindUsersByEmails(ctx, emails)
		if err != nil {
			return out, nil, fmt.Errorf("find users by email: %w", err)
		}
		for i, e := range emails {
			u, ok := found[strings.ToLower(e)]
			if !ok {
				errs.add(fmt.Sprintf("select.emails[%d]", i), "no user %s in the source org", e)
				continue
			}
			out.users[u.ID] = u
		}
	}
	addRefs(sel.GetUserIds())
	for i, name := range sel.GetTeams() {
		t, ok, err := c.FindTeamByName(ctx, name)
		if err != nil {
			return out, nil, fmt.Errorf("find team %q: %w", name, err)
		}
		if !ok {
			errs.add(fmt.Sprintf("select.teams[%d]", i), "no team %q in the source org", name)
			continue
		}
		out.teams = append(out.teams, t.ID)
		members, err := c.ListTeamMembers(ctx, t.ID)
		if err != nil {
			return out, nil, fmt.Errorf("list members of team %q: %w", name, err)
		}
		for _, m := range members {
			ids = append(ids, m.ID)
		}
	}
	for i, name := range sel.GetQueues() {
		q, ok, err := c.FindQueueByName(ctx, name)
		if err != nil {
			return out, nil, fmt.Errorf("find queue %q: %w", name, err)
		}
		if !ok {
			errs.add(fmt.Sprintf("select.queues[%d]", i), "no queue %q in the source org", name)
			continue
		}
		members, err := c.ListQueueMembers(ctx, q.ID)
		if err != nil {
			return out, nil, fmt.Errorf("list members of queue %q: %w", name, err)
		}
		for _, m := range members {
			ids = append(ids, m.ID)
		}
	}
	var criteria []genesys.SearchCriterion
	if divs := sel.GetDivisions(); len(divs) > 0 {
		all, err := c.ListDivisions(ctx)
		if err != nil {
			return out, nil, fmt.Errorf("list divisions: %w", err)
		}
		var divIDs []string
		for i, name := range divs {
			found := false
			for _, d := range all {
				if strings.EqualFold(d.Name, name) {
					divIDs, found = append(divIDs, d.ID), true
				}
			}
			if !found {
				errs.add(fmt.Sprintf("select.divisions[%d]", i), "no division %q in the source org", name)
			}
		}
		if len(divIDs) > 0 {
			users, err := c.SearchUsers(ctx, []genesys.SearchCriterion{{Field: "divisionId", Values: divIDs}})
			if err != nil {
				return out, nil, fmt.Errorf("search users of divisions %v: %w", divs, err)
			}
			for _, u := range users {
				out.users[u.ID] = u
			}
		}
	}
	for _, s := range sel.GetSearch() {
		criteria = append(criteria, genesys.SearchCriterion{Field: s.GetField(), Values: s.GetValues(), Type: s.GetType()})
	}
	if len(criteria) > 0 {
		users, err := c.SearchUsers(ctx, criteria)
		if err != nil {
			return out, nil, fmt.Errorf("search users: %w", err)
		}
		for _, u := range users {
			out.users[u.ID] = u
		}
	}
	var unknown []string
	for _, id := range ids {
		if _, ok := out.users[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		users, err := c.ListUsersByID(ctx, unknown)
		if err != nil {
			return out, nil, fmt.Errorf("read %d selected users: %w", len(unknown), err)
		}
		for _, u := range users {
			if u.State != "deleted" {
				out.users[u.ID] = u
			}
		}
		for i, id := range sel.GetUserIds() {
			if _, ok := out.users[id]; !ok {
				errs.add(fmt.Sprintf("select.ids[%d]", i), "no user %s in the source org", id)
			}
		}
	}
	sort.Strings(out.teams)
	return out, errs, nil
}
