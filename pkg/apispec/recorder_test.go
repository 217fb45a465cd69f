package apispec

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoadRoutesEveryPathOfTheSpec(t *testing.T) {
	t.Parallel()
	spec, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(spec.Doc.Paths.Map()); got != 94 {
		t.Fatalf("spec has %d paths, want the 94 of the reference subset", got)
	}
	cases := map[string]string{
		"POST /api/v2/users/search":               "/api/v2/users/search",
		"GET /api/v2/users/abc":                   "/api/v2/users/{userId}",
		"GET /api/v2/users/externalid/SRC/k%7C1":  "/api/v2/users/externalid/{authorityName}/{externalKey}",
		"PUT /api/v2/users/u1/routingskills/bulk": "/api/v2/users/{userId}/routingskills/bulk",
	}
	for in, want := range cases {
		method, target, _ := strings.Cut(in, " ")
		req := httptest.NewRequest(method, "http://127.0.0.1:1"+target, nil)
		route, _, err := spec.FindRoute(req)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if route.Path != want {
			t.Errorf("%s routed to %s, want %s", in, route.Path, want)
		}
	}
}

// The Recorder itself is the unit under test here, so a scripted httptest
// server stands in for "any server": it answers what the test tells it to.
func TestRecorderFlagsRequestAndResponseViolations(t *testing.T) {
	t.Parallel()
	var reply string
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, reply)
	}))
	defer srv.Close()
	rec := NewValidatingTransport(nil)
	client := &http.Client{Transport: rec}

	do := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != reply {
			t.Fatalf("body changed in transit: %q", got)
		}
	}

	// Valid exchange: covered, no violation.
	status, reply = 200, `{"id":"s1","name":"Billing","state":"active","version":"1"}`
	do("POST", "/api/v2/routing/skills", `{"name":"Billing"}`)
	// Missing required email and divisionId → request violation.
	status, reply = 200, `{"id":"u1","name":"n","version":1}`
	do("POST", "/api/v2/users", `{"name":"n"}`)
	// Response missing required "version" and with a wrong type → response violation.
	status, reply = 200, `{"id":"u1","name":7}`
	do("GET", "/api/v2/users/u1", "")
	// Undocumented status → response violation.
	status, reply = 418, `{}`
	do("GET", "/api/v2/routing/skills", "")
	// Unknown path → route violation; non-API path passes unvalidated.
	status, reply = 200, `{}`
	do("GET", "/api/v2/routing/routingprofiles/x", "")
	do("POST", "/oauth/token", "grant_type=client_credentials")

	vs := rec.Violations()
	byPhase := map[Phase]int{}
	for _, v := range vs {
		byPhase[v.Phase]++
		t.Log(v)
	}
	if byPhase[PhaseRequest] != 1 || byPhase[PhaseResponse] != 2 || byPhase[PhaseRoute] != 1 {
		t.Fatalf("violations by phase = %v, want request 1, response 2, route 1", byPhase)
	}
	covered := rec.Covered()
	if len(covered) != 2 || covered[0].String() != "POST /api/v2/routing/skills" || covered[1].String() != "POST /api/v2/users" {
		t.Fatalf("covered = %v", covered)
	}
	missing := rec.Missing([]Operation{{"POST", "/api/v2/routing/skills"}, {"GET", "/api/v2/users/{userId}"}})
	if len(missing) != 1 || missing[0].Path != "/api/v2/users/{userId}" {
		t.Fatalf("missing = %v", missing)
	}
}

func TestSDKModelCheck(t *testing.T) {
	t.Parallel()
	m, err := LoadSDKModels()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.CheckResponse("GET /api/v2/users/{userId}", []byte(`{"id":"u1","version":3,"skills":[{"id":"s","proficiency":4}]}`)); len(got) > 0 {
		t.Errorf("valid User: %q", got)
	}
	got := m.CheckResponse("GET /api/v2/users/{userId}", []byte(`{"id":"u1","dateModified":"x","skills":[{"proficiency":"4"}]}`))
	want := []string{
		`$.skills[0].proficiency: string where number is declared`,
		`$: property "dateModified" is not declared by model User`,
		`$: required property "version" of model User is missing`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("invalid User:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
