package orgsync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/telemetry"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/integrator"
)

// demoTargets are the demo fixture's target org keys.
var demoTargets = []string{"target1", "target2", "target3"}

func newDemoCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "start the dev environment, clone the demo users into 3 orgs, then again (changing nothing)",
		Args:  cobra.NoArgs,
	}
	keep := cmd.Flags().Bool("keep", false, "keep the temporary store directory (JetStream, bbolt, service log) afterwards")
	jsonOut := cmd.Flags().Bool("json", false, "print the two job reports as JSON instead of tables")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), *keep, *jsonOut, a.io) }
	return cmd
}

func runDemo(ctx context.Context, keep, jsonOut bool, out IO) error {
	store, err := os.MkdirTemp("", "orgsync-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(store)
	}
	logPath := filepath.Join(store, "services.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("service log: %w", err)
	}
	defer logFile.Close()
	return Demo(ctx, DemoOptions{StoreDir: store, ServiceLog: logFile, JSON: jsonOut, KeptLog: keep, LogPath: logPath}, out)
}

// DemoOptions configure Demo.
type DemoOptions struct {
	// StoreDir for the dev environment (required; the caller cleans it up).
	StoreDir string
	// ServiceLog receives the services' logs (default: discarded).
	ServiceLog io.Writer
	// LogPath is shown to the user when KeptLog.
	LogPath string
	KeptLog bool
	// JSON prints the reports as JSON.
	JSON bool
	// NoProgress hides the progress bars.
	NoProgress bool
	// Dev overrides parts of the environment (tests); StoreDir is set by Demo.
	Dev DevConfig
	// CustomSim keeps Dev.Sim instead of the demo's gcsim settings.
	CustomSim bool
}

// DemoResult is what the demo observed.
type DemoResult struct {
	First, Second *Report
	// SecondRunWrites counts write requests gcsim served per target org
	// during the second run (must all be zero).
	SecondRunWrites map[string]int
	// ChangeConverged is the time from the source change of step 3 to
	// every target converged.
	ChangeConverged time.Duration
	// CRM is the CRM sync counts per target once none is pending.
	CRM map[string]integrator.Counts
	// HireJoinedAt is when step 5's new hire was put in the sync set's
	// team, HireConverged the time until every target had them.
	HireJoinedAt  time.Time
	HireConverged time.Duration
}

// Demo starts the dev environment with gcsim's demo orgs, clones the
// reference users into the three target orgs with progress and a summary,
// then runs the same clone again under a new request id and shows that
// nothing changed, then changes a reference user at the source and shows
// every target following, then applies a sync set following the source's
// team and shows a new hire in the team reaching every target. It fails when a run fails, the second run changed
// anything (in the report or in gcsim's write counters), or the targets do
// not converge on the change.
func Demo(ctx context.Context, opts DemoOptions, out IO) error {
	_, err := RunDemo(ctx, opts, out)
	return err
}

