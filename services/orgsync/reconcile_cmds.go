package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/services/provisioner"
	"github.com/orgsync/orgsync/services/reconciler"
)

// Reconciliation subcommands (registered in subcommands()):
//
//	{"reconcile", reconcileSummary, runReconcile},
//	{"drift", driftSummary, runDrift},
const (
	reconcileSummary = "sweep tracked users and re-resolve sync sets now: re-extract them and converge every target (--org ORG, --now: wait for the sweep)"
	driftSummary     = "list the current drift of cloned users in targets (--org ORG)"
)

// runReconcile asks the reconciler for a sweep over its request subject
// (orgsync.reconcile.<src>|all). With --now the reconciler publishes the
// sweep's change events before answering; without, it queues the sweep.
func runReconcile(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("reconcile", "[--org SOURCE_ORG] [--now] [flags]", out)
	url := natsFlag(fs)
	org := fs.String("org", "", "source org to sweep (default: every source org with tracked users)")
	now := fs.Bool("now", false, "run the sweep before answering and print its counts (default: queue it)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the reconciler's answer")
	output := fs.String("output", "text", "output: text or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !validOutput("reconcile", *output, out) {
		return ExitUsage
	}
	target := *org
	if target == "" {
		target = reconciler.ReconcileAll
	}
	subject, err := reconciler.ReconcileSubject(target)
	if err != nil {
		fmt.Fprintf(out.Err, "orgsync reconcile: --org: %v\n", err)
		return ExitUsage
	}
	nc, _, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	body, err := json.Marshal(reconciler.ReconcileRequest{RequestID: uuid.NewString(), Now: *now, RequestedBy: "orgsync-cli"})
	if err != nil {
		return fail(out, "reconcile: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, subject, body)
	if err != nil {
		return fail(out, "reconcile: request on %s: %v (is the reconciler running?)", subject, err)
	}
	var reply reconciler.ReconcileReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fail(out, "reconcile: unreadable answer from the reconciler: %v", err)
	}
	if *output == "json" {
		b, _ := json.MarshalIndent(reply, "", "  ")
		fmt.Fprintln(out.Out, string(b))
	} else {
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
		return fail(out, "reconcile: %s", reply.Error)
	}
	return ExitOK
}

// runDrift lists the provisioners' current drift records (KV orgsync-drift).
func runDrift(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("drift", "[--org TARGET_ORG] [flags]", out)
	url := natsFlag(fs)
	org := fs.String("org", "", "only drift in this target org (default: all)")
	output := fs.String("output", "text", "output: text (one line per drifted field) or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !validOutput("drift", *output, out) {
		return ExitUsage
	}
	nc, js, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	recs, err := listDrift(ctx, js, *org)
	if err != nil {
		return fail(out, "drift: %v", err)
	}
	if *output == "json" {
		if recs == nil {
			recs = []provisioner.DriftRecord{}
		}
		b, _ := json.MarshalIndent(recs, "", "  ")
		fmt.Fprintln(out.Out, string(b))
		return ExitOK
	}
	if len(recs) == 0 {
		fmt.Fprintln(out.Out, "no drift")
		return ExitOK
	}
	w := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ORG\tUSER\tFIELD\tWANT\tGOT\tPOLICY\tDETECTED")
	for _, r := range recs {
		for _, d := range r.Diffs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Org, r.UserExternalID, d.Field, dash(d.Want), dash(d.Got), r.Policy,
				r.DetectedAt.Format(time.RFC3339))
		}
	}
	_ = w.Flush()
	return ExitOK
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
