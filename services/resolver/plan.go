package resolver

import (
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/component"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// stepSpec is one node of the per-user provisioning graph (DESIGN.md section 5).
type stepSpec struct {
	kind orgsyncv1.StepKind
	id   string
	// needs lists the steps this one depends on.
	needs []orgsyncv1.StepKind
	// components: the step runs when any of them is included (nil = always).
	components []orgsyncv1.Component
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

// userGraph is the dependency graph of a user's steps. Routing components need
// a license (Genesys refuses skills, utilization and queues on unlicensed
// users), so LICENSE runs whenever any of them is included.
var userGraph = []stepSpec{
	{kind: orgsyncv1.StepKind_STEP_KIND_ENSURE_USER, id: "ensure-user"},
	{kind: orgsyncv1.StepKind_STEP_KIND_STAMP_EXTERNAL_ID, id: "external-id", needs: kinds(orgsyncv1.StepKind_STEP_KIND_ENSURE_USER)},
	{kind: orgsyncv1.StepKind_STEP_KIND_LICENSE, id: "license", needs: kinds(orgsyncv1.StepKind_STEP_KIND_ENSURE_USER),
		components: []orgsyncv1.Component{cLicense, cSkills, cLangs, cUtil, cQueues}},
	{kind: orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE, id: "wait-active", needs: kinds(orgsyncv1.StepKind_STEP_KIND_STAMP_EXTERNAL_ID, orgsyncv1.StepKind_STEP_KIND_LICENSE)},
	{kind: orgsyncv1.StepKind_STEP_KIND_PROFILE, id: "profile", needs: kinds(orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE),
		components: []orgsyncv1.Component{cProfile}},
	{kind: orgsyncv1.StepKind_STEP_KIND_ROUTING, id: "routing", needs: kinds(orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE, orgsyncv1.StepKind_STEP_KIND_LICENSE),
		components: []orgsyncv1.Component{cSkills, cLangs, cUtil}},
	{kind: orgsyncv1.StepKind_STEP_KIND_GRANTS, id: "grants", needs: kinds(orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE),
		components: []orgsyncv1.Component{cRoles}},
	{kind: orgsyncv1.StepKind_STEP_KIND_QUEUES, id: "queues", needs: kinds(orgsyncv1.StepKind_STEP_KIND_ROUTING, orgsyncv1.StepKind_STEP_KIND_LICENSE),
		components: []orgsyncv1.Component{cQueues}},
	{kind: orgsyncv1.StepKind_STEP_KIND_TEAM, id: "team", needs: kinds(orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE),
		components: []orgsyncv1.Component{cTeam}},
	{kind: orgsyncv1.StepKind_STEP_KIND_PHONE, id: "phone", needs: kinds(orgsyncv1.StepKind_STEP_KIND_PROFILE, orgsyncv1.StepKind_STEP_KIND_WAIT_ACTIVE),
		components: []orgsyncv1.Component{cPhone}},
	// Post-bind verification: the agent can receive work (skills, capacity,
	// queues), read back after every binding step.
	{kind: orgsyncv1.StepKind_STEP_KIND_VERIFY, id: "verify", needs: kinds(orgsyncv1.StepKind_STEP_KIND_ROUTING, orgsyncv1.StepKind_STEP_KIND_QUEUES,
		orgsyncv1.StepKind_STEP_KIND_GRANTS, orgsyncv1.StepKind_STEP_KIND_TEAM, orgsyncv1.StepKind_STEP_KIND_PHONE),
		components: []orgsyncv1.Component{cSkills, cLangs, cUtil, cQueues}},
}

func kinds(k ...orgsyncv1.StepKind) []orgsyncv1.StepKind { return k }

// resourceOrder is the order shared resources are ensured or checked in:
// what must pre-exist first (pre-flight), then what orgsync creates.
var resourceOrder = map[orgsyncv1.ResourceType]int{
	orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION: 0,
	orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE:  1,
	orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE:     2,
	orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE:    3,
	orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL:    4,
	orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE: 5,
	orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM:     6,
}

// PlanInput is what BuildPlan needs for one target.
type PlanInput struct {
	Snapshot *orgsyncv1.Snapshot
	Target   string
	// EmailRule maps emails for this target (nil keeps the source email).
	EmailRule *orgsyncv1.EmailMapping
}

// BuildPlan turns a snapshot into the plan of one target org: the resources
// the users need, the users in dependency order (managers first) with their
// emails mapped, and each user's steps sorted topologically. It is a pure
// function of its input, so a replayed snapshot yields the same plan and the
// same plan id.
func BuildPlan(in PlanInput) (*orgsyncv1.Plan, error) {
	snap := in.Snapshot
	if in.Target == snap.GetSourceOrg() {
		return nil, fmt.Errorf("plan: target %q is the source org", in.Target)
	}
	include := snap.GetOptions().GetInclude()
	rule := in.EmailRule
	if r, ok := snap.GetOptions().GetEmailMapping()[in.Target]; ok {
		rule = r
	}

	steps, err := userSteps(include)
	if err != nil {
		return nil, err
	}
	users, err := orderUsers(snap.GetUsers())
	if err != nil {
		return nil, err
	}

	plan := &orgsyncv1.Plan{
		PlanId:           planID(snap, in.Target),
		RequestId:        snap.GetRequestId(),
		SourceOrg:        snap.GetSourceOrg(),
		TargetOrg:        in.Target,
		Trigger:          snap.GetTrigger(),
		DryRun:           snap.GetOptions().GetDryRun(),
		ExistingUsers:    snap.GetOptions().GetExistingUsers(),
		RequestUserCount: int32(len(users)),
		Part:             snap.GetPart(),
		Parts:            snap.GetParts(),
	}
	needed := map[string]bool{}
	for _, u := range users {
		desired := proto.Clone(u).(*orgsyncv1.UserConfig)
		desired.Email, err = MapEmail(u.GetEmail(), rule)
		if err != nil {
			return nil, fmt.Errorf("plan for %s, user %s: %w", in.Target, u.GetExternalId(), err)
		}
		if u.GetManagerEmail() != "" {
			if desired.ManagerEmail, err = MapEmail(u.GetManagerEmail(), rule); err != nil {
				return nil, fmt.Errorf("plan for %s, manager of %s: %w", in.Target, u.GetExternalId(), err)
			}
		}
		for _, ref := range refs(desired, include) {
			needed[ref] = true
		}
		plan.Users = append(plan.Users, &orgsyncv1.UserPlan{
			Desired: desired,
			Steps:   cloneSteps(steps),
			Include: include,
		})
	}
	for _, r := range snap.GetResources() {
		if needed[r.GetExternalId()] {
			plan.Resources = append(plan.Resources, r)
		}
	}
	sort.SliceStable(plan.Resources, func(i, j int) bool {
		a, b := plan.Resources[i], plan.Resources[j]
		if resourceOrder[a.GetType()] != resourceOrder[b.GetType()] {
			return resourceOrder[a.GetType()] < resourceOrder[b.GetType()]
		}
		return a.GetExternalId() < b.GetExternalId()
	})
	for ref := range needed {
		if !slices.ContainsFunc(plan.Resources, func(r *orgsyncv1.Resource) bool { return r.GetExternalId() == ref }) {
			return nil, fmt.Errorf("plan for %s: reference %q is not among the snapshot's resources", in.Target, ref)
		}
	}
	return plan, nil
}

// refs lists the resource external ids a user's included components need.
func refs(u *orgsyncv1.UserConfig, include []orgsyncv1.Component) []string {
	var out []string
	add := func(c orgsyncv1.Component, ids ...string) {
		if component.Included(include, c) {
			for _, id := range ids {
				if id != "" {
					out = append(out, id)
				}
			}
		}
	}
	out = append(out, u.GetDivisionRef())
	for _, s := range u.GetSkills() {
		add(cSkills, s.GetRef())
	}
	for _, l := range u.GetLanguages() {
		add(cLangs, l.GetRef())
	}
	add(cTeam, u.GetTeamRef())
	for _, g := range u.GetGrants() {
		add(cRoles, g.GetRoleRef(), g.GetDivisionRef())
	}
	add(cQueues, u.GetQueueRefs()...)
	if component.Included(include, cLicense) || component.Included(include, cSkills) || component.Included(include, cLangs) || component.Included(include, cUtil) || component.Included(include, cQueues) {
		out = append(out, u.GetLicenseRefs()...)
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// userSteps selects the steps the included components need and sorts them
// topologically (Kahn, ties broken by graph order so the result is stable).
func userSteps(include []orgsyncv1.Component) ([]*orgsyncv1.Step, error) {
	selected := map[orgsyncv1.StepKind]stepSpec{}
	for _, s := range userGraph {
		if s.components == nil || slices.ContainsFunc(s.components, func(c orgsyncv1.Component) bool { return component.Included(include, c) }) {
			selected[s.kind] = s
		}
	}
	indeg := map[orgsyncv1.StepKind]int{}
	for k, s := range selected {
		for _, n := range s.needs {
			if _, ok := selected[n]; ok {
				indeg[k]++
			}
		}
	}
	var out []*orgsyncv1.Step
	done := map[orgsyncv1.StepKind]bool{}
	for len(out) < len(selected) {
		progressed := false
		for _, s := range userGraph {
			if _, ok := selected[s.kind]; !ok || done[s.kind] || indeg[s.kind] > 0 {
				continue
			}
			step := &orgsyncv1.Step{Id: s.id, Kind: s.kind}
			for _, n := range s.needs {
				if dep, ok := selected[n]; ok {
					step.DependsOn = append(step.DependsOn, dep.id)
				}
			}
			out = append(out, step)
			done[s.kind] = true
			progressed = true
			for k, other := range selected {
				if slices.Contains(other.needs, s.kind) {
					indeg[k]--
				}
			}
		}
		if !progressed {
			return nil, fmt.Errorf("plan: step graph has a cycle")
		}
	}
	return out, nil
}

func cloneSteps(in []*orgsyncv1.Step) []*orgsyncv1.Step {
	out := make([]*orgsyncv1.Step, len(in))
	for i, s := range in {
		out[i] = proto.Clone(s).(*orgsyncv1.Step)
	}
	return out
}

// orderUsers puts managers before the users they manage (when both are in the
// snapshot), keeping the snapshot order otherwise. A management cycle is
// reported: the profile step could never set both managers.
func orderUsers(users []*orgsyncv1.UserConfig) ([]*orgsyncv1.UserConfig, error) {
	byID := map[string]*orgsyncv1.UserConfig{}
	for _, u := range users {
		if u.GetExternalId() == "" || u.GetEmail() == "" {
			return nil, fmt.Errorf("plan: user %q in snapshot has no external id or email", u.GetSourceUserId())
		}
		if _, dup := byID[u.GetExternalId()]; dup {
			return nil, fmt.Errorf("plan: user %s appears twice in the snapshot", u.GetExternalId())
		}
		byID[u.GetExternalId()] = u
	}
	var out []*orgsyncv1.UserConfig
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(u *orgsyncv1.UserConfig, path []string) error
	visit = func(u *orgsyncv1.UserConfig, path []string) error {
		id := u.GetExternalId()
		switch state[id] {
		case 1:
			return fmt.Errorf("plan: management cycle: %v", append(path, id))
		case 2:
			return nil
		}
		state[id] = 1
		if m, ok := byID[u.GetManagerRef()]; ok && m != u {
			if err := visit(m, append(path, id)); err != nil {
				return err
			}
		}
		state[id] = 2
		out = append(out, u)
		return nil
	}
	for _, u := range users {
		if err := visit(u, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
