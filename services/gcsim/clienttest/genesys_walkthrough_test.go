package clienttest_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestProvisioningWalkthrough provisions one user in a target org the way
// DESIGN.md section 5 orders the steps, reading back every write. It is
// also what covers the client's remaining operations for the conformance
// check in TestMain.
func TestProvisioningWalkthrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gcsim.Config{NotFoundAfterCreate: 100 * time.Millisecond, ActivationDelay: 200 * time.Millisecond})
	c := e.client(t, acme)
	ctx := ctxT(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Pre-flight reads.
	divs, err := c.ListDivisions(ctx)
	must(err)
	home, err := c.GetHomeDivision(ctx)
	must(err)
	if len(divs) != 2 || home.Name != "Home" {
		t.Fatalf("divisions %+v home %+v", divs, home)
	}
	lics, err := c.ListLicenseDefinitions(ctx)
	must(err)
	if len(lics) == 0 {
		t.Fatal("no license definitions")
	}
	ints, err := c.ListIntegrations(ctx)
	must(err)
	if len(ints) != 1 || ints[0].ReportedState == nil || ints[0].ReportedState.Code != "ACTIVE" {
		t.Fatalf("integrations %+v", ints)
	}
	ns, err := c.ListLimitNamespaces(ctx)
	must(err)
	if len(ns) == 0 {
		t.Fatal("no limit namespaces")
	}
	orgUtil, err := c.GetOrgUtilization(ctx)
	must(err)
	if orgUtil.Utilization["call"].MaximumCapacity != 1 {
		t.Fatalf("org utilization %+v", orgUtil)
	}
	users, err := c.ListUsers(ctx)
	must(err)
	managerIdx := slices.IndexFunc(users, func(u genesys.User) bool { return u.Email == "ann@acme.example" })
	if managerIdx < 0 {
		t.Fatalf("manager not listed among %d users", len(users))
	}
	manager := users[managerIdx]

	// Ensure skills, languages, team.
	skill, _, err := c.EnsureSkill(ctx, "Sales")
	must(err)
	lang, created, err := c.EnsureLanguage(ctx, "German")
	must(err)
	if !created {
		t.Fatal("German existed")
	}
	team, _, err := c.EnsureTeam(ctx, "Team C", "", "")
	must(err)

	// Find or create the user, stamp the external id.
	ext := genesys.ExternalID{AuthorityName: "orgsync", ExternalKey: "SRC|USER|jane"}
	if _, err := c.GetUserByExternalID(ctx, ext.AuthorityName, ext.ExternalKey); !genesys.IsNotFound(err) {
		t.Fatalf("external id lookup before stamping: %v", err)
	}
	jane, err := c.CreateUser(ctx, genesys.CreateUser{Name: "Jane Doe", Email: "jane.doe@acme.example", DivisionID: home.ID, Title: "Agent"})
	must(err)
	err = c.AddUserExternalID(ctx, jane.ID, ext)
	must(err)
	ids, err := c.ListUserExternalIDs(ctx, jane.ID)
	must(err)
	if !slices.Contains(ids, ext) {
		t.Fatalf("external ids %+v", ids)
	}
	byExt, err := c.GetUserByExternalID(ctx, ext.AuthorityName, ext.ExternalKey)
	must(err)
	if byExt.ID != jane.ID {
		t.Fatalf("external id resolves to %s, want %s", byExt.ID, jane.ID)
	}
	// A user created while another holds the stamp: 409, and deleted.
	mistake, err := c.CreateUser(ctx, genesys.CreateUser{Name: "Jane Doe", Email: "jane.doe@other.example", DivisionID: home.ID})
	must(err)
	if err := c.AddUserExternalID(ctx, mistake.ID, ext); genesys.StatusOf(err) != http.StatusConflict {
		t.Fatalf("stamping a second user with %v: %v, want 409", ext, err)
	}
	must(c.DeleteUser(ctx, mistake.ID))
	if _, found, err := c.FindUserByEmail(ctx, mistake.Email); err != nil || found {
		t.Fatalf("deleted user still found by email (%v)", err)
	}

	// License, wait for active.
	_, err = c.AssignLicenses(ctx, []genesys.LicenseAssignment{{LicenseID: lics[0].ID, UserIDsAdd: []string{jane.ID, manager.ID}}})
	must(err)
	lu, err := c.GetUserLicenses(ctx, jane.ID)
	must(err)
	if !slices.ContainsFunc(lu.Licenses, func(l genesys.LicenseDefinition) bool { return l.ID == lics[0].ID }) {
		t.Fatalf("licenses %+v", lu)
	}
	batch, err := c.GetUsersLicenses(ctx, []string{jane.ID, manager.ID})
	must(err)
	for _, id := range []string{jane.ID, manager.ID} {
		if !slices.ContainsFunc(batch[id].Licenses, func(l genesys.LicenseDefinition) bool { return l.ID == lics[0].ID }) {
			t.Fatalf("batched licenses of %s: %+v", id, batch)
		}
	}
	_, err = c.WaitUserActive(ctx, jane.ID)
	must(err)

	// Profile fields, with the manager.
	_, err = c.PatchUser(ctx, jane.ID, genesys.UserPatch{Department: ptr("Sales"), Manager: ptr(manager.ID)})
	must(err)

	// Routing profile: skills (replace, add, remove), languages, utilization.
	billing, _, err := c.FindSkillByName(ctx, "Billing")
	must(err)
	err = c.ReplaceUserRoutingSkills(ctx, jane.ID, []genesys.SkillProficiency{{ID: skill.ID, Proficiency: 4}})
	must(err)
	err = c.AddUserRoutingSkills(ctx, jane.ID, []genesys.SkillProficiency{{ID: billing.ID, Proficiency: 2}})
	must(err)
	skills, err := c.ListUserRoutingSkills(ctx, jane.ID)
	must(err)
	if len(skills) != 2 {
		t.Fatalf("skills after replace+add: %+v", skills)
	}
	must(c.RemoveUserRoutingSkill(ctx, jane.ID, billing.ID))
	skills, err = c.ListUserRoutingSkills(ctx, jane.ID)
	must(err)
	if len(skills) != 1 || skills[0].ID != skill.ID || skills[0].Proficiency != 4 {
		t.Fatalf("skills after remove: %+v", skills)
	}
	english, _, err := c.FindLanguageByName(ctx, "English")
	must(err)
	err = c.AddUserRoutingLanguages(ctx, jane.ID, []genesys.SkillProficiency{{ID: lang.ID, Proficiency: 3}, {ID: english.ID, Proficiency: 5}})
	must(err)
	must(c.RemoveUserRoutingLanguage(ctx, jane.ID, english.ID))
	langs, err := c.ListUserRoutingLanguages(ctx, jane.ID)
	must(err)
	if len(langs) != 1 || langs[0].ID != lang.ID {
		t.Fatalf("languages: %+v", langs)
	}
	err = c.SetUserUtilization(ctx, jane.ID, genesys.Utilization{Utilization: map[string]genesys.MediaUtilization{"call": {MaximumCapacity: 1}, "chat": {MaximumCapacity: 3}}})
	must(err)
	util, err := c.GetUserUtilization(ctx, jane.ID)
	must(err)
	if util.Utilization["chat"].MaximumCapacity != 3 || util.Level != "Agent" {
		t.Fatalf("utilization %+v", util)
	}

	// Roles.
	role, _, err := c.FindRoleByName(ctx, "Agent")
	must(err)
	lead, _, err := c.FindRoleByName(ctx, "Agent Lead")
	must(err)
	must(c.GrantRoles(ctx, jane.ID, []genesys.RoleDivision{{RoleID: role.ID, DivisionID: home.ID}, {RoleID: lead.ID, DivisionID: home.ID}}))
	must(c.RevokeRoles(ctx, jane.ID, []genesys.RoleDivision{{RoleID: lead.ID, DivisionID: home.ID}}))
	subj, err := c.GetSubject(ctx, jane.ID)
	must(err)
	if len(subj.Grants) != 1 || subj.Grants[0].Role.ID != role.ID {
		t.Fatalf("grants %+v", subj.Grants)
	}

	// Queues.
	queue, _, err := c.FindQueueByName(ctx, "Support")
	must(err)
	must(c.AddQueueMembers(ctx, queue.ID, []string{jane.ID, manager.ID}))
	must(c.RemoveQueueMembers(ctx, queue.ID, []string{manager.ID}))
	members, err := c.ListQueueMembers(ctx, queue.ID)
	must(err)
	if len(members) != 1 || members[0].ID != jane.ID {
		t.Fatalf("queue members %+v", members)
	}
	uq, err := c.ListUserQueues(ctx, jane.ID)
	must(err)
	if len(uq) != 1 || uq[0].ID != queue.ID {
		t.Fatalf("user queues %+v", uq)
	}

	// Team.
	_, err = c.AddTeamMembers(ctx, team.ID, []string{jane.ID, manager.ID})
	must(err)
	must(c.RemoveTeamMembers(ctx, team.ID, []string{manager.ID}))
	tm, err := c.ListTeamMembers(ctx, team.ID)
	must(err)
	if len(tm) != 1 || tm[0].ID != jane.ID {
		t.Fatalf("team members %+v", tm)
	}

	// Phone number: a free DID becomes the user's WORK phone.
	pools, err := c.ListDIDPools(ctx)
	must(err)
	free, err := c.ListUnassignedDIDs(ctx)
	must(err)
	if len(pools) != 1 || len(free) == 0 {
		t.Fatalf("pools %d free %d", len(pools), len(free))
	}
	_, err = c.PatchUser(ctx, jane.ID, genesys.UserPatch{Addresses: &[]genesys.Contact{{Address: free[0].Number, MediaType: "PHONE", Type: "WORK"}}})
	must(err)
	after, err := c.ListUnassignedDIDs(ctx)
	must(err)
	if slices.ContainsFunc(after, func(d genesys.DIDNumber) bool { return d.Number == free[0].Number }) {
		t.Errorf("DID %s still unassigned after giving it to the user", free[0].Number)
	}

	got, err := c.GetUser(ctx, jane.ID, "skills", "languages", "team", "authorization")
	must(err)
	if got.Manager == nil || got.Manager.ID != manager.ID || got.Department != "Sales" || got.State != "active" {
		t.Fatalf("final user %+v", got)
	}
}
