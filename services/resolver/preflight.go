package resolver

import (
	"context"
	"fmt"
	"strings"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Missing is an object a plan needs that the target org lacks and orgsync
// cannot create (roles, queues, divisions, license definitions).
type Missing struct {
	Type orgsyncv1.ResourceType
	Name string
}

func (m Missing) String() string { return fmt.Sprintf("%s %q", extid.TypeName(m.Type), m.Name) }

// PreflightError fails one target's plan before anything is written there.
type PreflightError struct {
	Target  string
	Missing []Missing // in plan resource order
}

func (e *PreflightError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		parts[i] = m.String()
	}
	return fmt.Sprintf("pre-flight: target %s lacks %d object(s) orgsync cannot create: %s",
		e.Target, len(e.Missing), strings.Join(parts, ", "))
}

// mustPreexist lists the resource types a target must already hold.
var mustPreexist = map[orgsyncv1.ResourceType]bool{
	orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE:     true,
	orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:    true,
	orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION: true,
	orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE:  true,
}

// Preflight checks, read-only, that every ROLE, QUEUE, DIVISION and LICENSE
// resource of plan exists in the target (client c) under its exact name,
// and records the target ids found in plan.KnownTargetIds (by external id).
// Roles and queues are looked up by name the way the provisioner finds them
// (FindRoleByName, FindQueueByName: the exact name, or the one name equal
// ignoring case); divisions and license definitions are listed once. It returns a *PreflightError naming every missing object, or the
// API error that prevented the check.
func Preflight(ctx context.Context, c *genesys.Client, plan *orgsyncv1.Plan) error {
	return preflight(ctx, c, plan, nil)
}

// preflight is Preflight consulting and filling cache (nil: none).
func preflight(ctx context.Context, c *genesys.Client, plan *orgsyncv1.Plan, cache *lookupCache) error {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.preflight")
	defer span.End()
	var divisions, licenses map[string]string // name → id, listed lazily once
	var missing []Missing
	known := map[string]string{}
	for _, r := range plan.GetResources() {
		if !mustPreexist[r.GetType()] {
			continue
		}
		if id, ok := cache.get(plan.GetTargetOrg(), r.GetExternalId()); ok {
			known[r.GetExternalId()] = id
			continue
		}
		var id string
		var found bool
		var err error
		switch r.GetType() {
		case orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION:
			if divisions == nil {
				if divisions, err = listDivisions(ctx, c); err != nil {
					return fmt.Errorf("pre-flight of %s: %w", plan.GetTargetOrg(), err)
				}
			}
			id, found = divisions[r.GetName()]
		case orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE:
			if licenses == nil {
				if licenses, err = listLicenses(ctx, c); err != nil {
					return fmt.Errorf("pre-flight of %s: %w", plan.GetTargetOrg(), err)
				}
			}
			id, found = licenses[r.GetName()]
		case orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE:
			role, ok, err := c.FindRoleByName(ctx, r.GetName())
			if err != nil {
				return fmt.Errorf("pre-flight of %s: look up role %q: %w", plan.GetTargetOrg(), r.GetName(), err)
			}
			id, found = role.ID, ok
		case orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:
			queue, ok, err := c.FindQueueByName(ctx, r.GetName())
			if err != nil {
				return fmt.Errorf("pre-flight of %s: look up queue %q: %w", plan.GetTargetOrg(), r.GetName(), err)
			}
			id, found = queue.ID, ok
		}
		if !found {
			missing = append(missing, Missing{Type: r.GetType(), Name: r.GetName()})
			continue
		}
		known[r.GetExternalId()] = id
		cache.put(plan.GetTargetOrg(), r.GetExternalId(), id)
	}
	if len(missing) > 0 {
		return &PreflightError{Target: plan.GetTargetOrg(), Missing: missing}
	}
	if len(known) > 0 {
		plan.KnownTargetIds = known
	}
	return nil
}

func listDivisions(ctx context.Context, c *genesys.Client) (map[string]string, error) {
	all, err := c.ListDivisions(ctx)
	if err != nil {
		return nil, fmt.Errorf("list divisions: %w", err)
	}
	out := make(map[string]string, len(all))
	for _, d := range all {
		out[d.Name] = d.ID
	}
	return out, nil
}

// listLicenses maps license definition ids (their cross-org name, e.g.
// "cx2") to themselves.
func listLicenses(ctx context.Context, c *genesys.Client) (map[string]string, error) {
	all, err := c.ListLicenseDefinitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("list license definitions: %w", err)
	}
	out := make(map[string]string, len(all))
	for _, l := range all {
		out[l.ID] = l.ID
	}
	return out, nil
}
