package provisioner

import (
	"context"
	"fmt"
	"strings"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// resolveResources translates every shared resource of the plan into a
// target id, in the plan's (dependency) order.
//
//   - DIVISION, LICENSE, ROLE, QUEUE must exist: the resolver's pre-flight
//     ids (known_target_ids), else the bbolt translation, else a lookup by
//     exact name. Missing → the plan fails (orgsync never creates them).
//   - SKILL, LANGUAGE, TEAM: bbolt translation, else Ensure* (exact name,
//     created when missing), recorded in bbolt. Concurrent plans of the org
//     share one resolution per resource (singleflight), and the client's
//     create is lookup-before-create, so each is created at most once.
//
// In a dry run nothing is created: a missing resource resolves to a
// placeholder and later steps report it as a planned creation.
func (r *run) resolveResources(ctx context.Context) error {
	for _, res := range r.plan.GetResources() {
		ext := res.GetExternalId()
		switch res.GetType() {
		case orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION, orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE,
			orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE, orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:
			if id := r.plan.GetKnownTargetIds()[ext]; id != "" {
				r.setID(ext, id)
				continue
			}
			id, err := r.lookupExisting(ctx, res)
			if err != nil {
				return err
			}
			r.setID(ext, id)
		case orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE,
			orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM:
			id, err := r.ensureShared(ctx, res)
			if err != nil {
				return err
			}
			r.setID(ext, id)
		default:
			return failPlan("provisioner: plan %s: resource %s has unsupported type %v", r.plan.GetPlanId(), ext, res.GetType())
		}
	}
	return nil
}

// lookupExisting finds a resource that must pre-exist in the target: its
// translation, else by name.
func (r *run) lookupExisting(ctx context.Context, res *orgsyncv1.Resource) (string, error) {
	if id, ok, err := r.e.deps.Store.TargetID(r.org, res.GetExternalId()); err != nil {
		return "", err
	} else if ok {
		return id, nil
	}
	return r.lookupByName(ctx, res)
}

// lookupByName finds a resource that must pre-exist in the target by its
// exact name and records the translation; missing, the plan fails.
func (r *run) lookupByName(ctx context.Context, res *orgsyncv1.Resource) (string, error) {
	ext, name := res.GetExternalId(), res.GetName()
	var id string
	var found bool
	err := r.m.call(ctx, nil, func(ctx context.Context) error {
		switch res.GetType() {
		case orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION:
			divs, err := r.c.ListDivisions(ctx)
			if err != nil {
				return err
			}
			for _, d := range divs {
				if d.Name == name {
					id, found = d.ID, true
				}
			}
		case orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE:
			defs, err := r.c.ListLicenseDefinitions(ctx)
			if err != nil {
				return err
			}
			for _, d := range defs {
				if d.ID == name || d.Description == name {
					id, found = d.ID, true
				}
			}
		case orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE:
			role, ok, err := r.c.FindRoleByName(ctx, name)
			if err != nil {
				return err
			}
			id, found = role.ID, ok
		case orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:
			q, ok, err := r.c.FindQueueByName(ctx, name)
			if err != nil {
				return err
			}
			id, found = q.ID, ok
		}
		return nil
	})
	if err != nil {
		return "", r.resourceErr(res, "look up", err)
	}
	if !found {
		return "", failPlan("provisioner: plan %s: %s %q does not exist in target %s (orgsync does not create %s; create it or fix the source)",
			r.plan.GetPlanId(), typeWord(res.GetType()), name, r.org, typeWord(res.GetType())+"s")
	}
	if err := r.e.deps.Store.PutTargetID(r.org, ext, id); err != nil {
		return "", err
	}
	return id, nil
}

// ensureShared resolves (and outside a dry run creates) a skill, language or team.
func (r *run) ensureShared(ctx context.Context, res *orgsyncv1.Resource) (string, error) {
	ext := res.GetExternalId()
	if id, ok, err := r.e.deps.Store.TargetID(r.org, ext); err != nil {
		return "", err
	} else if ok {
		return id, nil
	}
	if r.dry {
		id, found, err := r.findShared(ctx, res)
		if err != nil {
			return "", r.resourceErr(res, "look up", err)
		}
		if !found {
			r.planCreate(res)
			return placeholder(res), nil
		}
		return id, nil
	}
	// One resolution per (org, resource) at a time in this process; the
	// winner records the translation, the others read it back.
	v, err, _ := r.e.flight.Do(r.org+"\x00"+ext, func() (any, error) {
		if id, ok, err := r.e.deps.Store.TargetID(r.org, ext); err != nil || ok {
			return id, err
		}
		var id string
		var created bool
		err := r.m.call(ctx, nil, func(ctx context.Context) error {
			var err error
			id, created, err = r.ensureRemote(ctx, res)
			return err
		})
		if err != nil {
			return "", r.resourceErr(res, "ensure", err)
		}
		if created {
			if err := r.e.deps.Store.MarkCreated(r.org, ext, id); err != nil {
				return "", err
			}
		}
		return id, r.e.deps.Store.PutTargetID(r.org, ext, id)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// planCreate records, in a dry run, that res would be created (once).
func (r *run) planCreate(res *orgsyncv1.Resource) {
	r.idsMu.Lock()
	defer r.idsMu.Unlock()
	d := &orgsyncv1.FieldDiff{Field: typeWord(res.GetType()), Want: res.GetName()}
	for _, have := range r.creates {
		if have.GetField() == d.GetField() && have.GetWant() == d.GetWant() {
			return
		}
	}
	r.creates = append(r.creates, d)
}

// placeholder stands, in a dry run, for the id of a resource to be created.
func placeholder(res *orgsyncv1.Resource) string { return "new:" + res.GetName() }

// isPlaceholder reports whether id is a placeholder: the target holds nothing under it.
func isPlaceholder(id string) bool { return strings.HasPrefix(id, "new:") }

// findShared looks a skill, language or team up by exact name.
func (r *run) findShared(ctx context.Context, res *orgsyncv1.Resource) (id string, found bool, err error) {
	err = r.m.call(ctx, nil, func(ctx context.Context) error {
		switch res.GetType() {
		case orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL:
			s, ok, err := r.c.FindSkillByName(ctx, res.GetName())
			id, found = s.ID, ok
			return err
		case orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE:
			l, ok, err := r.c.FindLanguageByName(ctx, res.GetName())
			id, found = l.ID, ok
			return err
		default:
			t, ok, err := r.c.FindTeamByName(ctx, res.GetName())
			id, found = t.ID, ok
			return err
		}
	})
	return id, found, err
}

// ensureRemote finds or creates a shared resource; created says it was made now.
func (r *run) ensureRemote(ctx context.Context, res *orgsyncv1.Resource) (string, bool, error) {
	switch res.GetType() {
	case orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL:
		s, created, err := r.c.EnsureSkill(ctx, res.GetName())
		return s.ID, created, err
	case orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE:
		l, created, err := r.c.EnsureLanguage(ctx, res.GetName())
		return l.ID, created, err
	default:
		t, created, err := r.c.EnsureTeam(ctx, res.GetName(), res.GetDescription(), "")
		return t.ID, created, err
	}
}

// resourceErr wraps a failed resource resolution: a 4xx answer can never
// succeed (plan failure), anything else is transient.
func (r *run) resourceErr(res *orgsyncv1.Resource, what string, err error) error {
	err = fmt.Errorf("provisioner: plan %s: %s %s %q in %s: %w", r.plan.GetPlanId(), what, typeWord(res.GetType()), res.GetName(), r.org, err)
	if permanentForUser(err) {
		return &planFailure{err: err}
	}
	return err
}

func typeWord(t orgsyncv1.ResourceType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "RESOURCE_TYPE_"))
}
