package orgsync

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/reconciler"
)

// billingTeamSet selects the source's Billing Team (20 users in
// fixtureWithUsers) into the three targets and deactivates leavers.
const billingTeamSet = `name: billing-team
source: source
select:
  teams: [Billing Team]
targets: [target1, target2, target3]
onRemove: deactivate
`

// TestSyncSetFollowsTeam is issue 16's end-to-end case as an administrator
// lives it: a sync set selecting a team of 20 users is applied into three
// targets; a new hire put in the team in the source arrives in every target
// from the team's notification alone (no sweep: both sweep intervals are a
// day); a member taken out of the team is deactivated in every target;
// describe and get show it; a re-apply writes nothing; after delete, a new
// team member is not cloned even when the reconciler is asked to sweep.
func TestSyncSetFollowsTeam(t *testing.T) {
	t.Parallel()
	targets := []string{"target1", "target2", "target3"}
	h := startHarnessConfig(t, DevConfig{Fixture: fixtureWithUsers(t, 20), Sim: e2eSim(),
		ServiceArgs: map[string][]string{"reconciler": {"--sweep-interval=24h", "--selection-sweep-interval=24h"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srcOrg := h.orgID("source")
	path := filepath.Join(t.TempDir(), "billing.yaml")
	if err := os.WriteFile(path, []byte(billingTeamSet), 0o644); err != nil {
		t.Fatal(err)
	}

	// Apply: 20 members × 3 targets, each a full clone of its source user.
	code, stdout, stderr := h.cli("apply", "-f", path, "--auto-approve")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	members := teamEmails(t, h, "source", "Billing Team")
	if len(members) != 20 {
		t.Fatalf("the source team has %d members, want 20", len(members))
	}
	for _, tg := range targets {
		natsxtest.Eventually(t, time.Minute, "the 20 members in "+tg, func() bool {
			for _, e := range members {
				if _, ok := h.dev.Sim.UserByEmail(h.orgID(tg), e); !ok {
					return false
				}
			}
			return true
		})
	}
	waitSetIdle(t, h, "billing-team")
	for _, tg := range targets {
		assertClonedUsers(t, h, nil, tg, members)
	}

	// A new hire put in the team through the Genesys API: the TEAM audit
	// topic is the only path (sweeps are a day away).
	src, err := h.direct.Client("source")
	if err != nil {
		t.Fatal(err)
	}
	team, ok, err := src.FindTeamByName(ctx, "Billing Team")
	if err != nil || !ok {
		t.Fatalf("find the team: %v %v", ok, err)
	}
	natsxtest.Eventually(t, 30*time.Second, "the reconciler's socket on the team's audit topic", func() bool {
		return h.dev.Sim.SocketsSubscribed(srcOrg, gcsim.TeamAuditTopic(team.ID)) == 1
	})
	hire := NewHire{Name: "Nina Newhire", Email: "nina.newhire@acme.example", Title: "Billing Agent", Department: "Billing",
		Division: "Billing Division", License: "cx2", Skills: map[string]float64{"Billing Support": 3}, Phone: "+13175550250"}
	_, joinedAt, err := h.dev.HireIntoTeam(ctx, "source", "Billing Team", hire)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := h.dev.Sim.UserByEmail(srcOrg, hire.Email)
	for _, tg := range targets {
		natsxtest.Eventually(t, time.Minute, hire.Email+" configured in "+tg, func() bool {
			got, ok := h.dev.Sim.UserByEmail(h.orgID(tg), hire.Email)
			return ok && reflect.DeepEqual(comparable(want), comparable(got))
		})
	}
	configured := time.Since(joinedAt)
	waitSetIdle(t, h, "billing-team")
	t.Logf("new team member %s configured in all 3 targets %v after the team add (notification alone), its clone complete (number assigned) after %v",
		hire.Email, configured.Round(time.Millisecond), time.Since(joinedAt).Round(time.Millisecond))
	for _, tg := range targets {
		assertClonedUsers(t, h, nil, tg, []string{hire.Email})
	}

	// A member leaves the team: onRemove deactivate.
	leaver := "agent05@acme.example"
	leftAt := time.Now()
	if err := h.dev.MoveOutOfTeam(ctx, "source", "Billing Team", leaver); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		natsxtest.Eventually(t, time.Minute, leaver+" inactive in "+tg, func() bool {
			u, ok := h.dev.Sim.UserByEmail(h.orgID(tg), leaver)
			return ok && u.State == "inactive"
		})
	}
	t.Logf("leaver %s inactive in all 3 targets %v after the team removal", leaver, time.Since(leftAt).Round(time.Millisecond))
	if u, _ := h.dev.Sim.UserByEmail(srcOrg, leaver); u.State != "active" {
		t.Errorf("the leaver is %s in the source; only the targets change", u.State)
	}
	waitSetIdle(t, h, "billing-team")

	// describe: members (20: 19 + the hire), the leaver, per-target status.
	code, stdout, stderr = h.cli("describe", "syncset", "billing-team")
	if code != 0 {
		t.Fatalf("describe: exit %d\n%s", code, stderr)
	}
	t.Logf("describe:\n%s", stdout)
	for _, want := range []string{"Members (20):", hire.Email, "Left (1):", leaver + "  ", "deactivate", "target1=changed target2=changed target3=changed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("describe lacks %q", want)
		}
	}
	if strings.Contains(strings.Split(stdout, "Left (1):")[0], leaver) {
		t.Errorf("describe still lists %s among the members", leaver)
	}
	code, stdout, _ = h.cli("get", "syncsets")
	if code != 0 || !strings.Contains(stdout, "billing-team") || !strings.Contains(stdout, "source") {
		t.Fatalf("get syncsets: exit %d\n%s", code, stdout)
	}

	// Re-apply: nothing to do, not one write in any org.
	writes := map[string]int{}
	for _, o := range append([]string{"source"}, targets...) {
		writes[o] = SimWrites(h.stats(o))
	}
	code, stdout, _ = h.cli("apply", "-f", path, "--auto-approve")
	if code != 0 || !strings.Contains(stdout, "No changes: neither membership nor definition") {
		t.Fatalf("re-apply: exit %d\n%s", code, stdout)
	}
	// A requested sweep re-resolves the set (and finds nothing to do).
	if runs := reconcileNow(t, h); len(runs) != 1 || runs[0].Name != "billing-team" || runs[0].Joined+runs[0].Left != 0 || runs[0].Error != "" {
		t.Fatalf("reconcile --now before delete: sync sets %+v, want billing-team with no change", runs)
	}
	for o, n := range writes {
		if w := SimWrites(h.stats(o)); w != n {
			t.Errorf("re-apply and sweep wrote %d times in %s: %v", w-n, o, simWriteOps(h.stats(o)))
		}
	}

	// Delete: the set is no longer followed; nothing changes in the targets.
	if code, stdout, stderr = h.cli("delete", "syncset", "billing-team"); code != 0 {
		t.Fatalf("delete: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ = h.cli("get", "syncsets"); strings.Contains(stdout, "billing-team") {
		t.Errorf("get syncsets after delete: exit %d\n%s", code, stdout)
	}
	clones := cloneStreamLastSeq(ctx, t, h)
	late := NewHire{Name: "Lars Late", Email: "lars.late@acme.example", Department: "Billing", License: "cx2"}
	if _, _, err := h.dev.HireIntoTeam(ctx, "source", "Billing Team", late); err != nil {
		t.Fatal(err)
	}
	// The requested sweep runs after the team add and answers once done:
	// whatever the reconciler would publish for the set, it has by then.
	if runs := reconcileNow(t, h); len(runs) != 0 {
		t.Errorf("reconcile --now after delete re-resolved %+v", runs)
	}
	if seq := cloneStreamLastSeq(ctx, t, h); seq != clones {
		t.Errorf("after delete the reconciler published %d clone request(s)", seq-clones)
	}
	for _, tg := range targets {
		if _, ok := h.dev.Sim.UserByEmail(h.orgID(tg), late.Email); ok {
			t.Errorf("%s got %s after the set was deleted", tg, late.Email)
		}
		if u, _ := h.dev.Sim.UserByEmail(h.orgID(tg), hire.Email); u.State != "active" {
			t.Errorf("delete changed %s in %s: %s", hire.Email, tg, u.State)
		}
	}
}

// teamEmails lists the emails of team's members in org (gcsim's state).
func teamEmails(t *testing.T, h *harness, org, team string) []string {
	t.Helper()
	st, ok := h.dev.Sim.OrgState(h.orgID(org))
	if !ok {
		t.Fatalf("no org %s", org)
	}
	var out []string
	for _, u := range st.Users {
		if u.Team == team {
			out = append(out, u.Email)
		}
	}
	return out
}

// waitSetIdle waits until every clone request the set's status names is
// finished (its report complete), so gcsim reads see the end state.
func waitSetIdle(t *testing.T, h *harness, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, statuses, err := openSyncSetBuckets(ctx, h.client.JS)
	if err != nil {
		t.Fatal(err)
	}
	e, err := statuses.Get(ctx, name)
	if err != nil {
		t.Fatalf("status of %s: %v", name, err)
	}
	var st reconciler.SyncSetStatus
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Requests {
		if r.Kind != "clone" {
			continue
		}
		natsxtest.Eventually(t, 2*time.Minute, "request "+r.ID+" of "+name+" complete", func() bool {
			rep, found, err := h.client.Status(ctx, r.ID)
			return err == nil && found && rep.Complete()
		})
	}
}

// reconcileNow runs `orgsync reconcile --org source --now` and returns the
// sync sets it re-resolved.
func reconcileNow(t *testing.T, h *harness) []reconciler.SyncSetRun {
	t.Helper()
	code, stdout, stderr := h.cli("reconcile", "--org", "source", "--now", "--output", "json")
	if code != 0 {
		t.Fatalf("reconcile --now: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var reply reconciler.ReconcileReply
	if err := json.Unmarshal([]byte(stdout), &reply); err != nil {
		t.Fatalf("reconcile output %s: %v", stdout, err)
	}
	return reply.SyncSets
}

// cloneStreamLastSeq is the last sequence of stream CLONE: it grows with
// every clone request published, acknowledged or not.
func cloneStreamLastSeq(ctx context.Context, t *testing.T, h *harness) uint64 {
	t.Helper()
	st, err := h.client.JS.Stream(ctx, natsx.StreamClone)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}
