package genesys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/orgsync/orgsync/pkg/apispec"
)

func TestRegionAcceptsDomainAndAWSName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"mypurecloud.ie", "eu-west-1", "EU-WEST-1", "api.mypurecloud.ie", "https://login.mypurecloud.ie"} {
		r, err := LookupRegion(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.APIBaseURL() != "https://api.mypurecloud.ie" || r.LoginBaseURL() != "https://login.mypurecloud.ie" {
			t.Fatalf("%s → %s, %s", name, r.APIBaseURL(), r.LoginBaseURL())
		}
	}
	cfg := OrgConfig{OrgID: "acme", Region: "ap-southeast-2", ClientID: "id", ClientSecret: "s"}.WithDefaults()
	if cfg.APIBaseURL != "https://api.mypurecloud.com.au" || cfg.LoginBaseURL != "https://login.mypurecloud.com.au" {
		t.Fatalf("derived hosts: %s %s", cfg.APIBaseURL, cfg.LoginBaseURL)
	}
}

func TestInvalidRegionListsValidOnes(t *testing.T) {
	t.Parallel()
	_, err := New(OrgConfig{OrgID: "acme", Region: "mars-north-1", ClientID: "id", ClientSecret: "s"})
	if err == nil {
		t.Fatal("New accepted an unknown region")
	}
	for _, want := range []string{`unknown region "mars-north-1"`, "mypurecloud.com", "eu-west-1", "usw2.pure.cloud", `org "acme"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := OrgConfig{PageSize: 500, APIBaseURL: "ftp://x"}.WithDefaults().Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"OrgID is required", "Region is required", "ClientID and ClientSecret are required", "PageSize 500 out of range 1..100"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// A token source replaces the credentials.
	if _, err := New(OrgConfig{OrgID: "a", APIBaseURL: "http://127.0.0.1:1", LoginBaseURL: "http://127.0.0.1:1"},
		WithTokenSource(staticToken("t"))); err != nil {
		t.Fatalf("New with token source and no credentials: %v", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value-XYZ"
	cfg := OrgConfig{OrgID: "acme", Region: "us-east-1", ClientID: "cid", ClientSecret: secret}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "org", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logs.String()} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret printed: %s", s)
		}
		if !strings.Contains(s, "cid") {
			t.Fatalf("client id missing from %s", s)
		}
	}
}

func TestEveryClientOperationIsInTheSpec(t *testing.T) {
	t.Parallel()
	spec, err := apispec.Load()
	if err != nil {
		t.Fatal(err)
	}
	ops := Operations()
	if len(ops) < 40 {
		t.Fatalf("only %d operations registered", len(ops))
	}
	for _, s := range ops {
		o, err := apispec.ParseOperation(s)
		if err != nil {
			t.Fatal(err)
		}
		if !spec.Has(o) {
			t.Errorf("client operation %s is not in the Genesys spec", s)
		}
	}
}

func TestPathParametersAreEscapedAndRequired(t *testing.T) {
	t.Parallel()
	r := request{op: opGetUserByExternalID, params: []string{"orgsync", "SRC|USER|Jane Doe/1"}}
	p, err := r.path()
	if err != nil {
		t.Fatal(err)
	}
	if p != "/api/v2/users/externalid/orgsync/SRC%7CUSER%7CJane%20Doe%2F1" {
		t.Fatalf("path = %s", p)
	}
	_, err = request{op: opGetUser, params: []string{" "}}.path()
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "GET /api/v2/users/{userId}") {
		t.Fatalf("empty id: %v", err)
	}
}

func TestIsPermanentClassifiesOnce(t *testing.T) {
	api := func(status int) error { return fmt.Errorf("wrapped: %w", &APIError{Status: status}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"400", api(400), true},
		{"401 after re-auth", api(401), true},
		{"403", api(403), true},
		{"404", api(404), true},
		{"408", api(408), false},
		{"409", api(409), true},
		{"429", api(429), false},
		{"500", api(500), false},
		{"501", api(501), true},
		{"503", api(503), false},
		{"504", api(504), false},
		{"invalid argument", invalidArg(operation{Method: "GET", Path: "/x"}, "bad"), true},
		{"token refused", &TokenError{Status: 401, ErrorCode: "invalid_client"}, true},
		{"token endpoint down", &TokenError{Status: 503}, false},
		{"token endpoint unreachable", &TokenError{Err: errors.New("connection refused")}, false},
		{"connection reset", fmt.Errorf("genesys: GET /x: %w", syscall.ECONNRESET), false},
		{"timeout", context.DeadlineExceeded, false},
	} {
		if got := IsPermanent(tc.err); got != tc.want {
			t.Errorf("%s: IsPermanent = %v, want %v", tc.name, got, tc.want)
		}
	}
}
