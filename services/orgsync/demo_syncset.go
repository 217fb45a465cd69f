package orgsync

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/services/gcsim"
)

// demoSyncSet is the demo's sync set: the source's Billing Team (the two
// reference users) followed into every target.
const demoSyncSet = `name: billing-team
source: source
select:
  teams: [Billing Team]
targets: [target1, target2, target3]
onRemove: deactivate
`

// demoHire joins the Billing Team in the demo's last step.
var demoHire = NewHire{Name: "Nina Newhire", Email: "nina.newhire@acme.example", Title: "Billing Agent", Department: "Billing",
	Division: "Billing Division", License: "cx2", Skills: map[string]float64{"Billing Support": 3}, Phone: "+13175550110"}

// demoSyncSetStep applies demoSyncSet with `orgsync apply` (its members are
// the users cloned above: nothing to write), then hires demoHire into the
// team through the Genesys API and waits until every target has them,
// configured as in the source.
func demoSyncSetStep(ctx context.Context, d *Dev, store string, res *DemoResult, out IO) error {
	fmt.Fprintf(out.Out, "\n5) sync set: follow the source's Billing Team in every target (orgsync apply -f billing-team.yaml)\n")
	path := filepath.Join(store, "billing-team.yaml")
	if err := os.WriteFile(path, []byte(demoSyncSet), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out.Out, "   %s\n", strings.ReplaceAll(strings.TrimSpace(demoSyncSet), "\n", "\n   "))
	before := map[string]gcsim.Stats{}
	for _, t := range demoTargets {
		before[t] = d.Sim.Stats(d.OrgIDs[t])
	}
	args := []string{"apply", "-f", path, "--auto-approve", "--nats", d.NATSURL, "--creds", natsx.CredsFile(d.CredsDir, natsx.RoleCLI)}
	if code := Main(ctx, args, out); code != ExitOK {
		return fmt.Errorf("orgsync apply -f %s: exit %d", path, code)
	}
	var writes []string
	for _, t := range demoTargets {
		writes = append(writes, fmt.Sprintf("%s %d", t, SimWrites(d.Sim.Stats(d.OrgIDs[t]))-SimWrites(before[t])))
	}
	fmt.Fprintf(out.Out, "the members were cloned above; write requests in gcsim: %s\n", strings.Join(writes, ", "))

	srcID := d.OrgIDs["source"]
	src, err := orgs.NewRegistry(d.Orgs.OrgConfigs()).Client("source")
	if err != nil {
		return err
	}
	team, ok, err := src.FindTeamByName(ctx, "Billing Team")
	if err != nil || !ok {
		return fmt.Errorf("find the source's Billing Team: found %v: %v", ok, err)
	}
	if err := pollUntil(ctx, time.Minute, "the reconciler's subscription to the team's audit topic", func() bool {
		return d.Sim.SocketsSubscribed(srcID, gcsim.TeamAuditTopic(team.ID)) > 0
	}); err != nil {
		return err
	}
	fmt.Fprintf(out.Out, "\n   a new hire, %s, is created in the source, licensed, given a skill and put in the\n"+
		"   Billing Team through the Genesys API; the team's audit notification brings them to every target\n", demoHire.Email)
	if _, res.HireJoinedAt, err = d.HireIntoTeam(ctx, "source", "Billing Team", demoHire); err != nil {
		return err
	}
	want, _ := d.Sim.UserByEmail(srcID, demoHire.Email)
	err = pollUntil(ctx, time.Minute, demoHire.Email+" configured in every target", func() bool {
		for _, t := range demoTargets {
			got, ok := d.Sim.UserByEmail(d.OrgIDs[t], demoHire.Email)
			if !ok || got.State != "active" || got.Title != want.Title || got.Team != want.Team || !maps.Equal(got.Skills, want.Skills) {
				return false
			}
		}
		return true
	})
	res.HireConverged = time.Since(res.HireJoinedAt)
	if err != nil {
		return err
	}
	for _, t := range demoTargets {
		got, _ := d.Sim.UserByEmail(d.OrgIDs[t], demoHire.Email)
		var skills []string
		for _, name := range slices.Sorted(maps.Keys(got.Skills)) {
			skills = append(skills, fmt.Sprintf("%s (%g)", name, got.Skills[name]))
		}
		fmt.Fprintf(out.Out, "  %s: %s, %s, team %s, skills %s\n", t, got.Email, got.State, got.Team, strings.Join(skills, ", "))
	}
	fmt.Fprintf(out.Out, "the new team member reached every target %v after joining the team (under `orgsync dev`, `orgsync describe syncset NAME` shows a set)\n",
		res.HireConverged.Round(time.Millisecond))
	return nil
}
