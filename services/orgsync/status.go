package orgsync

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status REQUEST_ID [flags]",
		Short: "show the job report of a request",
		Args:  exactArgs(1, "give exactly one request id"),
	}
	d := a.deploymentFlags(cmd)
	output := outputFlag(cmd, "text (summary table) or json (the job report)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runStatus(cmd.Context(), d, args[0], output.value == "json", a.io)
	}
	return cmd
}

func runStatus(ctx context.Context, d *deployment, id string, asJSON bool, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, found, err := (&Client{JS: js}).Status(ctx, id)
	if err != nil {
		return fmt.Errorf("status of %s: %w", id, err)
	}
	if !found {
		return fmt.Errorf("no request %s in streams CLONE or EVENTS (never submitted, or older than their retention)", id)
	}
	var targets []string
	for _, t := range rep.Targets {
		targets = append(targets, t.Org)
	}
	crm, err := crmCounts(ctx, js, targets)
	if err != nil { // the CRM sync is decoupled: its counts never fail the status
		fmt.Fprintf(out.Err, "orgsync status: CRM sync counts unavailable: %v\n", err)
	}
	if asJSON {
		rep.CRM = crm
	}
	if err := writeReport(out.Out, rep, asJSON); err != nil {
		return err
	}
	if !asJSON && len(crm) > 0 {
		if err := writeCRMTable(out.Out, crm, targets); err != nil {
			return err
		}
	}
	if rep.Failed() {
		return errJobFailed
	}
	return nil
}
