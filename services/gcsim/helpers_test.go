package gcsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/apispec"
)

// Demo fixture ids used across tests.
const (
	srcOrg = "5f0c2a4e-0000-4000-8000-000000000001"
	t1Org  = "5f0c2a4e-0000-4000-8000-000000000011"
	t2Org  = "5f0c2a4e-0000-4000-8000-000000000012"
	janeID = "5f0c2a4e-0000-4000-8000-0000000000a2"
	johnID = "5f0c2a4e-0000-4000-8000-0000000000a1"
	srcCID = "source-client"
	srcSec = "source-secret"
	t1CID  = "target1-client"
	t1Sec  = "target1-secret"
	t2CID  = "target2-client"
	t2Sec  = "target2-secret"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t      *testing.T
	sim    *Sim
	srv    *httptest.Server
	clock  *fakeClock
	client *http.Client
	rec    *apispec.Recorder
}

// newEnv starts a simulator with the demo fixture and a fake clock.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Clock = clock.Now
	if cfg.RateLimitPerMinute == 0 {
		cfg.RateLimitPerMinute = -1
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sim.LoadFixture(DemoFixture()); err != nil {
		t.Fatalf("LoadFixture(demo): %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	// Every exchange is validated against the Genesys spec; a test fails on
	// any request or response that breaks the contract.
	rec := apispec.NewValidatingTransport(srv.Client().Transport)
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			t.Errorf("spec %s", v)
		}
	})
	return &env{t: t, sim: sim, srv: srv, clock: clock, client: &http.Client{Transport: rec}, rec: rec}
}

// token obtains an access token with client credentials (Basic auth).
func (e *env) token(clientID, secret string) string {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("POST /oauth/token: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != 200 {
		e.t.Fatalf("POST /oauth/token for %s: status %d", clientID, resp.StatusCode)
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body.AccessToken == "" || body.TokenType != "bearer" || body.ExpiresIn <= 0 {
		e.t.Fatalf("token response incomplete: %+v", body)
	}
	return body.AccessToken
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

func (r result) list(t *testing.T) []any {
	t.Helper()
	var m []any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// call performs an API request with the bearer token; body is JSON-encoded
// unless nil.
func (e *env) call(tok, method, path string, body any) result {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: data}
}

// expect asserts the status and returns the result.
func (e *env) expect(status int, tok, method, path string, body any) result {
	e.t.Helper()
	r := e.call(tok, method, path, body)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	return r
}

// expectError asserts an ErrorBody with status and code.
func (e *env) expectError(status int, code, tok, method, path string, body any) map[string]any {
	e.t.Helper()
	m := e.expect(status, tok, method, path, body).json(e.t)
	if m["code"] != code || int(m["status"].(float64)) != status || m["message"] == "" || m["contextId"] == "" {
		e.t.Fatalf("%s %s: ErrorBody %v, want code %s status %d with message and contextId", method, path, m, code, status)
	}
	return m
}

func names(t *testing.T, listing map[string]any) []string {
	t.Helper()
	var out []string
	for _, e := range listing["entities"].([]any) {
		out = append(out, e.(map[string]any)["name"].(string))
	}
	return out
}

// unchecked returns a view of e whose requests bypass the spec validator:
// for tests that deliberately send requests the spec forbids.
func (e *env) unchecked() *env {
	c := *e
	c.client = e.srv.Client()
	return &c
}