// RunDemo is Demo returning what it observed.
func RunDemo(ctx context.Context, opts DemoOptions, out IO) (*DemoResult, error) {
	logw := opts.ServiceLog
	if logw == nil {
		logw = io.Discard
	}
	logger, err := telemetry.NewLogger(logw, slog.LevelInfo, "text")
	if err != nil {
		return nil, err
	}
	cfg := opts.Dev
	cfg.StoreDir = opts.StoreDir
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	if !opts.CustomSim {
		cfg.Sim = demoSimConfig()
	}
	fmt.Fprintln(out.Out, "orgsync demo: one process running an embedded NATS server (JetStream), the Genesys")
	fmt.Fprintln(out.Out, "simulator gcsim with 4 demo orgs, and every orgsync service (listed below).")
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	d, err := StartDev(startCtx, cfg)
	cancel()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	nc, js, err := d.Connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	c := &Client{JS: js}
	fmt.Fprintf(out.Out, "NATS %s, gcsim %s, services: %s\n\n", d.NATSURL, d.SimURL, strings.Join(d.Running(), ", "))

	spec := CloneSpec{SourceOrg: "source", Users: demoUsers, Targets: demoTargets, RequestedBy: "orgsync-demo"}
	show := CloneOptions{Wait: true, JSON: opts.JSON, Timeout: 5 * time.Minute, NoProgress: opts.NoProgress}
	res := &DemoResult{SecondRunWrites: map[string]int{}}

	fmt.Fprintf(out.Out, "1) clone %s from org \"source\" into %s\n", strings.Join(demoUsers, " and "), strings.Join(demoTargets, ", "))
	req, err := spec.Build()
	if err != nil {
		return nil, err
	}
	if res.First, err = RunClone(ctx, c, req, show, out); err != nil {
		return res, err
	}
	if res.First.Failed() {
		return res, fmt.Errorf("first run %s failed (see the table above)", req.GetRequestId())
	}

	before := map[string]gcsim.Stats{}
	for _, t := range demoTargets {
		before[t] = d.Sim.Stats(d.OrgIDs[t])
	}
	fmt.Fprintf(out.Out, "\n2) the same clone again, as a new request: everything is in place, nothing may change\n")
	req2, err := spec.Build()
	if err != nil {
		return nil, err
	}
	if res.Second, err = RunClone(ctx, c, req2, show, out); err != nil {
		return res, err
	}
	for _, t := range demoTargets {
		res.SecondRunWrites[t] = SimWrites(d.Sim.Stats(d.OrgIDs[t])) - SimWrites(before[t])
	}
	var changed []string
	for _, t := range res.Second.Targets {
		if n := t.Counts["changed"]; n > 0 || t.Status != "unchanged" {
			changed = append(changed, fmt.Sprintf("%s: status %s, %d user(s) changed", t.Org, t.Status, n))
		}
	}
	for _, t := range sortedKeys(res.SecondRunWrites) {
		if n := res.SecondRunWrites[t]; n > 0 {
			changed = append(changed, fmt.Sprintf("%s: %d write request(s) in gcsim", t, n))
		}
	}
	if res.Second.Failed() || len(changed) > 0 {
		return res, fmt.Errorf("second run %s was expected to change nothing: %s", req2.GetRequestId(), strings.Join(changed, "; "))
	}
	fmt.Fprintf(out.Out, "\nsecond run changed nothing: 0 write requests in %s (gcsim counters)\n", strings.Join(demoTargets, ", "))

	changedUser := demoUsers[0]
	fmt.Fprintf(out.Out, "\n3) continuous sync: %s gets a new skill and another proficiency at the source (Genesys API);\n"+
		"   the reconciler hears it on the Notifications API and every target follows with a delta\n", changedUser)
	for _, t := range demoTargets {
		before[t] = d.Sim.Stats(d.OrgIDs[t])
	}
	if res.ChangeConverged, err = d.ChangeSkillsAndConverge(ctx, "source", changedUser, demoTargets, time.Minute); err != nil {
		return res, err
	}
	for _, t := range demoTargets {
		after := d.Sim.Stats(d.OrgIDs[t])
		fmt.Fprintf(out.Out, "  %s: skills of %s match the source; %d API calls (%d write(s))\n", t, changedUser,
			after.TotalRequests()-before[t].TotalRequests(), SimWrites(after)-SimWrites(before[t]))
	}
	fmt.Fprintf(out.Out, "every target converged %v after the change\n", res.ChangeConverged.Round(time.Millisecond))

	fmt.Fprintf(out.Out, "\n4) CRM integration sync: each provisioned user is upserted in the target's CRM (gcsim's fake CRM)\n"+
		"   by the integrator, on its own subject; the clones above finished without waiting for it\n")
	if res.CRM, err = waitCRMSettled(ctx, js, demoTargets, time.Minute); err != nil {
		return res, err
	}
	if err := writeCRMCounts(out.Out, res.CRM, demoTargets); err != nil {
		return res, err
	}
	if err := demoSyncSetStep(ctx, d, opts.StoreDir, res, out); err != nil {
		return res, err
	}
	if opts.KeptLog {
		fmt.Fprintf(out.Out, "service log: %s\n", opts.LogPath)
	}
	return res, nil
}

// SimWrites counts the write requests in gcsim stats: every method but GET
// and HEAD, except the token grant and user search (reads over POST).
func SimWrites(st gcsim.Stats) int {
	n := 0
	for op, count := range st.Requests {
		if isConfigWrite(op) {
			n += count
		}
	}
	return n
}

// isConfigWrite reports whether a gcsim operation ("METHOD /route") may
// change an org's configuration. Reads (searches and batched reads
// included, see genesys.IsRead), token grants and Notifications API
// channels (subscriptions to change events, not configuration) are not writes.
func isConfigWrite(op string) bool {
	_, route, _ := strings.Cut(op, " ")
	return !genesys.IsRead(op) && route != "/oauth/token" && !strings.HasPrefix(route, "/api/v2/notifications/")
}

// simWriteOps lists the write operations in st, sorted (for messages).
func simWriteOps(st gcsim.Stats) []string {
	var ops []string
	for op, count := range st.Requests {
		if isConfigWrite(op) {
			ops = append(ops, fmt.Sprintf("%s ×%d", op, count))
		}
	}
	sort.Strings(ops)
	return ops
}
