package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/replay"
)

// Operations subcommands (register in subcommands()):
//
//	{"replay", replaySummary, runReplay},
//	{"failed", failedSummary, runFailed},
const (
	replaySummary = "re-drive a stream after a failure: orgsync replay --stream NAME [--subject FILTER] (--from-seq N | --since DURATION|TIME)"
	failedSummary = "dead letters: orgsync failed list | orgsync failed retry KEY|--all"
)

func runReplay(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("replay", "--stream NAME [--subject FILTER] (--from-seq N | --since DURATION|TIME) [flags]", out)
	url := natsFlag(fs)
	stream := fs.String("stream", "", "stream to replay: CLONE, CHANGES, SNAPSHOTS, PLANS, INTEGRATIONS, EVENTS (required)")
	subject := fs.String("subject", "", "only messages on this subject (wildcards allowed, e.g. orgsync.plan.acme)")
	fromSeq := fs.Uint64("from-seq", 0, "replay from this stream sequence (1 = the whole stream)")
	since := fs.String("since", "", "replay messages stored since a duration ago (2h) or a time (RFC 3339 or YYYY-MM-DD)")
	dryRun := fs.Bool("dry-run", false, "count what would be replayed; publish nothing")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	opts := replay.Options{Stream: strings.ToUpper(*stream), SubjectFilter: *subject, FromSeq: *fromSeq, DryRun: *dryRun}
	if *since != "" {
		t, err := replay.ParseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintf(out.Err, "orgsync replay: %v\n", err)
			return ExitUsage
		}
		opts.Since = t
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(out.Err, "orgsync replay: %v (flags --stream, --from-seq, --since)\n", err)
		return ExitUsage
	}
	nc, js, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	res, err := replay.Run(ctx, js, opts)
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(out.Out, "%s %d message(s) of %s (seq %d..%d, stream at %d): %d published, %d already replayed (dedupe), %d earlier replay copies skipped\n",
		verb, res.Selected, opts.Stream, res.FirstSeq, res.LastSeq, res.UpToSeq, res.Published, res.Duplicates, res.Skipped)
	if err != nil {
		return fail(out, "%v", err)
	}
	return ExitOK
}

func runFailed(ctx context.Context, args []string, out IO) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "retry") {
		fmt.Fprintln(out.Err, "Usage: orgsync failed list [--output text|json] | orgsync failed retry KEY|--all")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return ExitOK
		}
		return ExitUsage
	}
	verb := args[0]
	fs := newFlagSet("failed", verb+" [flags]", out)
	url := natsFlag(fs)
	output := fs.String("output", "text", "list output: text or json")
	all := fs.Bool("all", false, "retry every record still failed")
	// Flags may follow the key (`failed retry PLANS.5 --nats URL`).
	var keys []string
	for rest := args[1:]; ; {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		keys, rest = append(keys, fs.Arg(0)), fs.Args()[1:]
	}
	if verb == "list" && (len(keys) > 0 || *all) {
		fmt.Fprintln(out.Err, "orgsync failed list: takes no arguments (flags: --output, --nats)")
		return ExitUsage
	}
	if verb == "retry" && (*all == (len(keys) == 1) || len(keys) > 1) {
		fmt.Fprintln(out.Err, "orgsync failed retry: give one record key (STREAM.SEQ, from `orgsync failed list`) or --all")
		return ExitUsage
	}
	nc, js, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	switch {
	case verb == "list":
		recs, err := deadletter.List(ctx, js)
		if err != nil {
			return fail(out, "%v", err)
		}
		if *output == "json" {
			enc := json.NewEncoder(out.Out)
			enc.SetIndent("", "  ")
			if recs == nil {
				recs = []deadletter.Record{}
			}
			if err := enc.Encode(recs); err != nil {
				return fail(out, "%v", err)
			}
			return ExitOK
		}
		tw := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tSTATUS\tSUBJECT\tCONSUMER\tDELIVERIES\tFIRST SEEN\tREASON")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Key, r.Status, r.Subject, r.Consumer, r.Deliveries, r.FirstSeen.Format(time.RFC3339), r.Reason)
		}
		_ = tw.Flush()
		return ExitOK
	case *all:
		done, err := deadletter.RetryAll(ctx, js)
		for _, r := range done {
			fmt.Fprintf(out.Out, "retried %s on %s as %s\n", r.Key, r.Subject, r.LastRetryMsgID)
		}
		fmt.Fprintf(out.Out, "%d record(s) retried\n", len(done))
		if err != nil {
			return fail(out, "%v", err)
		}
		return ExitOK
	default:
		r, err := deadletter.Retry(ctx, js, keys[0])
		if err != nil {
			return fail(out, "%v", err)
		}
		fmt.Fprintf(out.Out, "retried %s on %s as %s\n", r.Key, r.Subject, r.LastRetryMsgID)
		return ExitOK
	}
}
