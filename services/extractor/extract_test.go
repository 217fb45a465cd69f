package extractor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/gcsim"
)

// assertMatchesSim compares a user configuration of a snapshot, field by
// field and by names, with what gcsim holds for that user.
func assertMatchesSim(t *testing.T, snap *orgsyncv1.Snapshot, u *orgsyncv1.UserConfig, want gcsim.UserState) {
	t.Helper()
	res := map[string]*orgsyncv1.Resource{}
	for _, r := range snap.GetResources() {
		res[r.GetExternalId()] = r
	}
	name := func(ref string, typ orgsyncv1.ResourceType) string {
		t.Helper()
		if ref == "" {
			return ""
		}
		r, ok := res[ref]
		if !ok {
			t.Errorf("%s: reference %q is not among the snapshot's resources", want.Email, ref)
			return "?"
		}
		if r.GetType() != typ || ref != extid.Resource(snap.GetSourceOrg(), typ, r.GetName()) {
			t.Errorf("%s: resource %q has type %v / name %q, want type %v", want.Email, ref, r.GetType(), r.GetName(), typ)
		}
		return r.GetName()
	}
	check := func(field string, got, wantV any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(wantV) {
			t.Errorf("%s: %s = %v, want %v", want.Email, field, got, wantV)
		}
	}
	check("external_id", u.GetExternalId(), extid.User(snap.GetSourceOrg(), want.Email))
	check("source_user_id", u.GetSourceUserId(), want.ID)
	check("name", u.GetName(), want.Name)
	check("email", u.GetEmail(), want.Email)
	check("title", u.GetTitle(), want.Title)
	check("department", u.GetDepartment(), want.Department)
	check("division", name(u.GetDivisionRef(), orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION), want.Division)
	check("manager_email", u.GetManagerEmail(), want.Manager)
	check("source_version", u.GetSourceVersion(), want.Version)
	prof := func(ps []*orgsyncv1.Proficiency, typ orgsyncv1.ResourceType) map[string]float64 {
		m := map[string]float64{}
		for _, p := range ps {
			m[name(p.GetRef(), typ)] = p.GetProficiency()
		}
		return m
	}
	check("skills", prof(u.GetSkills(), orgsyncv1.ResourceType_RESOURCE_TYPE_SKILL), want.Skills)
	check("languages", prof(u.GetLanguages(), orgsyncv1.ResourceType_RESOURCE_TYPE_LANGUAGE), want.Languages)
	check("team", name(u.GetTeamRef(), orgsyncv1.ResourceType_RESOURCE_TYPE_TEAM), want.Team)
	var queues []string
	for _, q := range u.GetQueueRefs() {
		queues = append(queues, name(q, orgsyncv1.ResourceType_RESOURCE_TYPE_QUEUE))
	}
	sort.Strings(queues)
	check("queues", queues, want.Queues)
	var grants, wantGrants []string
	for _, g := range u.GetGrants() {
		grants = append(grants, name(g.GetRoleRef(), orgsyncv1.ResourceType_RESOURCE_TYPE_ROLE)+"@"+name(g.GetDivisionRef(), orgsyncv1.ResourceType_RESOURCE_TYPE_DIVISION))
	}
	for _, g := range want.Grants {
		wantGrants = append(wantGrants, g.Role+"@"+g.Division)
	}
	sort.Strings(grants)
	sort.Strings(wantGrants)
	check("grants", grants, wantGrants)
	var lics []string
	for _, l := range u.GetLicenseRefs() {
		lics = append(lics, name(l, orgsyncv1.ResourceType_RESOURCE_TYPE_LICENSE))
	}
	check("licenses", lics, want.Licenses)
	var phones, wantPhones []string
	for _, p := range u.GetPhones() {
		phones = append(phones, p.GetAlias()+"="+p.GetSourceNumber()+"/"+p.GetType())
	}
	for _, a := range want.Addresses {
		if a.MediaType == "PHONE" && a.Type == "WORK" {
			wantPhones = append(wantPhones, strings.ToLower(want.Email)+"/work="+a.Address+"/WORK")
		}
	}
	check("phones", phones, wantPhones)
	if want.Utilization == nil {
		if u.GetUtilization() != nil {
			t.Errorf("%s: utilization %v, want none (org level)", want.Email, u.GetUtilization())
		}
	} else {
		got := map[string]string{}
		for _, m := range u.GetUtilization().GetMedia() {
			got[m.GetMediaType()] = fmt.Sprintf("%d %v %v", m.GetMaximumCapacity(), m.GetInterruptibleMediaTypes(), m.GetIncludeNonAcd())
		}
		wantU := map[string]string{}
		for media, m := range want.Utilization {
			it := append([]string(nil), m.InterruptableMediaTypes...)
			sort.Strings(it)
			if len(it) == 0 {
				it = nil
			}
			wantU[media] = fmt.Sprintf("%d %v %v", m.MaximumCapacity, it, m.IncludeNonAcd)
		}
		check("utilization", got, wantU)
	}
}

