package orgsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgsync/orgsync/pkg/orgconfig"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TestSyncSetFileErrors: every invalid file gets a precise error with its line.
func TestSyncSetFileErrors(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown field":   {"name: a\nsource: source\nselect:\n  teams: [Billing Team]\n  tems: [x]\ntargets: [target1]\n", "line 5: field tems not found"},
		"empty selection": {"name: a\nsource: source\nselect: {}\ntargets: [target1]\n", "f.yaml:3: sync set a: empty selection"},
		"second document": {"name: a\nsource: s\nselect: {emails: [a@b.c]}\ntargets: [t]\n---\nname: b\nsource: s\nselect: {emails: [a@b.c]}\ntargets: [t]\nonRemove: delete\n", "f.yaml:10: sync set b: onRemove \"delete\""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSyncSets("f.yaml", strings.NewReader(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestSyncSetApply: a team-selected set into 3 targets; an unknown org is
// refused with its line, a too-large selection with its count, and the
// apply clones every member into every target.
func TestSyncSetApply(t *testing.T) {
	h := startHarness(t, fixtureWithUsers(t, 20), nil)
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "set.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("name: billing\nsource: source\nselect:\n  departments: x\n")
	if code, _, stderr := h.cli("apply", "-f", bad, "--auto-approve"); code == 0 || !strings.Contains(stderr, "line 4: field departments not found") {
		t.Fatalf("unknown field: exit %d, %s", code, stderr)
	}
	unknown := write("name: billing\nsource: source\nselect:\n  search: [{field: department, values: [Billing]}]\ntargets:\n  - target1\n  - nowhere\n")
	if code, _, stderr := h.cli("apply", "-f", unknown, "--auto-approve"); code == 0 || !strings.Contains(stderr, "set.yaml:7: sync set billing: targets.orgs[1]: unknown org \"nowhere\"") {
		t.Fatalf("unknown org: exit %d, %s", code, stderr)
	}
	tooMany := write("name: billing\nsource: source\nmaxUsers: 5\nselect:\n  search: [{field: department, values: [Billing]}]\ntargets: [target1]\n")
	if code, _, stderr := h.cli("apply", "-f", tooMany, "--auto-approve"); code == 0 || !strings.Contains(stderr, "more than the maximum of 5") {
		t.Fatalf("too many: exit %d, %s", code, stderr)
	}
	good := write("name: billing\nsource: source\nselect:\n  search: [{field: department, values: [Billing]}]\ntargets: [target1, target2, target3]\nonRemove: deactivate\n")
	code, stdout, stderr := h.cli("apply", "-f", good, "--auto-approve")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("apply:\n%s", stdout)
	code, stdout, stderr = h.cli("describe", "syncset", "billing")
	if code != 0 {
		t.Fatalf("describe: exit %d\n%s", code, stderr)
	}
	t.Logf("describe:\n%s", stdout)
	writes := SimWrites(h.stats("target1"))
	code, stdout, _ = h.cli("apply", "-f", good, "--auto-approve")
	if code != 0 || !strings.Contains(stdout, "No changes") || strings.Contains(stdout, "definition:") {
		t.Fatalf("re-apply: exit %d\n%s", code, stdout)
	}
	if w := SimWrites(h.stats("target1")); w != writes {
		t.Fatalf("re-apply wrote %d times in target1", w-writes)
	}
	// A definition change without membership change is a change: shown
	// field by field, and not stored without confirmation.
	keep := write("name: billing\nsource: source\nselect:\n  search: [{field: department, values: [Billing]}]\ntargets: [target1, target2, target3]\nonRemove: keep\n")
	code, stdout, stderr = h.cli("apply", "-f", keep)
	if code != ExitUsage || !strings.Contains(stdout, "~ onRemove: ON_REMOVE_DEACTIVATE → ON_REMOVE_KEEP") || !strings.Contains(stderr, "--auto-approve") {
		t.Fatalf("apply of a changed definition without a terminal: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ = h.cli("describe", "syncset", "billing"); code != 0 || !strings.Contains(stdout, "On remove:      deactivate") {
		t.Fatalf("the unconfirmed definition was stored:\n%s", stdout)
	}
	// The shipped example runs against the dev orgs as they are.
	example := filepath.Join(repoRoot, "deploy", "syncset.example.yaml")
	if code, stdout, stderr = h.cli("diff", "-f", example); code != 0 {
		t.Fatalf("diff -f %s: exit %d\n%s\n%s", example, code, stdout, stderr)
	}
}

// TestSyncSetExampleFile: the README's example file parses, every field
// it shows lands in the SyncSet.
func TestSyncSetExampleFile(t *testing.T) {
	path := filepath.Join(repoRoot, "deploy", "syncset.example.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, err := ParseSyncSets(path, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("%d sets, want 2", len(files))
	}
	s := files[0].Set
	sel := s.GetSelect()
	if s.GetName() != "billing-agents" || s.GetSourceOrg() != "source" || len(sel.GetTeams()) != 1 || len(sel.GetQueues()) != 1 ||
		len(sel.GetDivisions()) != 1 || len(sel.GetEmails()) != 1 || len(sel.GetSearch()) != 2 || sel.GetSearch()[0].GetType() != "EXACT" ||
		s.GetTargets().GetSelector() != "region in (emea us)" || len(s.GetTargets().GetOrgs()) != 1 ||
		len(s.GetOptions().GetInclude()) != 9 || s.GetOptions().GetEmailMapping()["target1"].GetToDomain() != "acme-eu.example" ||
		s.GetOnRemove() != orgsyncv1.OnRemove_ON_REMOVE_DEACTIVATE || s.GetMaxUsers() != 500 {
		t.Errorf("first set: %v", s)
	}
	if s := files[1].Set; s.GetName() != "support-queue" || len(s.GetTargets().GetOrgs()) != 2 || s.GetOnRemove() != orgsyncv1.OnRemove_ON_REMOVE_KEEP {
		t.Errorf("second set: %v", s)
	}
	if _, err := orgconfig.ParseSelector(files[0].Set.GetTargets().GetSelector()); err != nil {
		t.Errorf("selector: %v", err)
	}
}
