package orgsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/reconciler"
)

// `orgsync get syncsets`, `orgsync describe syncset NAME`, `orgsync delete
// syncset NAME`: sync sets from KV orgsync-syncsets and their membership
// from orgsync-syncset-status.

const getSummary = "list sync sets: orgsync get syncsets"
const describeSummary = "a sync set's members, per-target status, last converge: orgsync describe syncset NAME"
const deleteSummary = "stop following a sync set (nothing changes in the targets): orgsync delete syncset NAME"

// syncSetVerb is `orgsync get|describe|delete syncset[s] [NAME]`: the
// resource word, then the set's name where the verb takes one.
func syncSetVerb(a *app, verb, summary string, wantName bool, run func(ctx context.Context, d *deployment, name string, out IO) error) *cobra.Command {
	use, n := verb+" syncsets", 1
	if wantName {
		use, n = verb+" syncset NAME", 2
	}
	cmd := &cobra.Command{
		Use:   use + " [flags]",
		Short: summary,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != n || !strings.HasPrefix(args[0], "syncset") {
				return usageErr("usage: orgsync %s", use)
			}
			return nil
		},
	}
	d := a.deploymentFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := ""
		if wantName {
			name = args[1]
		}
		return run(cmd.Context(), d, name, a.io)
	}
	return cmd
}

func newGetCmd(a *app) *cobra.Command {
	return syncSetVerb(a, "get", getSummary, false, func(ctx context.Context, d *deployment, _ string, out IO) error {
		return runGet(ctx, d, out)
	})
}
func newDescribeCmd(a *app) *cobra.Command {
	return syncSetVerb(a, "describe", describeSummary, true, runDescribe)
}
func newDeleteCmd(a *app) *cobra.Command {
	return syncSetVerb(a, "delete", deleteSummary, true, runDelete)
}

func runGet(ctx context.Context, d *deployment, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	sets, statuses, err := openSyncSetBuckets(ctx, js)
	if err != nil {
		return err
	}
	keys, err := sets.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list sync sets: %v", err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(out.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tTARGETS\tMEMBERS\tREVISION\tLAST CONVERGE\tON REMOVE")
	for _, n := range names {
		set, err := readSyncSet(ctx, sets, n)
		if err != nil {
			return err
		}
		st, _ := readSyncSetStatus(ctx, statuses, n)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", n, set.GetSourceOrg(), strings.Join(st.Targets, ","), len(st.Members), set.GetRevision(), ago(st.LastConverge), onRemoveWord(set.GetOnRemove()))
	}
	_ = tw.Flush()
	return nil
}

func runDescribe(ctx context.Context, d *deployment, name string, out IO) error {
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	sets, statuses, err := openSyncSetBuckets(ctx, js)
	if err != nil {
		return err
	}
	set, err := readSyncSet(ctx, sets, name)
	if err != nil {
		return err
	}
	st, err := readSyncSetStatus(ctx, statuses, name)
	if err != nil {
		return err
	}
	w := out.Out
	fmt.Fprintf(w, "Name:           %s (revision %d, applied %s by %s)\n", name, set.GetRevision(), set.GetAppliedAt().AsTime().Format(time.RFC3339), set.GetAppliedBy())
	fmt.Fprintf(w, "Source:         %s\n", set.GetSourceOrg())
	fmt.Fprintf(w, "Targets:        %s\n", strings.Join(st.Targets, ", "))
	fmt.Fprintf(w, "On remove:      %s\n", onRemoveWord(set.GetOnRemove()))
	fmt.Fprintf(w, "Last converge:  %s (%s), last change %s\n", st.LastConverge.Format(time.RFC3339), st.Trigger, ago(st.LastChange))
	if st.LastError != "" {
		fmt.Fprintf(w, "Last error:     %s\n", st.LastError)
	}
	c := &Client{JS: js}
	fmt.Fprintln(w, "\nRequests (per target):")
	for _, r := range st.Requests {
		rep, found, err := c.Status(ctx, r.ID)
		var per []string
		if err == nil && found {
			for _, t := range rep.Targets {
				per = append(per, t.Org+"="+t.Status)
			}
			sort.Strings(per)
		}
		fmt.Fprintf(w, "  %s %s  %d user(s)  %s  %s\n", r.At.Format(time.RFC3339), r.Kind, r.Users, r.ID, strings.Join(per, " "))
	}
	fmt.Fprintf(w, "\nMembers (%d):\n", len(st.Members))
	ids := make([]string, 0, len(st.Members))
	for id := range st.Members {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return st.Members[ids[i]].Email < st.Members[ids[j]].Email })
	for _, id := range ids {
		m := st.Members[id]
		fmt.Fprintf(w, "  %s  %s  joined %s  in %s\n", m.Email, id, m.JoinedAt.Format(time.RFC3339), strings.Join(m.Targets, ","))
	}
	if len(st.Left) > 0 {
		fmt.Fprintf(w, "\nLeft (%d):\n", len(st.Left))
		for _, l := range st.Left {
			fmt.Fprintf(w, "  %s  %s  left %s  %s in %s\n", l.Email, l.UserID, l.LeftAt.Format(time.RFC3339), l.Action, strings.Join(l.Targets, ","))
		}
	}
	members := map[string]bool{}
	for _, m := range st.Members {
		members[extid.User(st.Source, m.Email)] = true
	}
	var drift []string
	for _, t := range st.Targets {
		recs, err := listDrift(ctx, js, t)
		if err != nil {
			continue
		}
		drifted := map[string]bool{}
		for _, r := range recs {
			if members[r.UserExternalID] {
				drifted[r.UserExternalID] = true
			}
		}
		drift = append(drift, fmt.Sprintf("%s=%d", t, len(drifted)))
	}
	fmt.Fprintf(w, "\nDrift (members with open drift, `orgsync drift --org T`): %s\n", strings.Join(drift, " "))
	return nil
}

