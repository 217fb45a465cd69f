package orgsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/services/provisioner"
	"github.com/orgsync/orgsync/services/reconciler"
)

func newReconcileCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reconcile [--org SOURCE_ORG] [--now] [flags]",
		Short: "sweep tracked users and re-resolve sync sets now: re-extract them and converge every target (--now: wait for the sweep)",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	org := cmd.Flags().String("org", "", "source org to sweep (default: every source org with tracked users)")
	now := cmd.Flags().Bool("now", false, "run the sweep before answering and print its counts (default: queue it)")
	var timeout time.Duration
	durationFlag(cmd, &timeout, "timeout", 60*time.Second, "how long to wait for the reconciler's answer")
	output := outputFlag(cmd, "text or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		target := reconciler.ReconcileAll
		if *org != "" {
			if err := d.checkOrg("org", *org); err != nil {
				return err
			}
			target = *org
		}
		return runReconcile(cmd.Context(), d, target, *now, timeout, output.value == "json", a.io)
	}
	return cmd
}

// runReconcile asks the reconciler for a sweep over its request subject
// (orgsync.reconcile.<src>|all). With now the reconciler publishes the
// sweep's change events before answering; without, it queues the sweep.
func runReconcile(ctx context.Context, d *deployment, target string, now bool, timeout time.Duration, asJSON bool, out IO) error {
	subject, err := reconciler.ReconcileSubject(target)
	if err != nil {
		return usageErr("--org: %v", err)
	}
	nc, _, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	body, err := json.Marshal(reconciler.ReconcileRequest{RequestID: uuid.NewString(), Now: now, RequestedBy: "orgsync-cli"})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := request(rctx, nc, subject, body, "reconciler")
	if err != nil {
		return err
	}
	var reply reconciler.ReconcileReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("unreadable answer from the reconciler: %w", err)
	}
	if asJSON {
		b, _ := json.MarshalIndent(reply, "", "  ")
		fmt.Fprintln(out.Out, string(b))
	} else if len(reply.Runs) > 0 || reply.Error == "" {
		w := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SOURCE\tRUN\tUSERS\tPUBLISHED\tDUPLICATES\tSTATE")
		for _, r := range reply.Runs {
			state := "done"
			if r.Queued {
				state = "queued"
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", r.SourceOrg, r.RunID, r.Users, r.Published, r.Duplicates, state)
		}
		_ = w.Flush()
		printSyncSetRuns(out.Out, reply.SyncSets)
	}
	if reply.Error != "" {
		return errors.New(reply.Error)
	}
	return nil
}

func newDriftCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drift [--org TARGET_ORG] [flags]",
		Short: "list the current drift of cloned users in targets",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	org := cmd.Flags().String("org", "", "only drift in this target org (default: all)")
	output := outputFlag(cmd, "text (one line per drifted field) or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *org != "" {
			if err := d.checkOrg("org", *org); err != nil {
				return err
			}
		}
		return runDrift(cmd.Context(), d, *org, output.value == "json", a.io)
	}
	return cmd
}

// runDrift lists the provisioners' current drift records (KV orgsync-drift).
func runDrift(ctx context.Context, d *deployment, org string, asJSON bool, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	recs, err := listDrift(ctx, js, org)
	if err != nil {
		return err
	}
	if asJSON {
		if recs == nil {
			recs = []provisioner.DriftRecord{}
		}
		b, _ := json.MarshalIndent(recs, "", "  ")
		fmt.Fprintln(out.Out, string(b))
		return nil
	}
	if len(recs) == 0 {
		fmt.Fprintln(out.Out, "no drift")
		return nil
	}
	w := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ORG\tUSER\tFIELD\tWANT\tGOT\tPOLICY\tDETECTED")
	for _, r := range recs {
		for _, d := range r.Diffs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Org, r.UserExternalID, d.Field, dash(d.Want), dash(d.Got), r.Policy,
				r.DetectedAt.Format(time.RFC3339))
		}
	}
	return w.Flush()
}

func listDrift(ctx context.Context, js jetstream.JetStream, org string) ([]provisioner.DriftRecord, error) {
	kv, found, err := provisioner.LookupDriftKV(ctx, js)
	if err != nil || !found {
		return nil, err // no provisioner ever recorded drift: none
	}
	return kv.List(ctx, org)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
