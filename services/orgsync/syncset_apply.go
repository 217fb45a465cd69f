package orgsync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/orgsync/orgsync/services/reconciler"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// `orgsync apply -f FILE` and `orgsync diff -f FILE`: the plan of every
// sync set of the file (who joins, who leaves, per target, and the field
// diff of `orgsync plan` for the joiners), then, for apply, the apply
// itself on confirmation.

const applySummary = "apply sync sets from a YAML file: show the plan, then apply on confirmation (--auto-approve)"
const diffSummary = "show what applying a sync set file would change; nothing is written"

func newApplyCmd(a *app) *cobra.Command { return newSyncSetCmd(a, "apply", applySummary) }
func newDiffCmd(a *app) *cobra.Command  { return newSyncSetCmd(a, "diff", diffSummary) }

// stdin is where apply reads its confirmation (tests replace it).
var stdin = os.Stdin

func newSyncSetCmd(a *app, name, summary string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " -f FILE [flags]",
		Short: summary,
		Args:  cobra.NoArgs,
	}
	d := a.deploymentFlags(cmd)
	file := cmd.Flags().StringP("filename", "f", "", "sync set file (YAML, one or more documents; - for stdin)")
	var auto bool
	if name == "apply" {
		cmd.Flags().BoolVar(&auto, "auto-approve", false, "apply without asking")
	}
	var timeout time.Duration
	durationFlag(cmd, &timeout, "timeout", waitTimeout, "give up following the clone after this long (it goes on)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *file == "" {
			return usageErr("give the sync set file with -f FILE")
		}
		return runSyncSetCommand(cmd.Context(), d, name, *file, auto, timeout, a.io)
	}
	return cmd
}

func runSyncSetCommand(ctx context.Context, d *deployment, name, file string, auto bool, timeout time.Duration, out IO) error {
	r, path := os.Stdin, file
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	files, err := ParseSyncSets(path, r)
	if err != nil {
		return err
	}
	nc, js, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &Client{JS: js}
	type planned struct {
		f     *SyncSetFile
		reply *orgsyncv1.ApplySyncSetReply
	}
	var plans []planned
	changes := false
	for _, f := range files {
		reply, err := applyRequest(ctx, nc, f.Set, true)
		if err != nil {
			return fmt.Errorf("sync set %s: %v", f.Set.GetName(), err)
		}
		if reply.GetError() != "" {
			printSyncSetError(out, f, reply)
			return errJobFailed
		}
		plans = append(plans, planned{f, reply})
		printSyncSetPlan(out, f.Set, reply)
		if len(reply.GetJoining()) > 0 || len(reply.GetLeaving()) > 0 {
			changes = true
		}
		// A changed definition (onRemove, options, targets…) is a change
		// even when nobody joins or leaves: it decides what happens later.
		defDiff, err := syncSetDefinitionDiff(ctx, js, f.Set)
		if err != nil {
			return err
		}
		if len(defDiff) > 0 {
			changes = true
			fmt.Fprintf(out.Out, "~ sync set %s definition:\n", f.Set.GetName())
			for _, l := range defDiff {
				fmt.Fprintf(out.Out, "    %s\n", l)
			}
		}
		if len(reply.GetJoining()) > 0 {
			// The field diff of `orgsync plan`: a dry-run clone of the joiners.
			req := joinersRequest(f.Set, reply)
			req.Options.DryRun = true
			if _, err := RunClone(ctx, c, req, CloneOptions{Wait: true, NoProgress: true, Timeout: timeout}, out); err != nil {
				return fmt.Errorf("plan of sync set %s: %v", f.Set.GetName(), err)
			}
		}
	}
	if name == "diff" {
		return nil
	}
	if !changes {
		fmt.Fprintln(out.Out, "\nNo changes: neither membership nor definition; storing the set(s) (their revision moves, the targets do not).")
	} else if !auto {
		if !isTerminal(out.Err) {
			return usageErr("not a terminal: pass --auto-approve to apply without a prompt")
		}
		fmt.Fprint(out.Err, "\nApply these changes? Only 'yes' applies: ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return &exitError{code: ExitFailed, err: errors.New("apply cancelled")}
		}
	}
	failed := false
	for _, p := range plans {
		from, err := c.eventsEnd(ctx)
		if err != nil {
			return err
		}
		reply, err := applyRequest(ctx, nc, p.f.Set, false)
		if err != nil {
			return fmt.Errorf("sync set %s: %v", p.f.Set.GetName(), err)
		}
		if reply.GetError() != "" {
			printSyncSetError(out, p.f, reply)
			return errJobFailed
		}
		fmt.Fprintf(out.Out, "\nsync set %s: applied (revision %d)\n", p.f.Set.GetName(), reply.GetRevision())
		for _, id := range []string{reply.GetRequestId(), reply.GetDeactivateRequestId()} {
			if id == "" {
				continue
			}
			sub := &Submitted{Request: &orgsyncv1.CloneRequest{RequestId: id, SourceOrg: p.f.Set.GetSourceOrg(), TargetOrgs: reply.GetTargetOrgs()}, eventsFrom: from}
			wctx, cancel := context.WithTimeout(ctx, timeout)
			rep, err := c.Wait(wctx, sub, nil)
			cancel()
			if err != nil {
				return fmt.Errorf("follow request %s (it goes on: orgsync status %s): %v", id, id, err)
			}
			if err := rep.WriteSummary(out.Out); err != nil {
				return err
			}
			if rep.Failed() {
				failed = true
			}
		}
	}
	if failed {
		return errJobFailed
	}
	return nil
}

