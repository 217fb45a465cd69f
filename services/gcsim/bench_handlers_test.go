package gcsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// benchOrgID is the org of the handler benchmarks.
const benchOrgID = "5f0c2a4e-0000-4000-8000-0000000bb000"

// bigFixture is one org shaped like orgsync's bench fixture (see
// services/orgsync/bench_fixture.go) with n fully configured users, each
// holding a DID of the org's 10,000-number pool and an external id.
func bigFixture(n int) *Fixture {
	fo := FixtureOrg{
		ID: benchOrgID, Name: "Handler Bench",
		Clients: []FixtureClient{{ClientID: "hb-client", ClientSecret: "hb-secret"}},
		Divisions: []FixtureDivision{
			{Name: "Home", Description: "Home division", Home: true},
			{Name: "Sales Division", Description: "Sales operations"},
		},
		Roles: []FixtureRole{
			{Name: "Agent", Permissions: []string{"routing:agent:*"}},
			{Name: "Supervisor", Permissions: []string{"routing:queue:view"}},
			{Name: "employee", Permissions: []string{"directory:user:view"}},
		},
		Licenses: []FixtureLicense{{ID: "cx1"}, {ID: "cx2"}, {ID: "cx3"}},
		DIDPools: []FixtureDIDPool{{Name: "DIDs", StartPhoneNumber: "+14000000000", EndPhoneNumber: "+14000009999"}},
	}
	for i := 1; i <= 12; i++ {
		fo.Skills = append(fo.Skills, FixtureNamed{Name: fmt.Sprintf("Skill %02d", i)})
	}
	for i := 1; i <= 4; i++ {
		fo.Languages = append(fo.Languages, FixtureNamed{Name: fmt.Sprintf("Language %02d", i)})
		fo.Teams = append(fo.Teams, FixtureTeam{Name: fmt.Sprintf("Team %d", i)})
	}
	for i := 1; i <= 8; i++ {
		fo.Queues = append(fo.Queues, FixtureQueue{Name: fmt.Sprintf("Queue %d", i)})
	}
	for i := 0; i < n; i++ {
		u := FixtureUser{
			Name: fmt.Sprintf("Agent %04d", i), Email: benchEmail(i),
			Title: "Sales Agent", Department: "Sales", Division: "Sales Division",
			Licenses: []string{"cx2"},
			Skills: []FixtureProficiency{
				{Name: fmt.Sprintf("Skill %02d", i%12+1), Proficiency: float64(1 + i%5)},
				{Name: fmt.Sprintf("Skill %02d", (i+5)%12+1), Proficiency: 2.5},
			},
			Languages: []FixtureProficiency{{Name: fmt.Sprintf("Language %02d", i%4+1), Proficiency: 4}},
			Team:      fmt.Sprintf("Team %d", i%4+1),
			Queues:    []string{fmt.Sprintf("Queue %d", i%8+1), fmt.Sprintf("Queue %d", (i+3)%8+1)},
			Grants:    []FixtureGrant{{Role: "Agent", Division: "Sales Division"}, {Role: "employee", Division: "Home"}},
			Utilization: map[string]FixtureMediaUtilization{
				"call": {MaximumCapacity: 1}, "chat": {MaximumCapacity: 2}, "email": {MaximumCapacity: 1},
			},
			Addresses:   []contact{{Address: fmt.Sprintf("+1400%07d", i), MediaType: "PHONE", Type: "WORK"}},
			ExternalIDs: []externalID{{AuthorityName: "orgsync", ExternalKey: fmt.Sprintf("ext-%04d", i)}},
		}
		if i > 0 {
			u.Manager = benchEmail(0)
		}
		fo.Users = append(fo.Users, u)
	}
	return &Fixture{Orgs: []FixtureOrg{fo}}
}

func benchEmail(i int) string { return fmt.Sprintf("agent%04d@bench.example", i) }

func benchUserID(i int) string { return stableID(benchOrgID, "user", benchEmail(i)) }

// handlerBench drives the Sim's HTTP handler in-process.
type handlerBench struct {
	h   http.Handler
	tok string
}

func newHandlerBench(b *testing.B, users int) *handlerBench {
	b.Helper()
	clock := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	sim, err := New(Config{RateLimitPerMinute: -1, Clock: func() time.Time { return clock }})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.LoadFixture(bigFixture(users)); err != nil {
		b.Fatal(err)
	}
	hb := &handlerBench{h: sim.Handler()}
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("hb-client", "hb-secret")
	w := httptest.NewRecorder()
	hb.h.ServeHTTP(w, req)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
		b.Fatalf("token: %d %s", w.Code, w.Body)
	}
	hb.tok = tr.AccessToken
	return hb
}

// do serves one request and fails b unless the status is want.
func (hb *handlerBench) do(b *testing.B, want int, method, target string, body []byte) []byte {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, target, rd)
		req.Header.Set("Content-Type", "application/json")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.Header.Set("Authorization", "Bearer "+hb.tok)
	w := httptest.NewRecorder()
	hb.h.ServeHTTP(w, req)
	if w.Code != want {
		b.Fatalf("%s %s: status %d, want %d: %s", method, target, w.Code, want, w.Body)
	}
	return w.Body.Bytes()
}

