package orgsync

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// newAuditCmd is `orgsync audit`: every audit event the EVENTS stream holds
// for an org (orgsync.event.<org>.audit), oldest first, with its attributes
// — for a phone number: alias, candidates, chosen number, reason, fallback.
func newAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit --org ORG [--request ID] [flags]",
		Short: "list the audit trail of a target org: DID allocations, CRM syncs, orphaned resources",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	org := cmd.Flags().String("org", "", "target org whose audit trail to list (required)")
	request := cmd.Flags().String("request", "", "only events of this request id")
	output := outputFlag(cmd, "text (one line per event) or json (one JSON object per line)")
	_ = cmd.MarkFlagRequired("org")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := d.checkOrg("org", *org); err != nil {
			return err
		}
		return runAudit(cmd.Context(), d, *org, *request, output.value == "json", a.io)
	}
	return cmd
}

func runAudit(ctx context.Context, d *deployment, org, request string, asJSON bool, out IO) error {
	filter, err := natsx.EventSubject(org, orgsyncv1.EventKind_EVENT_KIND_AUDIT)
	if err != nil {
		return usageErr("--org: %v", err)
	}
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	events, err := listAudit(ctx, js, filter)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range events {
		if request != "" && e.GetRequestId() != request {
			continue
		}
		n++
		if asJSON {
			writeEventJSON(out.Out, e)
		} else {
			fmt.Fprintln(out.Out, FormatAuditEvent(e))
		}
	}
	if n == 0 && !asJSON {
		fmt.Fprintf(out.Err, "no audit events for org %s\n", org)
	}
	return nil
}

// listAudit reads every event on subject filter up to the stream's current
// end. A filter without messages returns at once (an ordered consumer on it
// would wait for the first one).
func listAudit(ctx context.Context, js jetstream.JetStream, filter string) ([]*orgsyncv1.Event, error) {
	st, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("open stream %s (is orgsync running against this NATS?): %w", natsx.StreamEvents, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", natsx.StreamEvents, err)
	}
	if info.State.Subjects[filter] == 0 {
		return nil, nil
	}
	var out []*orgsyncv1.Event
	err = followRaw(ctx, js, natsx.StreamEvents, []string{filter}, 1, info.State.LastSeq, func(m jetstream.Msg) bool {
		var e orgsyncv1.Event
		if unmarshal(m.Data(), &e) == nil {
			out = append(out, events.Expand(&e)...) // a phase's decisions come as one batch
		}
		return false
	})
	return out, err
}

// FormatAuditEvent is FormatEvent followed by the event's attributes,
// sorted by name.
func FormatAuditEvent(e *orgsyncv1.Event) string {
	var b strings.Builder
	b.WriteString(FormatEvent(e))
	attrs := e.GetAttributes()
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if k == "reason" && attrs[k] == e.GetReason() {
			continue // FormatEvent said it
		}
		fmt.Fprintf(&b, " %s=%q", k, oneLine(attrs[k]))
	}
	return b.String()
}