// applyRequest sends an ApplySyncSetRequest and waits for the reply.
func applyRequest(ctx context.Context, nc *nats.Conn, set *orgsyncv1.SyncSet, dry bool) (*orgsyncv1.ApplySyncSetReply, error) {
	b, err := proto.Marshal(&orgsyncv1.ApplySyncSetRequest{SyncSet: set, DryRun: dry, RequestedBy: cliUser()})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	m, err := request(rctx, nc, reconciler.SyncSetApplySubject, b, "reconciler")
	if err != nil {
		return nil, err
	}
	var reply orgsyncv1.ApplySyncSetReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("decode the reply of %s: %w", reconciler.SyncSetApplySubject, err)
	}
	return &reply, nil
}

// joinersRequest is the clone of a plan's joiners.
func joinersRequest(set *orgsyncv1.SyncSet, reply *orgsyncv1.ApplySyncSetReply) *orgsyncv1.CloneRequest {
	opts := &orgsyncv1.CloneOptions{}
	if set.GetOptions() != nil {
		opts = proto.Clone(set.GetOptions()).(*orgsyncv1.CloneOptions)
	}
	req := &orgsyncv1.CloneRequest{RequestId: uuid.NewString(), SourceOrg: set.GetSourceOrg(), TargetOrgs: reply.GetTargetOrgs(),
		Options: opts, RequestedBy: "syncset/" + set.GetName()}
	for _, j := range reply.GetJoining() {
		req.Users = append(req.Users, &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_UserId{UserId: j.GetUserId()}})
	}
	return req
}

func printSyncSetError(out IO, f *SyncSetFile, reply *orgsyncv1.ApplySyncSetReply) {
	if len(reply.GetFieldErrors()) == 0 {
		fmt.Fprintf(out.Err, "%s:%d: sync set %s: %s\n", f.Path, f.start, f.Set.GetName(), reply.GetError())
		return
	}
	for _, fe := range reply.GetFieldErrors() {
		fmt.Fprintf(out.Err, "%s:%d: sync set %s: %s: %s\n", f.Path, f.Line(fe.GetPath()), f.Set.GetName(), fe.GetPath(), fe.GetMessage())
	}
	if !strings.HasPrefix(reply.GetError(), "invalid sync set") {
		fmt.Fprintf(out.Err, "%s\n", reply.GetError())
	}
}

