package orgsync

import (
	"encoding/json"
	"fmt"

	"github.com/orgsync/orgsync/services/gcsim"
)

// Shape of the benchmark fixture's org-wide objects.
const (
	benchSkills    = 12
	benchLanguages = 4
	benchTeams     = 4
	benchQueues    = 8
	// benchMaxPool is gcsim's largest DID pool (numbers per pool).
	benchMaxPool = 10000
)

// BenchSourceOrg is the org key of the benchmark fixture's source org.
const BenchSourceOrg = "source"

// BenchTargetKey is the org key of the benchmark fixture's target i (1-based).
func BenchTargetKey(i int) string { return fmt.Sprintf("t%02d", i) }

// BenchUserEmail is the email of the benchmark fixture's source user i
// (0-based); user 0 is the supervisor every other user reports to.
func BenchUserEmail(i int) string { return fmt.Sprintf("agent%04d@bench.example", i) }

// BenchFixture builds a gcsim fixture of one source org ("source") with users
// reference users and targets target orgs ("t01", "t02", ...).
//
// Every source user has a full configuration: division, manager (user 0),
// license, 2 skills, 1–2 languages, a team, 2 queues, role grants in two
// divisions, utilization and a work number. Targets have the divisions,
// roles, license definitions and queues (what orgsync cannot create), half
// of the skills and one language (so each target must create the rest once)
// and no teams, plus a DID pool with a number for every user.
//
// users must be 1..10000 and targets 1..99.
func BenchFixture(users, targets int) (*gcsim.Fixture, error) {
	if users < 1 || users > benchMaxPool {
		return nil, fmt.Errorf("bench fixture: users must be 1..%d, got %d", benchMaxPool, users)
	}
	if targets < 1 || targets > 99 {
		return nil, fmt.Errorf("bench fixture: targets must be 1..99, got %d", targets)
	}
	fx := &gcsim.Fixture{}
	src := benchOrgBase(0, "Bench Source", BenchSourceOrg)
	src.Skills = benchNamed("Skill", benchSkills, 0)
	src.Languages = benchNamed("Language", benchLanguages, 0)
	for t := 1; t <= benchTeams; t++ {
		src.Teams = append(src.Teams, gcsim.FixtureTeam{Name: fmt.Sprintf("Team %d", t), Description: "bench team", Division: "Sales Division"})
	}
	src.DIDPools = []gcsim.FixtureDIDPool{benchPool(0, "Source DIDs")}
	for i := 0; i < users; i++ {
		src.Users = append(src.Users, benchUser(i))
	}
	fx.Orgs = append(fx.Orgs, src)

	for t := 1; t <= targets; t++ {
		org := benchOrgBase(t, fmt.Sprintf("Bench Target %d", t), BenchTargetKey(t))
		org.Skills = benchNamed("Skill", benchSkills/2, 0)
		org.Languages = benchNamed("Language", 1, 0)
		org.DIDPools = []gcsim.FixtureDIDPool{benchPool(t, fmt.Sprintf("Target %d DIDs", t))}
		fx.Orgs = append(fx.Orgs, org)
	}
	return withWorkNumbers(fx)
}

