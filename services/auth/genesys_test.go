package auth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgconfig"
)

// The path every other service takes: a genesys client without credentials
// whose tokens come from the auth service through authclient.
func TestGenesysClientUsesAuthService(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	orgs, err := orgconfig.New(map[string]orgconfig.Org{"acme-src": {APIBaseURL: e.url, LoginBaseURL: e.url}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := orgs.Org("acme-src")
	if err != nil {
		t.Fatal(err)
	}
	c, err := genesys.New(cfg, genesys.WithTokenSource(authclient.TokenSource(e.nc, e.kv, "acme-src")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSkills(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSkills(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if n := e.oauthCalls(); n != 1 {
		t.Fatalf("%d token fetches, want 1", n)
	}
}

// A revoked token: the API answers 401, the genesys client drops the token
// and asks again, authclient sees the cache still holds the rejected token
// and sends force_refresh, the auth service fetches a new one.
func TestGenesysClientRecoversFromRevokedToken(t *testing.T) {
	t.Parallel()
	e := setup(t, options{forceMinAge: time.Nanosecond})
	orgs, _ := orgconfig.New(map[string]orgconfig.Org{"acme-src": {APIBaseURL: e.url, LoginBaseURL: e.url}})
	cfg, _ := orgs.Org("acme-src")
	ts := authclient.TokenSource(e.nc, e.kv, "acme-src")
	c, err := genesys.New(cfg, genesys.WithTokenSource(ts))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSkills(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	entry, _ := e.kv.Get(context.Background(), "acme-src")
	old, _ := authclient.DecodeToken(entry.Value())
	req, _ := http.NewRequest(http.MethodDelete, e.url+"/api/v2/tokens/me", nil)
	req.Header.Set("Authorization", "Bearer "+old.GetAccessToken())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if e.apiStatus(t, old.GetAccessToken()) != http.StatusUnauthorized {
		t.Fatal("token not revoked")
	}
	if _, err := c.ListSkills(context.Background(), ""); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if n := e.oauthCalls(); n != 2 {
		t.Fatalf("%d token fetches, want 2 (initial + forced refresh)", n)
	}
}
