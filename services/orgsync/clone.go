package orgsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// cloneFlags are the flags of `orgsync clone` and `orgsync plan`.
type cloneFlags struct {
	deployment *deployment
	source     string
	users      listFlag
	targets    listFlag
	selector   string
	include    string
	existing   *choiceFlag
	emailMaps  listFlag
	requestID  string
	dryRun     bool
	wait       bool
	output     *choiceFlag
	timeout    time.Duration
}

func (f *cloneFlags) register(a *app, cmd *cobra.Command, withWait bool) {
	f.deployment = a.deploymentFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.source, "source", "", "orgsync key of the source org (required)")
	fs.Var(&f.users, "user", "reference user in the source org, by email or Genesys user id; repeat or comma-separate (required)")
	fs.Var(&f.targets, "target", "target org key or set name of the org registry; repeat or comma-separate (this or --target-selector required)")
	fs.StringVar(&f.selector, "target-selector", "", "target orgs by label in the org registry, e.g. tier=prod,region=emea (adds to --target)")
	fs.StringVar(&f.include, "include", "", "components to clone, comma-separated: profile, license, skills, languages, utilization, roles, queues, team, phone (default all)")
	f.existing = choice(cmd, "existing", "adopt", "a same-email user orgsync did not create", false, "adopt", "skip", "fail")
	fs.Var(&f.emailMaps, "map-email", "email rule for a target: TARGET=FROM_DOMAIN:TO_DOMAIN (or TARGET=TO_DOMAIN); repeatable")
	fs.StringVar(&f.requestID, "request-id", "", "request id (idempotency key); default a new UUID. Re-submitting an id within the dedupe window does not run the job again")
	f.output = outputFlag(cmd, "text (progress bars + summary table) or json (the job report, for scripts)")
	durationFlag(cmd, &f.timeout, "timeout", waitTimeout, "with --wait: give up following the request after this long (the job itself goes on)")
	_ = cmd.MarkFlagRequired("source")
	_ = cmd.MarkFlagRequired("user")
	if withWait {
		fs.BoolVar(&f.dryRun, "dry-run", false, "plan and report only; write nothing in any target")
		fs.BoolVar(&f.wait, "wait", false, "follow the request until every target is done; exit status 1 when any target failed")
	}
}

func (f *cloneFlags) spec() (CloneSpec, error) {
	include, err := ParseComponents(f.include)
	if err != nil {
		return CloneSpec{}, err
	}
	existing, err := ParseExisting(f.existing.value)
	if err != nil {
		return CloneSpec{}, err
	}
	var maps map[string]*orgsyncv1.EmailMapping
	for _, m := range f.emailMaps {
		target, rule, err := ParseEmailMap(m)
		if err != nil {
			return CloneSpec{}, err
		}
		if maps == nil {
			maps = map[string]*orgsyncv1.EmailMapping{}
		}
		maps[target] = rule
	}
	by := cliUser()
	return CloneSpec{
		RequestID: f.requestID, SourceOrg: f.source, Users: f.users, Targets: f.targets,
		DryRun: f.dryRun, Include: include, Existing: existing, EmailMap: maps, RequestedBy: by,
	}, nil
}

func newCloneCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clone --source ORG --user EMAIL|ID... --target ORG|SET... [flags]",
		Short: "publish a clone request (--wait: follow it with progress bars and a summary)",
		Example: "  orgsync clone --source source --user john.smith@acme.example --target target1,target2 --wait\n" +
			"  orgsync clone --source source --user john.smith@acme.example --target-selector tier=prod --wait --output json",
		Args: cobra.NoArgs,
	}
	var f cloneFlags
	f.register(a, cmd, true)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cloneCommand(cmd.Context(), &f, a.io) }
	return cmd
}

func newPlanCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan --source ORG --user EMAIL|ID... --target ORG|SET... [flags]",
		Short: "dry run: show what a clone would create or change in each target; nothing is written",
		Args:  cobra.NoArgs,
	}
	var f cloneFlags
	f.register(a, cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		f.dryRun, f.wait = true, true
		return cloneCommand(cmd.Context(), &f, a.io)
	}
	return cmd
}