// withWorkNumbers gives every source user a work phone number from the
// source DID pool. Fixture addresses have an unexported type, so they are
// added through the fixture's JSON form (which also validates the result).
func withWorkNumbers(fx *gcsim.Fixture) (*gcsim.Fixture, error) {
	raw, err := json.Marshal(fx)
	if err != nil {
		return nil, fmt.Errorf("bench fixture: %w", err)
	}
	var doc struct {
		Orgs []map[string]any `json:"orgs"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("bench fixture: %w", err)
	}
	for i, u := range doc.Orgs[0]["users"].([]any) {
		u.(map[string]any)["addresses"] = []any{map[string]any{
			"address": fmt.Sprintf("+1400%07d", i), "mediaType": "PHONE", "type": "WORK",
		}}
	}
	if raw, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("bench fixture: %w", err)
	}
	out, err := gcsim.ParseFixture(raw)
	if err != nil {
		return nil, fmt.Errorf("bench fixture: %w", err)
	}
	return out, nil
}

// benchOrgBase is an org with the objects every bench org shares.
func benchOrgBase(n int, name, key string) gcsim.FixtureOrg {
	org := gcsim.FixtureOrg{
		ID:      fmt.Sprintf("5f0c2a4e-0000-4000-8000-0000000be%03d", n),
		Name:    name,
		Clients: []gcsim.FixtureClient{{ClientID: key + "-client", ClientSecret: key + "-bench-secret"}},
		Divisions: []gcsim.FixtureDivision{
			{Name: "Home", Description: "Home division", Home: true},
			{Name: "Sales Division", Description: "Sales operations"},
		},
		Roles: []gcsim.FixtureRole{
			{Name: "Agent", Description: "Contact center agent", Permissions: []string{"routing:agent:*"}},
			{Name: "Supervisor", Description: "Team supervisor", Permissions: []string{"routing:queue:view", "analytics:*"}},
			{Name: "employee", Description: "Default employee role", Permissions: []string{"directory:user:view"}},
		},
		Licenses: []gcsim.FixtureLicense{
			{ID: "cx1", Description: "Genesys Cloud CX 1"},
			{ID: "cx2", Description: "Genesys Cloud CX 2"},
			{ID: "cx3", Description: "Genesys Cloud CX 3"},
		},
		Integrations: []gcsim.FixtureIntegration{{Name: "Acme CRM", Type: "custom-crm", ReportedState: "ACTIVE"}},
	}
	for q := 1; q <= benchQueues; q++ {
		div := ""
		if q%2 == 0 {
			div = "Sales Division"
		}
		org.Queues = append(org.Queues, gcsim.FixtureQueue{Name: fmt.Sprintf("Queue %d", q), Division: div})
	}
	return org
}

func benchNamed(prefix string, n, from int) []gcsim.FixtureNamed {
	var out []gcsim.FixtureNamed
	for i := from; i < from+n; i++ {
		out = append(out, gcsim.FixtureNamed{Name: fmt.Sprintf("%s %02d", prefix, i+1)})
	}
	return out
}

// benchPool is org n's DID pool: +1 (400+n) 000 0000 .. +1 (400+n) 000 9999.
func benchPool(n int, name string) gcsim.FixtureDIDPool {
	return gcsim.FixtureDIDPool{
		Name:             name,
		StartPhoneNumber: fmt.Sprintf("+1%03d0000000", 400+n),
		EndPhoneNumber:   fmt.Sprintf("+1%03d%07d", 400+n, benchMaxPool-1),
	}
}

// benchUser is source user i.
func benchUser(i int) gcsim.FixtureUser {
	u := gcsim.FixtureUser{
		Name:       fmt.Sprintf("Agent %04d", i),
		Email:      BenchUserEmail(i),
		Title:      "Sales Agent",
		Department: "Sales",
		Division:   "Sales Division",
		Licenses:   []string{"cx2"},
		Skills: []gcsim.FixtureProficiency{
			{Name: fmt.Sprintf("Skill %02d", i%benchSkills+1), Proficiency: float64(1 + i%5)},
			{Name: fmt.Sprintf("Skill %02d", (i+5)%benchSkills+1), Proficiency: 2.5},
		},
		Languages: []gcsim.FixtureProficiency{{Name: fmt.Sprintf("Language %02d", i%benchLanguages+1), Proficiency: 4}},
		Team:      fmt.Sprintf("Team %d", i%benchTeams+1),
		Queues:    []string{fmt.Sprintf("Queue %d", i%benchQueues+1), fmt.Sprintf("Queue %d", (i+3)%benchQueues+1)},
		Grants: []gcsim.FixtureGrant{
			{Role: "Agent", Division: "Sales Division"},
			{Role: "employee", Division: "Home"},
		},
		Utilization: map[string]gcsim.FixtureMediaUtilization{
			"call":  {MaximumCapacity: 1},
			"chat":  {MaximumCapacity: 2 + i%2, InterruptableMediaTypes: []string{"email"}},
			"email": {MaximumCapacity: 1},
		},
	}
	if i%3 == 0 {
		u.Languages = append(u.Languages, gcsim.FixtureProficiency{Name: fmt.Sprintf("Language %02d", (i+1)%benchLanguages+1), Proficiency: 2})
	}
	if i == 0 {
		u.Title, u.Licenses = "Sales Supervisor", []string{"cx3"}
		u.Grants[0].Role = "Supervisor"
	} else {
		u.Manager = BenchUserEmail(0)
	}
	return u
}
