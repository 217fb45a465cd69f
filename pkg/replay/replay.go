// Package replay re-drives messages of a stream after a failure (a bad
// deploy, wiped provisioner state): it re-publishes the selected messages on
// their original subjects, with their payload and headers, under a fresh
// Nats-Msg-Id so stream dedupe does not swallow them. Every orgsync handler
// is idempotent, so a replay converges to the same target state with no
// duplicates; it costs the lookups the handlers make to find that out.
package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// HeaderReplayOf marks a replayed copy with <stream>.<seq> of its original.
const HeaderReplayOf = "Orgsync-Replay-Of"

// Options select what to replay. Exactly one of FromSeq and Since is set.
type Options struct {
	// Stream to replay (required), e.g. natsx.StreamPlans.
	Stream string
	// SubjectFilter restricts the replay to matching subjects (wildcards
	// allowed, e.g. "orgsync.plan.acme"); empty means every subject.
	SubjectFilter string
	// FromSeq replays messages from this stream sequence on (1 = all).
	FromSeq uint64
	// Since replays messages stored at or after this time.
	Since time.Time
	// DryRun counts what would be replayed without publishing.
	DryRun bool
	// Now is the clock (replay ids use its Unix seconds); default time.Now.
	Now func() time.Time
}

// Validate reports every invalid field of o.
func (o Options) Validate() error {
	var errs []error
	if o.Stream == "" {
		errs = append(errs, errors.New("Stream is required"))
	}
	switch {
	case o.FromSeq == 0 && o.Since.IsZero():
		errs = append(errs, errors.New("one of FromSeq (1 = the whole stream) and Since is required"))
	case o.FromSeq != 0 && !o.Since.IsZero():
		errs = append(errs, errors.New("FromSeq and Since are mutually exclusive"))
	}
	if strings.ContainsAny(o.SubjectFilter, " \t\r\n") {
		errs = append(errs, fmt.Errorf("SubjectFilter %q contains whitespace", o.SubjectFilter))
	}
	if len(errs) > 0 {
		return fmt.Errorf("replay: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Result counts what a replay did.
type Result struct {
	Stream string
	// FirstSeq and LastSeq bound the replayed originals (0 when none).
	FirstSeq, LastSeq uint64
	// UpToSeq is the stream's last sequence when the replay started: later
	// messages (including the replay's own copies) are never replayed.
	UpToSeq uint64
	// Selected messages matched the options and were replayed; Published
	// were stored as new copies; Duplicates were dropped by dedupe (the same
	// message replayed within the same second by another replay).
	Selected, Published, Duplicates int
	// Skipped are copies made by an earlier replay whose original is in
	// this replay's range too: replaying both would do the work twice.
	Skipped int
	// ReplayID is the suffix of the new message ids: "-replay-<unix>".
	ReplayID string
}

// ParseSince reads a --since value: a duration back from now ("90m", "2h")
// or a time (RFC 3339, or "2006-01-02" for midnight UTC).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("replay: --since %q: duration must be positive", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.After(now) {
				return time.Time{}, fmt.Errorf("replay: --since %q is in the future", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("replay: --since %q: want a duration (90m, 2h) or a time (RFC 3339, e.g. 2026-01-02T15:04:05Z, or 2026-01-02)", s)
}

// Run replays the messages o selects, oldest first, and returns the counts.
// It replays only messages stored before it started, so it terminates even
// though its copies land in the same stream. On error the Result counts
// what was published so far (a second run is safe: handlers are idempotent).
func Run(ctx context.Context, js jetstream.JetStream, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	res := Result{Stream: o.Stream, ReplayID: "-replay-" + strconv.FormatInt(now().Unix(), 10)}
	stream, err := js.Stream(ctx, o.Stream)
	if err != nil {
		return res, fmt.Errorf("replay: open stream %s: %w", o.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: stream %s info: %w", o.Stream, err)
	}
	res.UpToSeq = info.State.LastSeq
	filter := o.SubjectFilter
	if filter == "" {
		filter = ">"
	}

	seq := o.FromSeq
	if !o.Since.IsZero() {
		if seq, err = firstSeqSince(ctx, js, info, filter, o.Since); err != nil || seq == 0 {
			return res, err
		}
	}
	startSeq := seq
	for seq > 0 && seq <= res.UpToSeq {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // nothing more matches
		}
		if err != nil {
			return res, fmt.Errorf("replay: %s: read next message from seq %d (subject %s): %w", o.Stream, seq, filter, err)
		}
		if raw.Sequence > res.UpToSeq {
			break
		}
		if isCopyOfReplayed(raw, o.Stream, startSeq) {
			res.Skipped++
			seq = raw.Sequence + 1
			continue
		}
		res.Selected++
		if res.FirstSeq == 0 {
			res.FirstSeq = raw.Sequence
		}
		res.LastSeq = raw.Sequence
		if !o.DryRun {
			dup, err := republish(ctx, js, o.Stream, raw, res.ReplayID)
			if err != nil {
				return res, err
			}
			if dup {
				res.Duplicates++
			} else {
				res.Published++
			}
		}
		seq = raw.Sequence + 1
	}
	return res, nil
}

// isCopyOfReplayed reports whether raw is a replay copy of a message of
// stream at or after startSeq.
func isCopyOfReplayed(raw *jetstream.RawStreamMsg, stream string, startSeq uint64) bool {
	of := raw.Header.Get(HeaderReplayOf)
	name, seqText, ok := strings.Cut(of, ".")
	if !ok || name != stream {
		return false
	}
	orig, err := strconv.ParseUint(seqText, 10, 64)
	return err == nil && orig >= startSeq
}

// republish publishes one copy of raw.
func republish(ctx context.Context, js jetstream.JetStream, streamName string, raw *jetstream.RawStreamMsg, replayID string) (duplicate bool, err error) {
	orig := streamName + "." + strconv.FormatUint(raw.Sequence, 10)
	base := raw.Header.Get(jetstream.MsgIDHeader)
	if base == "" {
		base = orig
	}
	msgID := base + replayID
	msg := &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: natsx.RepublishHeaders(raw.Header)}
	msg.Header.Set(HeaderReplayOf, orig)
	ack, err := natsx.PublishMsg(ctx, js, msg, msgID)
	if err != nil {
		return false, fmt.Errorf("replay: publish %s to %s (msg id %s): %w", orig, raw.Subject, msgID, err)
	}
	return ack.Duplicate, nil
}

// firstSeqSince finds the first message at or after since matching filter
// (0 when there is none), with an ordered consumer started by time.
func firstSeqSince(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo, filter string, since time.Time) (uint64, error) {
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return 0, nil
	}
	cons, err := js.OrderedConsumer(ctx, info.Config.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return 0, fmt.Errorf("replay: %s: find first message since %s: %w", info.Config.Name, since.Format(time.RFC3339), err)
	}
	// The stream has a message after since, but maybe not on filter: a
	// short wait then means there is none.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		return 0, fmt.Errorf("replay: %s: find first message since %s: %w", info.Config.Name, since.Format(time.RFC3339), err)
	}
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return 0, fmt.Errorf("replay: %s: metadata: %w", info.Config.Name, err)
		}
		return meta.Sequence.Stream, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return 0, fmt.Errorf("replay: %s: find first message since %s: %w", info.Config.Name, since.Format(time.RFC3339), err)
	}
	return 0, nil
}