func runDelete(ctx context.Context, d *deployment, name string, out IO) error {
	nc, _, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, _ := proto.Marshal(&orgsyncv1.DeleteSyncSetRequest{Name: name})
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := request(rctx, nc, reconciler.SyncSetDeleteSubject, b, "reconciler")
	if err != nil {
		return err
	}
	var reply orgsyncv1.DeleteSyncSetReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		return fmt.Errorf("decode the reply of %s: %v", reconciler.SyncSetDeleteSubject, err)
	}
	if reply.GetError() != "" {
		return fmt.Errorf("delete sync set %s: %s", name, reply.GetError())
	}
	fmt.Fprintf(out.Out, "sync set %s deleted: no longer followed; nothing changed in its targets\n", name)
	return nil
}

func openSyncSetBuckets(ctx context.Context, js jetstream.JetStream) (sets, status jetstream.KeyValue, err error) {
	sets, err = js.KeyValue(ctx, reconciler.SyncSetBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("open KV bucket %s (no sync set applied yet?): %w", reconciler.SyncSetBucket, err)
	}
	status, err = js.KeyValue(ctx, reconciler.SyncSetStatusBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("open KV bucket %s: %w", reconciler.SyncSetStatusBucket, err)
	}
	return sets, status, nil
}

func readSyncSet(ctx context.Context, kv jetstream.KeyValue, name string) (*orgsyncv1.SyncSet, error) {
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, fmt.Errorf("no sync set %q (orgsync get syncsets lists them)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read sync set %s: %w", name, err)
	}
	var set orgsyncv1.SyncSet
	if err := proto.Unmarshal(e.Value(), &set); err != nil {
		return nil, fmt.Errorf("decode sync set %s: %w", name, err)
	}
	set.Revision = e.Revision()
	return &set, nil
}

func readSyncSetStatus(ctx context.Context, kv jetstream.KeyValue, name string) (*reconciler.SyncSetStatus, error) {
	st := &reconciler.SyncSetStatus{Name: name}
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read status of sync set %s: %w", name, err)
	}
	return st, json.Unmarshal(e.Value(), st)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

// printSyncSetRuns lists the sync sets a reconcile request re-resolved.
func printSyncSetRuns(w io.Writer, runs []reconciler.SyncSetRun) {
	if len(runs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSYNC SET\tSOURCE\tJOINED\tLEFT\tSTATE")
	for _, r := range runs {
		state := "done"
		switch {
		case r.Queued:
			state = "queued"
		case r.Error != "":
			state = "failed: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Name, r.SourceOrg, r.Joined, r.Left, state)
	}
	_ = tw.Flush()
}
