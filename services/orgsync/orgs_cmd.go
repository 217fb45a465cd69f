package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// newOrgsCmd is the org group: `orgs check`.
func newOrgsCmd(a *app) *cobra.Command {
	return groupCmd(&cobra.Command{
		Use:   "orgs check",
		Short: "the orgs of the deployment: check credentials and API reachability",
	}, newOrgsCheckCmd(a))
}

// newOrgsCheckCmd asks the auth service (the one identity that may get
// tokens) to take a token per org and make one cheap read with it.
func newOrgsCheckCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [ORG|SET...] [flags]",
		Short: "per org: token from the login host, one API read (GET /api/v2/organizations/me), rate limit seen, or why not",
		Example: "  orgsync orgs check                 # every org the auth service knows\n" +
			"  orgsync orgs check target1 emea    # an org and a set of the org registry",
	}
	d := a.deploymentFlags(cmd)
	selector := cmd.Flags().String("target-selector", "", "orgs by label in the org registry, e.g. tier=prod (adds to the ORG arguments)")
	var timeout time.Duration
	durationFlag(cmd, &timeout, "timeout", time.Minute, "how long to wait for the auth service's answer")
	output := outputFlag(cmd, "text (one line per org) or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		orgs, err := d.targets(args, *selector)
		if err != nil {
			return err
		}
		for _, o := range orgs {
			if err := natsx.ValidateOrgKey(o); err != nil {
				return usageErr("%v", err)
			}
		}
		return runOrgsCheck(cmd.Context(), d, orgs, timeout, output.value == "json", a.io)
	}
	return cmd
}

func runOrgsCheck(ctx context.Context, d *deployment, orgs []string, timeout time.Duration, asJSON bool, out IO) error {
	nc, _, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	body, err := json.Marshal(natsx.OrgsCheckRequest{Orgs: orgs})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := request(rctx, nc, natsx.OrgsCheckSubject, body, "auth service")
	if err != nil {
		return err
	}
	var reply natsx.OrgsCheckReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("unreadable answer from the auth service: %w", err)
	}
	if reply.Error != "" {
		return fmt.Errorf("auth service: %s", reply.Error)
	}
	if asJSON {
		b, _ := json.MarshalIndent(reply.Results, "", "  ")
		fmt.Fprintln(out.Out, string(b))
	} else {
		w := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ORG\tTOKEN\tREACHABLE\tRATE LIMIT\tRESULT")
		for _, r := range reply.Results {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Org, okWord(r.TokenOK, "ok", "FAILED"), okWord(r.Reachable, "yes", "no"),
				dash(r.RateLimit), checkResult(r))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	failed := 0
	for _, r := range reply.Results {
		if r.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d org(s) failed the check", failed, len(reply.Results))
	}
	return nil
}

func okWord(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func checkResult(r natsx.OrgCheck) string {
	if r.Error != "" {
		return oneLine(r.Error)
	}
	return fmt.Sprintf("ok: organization %q", r.OrgName)
}
