package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func newWatchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch [flags]",
		Short: "print events live (--org to follow one org)",
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	org := cmd.Flags().String("org", "", "only events of this org (default all orgs)")
	request := cmd.Flags().String("request", "", "only events of this request id")
	all := cmd.Flags().Bool("all", false, "start with every event the stream holds (default: only new events)")
	output := outputFlag(cmd, "text (one line per event) or json (one JSON object per line)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *org != "" {
			if err := d.checkOrg("org", *org); err != nil {
				return err
			}
		}
		return runWatch(cmd.Context(), d, *org, *request, *all, output.value == "json", a.io)
	}
	return cmd
}

func runWatch(ctx context.Context, d *deployment, org, request string, all, asJSON bool, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &Client{JS: js}
	from := uint64(1)
	if !all {
		end, err := c.eventsEnd(ctx)
		if err != nil {
			return err
		}
		from = end + 1
	}
	// Say on stderr that it is connected and from where, so silence means
	// "no event yet", not "not connected".
	scope := "every org"
	if org != "" {
		scope = "org " + org
	}
	if all {
		fmt.Fprintf(out.Err, "watching events of %s from the start of stream EVENTS (Ctrl-C to stop)\n", scope)
	} else {
		fmt.Fprintf(out.Err, "watching new events of %s from EVENTS sequence %d on (Ctrl-C to stop)\n", scope, from)
	}
	err = followEvents(ctx, js, org, from, 0, func(e *orgsyncv1.Event) bool {
		if request != "" && e.GetRequestId() != request {
			return false
		}
		if asJSON {
			writeEventJSON(out.Out, e)
		} else {
			fmt.Fprintln(out.Out, FormatEvent(e))
		}
		return false
	})
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// FormatEvent renders an event on one line:
// time org kind status request [user] [step] message/reason.
func FormatEvent(e *orgsyncv1.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-10s %-7s %-9s req=%s", e.GetTime().AsTime().Local().Format(time.TimeOnly), e.GetOrg(),
		strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "EVENT_KIND_")), StatusName(e.GetStatus()), e.GetRequestId())
	if e.GetUserExternalId() != "" {
		fmt.Fprintf(&b, " user=%s", e.GetUserExternalId())
	}
	if e.GetStep() != "" {
		fmt.Fprintf(&b, " step=%s", e.GetStep())
	}
	if e.GetTotal() > 0 {
		fmt.Fprintf(&b, " %d/%d", e.GetDone(), e.GetTotal())
	}
	if e.GetMessage() != "" {
		fmt.Fprintf(&b, " %s", oneLine(e.GetMessage()))
	}
	if e.GetReason() != "" {
		fmt.Fprintf(&b, " reason=%q", oneLine(e.GetReason()))
	}
	return b.String()
}

func writeEventJSON(w io.Writer, e *orgsyncv1.Event) {
	b, err := protojson.Marshal(e)
	if err != nil {
		return
	}
	var compact json.RawMessage = b
	out, _ := json.Marshal(compact)
	fmt.Fprintln(w, string(out))
}
