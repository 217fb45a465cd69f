package orgsync

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestPlanTellsTheTruth runs `orgsync plan` as a user does (issue 12,
// defect 4): against a fresh target it lists what would be created (+);
// right after a clone it says unchanged, with no diff, no stepsApplied and
// no write; after an admin edits a cloned user's title and department in the
// target (PATCH /api/v2/users/{id}) it shows both fields, old → new, for
// that target only. Each plan writes nothing, in any target, nor in the
// audit trail.
func TestPlanTellsTheTruth(t *testing.T) {
	t.Parallel()
	h := startHarness(t, nil, nil)
	cli := h.cli
	users := "john.smith@acme.example,jane.doe@acme.example"
	john := extid.User("source", "john.smith@acme.example")
	// plan runs `orgsync plan` on targets, in text then in JSON, and checks
	// that neither wrote to any target.
	plan := func(t *testing.T, targets string) (string, *planDoc) {
		t.Helper()
		before := map[string]gcsim.Stats{}
		for _, k := range e2eTargets {
			before[k] = h.stats(k)
		}
		code, text, errOut := cli("plan", "--source", "source", "--user", users, "--target", targets)
		if code != ExitOK {
			t.Fatalf("plan: exit %d\nstdout %s\nstderr %s", code, text, errOut)
		}
		code, out, errOut := cli("plan", "--source", "source", "--user", users, "--target", targets, "--output", "json")
		var rep planDoc
		if err := json.Unmarshal([]byte(out), &rep); code != ExitOK || err != nil {
			t.Fatalf("plan --output json: exit %d, %v\nstdout %s\nstderr %s", code, err, out, errOut)
		}
		for _, k := range e2eTargets {
			if n := SimWrites(h.stats(k)) - SimWrites(before[k]); n != 0 {
				t.Errorf("plan wrote %d times to %s: %v", n, k, simWriteOps(h.stats(k)))
			}
		}
		for _, tr := range rep.Targets {
			for _, u := range tr.Users {
				if len(u.StepsApplied) != 0 {
					t.Errorf("plan, %s %s: stepsApplied %v in a dry run", tr.Org, u.ExternalID, u.StepsApplied)
				}
			}
		}
		t.Logf("plan --target %s:\n%s", targets, text)
		return text, &rep
	}

	t.Run("fresh target: + for the user and the resources to create", func(t *testing.T) {
		text, rep := plan(t, "target3")
		tr := rep.target(t, "target3")
		if tr.Status != "planned" || !rep.DryRun {
			t.Fatalf("plan of a fresh target: %s", mustJSON(rep))
		}
		u := tr.user(t, john)
		if !hasChange(u.Changes, planChange{Op: "create", Resource: "user", Field: "email", New: "john.smith@acme.example"}) {
			t.Errorf("plan lacks the creation of John: %s", mustJSON(u))
		}
		if !hasChange(u.Changes, planChange{Op: "create", Resource: "skill", Field: "skills[Billing]", New: "5"}) {
			t.Errorf("plan lacks John's skill Billing: %s", mustJSON(u.Changes))
		}
		jane := tr.user(t, extid.User("source", "jane.doe@acme.example"))
		if !hasChange(jane.Changes, planChange{Op: "create", Resource: "profile", Field: "manager", New: "john.smith@acme.example"}) {
			t.Errorf("plan lacks Jane's manager (John, created by the same plan): %s", mustJSON(jane.Changes))
		}
		if !hasChange(tr.Changes, planChange{Op: "create", Resource: "team", Field: "name", New: "Billing Team"}) {
			t.Errorf("plan lacks the creation of team Billing Team: %s", mustJSON(tr.Changes))
		}
		// A dry run writes nothing into the audit trail (the phone number
		// it would choose is in its plan, not in the trail).
		if code, out, errOut := cli("audit", "--org", "target3"); code != ExitOK || out != "" {
			t.Errorf("audit trail of target3 after a plan: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		for _, want := range []string{`+ team "Billing Team"`, "+ user john.smith@acme.example", "      + skills[Billing]: 5", `      + title: "Billing Supervisor"`} {
			if !strings.Contains(text, want) {
				t.Errorf("plan output lacks %q:\n%s", want, text)
			}
		}
	})

	code, out, errOut := cli("clone", "--source", "source", "--user", users, "--target", "target1,target2", "--wait")
	if code != ExitOK {
		t.Fatalf("clone: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	t.Run("right after a clone: unchanged, no diff", func(t *testing.T) {
		text, rep := plan(t, "target1,target2")
		for _, tr := range rep.Targets {
			if tr.Status != "unchanged" || tr.Counts["unchanged"] != 2 || len(tr.Changes) != 0 {
				t.Errorf("%s: status %s, counts %v, changes %v; want unchanged, 2 users unchanged, no change", tr.Org, tr.Status, tr.Counts, tr.Changes)
			}
			for _, u := range tr.Users {
				if u.Status != "unchanged" || len(u.Changes) != 0 {
					t.Errorf("%s %s: %s, changes %s; want unchanged, none", tr.Org, u.ExternalID, u.Status, mustJSON(u.Changes))
				}
			}
		}
		for _, line := range strings.Split(text, "\n") {
			if l := strings.TrimSpace(line); strings.HasPrefix(l, "+ ") || strings.HasPrefix(l, "~ ") || strings.HasPrefix(l, "- ") {
				t.Errorf("plan printed a diff line after a clean clone: %q", line)
			}
		}
		if !strings.Contains(text, "no changes") {
			t.Errorf("plan output does not say there is nothing to change:\n%s", text)
		}
	})

	t.Run("after a manual edit: the field, old → new, in that target only", func(t *testing.T) {
		src, ok := h.dev.Sim.UserByEmail(h.orgID("source"), "john.smith@acme.example")
		if !ok {
			t.Fatal("source has no John")
		}
		tgt, ok := h.dev.Sim.UserByEmail(h.orgID("target1"), "john.smith@acme.example")
		if !ok {
			t.Fatal("target1 has no John")
		}
		// An admin edits John in target1 through the Genesys API.
		c, err := h.direct.Client("target1")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		title, dept := "Night Shift Lead", "Escalations"
		if _, err := c.PatchUser(ctx, tgt.ID, genesys.UserPatch{Title: &title, Department: &dept}); err != nil {
			t.Fatalf("PATCH John in target1: %v", err)
		}

		text, rep := plan(t, "target1,target2")
		if tr := rep.target(t, "target2"); tr.Status != "unchanged" {
			t.Errorf("target2 (not edited): %s; want unchanged", tr.Status)
		}
		tr := rep.target(t, "target1")
		if tr.Status != "planned" || tr.Counts["planned"] != 1 || tr.Counts["unchanged"] != 1 {
			t.Errorf("target1: status %s, counts %v; want planned, 1 planned, 1 unchanged", tr.Status, tr.Counts)
		}
		u := tr.user(t, john)
		for _, want := range []planChange{
			{Op: "update", Resource: "profile", Field: "title", Old: title, New: src.Title},
			{Op: "update", Resource: "profile", Field: "department", Old: dept, New: src.Department},
		} {
			if !hasChange(u.Changes, want) {
				t.Errorf("target1 John lacks %+v: %s", want, mustJSON(u))
			}
		}
		for _, want := range []string{
			"~ user john.smith@acme.example",
			`~ title: "` + title + `" → "` + src.Title + `"`,
			`~ department: "` + dept + `" → "` + src.Department + `"`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("plan output lacks %q:\n%s", want, text)
			}
		}
	})
}

// planDoc is the JSON of `orgsync plan --output json` as a script reads it
// (the documented shape, decoded independently of the Report type).
type planDoc struct {
	Status  string       `json:"status"`
	DryRun  bool         `json:"dryRun"`
	Targets []planTarget `json:"targets"`
}

type planTarget struct {
	Org     string         `json:"org"`
	Status  string         `json:"status"`
	Counts  map[string]int `json:"counts"`
	Changes []planChange   `json:"changes"`
	Users   []planUser     `json:"users"`
}

type planUser struct {
	ExternalID   string       `json:"externalId"`
	Status       string       `json:"status"`
	StepsApplied []string     `json:"stepsApplied"`
	Changes      []planChange `json:"changes"`
}

type planChange struct {
	Op       string `json:"op"`
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Old      string `json:"old"`
	New      string `json:"new"`
}

func (d *planDoc) target(t *testing.T, org string) *planTarget {
	t.Helper()
	for i := range d.Targets {
		if d.Targets[i].Org == org {
			return &d.Targets[i]
		}
	}
	t.Fatalf("plan report has no target %s: %s", org, mustJSON(d))
	return nil
}

func (tr *planTarget) user(t *testing.T, ext string) *planUser {
	t.Helper()
	for i := range tr.Users {
		if tr.Users[i].ExternalID == ext {
			return &tr.Users[i]
		}
	}
	t.Fatalf("plan of %s has no user %s: %s", tr.Org, ext, mustJSON(tr))
	return nil
}

func hasChange(list []planChange, want planChange) bool {
	for _, c := range list {
		if c == want {
			return true
		}
	}
	return false
}
