package gcsim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config must be valid: %v", err)
	}
	if err := (Config{Latency: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "Latency") {
		t.Fatalf("negative latency: got %v", err)
	}
	if _, err := New(Config{TokenTTL: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "TokenTTL") {
		t.Fatalf("tiny TokenTTL: got %v", err)
	}
}

func TestOAuthAndTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{TokenTTL: time.Hour})
	// Wrong secret: 401 invalid_client, and the secret is not echoed.
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(srcCID, "wrong-secret-value")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("bad credentials: status %d, want 401", resp.StatusCode)
	}

	tok := e.token(srcCID, srcSec)
	me := e.expect(200, tok, "GET", "/api/v2/tokens/me", nil).json(t)
	if me["organization"].(map[string]any)["id"] != srcOrg {
		t.Fatalf("tokens/me organization = %v, want %s", me["organization"], srcOrg)
	}
	e.expect(200, tok, "HEAD", "/api/v2/tokens/me", nil)
	e.expectError(401, "authentication.required", "", "GET", "/api/v2/users", nil)

	// Expiry is driven by the injected clock.
	e.clock.Advance(time.Hour)
	e.expectError(401, "bad.credentials", tok, "GET", "/api/v2/users", nil)

	// Revocation.
	tok2 := e.token(srcCID, srcSec)
	e.expect(200, tok2, "DELETE", "/api/v2/tokens/me", nil)
	e.expectError(401, "bad.credentials", tok2, "GET", "/api/v2/users", nil)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	src, tgt := e.token(srcCID, srcSec), e.token(t1CID, t1Sec)
	e.expect(200, src, "GET", "/api/v2/users/"+janeID, nil)
	// The same id is simply unknown for another org's token, for reads and writes.
	e.expectError(404, "not.found", tgt, "GET", "/api/v2/users/"+janeID, nil)
	e.expectError(404, "not.found", tgt, "PATCH", "/api/v2/users/"+janeID, map[string]any{"version": 1, "title": "x"})
	e.expectError(404, "not.found", tgt, "GET", "/api/v2/users/"+janeID+"/routingskills", nil)
	// Source skill ids are not valid in the target (the guide's UUID-copy trap).
	skills := e.expect(200, src, "GET", "/api/v2/routing/skills?name=Billing%20Support", nil).json(t)
	srcSkill := skills["entities"].([]any)[0].(map[string]any)["id"].(string)
	e.expectError(404, "not.found", tgt, "GET", "/api/v2/routing/skills/"+srcSkill, nil)
	// Listings only show the token's org.
	org := e.expect(200, tgt, "GET", "/api/v2/organizations/me", nil).json(t)
	if org["id"] != t1Org {
		t.Fatalf("organizations/me = %v, want %s", org["id"], t1Org)
	}
	users := e.expect(200, tgt, "GET", "/api/v2/users?state=any", nil).json(t)
	if got := names(t, users); !slices.Equal(got, []string{"Jane Doe (legacy)"}) {
		t.Fatalf("target users = %v", got)
	}
}

func TestPrefixFiltersAndPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	src := e.token(srcCID, srcSec)
	got := names(t, e.expect(200, src, "GET", "/api/v2/routing/skills?name=Billing", nil).json(t))
	if !slices.Equal(got, []string{"Billing", "Billing Escalations", "Billing Support"}) {
		t.Fatalf("skills?name=Billing = %v: the name filter must be a prefix filter", got)
	}
	got = names(t, e.expect(200, src, "GET", "/api/v2/routing/queues?name=billing%20queue", nil).json(t))
	if !slices.Equal(got, []string{"Billing Queue"}) {
		t.Fatalf("queues?name=billing queue = %v", got)
	}
	got = names(t, e.expect(200, src, "GET", "/api/v2/authorization/roles?name=Age", nil).json(t))
	if !slices.Equal(got, []string{"Agent"}) {
		t.Fatalf("roles?name=Age = %v", got)
	}
	got = names(t, e.expect(200, src, "GET", "/api/v2/routing/languages?name=Span", nil).json(t))
	if !slices.Equal(got, []string{"Spanish"}) {
		t.Fatalf("languages?name=Span = %v", got)
	}

	// Paging: 5 skills, pageSize 2 -> 3 pages.
	p := e.expect(200, src, "GET", "/api/v2/routing/skills?pageSize=2&pageNumber=2", nil).json(t)
	if p["total"].(float64) != 5 || p["pageCount"].(float64) != 3 || p["pageNumber"].(float64) != 2 || len(p["entities"].([]any)) != 2 {
		t.Fatalf("page 2 of skills: %v", p)
	}
	for _, k := range []string{"firstUri", "selfUri", "nextUri", "previousUri", "lastUri"} {
		if _, ok := p[k].(string); !ok {
			t.Fatalf("listing lacks %s: %v", k, p)
		}
	}
	if !strings.Contains(p["nextUri"].(string), "pageNumber=3") {
		t.Fatalf("nextUri = %v", p["nextUri"])
	}
	def := e.expect(200, src, "GET", "/api/v2/routing/skills", nil).json(t)
	if def["pageSize"].(float64) != 25 {
		t.Fatalf("default pageSize = %v, want 25", def["pageSize"])
	}
	e.expect(200, src, "GET", "/api/v2/routing/skills?pageSize=100", nil)
	e.expectError(400, "bad.request", src, "GET", "/api/v2/routing/skills?pageSize=101", nil)
	e.expectError(400, "bad.request", src, "GET", "/api/v2/users?pageSize=500", nil)
	e.expectError(400, "invalid.query.param.value", src, "GET", "/api/v2/routing/queues?pageNumber=0", nil)
}

