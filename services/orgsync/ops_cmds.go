package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/replay"
)

func newReplayCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay --stream NAME [--subject FILTER] (--from-seq N | --since DURATION|TIME) [flags]",
		Short: "re-drive a stream after a failure, from a sequence or a time",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	stream := choice(cmd, "stream", "", "stream to replay (required)", true,
		natsx.StreamClone, natsx.StreamChanges, natsx.StreamSnapshots, natsx.StreamPlans, natsx.StreamIntegrations, natsx.StreamEvents)
	subject := cmd.Flags().String("subject", "", "only messages on this subject (wildcards allowed, e.g. orgsync.plan.acme)")
	fromSeq := cmd.Flags().Uint64("from-seq", 0, "replay from this stream sequence (1 = the whole stream)")
	since := cmd.Flags().String("since", "", "replay messages stored since a duration ago (2h) or a time (RFC 3339 or YYYY-MM-DD)")
	dryRun := cmd.Flags().Bool("dry-run", false, "count what would be replayed; publish nothing")
	_ = cmd.MarkFlagRequired("stream")
	cmd.MarkFlagsOneRequired("from-seq", "since")
	cmd.MarkFlagsMutuallyExclusive("from-seq", "since")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		opts := replay.Options{Stream: stream.value, SubjectFilter: *subject, FromSeq: *fromSeq, DryRun: *dryRun}
		if *since != "" {
			t, err := replay.ParseSince(*since, time.Now())
			if err != nil {
				return usageErr("--since: %v", err)
			}
			opts.Since = t
		}
		if err := opts.Validate(); err != nil {
			return usageErr("%v (flags --stream, --from-seq, --since)", err)
		}
		return runReplay(cmd.Context(), d, opts, a.io)
	}
	return cmd
}

func runReplay(ctx context.Context, d *deployment, opts replay.Options, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	res, err := replay.Run(ctx, js, opts)
	verb := "replayed"
	if opts.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(out.Out, "%s %d message(s) of %s (seq %d..%d, stream at %d): %d published, %d already replayed (dedupe), %d earlier replay copies skipped\n",
		verb, res.Selected, opts.Stream, res.FirstSeq, res.LastSeq, res.UpToSeq, res.Published, res.Duplicates, res.Skipped)
	return err
}

// newFailedCmd is the dead-letter group: `failed list`, `failed retry`.
func newFailedCmd(a *app) *cobra.Command {
	return groupCmd(&cobra.Command{
		Use:   "failed list|retry",
		Short: "dead letters: list the messages the services gave up on, retry them",
	}, newFailedListCmd(a), newFailedRetryCmd(a))
}

func newFailedListCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list the dead-letter records: key, status, subject, consumer, deliveries, reason",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	output := outputFlag(cmd, "text or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		nc, js, err := d.connect(cmd.Context())
		if err != nil {
			return err
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
		defer cancel()
		recs, err := deadletter.List(ctx, js)
		if err != nil {
			return err
		}
		if output.value == "json" {
			enc := json.NewEncoder(a.io.Out)
			enc.SetIndent("", "  ")
			if recs == nil {
				recs = []deadletter.Record{}
			}
			return enc.Encode(recs)
		}
		tw := tabwriter.NewWriter(a.io.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tSTATUS\tSUBJECT\tCONSUMER\tDELIVERIES\tFIRST SEEN\tREASON")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Key, r.Status, r.Subject, r.Consumer, r.Deliveries, r.FirstSeen.Format(time.RFC3339), r.Reason)
		}
		return tw.Flush()
	}
	return cmd
}

func newFailedRetryCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retry KEY|--all [flags]",
		Short: "publish a dead-letter record's message again (KEY is STREAM.SEQ from failed list), or every one still failed",
	}
	d := a.deploymentFlags(cmd)
	all := cmd.Flags().Bool("all", false, "retry every record still failed")
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if *all == (len(args) == 1) || len(args) > 1 {
			return usageErr("give one record key (STREAM.SEQ, from orgsync failed list) or --all")
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		nc, js, err := d.connect(cmd.Context())
		if err != nil {
			return err
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
		defer cancel()
		if *all {
			done, err := deadletter.RetryAll(ctx, js)
			for _, r := range done {
				fmt.Fprintf(a.io.Out, "retried %s on %s as %s\n", r.Key, r.Subject, r.LastRetryMsgID)
			}
			fmt.Fprintf(a.io.Out, "%d record(s) retried\n", len(done))
			return err
		}
		r, err := deadletter.Retry(ctx, js, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.io.Out, "retried %s on %s as %s\n", r.Key, r.Subject, r.LastRetryMsgID)
		return nil
	}
	return cmd
}
