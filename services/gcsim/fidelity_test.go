package gcsim

import (
	"slices"
	"strconv"
	"testing"

	"github.com/orgsync/orgsync/pkg/apispec"
)

// Each test here pins one behaviour of the real platform that the official
// SDK (pkg/apispec/sdkmodels.json) or the spec documents and gcsim once got
// wrong (issue 13).

func TestQueueNameFilterIsExactWithWildcards(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t1CID, t1Sec) // Billing Queue, Billing Queue Overflow, Support Queue
	for filter, want := range map[string][]string{
		"Billing%20Queue":  {"Billing Queue"}, // not a prefix: Overflow stays out
		"bILLING%20qUEUE":  {"Billing Queue"},
		"Billing":          nil,
		"Billing*":         {"Billing Queue", "Billing Queue Overflow"},
		"*Queue":           {"Billing Queue", "Support Queue"},
		"*queue*":          {"Billing Queue", "Billing Queue Overflow", "Support Queue"},
		"*Overflow":        {"Billing Queue Overflow"},
		"*":                {"Billing Queue", "Billing Queue Overflow", "Support Queue"},
		"Support%20Queue*": {"Support Queue"},
	} {
		got := names(t, e.expect(200, tok, "GET", "/api/v2/routing/queues?name="+filter, nil).json(t))
		if !slices.Equal(got, want) {
			t.Errorf("queues?name=%s = %q, want %q", filter, got, want)
		}
	}
}

func TestQueueMemberAndUserQueueFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(srcCID, srcSec)
	qid := e.expect(200, tok, "GET", "/api/v2/routing/queues?name=Billing%20Queue", nil).json(t)["entities"].([]any)[0].(map[string]any)["id"].(string)
	members := "/api/v2/routing/queues/" + qid + "/members"
	for query, want := range map[string][]string{
		"":                        {"Jane Doe", "John Smith"},
		"?name=smi":               {"John Smith"}, // contains, case-insensitive
		"?name=nobody":            nil,
		"?joined=true":            {"Jane Doe", "John Smith"},
		"?joined=false":           nil,
		"?memberBy=user":          {"Jane Doe", "John Smith"},
		"?memberBy=group":         nil,
		"?name=doe&memberBy=user": {"Jane Doe"},
		"?name=doe&joined=false":  nil,
		"?pageSize=1&name=J":      {"Jane Doe"},
	} {
		if got := names(t, e.expect(200, tok, "GET", members+query, nil).json(t)); !slices.Equal(got, want) {
			t.Errorf("members%s = %q, want %q", query, got, want)
		}
	}
	e.unchecked().expectError(400, "invalid.query.param.value", tok, "GET", members+"?joined=maybe", nil)

	userQueues := "/api/v2/users/" + janeID + "/queues"
	for query, want := range map[string][]string{
		"":              {"Billing Queue", "Support Queue"},
		"?joined=true":  {"Billing Queue", "Support Queue"},
		"?joined=false": nil,
	} {
		if got := names(t, e.expect(200, tok, "GET", userQueues+query, nil).json(t)); !slices.Equal(got, want) {
			t.Errorf("users/{jane}/queues%s = %q, want %q", query, got, want)
		}
	}
}

// An operation gcsim does not simulate is 501 not.implemented: a 404 means
// the entity is gone, and a client acts on that.
func TestUnsimulatedOperationsAre501(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).unchecked()
	tok := e.token(srcCID, srcSec)
	e.expectError(501, "not.implemented", tok, "PUT", "/api/v2/users/"+johnID+"/roles", []string{})
	e.expectError(501, "not.implemented", tok, "GET", "/api/v2/telephony/providers/edges/dids", nil)
	e.expectError(404, "not.found", tok, "GET", "/api/v2/users/00000000-0000-4000-8000-000000000000", nil)
}

// UsersSearchResponse declares currentPage, nextPage and previousPage; a
// client that follows nextPage (GET /users/search?q64=) sees every page.
func TestUserSearchCarriesPageLinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(srcCID, srcSec)
	body := map[string]any{"pageSize": 1, "pageNumber": 1,
		"query": []map[string]any{{"type": "EXACT", "fields": []string{"email"}, "values": []string{"john.smith@acme.example", "jane.doe@acme.example"}}}}
	page := e.expect(200, tok, "POST", "/api/v2/users/search", body).json(t)
	var seen []string
	for n := 1; ; n++ {
		results := page["results"].([]any)
		if len(results) != 1 || page["pageNumber"] != float64(n) || page["currentPage"] == nil {
			t.Fatalf("page %d: %v", n, page)
		}
		seen = append(seen, results[0].(map[string]any)["name"].(string))
		if (n > 1) != (page["previousPage"] != nil) {
			t.Errorf("page %d: previousPage %v", n, page["previousPage"])
		}
		next, ok := page["nextPage"].(string)
		if !ok {
			break
		}
		page = e.expect(200, tok, "GET", next, nil).json(t)
	}
	if !slices.Equal(seen, []string{"Jane Doe", "John Smith"}) {
		t.Errorf("followed nextPage through %q", seen)
	}
}

