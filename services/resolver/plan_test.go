package resolver

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func res(t orgsyncv1.ResourceType, name string) *orgsyncv1.Resource {
	return &orgsyncv1.Resource{ExternalId: extid.Resource("src", t, name), Type: t, Name: name}
}

func testSnapshot() *orgsyncv1.Snapshot {
	skill := res(orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, "Billing Support")
	team := res(orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM, "Tier 2")
	queue := res(orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE, "Billing")
	div := res(orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION, "Home")
	lic := res(orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE, "CX 2")
	role := res(orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE, "Agent")
	unused := res(orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, "Unused")
	boss := &orgsyncv1.UserConfig{ExternalId: extid.User("src", "boss@src.example.com"), Email: "boss@src.example.com", DivisionRef: div.ExternalId}
	agent := &orgsyncv1.UserConfig{
		ExternalId: extid.User("src", "jane@src.example.com"), Email: "jane@src.example.com",
		ManagerRef: boss.ExternalId, ManagerEmail: boss.Email, DivisionRef: div.ExternalId,
		Skills:  []*orgsyncv1.Proficiency{{Ref: skill.ExternalId, Proficiency: 4}},
		TeamRef: team.ExternalId, QueueRefs: []string{queue.ExternalId}, LicenseRefs: []string{lic.ExternalId},
		Grants: []*orgsyncv1.Grant{{RoleRef: role.ExternalId, DivisionRef: div.ExternalId}},
	}
	return &orgsyncv1.Snapshot{
		RequestId: "req-1", SourceOrg: "src", TargetOrgs: []string{"t1"},
		Users:     []*orgsyncv1.UserConfig{agent, boss},
		Resources: []*orgsyncv1.Resource{unused, skill, team, queue, div, lic, role},
	}
}

func stepIDs(steps []*orgsyncv1.Step) string {
	var ids []string
	for _, s := range steps {
		ids = append(ids, s.GetId())
	}
	return strings.Join(ids, ",")
}

func TestBuildPlanOrdersEverything(t *testing.T) {
	plan, err := BuildPlan(PlanInput{Snapshot: testSnapshot(), Target: "t1",
		EmailRule: &orgsyncv1.EmailMapping{FromDomain: "src.example.com", ToDomain: "t1.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.GetPlanId() != "req-1|t1" {
		t.Errorf("plan id %q", plan.GetPlanId())
	}
	// Managers first, emails mapped for the target.
	if got := plan.Users[0].Desired.GetEmail(); got != "boss@t1.example.com" {
		t.Errorf("first user %q, want the manager", got)
	}
	if got := plan.Users[1].Desired.GetManagerEmail(); got != "boss@t1.example.com" {
		t.Errorf("manager email %q", got)
	}
	// Source snapshot untouched.
	if testSnapshot().Users[0].Email != "jane@src.example.com" {
		t.Fatal("snapshot mutated")
	}
	want := "ensure-user,external-id,license,wait-active,profile,routing,grants,queues,team,phone,verify"
	if got := stepIDs(plan.Users[1].Steps); got != want {
		t.Errorf("steps %s\nwant  %s", got, want)
	}
	// Only referenced resources, pre-existing kinds first.
	var types []string
	for _, r := range plan.Resources {
		types = append(types, extid.TypeName(r.GetType()))
	}
	if got := strings.Join(types, ","); got != "DIVISION,LICENSE,ROLE,QUEUE,SKILL,TEAM" {
		t.Errorf("resources %s", got)
	}
	again, _ := BuildPlan(PlanInput{Snapshot: testSnapshot(), Target: "t1",
		EmailRule: &orgsyncv1.EmailMapping{FromDomain: "src.example.com", ToDomain: "t1.example.com"}})
	if !proto.Equal(plan, again) {
		t.Error("BuildPlan is not deterministic")
	}
}

func TestBuildPlanIncludeSubset(t *testing.T) {
	snap := testSnapshot()
	snap.Options = &orgsyncv1.CloneOptions{Include: []orgsyncv1.Component{orgsyncv1.Component_COMPONENT_TEAM}}
	plan, err := BuildPlan(PlanInput{Snapshot: snap, Target: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := stepIDs(plan.Users[1].Steps); got != "ensure-user,external-id,wait-active,team" {
		t.Errorf("steps %s", got)
	}
	for _, r := range plan.Resources {
		if r.GetType() == orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL || r.GetType() == orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE {
			t.Errorf("resource %s not needed by TEAM only", r.GetExternalId())
		}
	}
}

func TestBuildPlanRejects(t *testing.T) {
	cycle := testSnapshot()
	cycle.Users[1].ManagerRef = cycle.Users[0].ExternalId
	badRule := testSnapshot()
	badRule.Options = &orgsyncv1.CloneOptions{EmailMapping: map[string]*orgsyncv1.EmailMapping{"t1": {ToDomain: "not a domain"}}}
	dangling := testSnapshot()
	dangling.Resources = dangling.Resources[:1]
	for name, tc := range map[string]struct {
		in   PlanInput
		want string
	}{
		"source as target": {PlanInput{Snapshot: testSnapshot(), Target: "src"}, "is the source org"},
		"management cycle": {PlanInput{Snapshot: cycle, Target: "t1"}, "management cycle"},
		"bad email rule":   {PlanInput{Snapshot: badRule, Target: "t1"}, "not a valid domain"},
		"dangling ref":     {PlanInput{Snapshot: dangling, Target: "t1"}, "not among the snapshot's resources"},
	} {
		if _, err := BuildPlan(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestMapEmail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		rule *orgsyncv1.EmailMapping
		want string
	}{
		{"a@x.com", nil, "a@x.com"},
		{"a@x.com", &orgsyncv1.EmailMapping{ToDomain: "Y.com"}, "a@y.com"},
		{"a@x.com", &orgsyncv1.EmailMapping{FromDomain: "other.com", ToDomain: "y.com"}, "a@x.com"},
		{"a@X.com", &orgsyncv1.EmailMapping{FromDomain: "x.com", ToDomain: "y.com"}, "a@y.com"},
	} {
		got, err := MapEmail(tc.in, tc.rule)
		if err != nil || got != tc.want {
			t.Errorf("MapEmail(%q, %v) = %q, %v; want %q", tc.in, tc.rule, got, err, tc.want)
		}
	}
	if _, err := MapEmail("not-an-email", nil); err == nil {
		t.Error("invalid source email accepted")
	}
}

// snapshot50 is testSnapshot grown to a 50-resource graph (44 more skills,
// all held by the first user).
func snapshot50() *orgsyncv1.Snapshot {
	snap := testSnapshot()
	for i := range 44 {
		r := res(orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL, "Skill "+string(rune('A'+i%26))+string(rune('a'+i/26)))
		snap.Resources = append(snap.Resources, r)
		snap.Users[0].Skills = append(snap.Users[0].Skills, &orgsyncv1.Proficiency{Ref: r.ExternalId, Proficiency: 3})
	}
	return snap
}

func BenchmarkBuildPlan50(b *testing.B) {
	snap := snapshot50()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildPlan(PlanInput{Snapshot: snap, Target: "t1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotProtoRoundTrip encodes and decodes the 50-resource
// Snapshot, as the extractor publishes it and the resolver reads it.
func BenchmarkSnapshotProtoRoundTrip(b *testing.B) {
	snap := snapshot50()
	raw, err := proto.Marshal(snap)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := proto.Marshal(snap)
		if err != nil {
			b.Fatal(err)
		}
		var back orgsyncv1.Snapshot
		if err := proto.Unmarshal(out, &back); err != nil {
			b.Fatal(err)
		}
	}
}
