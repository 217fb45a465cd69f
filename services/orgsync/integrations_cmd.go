package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/services/integrator"
)

// newIntegrationsCmd shows the integrator's sync states (KV orgsync-crm):
// counts per target org, and with --org one line per user.
func newIntegrationsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "integrations [--org TARGET_ORG [--state STATE]] [flags]",
		Short: "CRM integration sync per target org: pending, provisioned, failed, skipped (--org ORG: each user with its reason)",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	org := cmd.Flags().String("org", "", "one target org: its counts and every user's sync state (default: counts of every org)")
	state := choice(cmd, "state", "", "with --org: only users in this state", true,
		integrator.StatePending, integrator.StateProvisioned, integrator.StateFailed, integrator.StateSkipped)
	output := outputFlag(cmd, "text or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if state.value != "" && *org == "" {
			return usageErr("--state needs --org")
		}
		if *org != "" {
			if err := d.checkOrg("org", *org); err != nil {
				return err
			}
		}
		return runIntegrations(cmd.Context(), d, *org, state.value, output.value == "json", a.io)
	}
	return cmd
}

func runIntegrations(ctx context.Context, d *deployment, org, state string, asJSON bool, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	var counts map[string]integrator.Counts
	var recs []integrator.SyncRecord
	if org == "" {
		if counts, err = integrator.AllCounts(ctx, js); err != nil {
			return err
		}
	} else {
		if recs, err = integrator.OrgRecords(ctx, js, org); err != nil {
			return fmt.Errorf("integrations of %s: %w", org, err)
		}
		var c integrator.Counts
		for _, r := range recs {
			c = c.With(r.State)
		}
		counts = map[string]integrator.Counts{org: c}
		recs = filterRecords(recs, state)
	}
	if asJSON {
		if recs == nil {
			recs = []integrator.SyncRecord{}
		}
		b, _ := json.MarshalIndent(struct {
			Orgs    map[string]integrator.Counts `json:"orgs"`
			Records []integrator.SyncRecord      `json:"records,omitempty"`
		}{counts, recs}, "", "  ")
		fmt.Fprintln(out.Out, string(b))
		return nil
	}
	if len(counts) == 0 {
		fmt.Fprintln(out.Out, "no CRM syncs yet")
		return nil
	}
	if err := writeCRMCounts(out.Out, counts, nil); err != nil {
		return err
	}
	if org == "" || len(recs) == 0 {
		return nil
	}
	fmt.Fprintln(out.Out)
	w := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tEMAIL\tSTATE\tCRM STATUS\tUPDATED\tREASON")
	for _, r := range recs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.UserExternalID, dash(r.Email), r.State, dash(r.CRMStatus),
			r.UpdatedAt.Format(time.RFC3339), oneLine(dash(r.Reason)))
	}
	return w.Flush()
}

// filterRecords keeps the records in state (all when state is empty),
// sorted by user.
func filterRecords(recs []integrator.SyncRecord, state string) []integrator.SyncRecord {
	var out []integrator.SyncRecord
	for _, r := range recs {
		if state == "" || r.State == state {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserExternalID < out[j].UserExternalID })
	return out
}

// writeCRMCounts writes one row per org of counts (only orgs, in that
// order, when orgs is not empty: an org without syncs shows zeros).
func writeCRMCounts(w io.Writer, counts map[string]integrator.Counts, orgs []string) error {
	if len(orgs) == 0 {
		orgs = sortedKeys(counts)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tPENDING\tPROVISIONED\tFAILED\tSKIPPED\tFAILURE RATE")
	for _, org := range orgs {
		c := counts[org]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f%%\n", org, c.Pending, c.Provisioned, c.Failed, c.Skipped, 100*c.FailureRate())
	}
	return tw.Flush()
}

// writeCRMTable prints the CRM sync counts of targets under a heading.
func writeCRMTable(w io.Writer, crm map[string]integrator.Counts, targets []string) error {
	fmt.Fprintln(w, "\nCRM integration sync, decoupled from the core (every user of each target; `orgsync integrations --org ORG` lists them):")
	return writeCRMCounts(w, crm, targets)
}

// writeCRMSection prints where the CRM sync of targets stands (PENDING
// while the integrator works on); nothing when no integrator records any.
func writeCRMSection(ctx context.Context, js jetstream.JetStream, targets []string, out IO) {
	crm, err := crmCounts(ctx, js, targets)
	if err != nil {
		fmt.Fprintf(out.Err, "CRM sync counts unavailable: %v\n", err)
		return
	}
	for _, t := range targets {
		if crm[t] != (integrator.Counts{}) {
			_ = writeCRMTable(out.Out, crm, targets)
			return
		}
	}
}

// crmCounts reads the CRM sync counts of orgs (all orgs when empty); the
// integrator may not run in every deployment, so a missing bucket is none.
func crmCounts(ctx context.Context, js jetstream.JetStream, orgs []string) (map[string]integrator.Counts, error) {
	all, err := integrator.AllCounts(ctx, js)
	if err != nil || len(orgs) == 0 || len(all) == 0 {
		return all, err
	}
	out := map[string]integrator.Counts{}
	for _, o := range orgs {
		out[o] = all[o]
	}
	return out, nil
}

// waitCRMSettled polls the CRM sync counts of orgs until every org has
// synced users and none is pending, or timeout passes.
func waitCRMSettled(ctx context.Context, js jetstream.JetStream, orgs []string, timeout time.Duration) (map[string]integrator.Counts, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		counts, err := crmCounts(ctx, js, orgs)
		settled := err == nil && len(counts) > 0
		for _, o := range orgs {
			c := counts[o]
			settled = settled && c.Pending == 0 && c != (integrator.Counts{})
		}
		if settled {
			return counts, nil
		}
		select {
		case <-ctx.Done():
			return counts, fmt.Errorf("CRM syncs of %v not settled within %v (last counts %v, err %v)", orgs, timeout, counts, err)
		case <-tick.C:
		}
	}
}