// No answer carries a property its SDK model does not declare
// (User.dateModified, QueueMemberEntityListing.total/pageCount/lastUri,
// UserLicensesEntityListing.firstUri/selfUri/lastUri). The env's Recorder
// checks every answer; this test names the ones that used to break.
func TestAnswersCarryOnlyModelProperties(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(srcCID, srcSec)
	models, err := apispec.LoadSDKModels()
	if err != nil {
		t.Fatal(err)
	}
	qid := e.expect(200, tok, "GET", "/api/v2/routing/queues?name=Billing%20Queue", nil).json(t)["entities"].([]any)[0].(map[string]any)["id"].(string)
	for _, c := range []struct{ op, path string }{
		{"GET /api/v2/users/{userId}", "/api/v2/users/" + johnID},
		{"GET /api/v2/users", "/api/v2/users?id=" + johnID},
		{"GET /api/v2/routing/queues/{queueId}/members", "/api/v2/routing/queues/" + qid + "/members"},
		{"GET /api/v2/license/users", "/api/v2/license/users"},
	} {
		if problems := models.CheckResponse(c.op, e.expect(200, tok, "GET", c.path, nil).body); len(problems) > 0 {
			t.Errorf("%s: %q", c.path, problems)
		}
	}
}

// Genesys reports the rate limit window on every answer to a valid token,
// not only with a 429, so a client can pace itself before it is refused.
func TestRateLimitHeadersOnEveryAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RateLimitPerMinute: 3})
	tok := e.token(srcCID, srcSec)
	for i := 1; i <= 3; i++ {
		h := e.expect(200, tok, "GET", "/api/v2/organizations/me", nil).header
		if h.Get("inin-ratelimit-count") != strconv.Itoa(i) || h.Get("inin-ratelimit-allowed") != "3" || h.Get("inin-ratelimit-reset") != "60" {
			t.Errorf("answer %d: inin-ratelimit count=%q allowed=%q reset=%q", i,
				h.Get("inin-ratelimit-count"), h.Get("inin-ratelimit-allowed"), h.Get("inin-ratelimit-reset"))
		}
	}
	h := e.expect(429, tok, "GET", "/api/v2/organizations/me", nil).header
	if h.Get("inin-ratelimit-count") != "3" || h.Get("Retry-After") != "60" {
		t.Errorf("429: count=%q Retry-After=%q", h.Get("inin-ratelimit-count"), h.Get("Retry-After"))
	}
}

// The real platform is eventually consistent right after a create; gcsim
// is too unless told otherwise, so every client of it copes.
func TestConsistencyWindowsOnByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.token(t1CID, t1Sec)
	home := e.expect(200, tok, "GET", "/api/v2/authorization/divisions/home", nil).json(t)
	uid := e.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Fresh Agent", "email": "fresh.agent@acme.example", "divisionId": home["id"]}).json(t)["id"].(string)
	e.expectError(404, "not.found", tok, "GET", "/api/v2/users/"+uid, nil)
	e.clock.Advance(DefaultNotFoundAfterCreate)
	if state := e.expect(200, tok, "GET", "/api/v2/users/"+uid, nil).json(t)["state"]; state != "active" {
		t.Errorf("state %v after %v, want active (activation delay %v)", state, DefaultNotFoundAfterCreate, DefaultActivationDelay)
	}

	off := newEnv(t, Config{NotFoundAfterCreate: -1, ActivationDelay: -1})
	tok = off.token(t1CID, t1Sec)
	uid = off.expect(200, tok, "POST", "/api/v2/users", map[string]any{"name": "Fresh Agent", "email": "fresh.agent@acme.example", "divisionId": home["id"]}).json(t)["id"].(string)
	if state := off.expect(200, tok, "GET", "/api/v2/users/"+uid, nil).json(t)["state"]; state != "active" {
		t.Errorf("windows off: state %v, want active at once", state)
	}
}