func TestTeamsCursorListing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t2CID, t2Sec)
	for i := range 5 {
		e.expect(200, tok, "POST", "/api/v2/teams", map[string]any{"name": fmt.Sprintf("Team %d", i)})
	}
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/teams", map[string]any{"name": "team 3"})
	var seen []string
	next := "/api/v2/teams?pageSize=2&name=team"
	for next != "" {
		p := e.expect(200, tok, "GET", next, nil).json(t)
		seen = append(seen, names(t, p)...)
		next, _ = p["nextUri"].(string)
	}
	if !slices.Equal(seen, []string{"Team 0", "Team 1", "Team 2", "Team 3", "Team 4"}) {
		t.Fatalf("teams via cursor = %v", seen)
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(srcCID, srcSec)
	// Stale version.
	u := e.expect(200, tok, "GET", "/api/v2/users/"+janeID, nil).json(t)
	v := int(u["version"].(float64))
	after := e.expect(200, tok, "PATCH", "/api/v2/users/"+janeID, map[string]any{"version": v, "title": "Senior Billing Agent"}).json(t)
	if int(after["version"].(float64)) != v+1 || after["title"] != "Senior Billing Agent" {
		t.Fatalf("PATCH result version/title = %v/%v, want %d", after["version"], after["title"], v+1)
	}
	e.expectError(409, "general.conflict", tok, "PATCH", "/api/v2/users/"+janeID, map[string]any{"version": v, "title": "lost update"})
	e.unchecked().expectError(400, "bad.request", tok, "PATCH", "/api/v2/users/"+janeID, map[string]any{"title": "no version"})
	// Duplicate email (case-insensitive) and duplicate skill / language names.
	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/users", map[string]any{"name": "Jane", "email": "JANE.DOE@acme.example", "divisionId": home["id"]})
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "billing support"})
	e.expectError(409, "general.conflict", tok, "POST", "/api/v2/routing/languages", map[string]any{"name": "English"})
	e.expect(200, tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "Billing Support Plus"})
}

func TestLicenseGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t1CID, t1Sec)
	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	u := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "New Agent", "email": "new.agent@acme.example", "divisionId": home["id"]}).json(t)
	uid := u["id"].(string)
	skill := e.expect(200, tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "Billing Support"}).json(t)
	lang := e.expect(200, tok, "GET", "/api/v2/routing/languages?name=English", nil).json(t)["entities"].([]any)[0].(map[string]any)
	queue := e.expect(200, tok, "GET", "/api/v2/routing/queues?name=Support%20Queue", nil).json(t)["entities"].([]any)[0].(map[string]any)

	skills := []map[string]any{{"id": skill["id"], "proficiency": 4}}
	m := e.expectError(400, "bad.request", tok, "PUT", "/api/v2/users/"+uid+"/routingskills/bulk", skills)
	if !strings.Contains(m["message"].(string), "license") {
		t.Fatalf("license gate message does not mention the license: %v", m["message"])
	}
	e.expectError(400, "bad.request", tok, "POST", "/api/v2/users/"+uid+"/routinglanguages", map[string]any{"id": lang["id"], "proficiency": 5})
	e.expectError(400, "bad.request", tok, "PUT", "/api/v2/routing/users/"+uid+"/utilization", map[string]any{"utilization": map[string]any{"call": map[string]any{"maximumCapacity": 1}}})
	e.expectError(400, "bad.request", tok, "POST", "/api/v2/routing/queues/"+queue["id"].(string)+"/members", []map[string]any{{"id": uid}})

	res := e.expect(200, tok, "POST", "/api/v2/license/organization", map[string]any{"assignments": []map[string]any{{"licenseId": "cx2", "userIdsAdd": []string{uid}, "userIdsRemove": []string{}}}}).list(t)
	if res[0].(map[string]any)["result"] != "Success" {
		t.Fatalf("license assignment result %v", res)
	}
	lu := e.expect(200, tok, "GET", "/api/v2/license/users/"+uid, nil).json(t)
	if lics := lu["licenses"].([]any); len(lics) != 1 || lics[0].(map[string]any)["id"] != "cx2" {
		t.Fatalf("license/users = %v", lu)
	}
	got := e.expect(200, tok, "PUT", "/api/v2/users/"+uid+"/routingskills/bulk", skills).json(t)
	if ents := got["entities"].([]any); len(ents) != 1 || ents[0].(map[string]any)["proficiency"].(float64) != 4 {
		t.Fatalf("bulk skills result %v", got)
	}
	e.expect(200, tok, "POST", "/api/v2/users/"+uid+"/routinglanguages", map[string]any{"id": lang["id"], "proficiency": 5})
	util := e.expect(200, tok, "PUT", "/api/v2/routing/users/"+uid+"/utilization", map[string]any{"utilization": map[string]any{"call": map[string]any{"maximumCapacity": 1}}}).json(t)
	if util["level"] != "Agent" {
		t.Fatalf("utilization level = %v", util["level"])
	}
	e.expect(204, tok, "POST", "/api/v2/routing/queues/"+queue["id"].(string)+"/members", []map[string]any{{"id": uid}})
	uq := e.expect(200, tok, "GET", "/api/v2/users/"+uid+"/queues", nil).json(t)
	if got := names(t, uq); !slices.Equal(got, []string{"Support Queue"}) {
		t.Fatalf("user queues = %v", got)
	}
	st, _ := e.sim.UserByEmail(t1Org, "new.agent@acme.example")
	if st.Skills["Billing Support"] != 4 || st.Languages["English"] != 5 || !slices.Equal(st.Queues, []string{"Support Queue"}) {
		t.Fatalf("final state %+v", st)
	}
	// > 100 members per call.
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{"id": uid}
	}
	e.expectError(400, "bad.request", tok, "POST", "/api/v2/routing/queues/"+queue["id"].(string)+"/members", many)
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RateLimitPerMinute: 3})
	tok := e.token(srcCID, srcSec)
	for range 3 {
		e.expect(200, tok, "GET", "/api/v2/organizations/me", nil)
	}
	e.clock.Advance(20 * time.Second)
	r := e.call(tok, "GET", "/api/v2/organizations/me", nil)
	if r.status != 429 {
		t.Fatalf("4th request: status %d, want 429", r.status)
	}
	if r.header.Get("Retry-After") != "40" || r.header.Get("inin-ratelimit-allowed") != "3" || r.header.Get("inin-ratelimit-count") == "" || r.header.Get("inin-ratelimit-reset") == "" {
		t.Fatalf("429 headers: %v", r.header)
	}
	if m := r.json(t); m["code"] != "too.many.requests.retry.after" || m["status"].(float64) != 429 {
		t.Fatalf("429 body: %v", m)
	}
	// A different token has its own budget.
	e.expect(200, e.token(srcCID, srcSec), "GET", "/api/v2/organizations/me", nil)
	if st := e.sim.Stats(srcOrg); st.RateLimited != 1 || st.Status[429] != 1 || st.Requests["GET /api/v2/organizations/me"] != 5 {
		t.Fatalf("stats after 429: %+v", st)
	}
	e.clock.Advance(40 * time.Second)
	e.expect(200, tok, "GET", "/api/v2/organizations/me", nil)
}

func TestNotFoundWindowAndActivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotFoundAfterCreate: 2 * time.Second, ActivationDelay: 5 * time.Second})
	tok := e.token(t3CID(), "target3-secret")
	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	u := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Fresh", "email": "fresh@acme.example", "divisionId": home["id"]}).json(t)
	sk := e.expect(200, tok, "POST", "/api/v2/routing/skills", map[string]any{"name": "Fresh Skill"}).json(t)
	tm := e.expect(200, tok, "POST", "/api/v2/teams", map[string]any{"name": "Fresh Team"}).json(t)
	e.expectError(404, "not.found", tok, "GET", "/api/v2/users/"+u["id"].(string), nil)
	e.expectError(404, "not.found", tok, "GET", "/api/v2/routing/skills/"+sk["id"].(string), nil)
	e.expectError(404, "not.found", tok, "GET", "/api/v2/teams/"+tm["id"].(string), nil)
	e.clock.Advance(2 * time.Second)
	got := e.expect(200, tok, "GET", "/api/v2/users/"+u["id"].(string), nil).json(t)
	if got["state"] != "inactive" {
		t.Fatalf("state before ActivationDelay = %v", got["state"])
	}
	e.expect(200, tok, "GET", "/api/v2/routing/skills/"+sk["id"].(string), nil)
	e.expect(200, tok, "GET", "/api/v2/teams/"+tm["id"].(string), nil)
	e.clock.Advance(3 * time.Second)
	if got := e.expect(200, tok, "GET", "/api/v2/users/"+u["id"].(string), nil).json(t); got["state"] != "active" {
		t.Fatalf("state after ActivationDelay = %v", got["state"])
	}
	if st := e.sim.Stats(t3Org()); st.Creates["user"] != 1 || st.Creates["skill"] != 1 || st.Creates["team"] != 1 {
		t.Fatalf("creates = %v", st.Creates)
	}
}

func t3CID() string { return "target3-client" }
func t3Org() string { return "5f0c2a4e-0000-4000-8000-000000000013" }

func TestDIDOwnership(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t1CID, t1Sec)
	dids := func(typ string) []string {
		p := e.expect(200, tok, "GET", "/api/v2/telephony/providers/edges/didpools/dids?pageSize=100&type="+typ, nil).json(t)
		var out []string
		for _, d := range p["entities"].([]any) {
			out = append(out, d.(map[string]any)["number"].(string))
		}
		return out
	}
	if all, free := dids("ASSIGNED_AND_UNASSIGNED"), dids("UNASSIGNED"); len(all) != 20 || len(free) != 19 || slices.Contains(free, "+13175551000") {
		t.Fatalf("DIDs: all %d, unassigned %d (%v); +13175551000 is held by the legacy user", len(all), len(free), free)
	}
	e.unchecked().expectError(400, "invalid.query.param.value", tok, "GET", "/api/v2/telephony/providers/edges/didpools/dids?type=BOGUS", nil)

	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	u := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Phone User", "email": "phone@acme.example", "divisionId": home["id"]}).json(t)
	uid := u["id"].(string)
	taken := []map[string]any{{"address": "+13175551000", "mediaType": "PHONE", "type": "WORK"}}
	e.expectError(409, "general.conflict", tok, "PATCH", "/api/v2/users/"+uid, map[string]any{"version": 1, "addresses": taken})
	free := []map[string]any{{"address": "+13175551005", "mediaType": "PHONE", "type": "WORK"}}
	got := e.expect(200, tok, "PATCH", "/api/v2/users/"+uid, map[string]any{"version": 1, "addresses": free}).json(t)
	if a := got["addresses"].([]any)[0].(map[string]any); a["address"] != "+13175551005" || a["type"] != "WORK" {
		t.Fatalf("addresses after PATCH: %v", got["addresses"])
	}
	if slices.Contains(dids("UNASSIGNED"), "+13175551005") {
		t.Fatal("+13175551005 still listed as UNASSIGNED after assignment")
	}
	assigned := e.expect(200, tok, "GET", "/api/v2/telephony/providers/edges/didpools/dids?type=ASSIGNED_AND_UNASSIGNED&numberMatch=13175551005", nil).json(t)
	d := assigned["entities"].([]any)[0].(map[string]any)
	if d["assigned"] != true || d["owner"].(map[string]any)["id"] != uid || d["ownerType"] != "USER" {
		t.Fatalf("assigned DID: %v", d)
	}
	// Re-patching the same number on the same user is fine (idempotent).
	e.expect(200, tok, "PATCH", "/api/v2/users/"+uid, map[string]any{"version": 2, "addresses": free})
}