func cloneCommand(ctx context.Context, f *cloneFlags, out IO) error {
	if len(f.targets) == 0 && f.selector == "" {
		return usageErr("give the target orgs: --target ORG|SET or --target-selector KEY=VALUE")
	}
	if err := f.deployment.checkOrg("source", f.source); err != nil {
		return err
	}
	targets, err := f.deployment.targets(f.targets, f.selector)
	if err != nil {
		return err
	}
	f.targets = targets
	spec, err := f.spec()
	if err != nil {
		return usageErr("%v", err)
	}
	req, err := spec.Build()
	if err != nil {
		return usageErr("%v", err)
	}
	nc, js, err := f.deployment.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &Client{JS: js}
	rep, err := RunClone(ctx, c, req, CloneOptions{Wait: f.wait, JSON: f.output.value == "json", Timeout: f.timeout}, out)
	if err != nil {
		return err
	}
	if rep != nil && f.output.value != "json" && !req.GetOptions().GetDryRun() {
		// The CRM sync runs on after the core provisioning (decoupled):
		// where it stands, as `orgsync status` shows it.
		writeCRMSection(ctx, js, req.GetTargetOrgs(), out)
	}
	if rep != nil && rep.Failed() {
		return errJobFailed
	}
	return nil
}

// CloneOptions say how RunClone shows a request.
type CloneOptions struct {
	// Wait follows the request until it is complete.
	Wait bool
	// JSON prints the job report as JSON on Out instead of bars and a table.
	JSON bool
	// Timeout bounds Wait (0: waitTimeout).
	Timeout time.Duration
	// NoProgress hides the progress bars (the summary is still printed).
	NoProgress bool
}

// RunClone submits req and, with Wait, follows it: progress bars on Err,
// then the summary table (or the JSON report) on Out. It returns the report
// (nil without Wait) and an error when submitting or following failed.
func RunClone(ctx context.Context, c *Client, req *orgsyncv1.CloneRequest, opts CloneOptions, out IO) (*Report, error) {
	sub, err := c.Submit(ctx, req)
	if err != nil {
		return nil, err
	}
	if sub.Duplicate {
		fmt.Fprintf(out.Err, "request %s was already submitted; showing its outcome\n", req.GetRequestId())
	}
	if !opts.Wait {
		if opts.JSON {
			fmt.Fprintf(out.Out, "{\"requestId\": %q, \"duplicate\": %t}\n", req.GetRequestId(), sub.Duplicate)
		} else {
			fmt.Fprintf(out.Out, "submitted request %s (follow it: orgsync status %s)\n", req.GetRequestId(), req.GetRequestId())
		}
		return nil, nil
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = waitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var progress func(*Report)
	var view *progressView
	if !opts.JSON && !opts.NoProgress {
		fmt.Fprintf(out.Err, "request %s: %d user(s) from %s into %d org(s)\n", req.GetRequestId(), len(req.GetUsers()), req.GetSourceOrg(), len(req.GetTargetOrgs()))
		view = newProgressView(out.Err, req.GetTargetOrgs(), len(req.GetUsers()))
		progress = view.update
	}
	rep, err := c.Wait(wctx, sub, progress)
	if view != nil {
		view.close()
	}
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			err = &exitError{code: ExitNotFinished, err: fmt.Errorf("request %s not complete after %v (it goes on; check with `orgsync status %s`): %w", req.GetRequestId(), timeout, req.GetRequestId(), err)}
		case ctx.Err() != nil: // Ctrl-C, SIGTERM
			err = &exitError{code: ExitNotFinished, err: fmt.Errorf("stopped following request %s (it goes on; check with `orgsync status %s`): %w", req.GetRequestId(), req.GetRequestId(), context.Cause(ctx))}
		}
		if rep != nil {
			_ = writeReport(out.Out, rep, opts.JSON)
		}
		return rep, err
	}
	return rep, writeReport(out.Out, rep, opts.JSON)
}

func writeReport(w io.Writer, rep *Report, asJSON bool) error {
	if asJSON {
		return rep.WriteJSON(w)
	}
	return rep.WriteSummary(w)
}

// cliUser is who a request from the CLI says sent it: $USER, else orgsync-cli.
func cliUser() string {
	if by := os.Getenv("USER"); by != "" {
		return by
	}
	return "orgsync-cli"
}
