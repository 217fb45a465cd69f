package orgsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func runWatch(ctx context.Context, args []string, out IO) int {
	fs := newFlagSet("watch", "[flags]", out)
	url := natsFlag(fs)
	org := fs.String("org", "", "only events of this org (default all orgs)")
	request := fs.String("request", "", "only events of this request id")
	all := fs.Bool("all", false, "start with every event the stream holds (default: only new events)")
	output := fs.String("output", "text", "output: text (one line per event) or json (one JSON object per line)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !validOutput("watch", *output, out) {
		return ExitUsage
	}
	nc, js, err := connect(ctx, *url)
	if err != nil {
		return fail(out, "%v", err)
	}
	defer nc.Close()
	c := &Client{JS: js}
	from := uint64(1)
	if !*all {
		end, err := c.eventsEnd(ctx)
		if err != nil {
			return fail(out, "%v", err)
		}
		from = end + 1
	}
	err = followEvents(ctx, js, *org, from, 0, func(e *orgsyncv1.Event) bool {
		if *request != "" && e.GetRequestId() != *request {
			return false
		}
		if *output == "json" {
			writeEventJSON(out.Out, e)
		} else {
			fmt.Fprintln(out.Out, FormatEvent(e))
		}
		return false
	})
	if err != nil && ctx.Err() == nil {
		return fail(out, "watch: %v", err)
	}
	return ExitOK
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
