package orgsync

import (
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestOrgsCheck is an SRE checking the orgs before a clone: one org has a
// wrong client secret, one answers 503 to everything. Each gets its own
// precise line, the healthy ones say token ok, reachable and the rate limit
// seen, and the secret is nowhere.
func TestOrgsCheck(t *testing.T) {
	t.Parallel()
	const wrongSecret = "rotated-secret-target3"
	h := startHarnessConfig(t, DevConfig{Sim: gcsim.Config{}, // gcsim's real per-token rate limit: its headers are seen
		EditOrgs: func(_ string, o map[string]orgconfig.Org) {
			c := o["target3"]
			c.ClientSecret = wrongSecret
			o["target3"] = c
		}})
	if err := h.dev.Sim.SetFaults(h.orgID("target2"), gcsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := h.cli("orgs", "check", "--orgs", h.orgsFile)
	t.Logf("orgs check:\n%s%s", out, errOut)
	if code != ExitFailed || !strings.Contains(errOut, "2 of 4 org(s) failed the check") {
		t.Errorf("exit %d, want %d and the failed count\nstderr %s", code, ExitFailed, errOut)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for org, want := range map[string][]string{
		"source":  {"ok", "yes", "/300", `ok: organization "`},
		"target1": {"ok", "yes", "/300", `ok: organization "`},
		"target2": {" ok ", " no ", "/300", "read: GET /api/v2/organizations/me (org target2): 503"},
		"target3": {"FAILED", " no ", "token: ", "401"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[org], w) {
				t.Errorf("%s line lacks %q: %q", org, w, lines[org])
			}
		}
	}
	if strings.Contains(out+errOut, wrongSecret) {
		t.Errorf("orgs check output shows the client secret")
	}
	// A set of the org registry expands to its orgs; one org alone is fine.
	if code, out, errOut := h.cli("orgs", "check", "target1", "--orgs", h.orgsFile); code != ExitOK || strings.Count(out, "\n") != 2 {
		t.Errorf("orgs check target1: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := h.cli("orgs", "check", "--target-selector", "tier=prod", "--orgs", h.orgsFile); code != ExitFailed ||
		!strings.Contains(out, "target1") || !strings.Contains(out, "target2") || strings.Contains(out, "target3") {
		t.Errorf("orgs check --target-selector tier=prod: exit %d\n%s", code, out)
	}
}
