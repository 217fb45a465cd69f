package natsx_test

import (
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestSubjectBuilders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		build func(string) (string, error)
		want  string
	}{
		{natsx.CloneSubject, "orgsync.clone.acme-src"},
		{natsx.ChangeSubject, "orgsync.change.acme-src"},
		{natsx.SnapshotSubject, "orgsync.snapshot.acme-src"},
		{natsx.PlanSubject, "orgsync.plan.acme-src"},
		{natsx.IntegrationSubject, "orgsync.integration.acme-src"},
		{natsx.TokenSubject, "orgsync.auth.token.acme-src"},
	}
	for _, c := range cases {
		got, err := c.build("acme-src")
		if err != nil || got != c.want {
			t.Errorf("got %q, %v; want %q", got, err, c.want)
		}
		if org, err := natsx.OrgFromSubject(got); err != nil || org != "acme-src" {
			t.Errorf("OrgFromSubject(%q) = %q, %v", got, org, err)
		}
	}
	got, err := natsx.EventSubject("tgt_1", orgsyncv1.EventKind_EVENT_KIND_DRIFT)
	if err != nil || got != "orgsync.event.tgt_1.drift" {
		t.Errorf("EventSubject = %q, %v", got, err)
	}
	if _, err := natsx.EventSubject("tgt", orgsyncv1.EventKind_EVENT_KIND_UNSPECIFIED); err == nil {
		t.Error("EventSubject accepted EVENT_KIND_UNSPECIFIED")
	}
	if f, _ := natsx.EventFilter("tgt"); f != "orgsync.event.tgt.>" {
		t.Errorf("EventFilter = %q", f)
	}
}

func TestOrgKeyValidation(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"":                      "empty",
		"acme.src":              "'.'",
		"acme*":                 `wildcard '*'`,
		"acme>":                 `wildcard '>'`,
		"acme src":              "whitespace",
		"acme\tsrc":             "whitespace",
		"-acme":                 "leading '-'",
		"acmé":                  "'é'",
		strings.Repeat("a", 65): "at most 64",
	}
	for key, want := range bad {
		_, err := natsx.PlanSubject(key)
		if err == nil {
			t.Errorf("PlanSubject(%q) accepted an invalid key", key)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plan subject") {
			t.Errorf("PlanSubject(%q) error %q lacks %q", key, err, want)
		}
	}
	for _, ok := range []string{"a", "acme-src", "ACME_2", "0rg"} {
		if err := natsx.ValidateOrgKey(ok); err != nil {
			t.Errorf("ValidateOrgKey(%q) = %v", ok, err)
		}
	}
}
