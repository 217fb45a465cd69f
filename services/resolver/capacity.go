package resolver

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/component"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Capacity policies of a target (Config.CapacityPolicy).
const (
	// CapacityRepair (the default) gives a user whose effective source
	// capacity the target's default utilization would not reproduce
	// agent-level utilization equal to the source's effective capacity.
	CapacityRepair = "repair"
	// CapacityReject fails the target's plan, before anything is written,
	// naming every user, media type and both capacities.
	CapacityReject = "reject"
)

// ValidCapacityPolicy reports whether p is a known policy ("" = repair).
func ValidCapacityPolicy(p string) bool { return p == "" || p == CapacityRepair || p == CapacityReject }

// CapacityMismatch is one media type whose capacity in the target would
// differ from the user's effective capacity in the source.
type CapacityMismatch struct {
	User   string // the user's email in the target
	Media  string // Genesys media type ("call", "chat", ...)
	Source int    // effective maximum capacity in the source
	Target int    // what the target org's default would give (0 when absent)
}

func (m CapacityMismatch) String() string {
	return fmt.Sprintf("user %s: %s capacity %d in the source, %d by the target's default utilization", m.User, m.Media, m.Source, m.Target)
}

// CapacityError rejects a target's plan under the "reject" policy.
type CapacityError struct {
	Target     string
	Mismatches []CapacityMismatch // by user (plan order), then media type
}

func (e *CapacityError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = m.String()
	}
	return fmt.Sprintf("pre-flight: capacity mismatch in %s (policy reject; set agent utilization or the target's default, or use policy repair): %s",
		e.Target, strings.Join(parts, "; "))
}

// sourceDefaultUtilization returns the source org's default utilization:
// the snapshot's when the extractor carried it, else read from the source
// org (one call per snapshot). It returns nil without reading when no user
// of the snapshot inherits the org default.
func sourceDefaultUtilization(ctx context.Context, src *genesys.Client, snap *orgsyncv1.Snapshot) (*orgsyncv1.Utilization, error) {
	if u := snap.GetSourceOrgUtilization(); len(u.GetMedia()) > 0 {
		return u, nil
	}
	inherits := slices.ContainsFunc(snap.GetUsers(), func(u *orgsyncv1.UserConfig) bool { return len(u.GetUtilization().GetMedia()) == 0 })
	if !inherits || src == nil {
		return nil, nil
	}
	got, err := src.GetOrgUtilization(ctx)
	if err != nil {
		return nil, fmt.Errorf("capacity pre-flight: read the default utilization of source org %s: %w", snap.GetSourceOrg(), err)
	}
	return utilizationProto(got), nil
}

// utilizationProto converts a Genesys utilization (media types sorted).
func utilizationProto(u *genesys.Utilization) *orgsyncv1.Utilization {
	out := &orgsyncv1.Utilization{}
	for _, media := range sortedMedia(u.Utilization) {
		m := u.Utilization[media]
		it := slices.Clone(m.InterruptableMediaTypes)
		slices.Sort(it)
		out.Media = append(out.Media, &orgsyncv1.MediaCapacity{MediaType: media, MaximumCapacity: int32(m.MaximumCapacity),
			InterruptibleMediaTypes: it, IncludeNonAcd: m.IncludeNonAcd})
	}
	return out
}