func printSyncSetPlan(out IO, set *orgsyncv1.SyncSet, reply *orgsyncv1.ApplySyncSetReply) {
	fmt.Fprintf(out.Out, "sync set %s: %d user(s) selected in %s, targets %s; %d to clone, %d leaving (onRemove: %s)\n",
		set.GetName(), reply.GetSelected(), set.GetSourceOrg(), strings.Join(reply.GetTargetOrgs(), ", "),
		len(reply.GetJoining()), len(reply.GetLeaving()), onRemoveWord(set.GetOnRemove()))
	for _, t := range reply.GetTargetOrgs() {
		var lines []string
		for _, j := range reply.GetJoining() {
			if slices.Contains(j.GetTargets(), t) {
				lines = append(lines, "  + "+j.GetEmail())
			}
		}
		for _, l := range reply.GetLeaving() {
			if slices.Contains(l.GetTargets(), t) {
				lines = append(lines, "  - "+l.GetEmail()+" ("+onRemoveWord(set.GetOnRemove())+")")
			}
		}
		if len(lines) == 0 {
			fmt.Fprintf(out.Out, "%s: no membership change\n", t)
			continue
		}
		fmt.Fprintf(out.Out, "%s:\n%s\n", t, strings.Join(lines, "\n"))
	}
}

func onRemoveWord(o orgsyncv1.OnRemove) string {
	switch o {
	case orgsyncv1.OnRemove_ON_REMOVE_REPORT:
		return "report"
	case orgsyncv1.OnRemove_ON_REMOVE_DEACTIVATE:
		return "deactivate"
	}
	return "keep"
}

// syncSetDefinitionDiff compares set with the stored set of that name, field
// by field ("~ field: old → new"; "+ new set" when none is stored). Only
// the declaration counts, not the revision or who applied it.
func syncSetDefinitionDiff(ctx context.Context, js jetstream.JetStream, set *orgsyncv1.SyncSet) ([]string, error) {
	kv, err := js.KeyValue(ctx, reconciler.SyncSetBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []string{"+ new sync set"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", reconciler.SyncSetBucket, err)
	}
	e, err := kv.Get(ctx, set.GetName())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return []string{"+ new sync set"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sync set %s: %w", set.GetName(), err)
	}
	var stored orgsyncv1.SyncSet
	if err := proto.Unmarshal(e.Value(), &stored); err != nil {
		return nil, fmt.Errorf("decode sync set %s: %w", set.GetName(), err)
	}
	var out []string
	want, have := set.ProtoReflect(), stored.ProtoReflect()
	fields := want.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch fd.Name() {
		case "revision", "applied_at", "applied_by":
			continue
		}
		if !fieldEqual(want, have, fd) {
			out = append(out, fmt.Sprintf("~ %s: %s → %s", fd.JSONName(), fieldText(have, fd), fieldText(want, fd)))
		}
	}
	return out, nil
}

func fieldEqual(a, b protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	if a.Has(fd) != b.Has(fd) {
		return false
	}
	return a.Get(fd).Equal(b.Get(fd))
}

// fieldText renders one field of m compactly (its JSON), "<unset>" when unset.
func fieldText(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
	if !m.Has(fd) {
		return "<unset>"
	}
	if fd.Kind() == protoreflect.EnumKind && fd.Cardinality() != protoreflect.Repeated {
		return string(fd.Enum().Values().ByNumber(m.Get(fd).Enum()).Name())
	}
	if fd.Kind() == protoreflect.MessageKind && fd.Cardinality() != protoreflect.Repeated && !fd.IsMap() {
		b, err := protojson.MarshalOptions{}.Marshal(m.Get(fd).Message().Interface())
		if err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(m.Get(fd).Interface())
}
