package orgconfig_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/orgconfig"
)

const sample = `orgs:
  acme-src: {region: mypurecloud.ie, clientId: src-id, clientSecret: src-s3cr3t, rateLimit: 5, burst: 7}
  acme-t1:  {apiBaseURL: "http://127.0.0.1:9999", loginBaseURL: "http://127.0.0.1:9999"}
`

func write(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "orgs.yaml")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadAndOrg(t *testing.T) {
	t.Parallel()
	c, err := orgconfig.LoadEnv(write(t, sample, 0o600), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Keys(), ","); got != "acme-src,acme-t1" {
		t.Fatalf("keys %s", got)
	}
	src, err := c.Org("acme-src")
	if err != nil {
		t.Fatal(err)
	}
	if src.OrgID != "acme-src" || src.LoginBaseURL != "https://login.mypurecloud.ie" || src.APIBaseURL != "https://api.mypurecloud.ie" ||
		src.ClientID != "src-id" || src.ClientSecret != "src-s3cr3t" || src.RateLimit != 5 || src.Burst != 7 {
		t.Fatalf("acme-src = %+v", src)
	}
	t1, _ := c.Org("acme-t1")
	if t1.APIBaseURL != "http://127.0.0.1:9999" || t1.RateLimit != 10 || t1.ClientSecret != "" {
		t.Fatalf("acme-t1 = %v", t1)
	}
	if _, err := c.Org("nope"); !errors.Is(err, orgconfig.ErrUnknownOrg) || !strings.Contains(err.Error(), "acme-src, acme-t1") {
		t.Fatalf("unknown org error: %v", err)
	}
	if len(c.OrgConfigs()) != 2 {
		t.Fatal("OrgConfigs")
	}
	pub, _ := c.WithoutSecrets().Org("acme-src")
	if pub.ClientSecret != "" {
		t.Fatal("WithoutSecrets kept the secret")
	}
}

func TestEnvOverridesCredentials(t *testing.T) {
	t.Parallel()
	p := write(t, "orgs:\n  acme-t1: {region: eu-west-1}\n", 0o644) // no secret in file: any mode is fine
	c, err := orgconfig.LoadEnv(p, env(map[string]string{
		"ORGSYNC_ORG_ACME_T1_CLIENT_ID":     "env-id",
		"ORGSYNC_ORG_ACME_T1_CLIENT_SECRET": "env-s3cr3t",
	}))
	if err != nil {
		t.Fatal(err)
	}
	o, _ := c.Org("acme-t1")
	if o.ClientID != "env-id" || o.ClientSecret != "env-s3cr3t" {
		t.Fatalf("env override not applied: %v", o)
	}
	if orgconfig.EnvClientSecret("acme-t1") != "ORGSYNC_ORG_ACME_T1_CLIENT_SECRET" {
		t.Fatal(orgconfig.EnvClientSecret("acme-t1"))
	}
}