// BenchmarkHandlers measures the API operations orgsync calls per user (or
// per batch of 100 users) against an org of 2,000 fully configured users.
func BenchmarkHandlers(b *testing.B) {
	const users = 2000
	hb := newHandlerBench(b, users)
	expand := "&expand=skills&expand=languages&expand=team"
	ids := url.Values{}
	emails := []string{}
	for i := 0; i < 100; i++ {
		ids.Add("id", benchUserID(i*users/100))
		emails = append(emails, benchEmail(i*users/100+1))
	}
	u7 := benchUserID(7)
	queueID := stableID(benchOrgID, "queues", "queue 3")
	teamID := stableID(benchOrgID, "teams", "team 2")

	get := func(path string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				hb.do(b, 200, "GET", path, nil)
			}
		}
	}
	post := func(method, path string, status int, body any) func(b *testing.B) {
		raw := mustJSON(body)
		return func(b *testing.B) {
			for b.Loop() {
				hb.do(b, status, method, path, raw)
			}
		}
	}

	b.Run("ListUsersByID100", get("/api/v2/users?state=any&pageSize=100&"+ids.Encode()+expand))
	b.Run("ListUsersPage", get("/api/v2/users?pageSize=100&pageNumber=7"))
	b.Run("SearchEmails100", post("POST", "/api/v2/users/search", 200, map[string]any{
		"pageSize": 100, "pageNumber": 1, "expand": []string{"skills", "languages", "team"},
		"query": []map[string]any{{"type": "EXACT", "fields": []string{"email"}, "values": emails}},
	}))
	b.Run("GetUser", get("/api/v2/users/"+u7+"?"+expand[1:]))
	b.Run("GetUserByExternalID", get("/api/v2/users/externalid/orgsync/ext-1234?"+expand[1:]))
	b.Run("QueueMembers", get("/api/v2/routing/queues/"+queueID+"/members?pageSize=100"))
	b.Run("TeamMembers", get("/api/v2/teams/"+teamID+"/members?pageSize=100"))
	b.Run("ListTeams", get("/api/v2/teams"))
	b.Run("ListRoles", get("/api/v2/authorization/roles"))
	b.Run("LicenseUsers", get("/api/v2/license/users?pageSize=100"))
	b.Run("UnassignedDIDs", get("/api/v2/telephony/providers/edges/didpools/dids?type=UNASSIGNED&pageSize=100&pageNumber=1"))
	b.Run("PostExternalID", post("POST", "/api/v2/users/"+u7+"/externalid", 200, externalID{AuthorityName: "orgsync", ExternalKey: "ext-0007"}))
	b.Run("SkillsBulk", post("PUT", "/api/v2/users/"+u7+"/routingskills/bulk", 200, []map[string]any{
		{"id": stableID(benchOrgID, "skills", "skill 01"), "proficiency": 3},
		{"id": stableID(benchOrgID, "skills", "skill 04"), "proficiency": 2},
	}))
	b.Run("LanguagesBulk", post("PATCH", "/api/v2/users/"+u7+"/routinglanguages/bulk", 200, []map[string]any{
		{"id": stableID(benchOrgID, "languages", "language 02"), "proficiency": 3},
	}))
	b.Run("GrantsBulkAdd", post("POST", "/api/v2/authorization/subjects/"+u7+"/bulkadd", 204, map[string]any{
		"grants": []map[string]any{{"roleId": stableID(benchOrgID, "roles", "agent"), "divisionId": stableID(benchOrgID, "divisions", "home")}},
	}))
	b.Run("PutUtilization", post("PUT", "/api/v2/routing/users/"+u7+"/utilization", 200, map[string]any{
		"utilization": map[string]any{"call": map[string]any{"maximumCapacity": 1}},
	}))
	b.Run("QueueMemberAdd", post("POST", "/api/v2/routing/queues/"+queueID+"/members", 204, []map[string]any{{"id": u7}}))
	b.Run("TeamMemberAdd", post("POST", "/api/v2/teams/"+teamID+"/members", 200, map[string]any{"memberIds": []string{u7}}))
	b.Run("LicenseAssign", post("POST", "/api/v2/license/organization", 200, map[string]any{
		"assignments": []map[string]any{{"licenseId": "cx2", "userIdsAdd": []string{u7}}},
	}))
	b.Run("PatchUser", func(b *testing.B) {
		version := 0
		var got struct {
			Version int `json:"version"`
		}
		_ = json.Unmarshal(hb.do(b, 200, "GET", "/api/v2/users/"+u7, nil), &got)
		version = got.Version
		n := 0
		for b.Loop() {
			n++
			body := mustJSON(map[string]any{"version": version, "title": fmt.Sprintf("Agent %d", n), "email": fmt.Sprintf("renamed%d@bench.example", n%2)})
			_ = json.Unmarshal(hb.do(b, 200, "PATCH", "/api/v2/users/"+u7, body), &got)
			version = got.Version
		}
	})
	b.Run("CreateUser", func(b *testing.B) {
		home := stableID(benchOrgID, "divisions", "home")
		n := 0
		for b.Loop() {
			n++
			body := mustJSON(map[string]any{"name": fmt.Sprintf("New %d", n), "email": fmt.Sprintf("new%d@bench.example", n), "divisionId": home})
			var cu struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(hb.do(b, 200, "POST", "/api/v2/users", body), &cu)
			// Keep the org at its size: the delete is not measured.
			b.StopTimer()
			hb.do(b, 200, "DELETE", "/api/v2/users/"+cu.ID, nil)
			b.StartTimer()
		}
	})
}
