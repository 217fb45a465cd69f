package gcsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestProvisionReferenceUserFlow walks the orgsync provisioning steps against
// target 3 through the real HTTP API, with every exchange validated against
// the Genesys spec, and checks the final state and the change events.
func TestProvisionReferenceUserFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var mu sync.Mutex
	aspects := map[string]bool{}
	e.sim.OnUserChanged(func(c UserChange) {
		mu.Lock()
		defer mu.Unlock()
		aspects[c.Aspect] = true
	})
	src, tok := e.token(srcCID, srcSec), e.token(t3CID(), "target3-secret")

	// Extract from the source.
	ref := e.expect(200, src, "GET", "/api/v2/users/"+janeID+"?expand=skills&expand=languages&expand=team&expand=authorization", nil).json(t)
	if ref["manager"].(map[string]any)["id"] != johnID || len(ref["skills"].([]any)) != 2 || ref["team"].(map[string]any)["name"] != "Billing Team" {
		t.Fatalf("expanded reference user: %v", ref)
	}
	e.expect(200, src, "GET", "/api/v2/users/"+janeID+"/routingskills", nil)
	e.expect(200, src, "GET", "/api/v2/users/"+janeID+"/routinglanguages", nil)
	if u := e.expect(200, src, "GET", "/api/v2/routing/users/"+janeID+"/utilization", nil).json(t); u["level"] != "Agent" {
		t.Fatalf("jane utilization level %v", u["level"])
	}
	subj := e.expect(200, src, "GET", "/api/v2/authorization/subjects/"+janeID, nil).json(t)
	if len(subj["grants"].([]any)) != 2 {
		t.Fatalf("jane grants %v", subj["grants"])
	}
	e.expect(200, src, "GET", "/api/v2/users/"+janeID+"/roles", nil)
	e.expect(200, src, "GET", "/api/v2/users/"+janeID+"/queues", nil)
	e.expect(200, src, "GET", "/api/v2/license/users/"+janeID, nil)
	e.expect(200, src, "GET", "/api/v2/license/users", nil)
	e.expect(200, src, "GET", "/api/v2/teams/"+ref["team"].(map[string]any)["id"].(string)+"/members", nil)

	// Pre-flight lookups in the target.
	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	divs := e.expect(200, tok, "GET", "/api/v2/authorization/divisions?name=Billing", nil).json(t)
	billingDiv := divs["entities"].([]any)[0].(map[string]any)["id"].(string)
	roles := e.expect(200, tok, "GET", "/api/v2/authorization/roles?name=Agent", nil).json(t)
	agentRole := roles["entities"].([]any)[0].(map[string]any)["id"].(string)
	e.expect(200, tok, "GET", "/api/v2/license/definitions", nil)
	e.expect(200, tok, "GET", "/api/v2/license/definitions/cx2", nil)
	e.expect(200, tok, "GET", "/api/v2/telephony/providers/edges/didpools", nil)
	ints := e.expect(200, tok, "GET", "/api/v2/integrations", nil).json(t)
	if st := ints["entities"].([]any)[0].(map[string]any)["reportedState"].(map[string]any)["code"]; st != "ACTIVE" {
		t.Fatalf("integration reportedState %v", st)
	}
	e.expect(200, tok, "GET", "/api/v2/organizations/limits/namespaces", nil)
	e.expect(200, tok, "GET", "/api/v2/organizations/limits/namespaces/routing", nil)
	e.expect(200, tok, "GET", "/api/v2/routing/utilization", nil)

	// Ensure skill, language, team.
	skill := e.expect(200, tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "Billing Support"}).json(t)
	lang := e.expect(200, tok, "POST", "/api/v2/routing/languages", map[string]any{"name": "Spanish"}).json(t)
	e.expect(200, tok, "GET", "/api/v2/routing/languages/"+lang["id"].(string), nil)
	team := e.expect(200, tok, "POST", "/api/v2/teams", map[string]any{"name": "Billing Team", "division": map[string]any{"id": billingDiv}}).json(t)
	e.expect(200, tok, "PATCH", "/api/v2/teams/"+team["id"].(string), map[string]any{"name": "Billing Team", "description": "cloned"})

	// Find or create the user, stamp the external id.
	search := map[string]any{"query": []map[string]any{{"type": "EXACT", "fields": []string{"email"}, "value": "jane.doe@acme.example"}}}
	if r := e.expect(200, tok, "POST", "/api/v2/users/search", search).json(t); r["total"].(float64) != 0 {
		t.Fatalf("target 3 search found %v", r)
	}
	u := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Jane Doe", "email": "jane.doe@acme.example", "divisionId": billingDiv}).json(t)
	uid := u["id"].(string)
	if r := e.expect(200, tok, "POST", "/api/v2/users/search", search).json(t); r["total"].(float64) != 1 {
		t.Fatalf("search after create: %v", r)
	}
	e.expect(200, tok, "POST", "/api/v2/users/"+uid+"/externalid", map[string]any{"authorityName": "orgsync", "externalKey": "SRC|USER|jane"})
	e.expect(200, tok, "POST", "/api/v2/users/"+uid+"/externalid", map[string]any{"authorityName": "orgsync", "externalKey": "SRC|USER|jane"})
	if ids := e.expect(200, tok, "GET", "/api/v2/users/"+uid+"/externalid", nil).list(t); len(ids) != 1 {
		t.Fatalf("external ids %v", ids)
	}
	byExt := e.expect(200, tok, "GET", "/api/v2/users/externalid/orgsync/SRC%7CUSER%7Cjane", nil).json(t)
	if byExt["id"] != uid {
		t.Fatalf("lookup by external id = %v", byExt["id"])
	}

	// License, profile, routing profile, grants, queues, team, phone.
	e.expect(200, tok, "POST", "/api/v2/license/organization", map[string]any{"assignments": []map[string]any{{"licenseId": "cx2", "userIdsAdd": []string{uid}, "userIdsRemove": []string{}}}})
	e.expect(200, tok, "PATCH", "/api/v2/users/"+uid, map[string]any{"version": 1, "title": "Billing Agent", "department": "Billing"})
	e.expect(200, tok, "PUT", "/api/v2/users/"+uid+"/routingskills/bulk", []map[string]any{{"id": skill["id"], "proficiency": 4}})
	e.expect(200, tok, "PATCH", "/api/v2/users/"+uid+"/routinglanguages/bulk", []map[string]any{{"id": lang["id"], "proficiency": 3}})
	e.expect(200, tok, "PUT", "/api/v2/routing/users/"+uid+"/utilization", map[string]any{"utilization": map[string]any{"chat": map[string]any{"maximumCapacity": 3, "interruptableMediaTypes": []string{"email"}}}})
	e.expect(204, tok, "POST", "/api/v2/authorization/subjects/"+uid+"/bulkadd", map[string]any{"grants": []map[string]any{{"roleId": agentRole, "divisionId": billingDiv}}})
	e.expect(204, tok, "POST", "/api/v2/authorization/subjects/"+uid+"/bulkadd", map[string]any{"grants": []map[string]any{{"roleId": agentRole, "divisionId": billingDiv}}})
	qs := e.expect(200, tok, "GET", "/api/v2/routing/queues?name=Billing%20Queue", nil).json(t)
	var qid string
	for _, q := range qs["entities"].([]any) {
		if q.(map[string]any)["name"] == "Billing Queue" { // the filter ignores case: compare exactly
			qid = q.(map[string]any)["id"].(string)
		}
	}
	e.expect(204, tok, "POST", "/api/v2/routing/queues/"+qid+"/members", []map[string]any{{"id": uid}})
	e.expect(200, tok, "GET", "/api/v2/routing/queues/"+qid+"/members", nil)
	added := e.expect(200, tok, "POST", "/api/v2/teams/"+team["id"].(string)+"/members", map[string]any{"memberIds": []string{uid, "00000000-0000-4000-8000-000000000000"}}).json(t)
	if len(added["entities"].([]any)) != 1 || added["failures"].([]any)[0].(map[string]any)["reason"] != "UserNotFound" {
		t.Fatalf("team add response %v", added)
	}
	free := e.expect(200, tok, "GET", "/api/v2/telephony/providers/edges/didpools/dids?type=UNASSIGNED&pageSize=1", nil).json(t)
	number := free["entities"].([]any)[0].(map[string]any)["number"].(string)
	e.expect(200, tok, "PATCH", "/api/v2/users/"+uid, map[string]any{"version": 2, "addresses": []map[string]any{{"address": number, "mediaType": "PHONE", "type": "WORK"}}})

	st, _ := e.sim.UserByEmail(t3Org(), "jane.doe@acme.example")
	if st.Title != "Billing Agent" || st.Skills["Billing Support"] != 4 || st.Languages["Spanish"] != 3 || st.Team != "Billing Team" ||
		!slices.Equal(st.Queues, []string{"Billing Queue"}) || len(st.Grants) != 1 || st.Utilization["chat"].MaximumCapacity != 3 ||
		st.Addresses[0].Address != number || st.Version != 3 || st.Division != "Billing Division" {
		t.Fatalf("final target state: %+v", st)
	}
	mu.Lock()
	for _, a := range []string{"created", "profile", "addresses", "skills", "languages", "utilization", "team", "queues", "grants", "licenses", "externalid"} {
		if !aspects[a] {
			t.Errorf("no UserChange event with aspect %q", a)
		}
	}
	mu.Unlock()

	// Removal paths.
	e.expect(200, tok, "DELETE", "/api/v2/users/"+uid+"/routingskills/"+skill["id"].(string), nil)
	e.expect(204, tok, "DELETE", "/api/v2/users/"+uid+"/routinglanguages/"+lang["id"].(string), nil)
	e.expect(200, tok, "DELETE", "/api/v2/routing/users/"+uid+"/utilization", nil)
	e.expect(204, tok, "POST", "/api/v2/authorization/subjects/"+uid+"/bulkremove", map[string]any{"grants": []map[string]any{{"roleId": agentRole, "divisionId": billingDiv}}})
	e.expect(204, tok, "POST", "/api/v2/routing/queues/"+qid+"/members?delete=true", []map[string]any{{"id": uid}})
	e.expect(204, tok, "DELETE", "/api/v2/teams/"+team["id"].(string)+"/members?id="+uid, nil)
	e.expect(200, tok, "DELETE", "/api/v2/users/"+uid, nil)
	e.expect(200, tok, "DELETE", "/api/v2/routing/skills/"+skill["id"].(string), nil)
	e.expect(204, tok, "DELETE", "/api/v2/teams/"+team["id"].(string), nil)
	_ = home
	if len(e.rec.Covered()) < 45 {
		t.Errorf("only %d spec operations covered: %v", len(e.rec.Covered()), e.rec.Covered())
	}
}

func TestFaultInjectionAndAdminHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t2CID, t2Sec)

	// Reset after the write: the client sees a transport error, yet the skill exists.
	if err := e.sim.SetFaults(t2Org, Faults{ResetRate: 1}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v2/routing/skills", strings.NewReader(`{"name":"Lost Response"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("ResetRate=1: got status %d, want a connection error", resp.StatusCode)
	}
	if e.sim.CountSkillsByName(t2Org, "Lost Response") != 1 {
		t.Fatal("the write must take effect before the connection is reset")
	}

	// Error rate: 503 before any effect.
	if err := e.sim.SetFaults(t2Org, Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	e.expectError(503, "service.unavailable", tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "Never"})
	if e.sim.CountSkillsByName(t2Org, "Never") != 0 {
		t.Fatal("an injected 503 must have no effect")
	}
	// Another 5xx the API answers, with its own code; a status it never
	// answers this way is refused.
	if err := e.sim.SetFaults(t2Org, Faults{ErrorRate: 1, ErrorStatus: 501}); err != nil {
		t.Fatal(err)
	}
	// (The spec subset documents no 501, so this goes around the validator.)
	req501, _ := http.NewRequest("GET", e.srv.URL+"/api/v2/routing/skills", nil)
	req501.Header.Set("Authorization", "Bearer "+tok)
	resp501, err := e.srv.Client().Do(req501)
	if err != nil {
		t.Fatal(err)
	}
	var body501 errorBody
	_ = json.NewDecoder(resp501.Body).Decode(&body501)
	resp501.Body.Close()
	if resp501.StatusCode != 501 || body501.Code != "not.implemented" || body501.Status != 501 || body501.ContextID == "" {
		t.Fatalf("ErrorStatus 501: got %d %+v", resp501.StatusCode, body501)
	}
	if err := e.sim.SetFaults(t2Org, Faults{ErrorRate: 1, ErrorStatus: 404}); err == nil {
		t.Fatal("SetFaults with errorStatus 404 must fail")
	}
	if err := e.sim.SetFaults(t2Org, Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	// Other orgs are unaffected; faults are cleared via the admin HTTP API.
	e.expect(200, e.token(t1CID, t1Sec), "GET", "/api/v2/routing/skills", nil)
	admin := func(method, path, body string) *http.Response {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := admin("PUT", "/_sim/orgs/"+t2Org+"/faults", `{"errorRate":0,"resetRate":0,"latency":"0s"}`); r.StatusCode != 200 {
		t.Fatalf("PUT faults: %d", r.StatusCode)
	}
	e.expect(200, tok, "GET", "/api/v2/routing/skills", nil)

	var stats Stats
	if err := json.NewDecoder(admin("GET", "/_sim/orgs/"+t2Org+"/stats", "").Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	if stats.Requests["POST /api/v2/routing/skills"] != 2 || stats.Status[503] != 1 || stats.Status[501] != 1 || stats.Status[0] != 1 || stats.Creates["skill"] != 1 || stats.Requests["POST /oauth/token"] != 1 {
		t.Fatalf("stats %+v", stats)
	}
	var st OrgState
	if err := json.NewDecoder(admin("GET", "/_sim/orgs/"+t2Org+"/state", "").Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(st.Skills, "Lost Response") {
		t.Fatalf("state skills %v", st.Skills)
	}
	if r := admin("GET", "/_sim/orgs/"+t2Org+"/state", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	if r := admin("POST", "/_sim/fixture", `{"orgs":[{"id":"bad"}]}`); r.StatusCode != 400 {
		t.Fatalf("bad fixture: %d", r.StatusCode)
	}
	admin("POST", "/_sim/stats/reset", "")
	if e.sim.Stats(t2Org).TotalRequests() != 0 {
		t.Fatal("ResetStats did not reset")
	}
	if err := e.sim.SetFaults("nope", Faults{}); err == nil {
		t.Fatal("SetFaults on an unknown org must fail")
	}
	var ae *apiError
	if err := e.sim.SetFaults(t2Org, Faults{ErrorRate: 2}); !errors.As(err, &ae) {
		t.Fatalf("SetFaults with rate 2: %v", err)
	}
}