func TestRefusesReadableSecretsFile(t *testing.T) {
	t.Parallel()
	p := write(t, sample, 0o644)
	_, err := orgconfig.LoadEnv(p, env(nil))
	if err == nil {
		t.Fatal("loaded a 0644 file with secrets")
	}
	for _, want := range []string{p, "0644", "chmod 600 " + p, "acme-src"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "src-s3cr3t") {
		t.Fatal("error leaks the secret")
	}
	if _, err := orgconfig.LoadEnv(write(t, sample, 0o640), env(nil)); err == nil || !strings.Contains(err.Error(), "0640") {
		t.Fatalf("0640: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	bad := `orgs:
  acme.src: {region: mypurecloud.com}
  a-b: {region: mars.example}
  a_b: {region: mypurecloud.com}
  nourl: {apiBaseURL: "http://x"}
  ftp: {apiBaseURL: "ftp://x", loginBaseURL: "http://x"}
  half: {region: mypurecloud.com, clientId: only-id}
`
	_, err := orgconfig.LoadEnv(write(t, bad, 0o600), env(nil))
	if err == nil {
		t.Fatal("accepted invalid config")
	}
	for _, want := range []string{`"acme.src"`, `unknown region "mars.example"`, "share the environment prefix ORGSYNC_ORG_A_B_",
		"org nourl: region is required", `apiBaseURL "ftp://x"`, "org half: clientId and clientSecret must be set together"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := orgconfig.LoadEnv(write(t, "orgs:\n  x: {region: mypurecloud.com, clientSecrets: oops}\n", 0o600), env(nil)); err == nil ||
		!strings.Contains(err.Error(), "clientSecrets") {
		t.Fatalf("typo'd field accepted: %v", err)
	}
	if _, err := orgconfig.LoadEnv(filepath.Join(t.TempDir(), "missing.yaml"), env(nil)); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSecretsNeverRendered(t *testing.T) {
	t.Parallel()
	c, err := orgconfig.LoadEnv(write(t, sample, 0o600), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	o, _ := c.Org("acme-src")
	e, _ := c.Entry("acme-src")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "config", c, "org", o, "entry", e)
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", c, c, c, c.String(), e, e, e) + fmt.Sprint(o) + buf.String()
	if strings.Contains(out, "src-s3cr3t") {
		t.Fatalf("secret rendered:\n%s", out)
	}
	if !strings.Contains(out, "[REDACTED]") || !strings.Contains(out, "src-id") {
		t.Fatalf("expected redacted secret and visible client id:\n%s", out)
	}
}

func TestWithRateShareScalesEveryBudget(t *testing.T) {
	t.Parallel()
	c, err := orgconfig.LoadEnv(write(t, sample, 0o600), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	half := c.WithRateShare(0.5)
	src, _ := half.Org("acme-src")
	t1, _ := half.Org("acme-t1") // no budget in the file: the default rate (10/s) is scaled
	if src.RateLimit != 2.5 || src.Burst != 7 || t1.RateLimit != 5 || t1.Burst != 10 {
		t.Errorf("share 0.5: acme-src %v/s burst %d, acme-t1 %v/s burst %d; want 2.5/7 and 5/10 (bursts kept)", src.RateLimit, src.Burst, t1.RateLimit, t1.Burst)
	}
	if src.ClientSecret != "src-s3cr3t" {
		t.Error("WithRateShare dropped the credentials")
	}
	if orig, _ := c.Org("acme-src"); orig.RateLimit != 5 {
		t.Errorf("WithRateShare changed the original: %v/s", orig.RateLimit)
	}
	for _, share := range []float64{0, 1, -1, 2} {
		if c.WithRateShare(share) != c {
			t.Errorf("share %v changed the config", share)
		}
	}
}

const labelled = `orgs:
  src:   {region: mypurecloud.ie, labels: {role: source}}
  t-ie:  {region: mypurecloud.ie, labels: {region: emea, tier: prod}}
  t-de:  {region: mypurecloud.de, labels: {region: emea, tier: test}}
  t-us:  {region: mypurecloud.com, labels: {region: amer, tier: prod}}
sets:
  emea: [t-ie, t-de]
  all-targets: [t-ie, t-de, t-us]
`

// An operator names orgs by label selector or by set; typos are errors that
// say what exists.
func TestSelectAndExpandTargets(t *testing.T) {
	t.Parallel()
	c, err := orgconfig.LoadEnv(write(t, labelled, 0o600), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for sel, want := range map[string]string{"tier=prod": "t-ie,t-us", "region=emea,tier=prod": "t-ie", " region = emea ": "t-de,t-ie", "tier in (prod test),region!=amer": "t-de,t-ie"} {
		got, err := c.Select(sel)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("Select(%q) = %v, %v; want %s", sel, got, err, want)
		}
	}
	for sel, want := range map[string]string{"tier=staging": "matches no org (labels in use: region=amer, region=emea, role=source, tier=prod, tier=test)", "tier=a b": `label tier: value "a b"`, "tier=": `value ""`} {
		if _, err := c.Select(sel); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Select(%q) error %v; want %q", sel, err, want)
		}
	}
	got, err := c.Expand([]string{"emea", "t-us", "t-ie"})
	if err != nil || strings.Join(got, ",") != "t-ie,t-de,t-us" {
		t.Errorf("Expand = %v, %v", got, err)
	}
	if _, err := c.Expand([]string{"emia", "t-ie"}); !errors.Is(err, orgconfig.ErrUnknownOrg) || !strings.Contains(err.Error(), "emia (orgs: src, t-de, t-ie, t-us; sets: all-targets, emea)") {
		t.Errorf("Expand of a typo: %v", err)
	}
	bad := labelled + "  src: [t-ie]\n  empty: []\n  typo: [t-fr]\n"
	_, err = orgconfig.LoadEnv(write(t, bad, 0o600), env(nil))
	for _, want := range []string{"set src has the name of an org", "set empty lists no org", `set typo: unknown org "t-fr"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invalid sets: error %v lacks %q", err, want)
		}
	}
}