func sortedMedia(m map[string]genesys.MediaUtilization) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CheckCapacity is the capacity pre-flight of one target's plan. Every user
// whose utilization component is included and who inherits the source
// org's default (no agent-level utilization) is compared, per media type
// of the source default, with what the target org's default (one read,
// client tgt) would give. Users with agent-level utilization need nothing:
// the provisioner sets exactly that in the target. Skills and languages
// are created in the target when missing, so they cannot fall short here;
// the provisioner's post-bind verification proves them after binding.
//
// Under CapacityReject a mismatch returns a *CapacityError and the plan is
// unchanged; under CapacityRepair (or "") each mismatched user's desired
// utilization becomes the source default and a CapacityRepair is recorded
// in plan.CapacityRepairs. plan.SourceOrgUtilization is set to srcDefault
// either way (the verification's reference).
func CheckCapacity(ctx context.Context, tgt *genesys.Client, plan *orgsyncv1.Plan, srcDefault *orgsyncv1.Utilization, policy string) error {
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "resolver.preflight.capacity")
	defer span.End()
	if len(srcDefault.GetMedia()) > 0 {
		plan.SourceOrgUtilization = srcDefault
	}
	var inheriting []*orgsyncv1.UserPlan
	for _, up := range plan.GetUsers() {
		if component.Included(up.GetInclude(), cUtil) && len(up.GetDesired().GetUtilization().GetMedia()) == 0 {
			inheriting = append(inheriting, up)
		}
	}
	if len(inheriting) == 0 || len(srcDefault.GetMedia()) == 0 {
		return nil
	}
	tgtDefault, err := tgt.GetOrgUtilization(ctx)
	if err != nil {
		return fmt.Errorf("capacity pre-flight: read the default utilization of %s: %w", plan.GetTargetOrg(), err)
	}
	var diffs []*orgsyncv1.FieldDiff
	var mismatches []CapacityMismatch
	for _, m := range srcDefault.GetMedia() {
		got := tgtDefault.Utilization[m.GetMediaType()].MaximumCapacity
		if int(m.GetMaximumCapacity()) != got {
			diffs = append(diffs, &orgsyncv1.FieldDiff{Field: "utilization." + m.GetMediaType() + ".maximumCapacity",
				Want: strconv.Itoa(int(m.GetMaximumCapacity())), Got: strconv.Itoa(got)})
			mismatches = append(mismatches, CapacityMismatch{Media: m.GetMediaType(), Source: int(m.GetMaximumCapacity()), Target: got})
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if policy == CapacityReject {
		e := &CapacityError{Target: plan.GetTargetOrg()}
		for _, up := range inheriting {
			for _, m := range mismatches {
				m.User = up.GetDesired().GetEmail()
				e.Mismatches = append(e.Mismatches, m)
			}
		}
		return e
	}
	for _, up := range inheriting {
		up.Desired.Utilization = proto.Clone(srcDefault).(*orgsyncv1.Utilization)
		rep := &orgsyncv1.CapacityRepair{UserExternalId: up.GetDesired().GetExternalId()}
		for _, d := range diffs {
			rep.Diffs = append(rep.Diffs, proto.Clone(d).(*orgsyncv1.FieldDiff))
		}
		plan.CapacityRepairs = append(plan.CapacityRepairs, rep)
	}
	return nil
}

// sourceDefault is the source org's default utilization for a snapshot
// (see sourceDefaultUtilization); a source org the registry does not know
// yields nil (no capacity pre-flight for inheriting users).
func (s *Service) sourceDefault(ctx context.Context, snap *orgsyncv1.Snapshot) (*orgsyncv1.Utilization, error) {
	src, err := s.deps.Clients.Client(snap.GetSourceOrg())
	if err != nil {
		s.log.Warn("capacity pre-flight without the source default utilization", "source_org", snap.GetSourceOrg(), "err", err)
		src = nil
	}
	return sourceDefaultUtilization(ctx, src, snap)
}

// auditCapacityRepairs records the capacity repairs of a published plan as
// one AUDIT event of the target (diffs: per media type, source capacity as
// want, target default as got). A dry run writes nothing into the audit trail.
func (s *Service) auditCapacityRepairs(ctx context.Context, plan *orgsyncv1.Plan) error {
	reps := plan.GetCapacityRepairs()
	if len(reps) == 0 || plan.GetDryRun() {
		return nil
	}
	users := make([]string, len(reps))
	for i, r := range reps {
		users[i] = r.GetUserExternalId()
	}
	return s.deps.Events.Emit(ctx, &orgsyncv1.Event{
		Kind: orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: orgsyncv1.Status_STATUS_PLANNED,
		RequestId: plan.GetRequestId(), PlanId: plan.GetPlanId(), Org: plan.GetTargetOrg(), SourceOrg: plan.GetSourceOrg(),
		Step:    "capacity-preflight",
		Message: fmt.Sprintf("capacity repaired for %d user(s): agent-level utilization set to the source's effective capacity", len(reps)),
		Reason:  "the target's default utilization differs from the source's for users who inherit it",
		Diffs:   reps[0].GetDiffs(),
		Attributes: map[string]string{"decision": "capacity_repair", "policy": CapacityRepair,
			"users": strings.Join(users, ",")},
	})
}
