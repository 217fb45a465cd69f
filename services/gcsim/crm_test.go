package gcsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	t1CRMKey = "target1-crm-key"
	t2CRMKey = "target2-crm-key"
)

// crmCall sends a fake-CRM request (outside the Genesys spec, so not
// through the spec validator).
func (e *env) crmCall(key, method, externalKey string, body any) result {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+"/crm/v1/users/"+externalKey, rd)
	if key != "" {
		req.Header.Set("X-CRM-Key", key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s /crm/v1/users/%s: %v", method, externalKey, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: data}
}

func (e *env) crmExpect(status int, key, method, externalKey string, body any) map[string]any {
	e.t.Helper()
	r := e.crmCall(key, method, externalKey, body)
	if r.status != status {
		e.t.Fatalf("%s /crm/v1/users/%s: status %d, want %d; body %s", method, externalKey, r.status, status, r.body)
	}
	return r.json(e.t)
}

var janeCRM = map[string]any{"email": "jane.doe@acme.example", "name": "Jane Doe", "genesysUserId": "g-1", "attributes": map[string]string{"team": "billing"}}

func TestCRMStatusTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{CRMDelay: 30 * time.Second})
	if r := e.crmCall("", "GET", "jane", nil); r.status != 401 {
		t.Fatalf("no key: %d", r.status)
	}
	if r := e.crmCall("wrong", "PUT", "jane", janeCRM); r.status != 401 || strings.Contains(string(r.body), "wrong") {
		t.Fatalf("bad key: %d %s", r.status, r.body)
	}
	e.crmExpect(404, t1CRMKey, "GET", "jane", nil)
	if m := e.crmExpect(400, t1CRMKey, "PUT", "jane", map[string]any{"name": "no email"}); !strings.Contains(m["message"].(string), "email") {
		t.Fatalf("missing email: %v", m)
	}

	start := e.clock.Now()
	m := e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM)
	if m["externalKey"] != "jane" || m["status"] != CRMPending {
		t.Fatalf("PUT: %v", m)
	}
	e.clock.Advance(30*time.Second - time.Millisecond)
	if m := e.crmExpect(200, t1CRMKey, "GET", "jane", nil); m["status"] != CRMPending || m["email"] != "jane.doe@acme.example" {
		t.Fatalf("before the delay: %v", m)
	}
	e.clock.Advance(time.Millisecond)
	m = e.crmExpect(200, t1CRMKey, "GET", "jane", nil)
	if m["status"] != CRMProvisioned || m["updatedAt"] != fmtTime(start.Add(30*time.Second)) || m["error"] != nil {
		t.Fatalf("after the delay: %v", m)
	}
	// Tenant isolation: another org's key does not see the record.
	e.crmExpect(404, t2CRMKey, "GET", "jane", nil)

	// Retrying the same content is idempotent; changed content is a new attempt.
	if m := e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM); m["status"] != CRMProvisioned {
		t.Fatalf("identical PUT: %v", m)
	}
	changed := map[string]any{"email": "jane.doe@acme.example", "name": "Jane Doe-Smith"}
	if m := e.crmExpect(202, t1CRMKey, "PUT", "jane", changed); m["status"] != CRMPending {
		t.Fatalf("changed PUT: %v", m)
	}
	rec, ok := e.sim.CRMRecord(t1Org, "jane")
	if !ok || rec.Submissions != 2 || rec.Name != "Jane Doe-Smith" || rec.Status != CRMPending {
		t.Fatalf("CRMRecord: %+v %v", rec, ok)
	}
	st := e.sim.Stats(t1Org)
	if st.CRMRequests["PUT /crm/v1/users/{externalKey}"] != 4 || st.CRMRequests["GET /crm/v1/users/{externalKey}"] != 3 || st.TotalRequests() != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestCRMErrorAndNever(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{CRMDelay: time.Second})
	if err := e.sim.SetCRMBehaviour(t1Org, CRMBehaviour{Fail: true, FailReason: "no CRM seat left", Delay: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetCRMKeyBehaviour(t1Org, "stuck", CRMBehaviour{Never: true}); err != nil {
		t.Fatal(err)
	}
	e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM)
	e.crmExpect(202, t1CRMKey, "PUT", "stuck", janeCRM)
	e.crmExpect(202, t2CRMKey, "PUT", "jane", janeCRM) // other org: healthy, 1s
	e.clock.Advance(time.Second)
	if m := e.crmExpect(200, t1CRMKey, "GET", "jane", nil); m["status"] != CRMPending {
		t.Fatalf("org delay 10s, at 1s: %v", m)
	}
	if m := e.crmExpect(200, t2CRMKey, "GET", "jane", nil); m["status"] != CRMProvisioned {
		t.Fatalf("other org: %v", m)
	}
	e.clock.Advance(9 * time.Second)
	if m := e.crmExpect(200, t1CRMKey, "GET", "jane", nil); m["status"] != CRMError || m["error"] != "no CRM seat left" {
		t.Fatalf("failing CRM: %v", m)
	}
	e.clock.Advance(24 * time.Hour)
	if m := e.crmExpect(200, t1CRMKey, "GET", "stuck", nil); m["status"] != CRMPending {
		t.Fatalf("never-answering CRM: %v", m)
	}
	// A record in ERROR is retried by the same PUT once the CRM heals.
	if err := e.sim.SetCRMBehaviour(t1Org, CRMBehaviour{}); err != nil {
		t.Fatal(err)
	}
	if m := e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM); m["status"] != CRMPending {
		t.Fatalf("retry after ERROR: %v", m)
	}
	e.clock.Advance(time.Second)
	if rec, _ := e.sim.CRMRecord(t1Org, "jane"); rec.Status != CRMProvisioned || rec.Error != "" || rec.Submissions != 2 {
		t.Fatalf("after retry: %+v", rec)
	}
	if got := e.sim.CRMRecords(t1Org); len(got) != 2 || got[0].ExternalKey != "jane" || got[1].Status != CRMPending {
		t.Fatalf("CRMRecords: %+v", got)
	}

	if err := e.sim.SetCRMBehaviour(t1Org, CRMBehaviour{Delay: -1}); err == nil {
		t.Fatal("negative delay accepted")
	}
	if err := e.sim.SetCRMBehaviour("nope", CRMBehaviour{}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown org: %v", err)
	}
	if err := (Config{CRMDelay: -time.Second}).Validate(); err == nil {
		t.Fatal("negative CRMDelay accepted")
	}
}

func TestCRMRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	if err := e.sim.SetCRMBehaviour(t1Org, CRMBehaviour{RateLimitEvery: 2, RetryAfter: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM)
	r := e.crmCall(t1CRMKey, "GET", "jane", nil)
	if r.status != 429 || r.header.Get("Retry-After") != "2" {
		t.Fatalf("2nd request: %d Retry-After %q, want 429 with Retry-After 2", r.status, r.header.Get("Retry-After"))
	}
	e.crmExpect(200, t1CRMKey, "GET", "jane", nil)
	// Per-key behaviour: this record is always rate limited, others are not.
	if err := e.sim.SetCRMKeyBehaviour(t1Org, "hot", CRMBehaviour{RateLimitEvery: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := e.crmCall(t1CRMKey, "PUT", "hot", janeCRM); r.status != 429 || r.header.Get("Retry-After") != "1" {
			t.Fatalf("hot key: %d %q", r.status, r.header.Get("Retry-After"))
		}
	}
	if _, ok := e.sim.CRMRecord(t1Org, "hot"); ok {
		t.Fatal("a rate-limited PUT must have no effect")
	}
	if st := e.sim.Stats(t1Org); st.CRMRateLimited != 4 {
		t.Fatalf("CRMRateLimited = %d, want 4", st.CRMRateLimited)
	}
}

func TestCRMKeyFixtureValidation(t *testing.T) {
	t.Parallel()
	f := DemoFixture()
	f.Orgs[2].CRMAPIKey = f.Orgs[1].CRMAPIKey
	sim, _ := New(Config{})
	if err := sim.LoadFixture(f); err == nil || !strings.Contains(err.Error(), "crmApiKey") {
		t.Fatalf("duplicate crmApiKey: %v", err)
	}
	if st, _ := json.Marshal(mustState(t, DemoFixture())); strings.Contains(string(st), "crm-key") {
		t.Fatal("state dump leaks the CRM key")
	}
}

func mustState(t *testing.T, f *Fixture) OrgState {
	sim, _ := New(Config{})
	if err := sim.LoadFixture(f); err != nil {
		t.Fatal(err)
	}
	st, _ := sim.OrgState(t1Org)
	return st
}

func TestCRMAndSocketAdminEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: -1})
	admin := func(method, path, body string) result {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return result{status: resp.StatusCode, body: data}
	}
	if r := admin("PUT", "/_sim/orgs/"+t1Org+"/crm/behaviour", `{"delay":"1m","fail":true,"failReason":"down"}`); r.status != 204 {
		t.Fatalf("PUT behaviour: %d %s", r.status, r.body)
	}
	if r := admin("PUT", "/_sim/orgs/"+t1Org+"/crm/behaviour", `{"delay":"soon"}`); r.status != 400 {
		t.Fatalf("bad duration: %d", r.status)
	}
	e.crmExpect(202, t1CRMKey, "PUT", "jane", janeCRM)
	e.clock.Advance(time.Minute)
	r := admin("GET", "/_sim/orgs/"+t1Org+"/crm", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"status":"ERROR"`) || !strings.Contains(string(r.body), `"error":"down"`) {
		t.Fatalf("GET crm: %d %s", r.status, r.body)
	}
	_, uri := e.createChannel(e.token(t1CID, t1Sec))
	dial(t, uri)
	if r := admin("POST", "/_sim/orgs/"+t1Org+"/websockets/drop", ""); r.status != 200 || !strings.Contains(string(r.body), `"dropped":1`) {
		t.Fatalf("drop: %d %s", r.status, r.body)
	}
}