func sourceUser(t *testing.T, sim *gcsim.Sim, email string) gcsim.UserState {
	t.Helper()
	u, ok := sim.UserByEmail(sourceOrgID, email)
	if !ok {
		t.Fatalf("gcsim has no source user %s", email)
	}
	return u
}

func TestExtractMatchesSourceAndCountsCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := e.clients.Client("src")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// One user by id: what one user costs, org-wide listings included.
	cctx, one := orgs.WithCounter(ctx)
	if _, err := extractor.Extract(cctx, c, "src", []*orgsyncv1.UserSelector{byID(janeID)}, nil); err != nil {
		t.Fatal(err)
	}
	// Both users, Jane by email: listings are shared, per-user calls add up.
	cctx, two := orgs.WithCounter(ctx)
	ex, err := extractor.Extract(cctx, c, "src", []*orgsyncv1.UserSelector{byID(johnID), byEmail(janeEmail)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := extractor.NewSnapshot("req-1", "src", []string{"t1"}, nil, orgsyncv1.Trigger_TRIGGER_CLONE, ex, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Users) != 2 {
		t.Fatalf("%d users extracted, want 2", len(ex.Users))
	}
	assertMatchesSim(t, snap, ex.Users[0], sourceUser(t, e.sim, johnEmail))
	assertMatchesSim(t, snap, ex.Users[1], sourceUser(t, e.sim, janeEmail))
	if got, want := ex.Users[1].GetManagerRef(), extid.User("src", johnEmail); got != want {
		t.Errorf("Jane's manager_ref %q, want %q (John is in the request)", got, want)
	}
	if ex.Users[0].GetManagerRef() != "" || ex.Users[0].GetManagerEmail() != "" {
		t.Errorf("John has no manager, got ref %q email %q", ex.Users[0].GetManagerRef(), ex.Users[0].GetManagerEmail())
	}

	// Resources: exactly the objects the two users reference, once each.
	var names []string
	seen := map[string]bool{}
	for _, r := range ex.Resources {
		if seen[r.GetExternalId()] {
			t.Errorf("resource %s listed twice", r.GetExternalId())
		}
		seen[r.GetExternalId()] = true
		names = append(names, r.GetExternalId())
	}
	want := []string{
		"src|DIVISION|Billing Division", "src|DIVISION|Home",
		"src|LANGUAGE|English", "src|LANGUAGE|Spanish",
		"src|LICENSE|cx2", "src|LICENSE|cx3",
		"src|QUEUE|Billing Queue", "src|QUEUE|Support Queue",
		"src|ROLE|Agent", "src|ROLE|Supervisor", "src|ROLE|employee",
		"src|SKILL|Billing", "src|SKILL|Billing Escalations", "src|SKILL|Billing Support", "src|SKILL|Technical Support",
		"src|TEAM|Billing Team",
	}
	if !slices.Equal(names, want) {
		t.Errorf("resources\n got %v\nwant %v", names, want)
	}

	// Deterministic: extracting again gives the same bytes and snapshot id.
	ex2, err := extractor.Extract(ctx, c, "src", []*orgsyncv1.UserSelector{byID(johnID), byEmail(janeEmail)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap2, err := extractor.NewSnapshot("req-1", "src", []string{"t1"}, nil, orgsyncv1.Trigger_TRIGGER_CLONE, ex2, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetSnapshotId() != snap2.GetSnapshotId() || !proto.Equal(&orgsyncv1.Snapshot{Users: ex.Users, Resources: ex.Resources},
		&orgsyncv1.Snapshot{Users: ex2.Users, Resources: ex2.Resources}) {
		t.Errorf("second extraction differs: ids %s vs %s", snap.GetSnapshotId(), snap2.GetSnapshotId())
	}
	if !strings.HasPrefix(snap.GetSnapshotId(), "req-1|") {
		t.Errorf("snapshot id %q does not start with the request id", snap.GetSnapshotId())
	}

	// API budget. One user by id: 4 per-user reads (the user with skills
	// and languages expanded, utilization, grants, queues), one batched
	// license read per part, 1 read of her manager (not in the request) and
	// at most 7 org-wide listings; with two users the listings and the
	// license read are shared and the email selector costs one search.
	t.Logf("API calls: 1 user (by id) = %v; 2 users (1 by email) = %v", one.Usage(), two.Usage())
	if one.Total() > 13 || two.Total() > 16 {
		t.Errorf("extraction too expensive: 1 user %d calls (budget 13), 2 users %d (budget 16)", one.Total(), two.Total())
	}
	if one.Usage().GetWrites() != 0 || two.Usage().GetWrites() != 0 {
		t.Errorf("extraction wrote to the source org: %v / %v", one.Usage(), two.Usage())
	}
}

func TestExtractOptionsAndEdgeCases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, _ := e.clients.Client("src")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Only skills: no other component is read (fewer calls) or referenced.
	cctx, n := orgs.WithCounter(ctx)
	ex, err := extractor.Extract(cctx, c, "src", []*orgsyncv1.UserSelector{byID(janeID)},
		[]orgsyncv1.Component{orgsyncv1.Component_COMPONENT_SKILLS})
	if err != nil {
		t.Fatal(err)
	}
	u := ex.Users[0]
	if len(u.GetSkills()) != 2 || u.GetTitle() != "" || len(u.GetGrants()) != 0 || len(u.GetQueueRefs()) != 0 ||
		u.GetTeamRef() != "" || u.GetUtilization() != nil || len(u.GetPhones()) != 0 || len(u.GetLicenseRefs()) != 1 {
		t.Errorf("include=[SKILLS] extracted %v", u)
	}
	t.Logf("API calls, 1 user, skills only: %v", n.Usage())

	// Jane alone: her manager is outside the request → email only.
	ex, err = extractor.Extract(ctx, c, "src", []*orgsyncv1.UserSelector{byEmail("JANE.DOE@acme.example"), byID(janeID)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Users) != 1 {
		t.Fatalf("duplicate selectors of one user gave %d users", len(ex.Users))
	}
	if ex.Users[0].GetManagerEmail() != johnEmail || ex.Users[0].GetManagerRef() != "" {
		t.Errorf("manager outside the request: ref %q email %q", ex.Users[0].GetManagerRef(), ex.Users[0].GetManagerEmail())
	}

	// Sam has no license and org-level utilization: no utilization at all.
	ex, err = extractor.Extract(ctx, c, "src", []*orgsyncv1.UserSelector{byEmail("sam.unlicensed@acme.example")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := extractor.NewSnapshot("r", "src", []string{"t1"}, nil, 0, ex, time.Now())
	assertMatchesSim(t, snap, ex.Users[0], sourceUser(t, e.sim, "sam.unlicensed@acme.example"))
	if ex.Users[0].GetUtilization() != nil {
		t.Errorf("org-level utilization extracted as the user's: %v", ex.Users[0].GetUtilization())
	}

	// Unknown users are permanent errors naming the selector.
	for _, sel := range []*orgsyncv1.UserSelector{byEmail("ghost@acme.example"), byID("00000000-0000-4000-8000-000000000000")} {
		_, err := extractor.Extract(ctx, c, "src", []*orgsyncv1.UserSelector{byID(janeID), sel}, nil)
		var nf *extractor.UserNotFoundError
		if !errors.As(err, &nf) || !extractor.IsPermanent(err) {
			t.Errorf("selector %v: err %v, want a permanent UserNotFoundError", sel, err)
		}
	}
}

// TestPartSizesGrow: the first part is small, later parts grow fourfold up
// to the maximum, and every user is in exactly one part.
func TestPartSizesGrow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		z    extractor.PartSizes
		n    int
		want []int
	}{
		{extractor.PartSizes{First: 20, Max: 100}, 330, []int{20, 100, 200, 300, 330}},
		{extractor.PartSizes{First: 20, Max: 100}, 100, []int{20, 100}},
		{extractor.PartSizes{First: 3, Max: 3}, 7, []int{3, 6, 7}},
		{extractor.PartSizes{First: 20}, 50, []int{20, 40, 50}},
		{extractor.PartSizes{First: 5, Max: 100}, 50, []int{5, 25, 50}},
		{extractor.PartSizes{First: 20, Max: 100}, 20, []int{20}},
		{extractor.PartSizes{}, 5, []int{5}},
	} {
		if got := tc.z.Ends(tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("%+v of %d users: part ends %v, want %v", tc.z, tc.n, got, tc.want)
		}
	}
}
