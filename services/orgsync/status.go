package orgsync

import (
	"context"
	"fmt"
	"time"
)

func runStatus(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("status", "REQUEST_ID [flags]", out)
	url := natsFlag(fs)
	output := fs.String("output", "text", "output: text (summary table) or json (the job report)")
	positional, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintln(out.Err, "orgsync status: give exactly one request id")
		return ExitUsage
	}
	if !validOutput("status", *output, out) {
		return ExitUsage
	}
	nc, js, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, found, err := (&Client{JS: js}).Status(ctx, positional[0])
	if err != nil {
		return fail(out, "status of %s: %v", positional[0], err)
	}
	if !found {
		return fail(out, "no request %s in streams CLONE or EVENTS (never submitted, or older than their retention)", positional[0])
	}
	var targets []string
	for _, t := range rep.Targets {
		targets = append(targets, t.Org)
	}
	crm, err := crmCounts(ctx, js, targets)
	if err != nil { // the CRM sync is decoupled: its counts never fail the status
		fmt.Fprintf(out.Err, "orgsync status: CRM sync counts unavailable: %v\n", err)
	}
	if *output == "json" {
		rep.CRM = crm
	}
	if err := writeReport(out.Out, rep, *output == "json"); err != nil {
		return fail(out, "%v", err)
	}
	if *output == "text" && len(crm) > 0 {
		fmt.Fprintln(out.Out, "\nCRM integration sync (every user of each target; `orgsync integrations --org ORG` lists them):")
		if err := writeCRMCounts(out.Out, crm, targets); err != nil {
			return fail(out, "%v", err)
		}
	}
	if rep.Failed() {
		return ExitFailed
	}
	return ExitOK
}
