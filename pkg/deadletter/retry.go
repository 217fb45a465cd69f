package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// Retry re-drives the failed message of key: it reads the original from its
// stream and publishes it again on the same subject with the same payload
// and headers, under Nats-Msg-Id <original id>-retry-<n> (n = 1 for the
// first retry) so stream dedupe does not drop it, with HeaderRetryOf = key.
// The record is then marked StatusRetried. Every consumer whose filter
// matches the subject receives the copy; handlers are idempotent, so those
// that had processed it converge to the same state.
//
// Two concurrent retries of one record publish the same id, so the stream
// stores one copy. Retrying a record twice (deliberately) publishes twice.
func Retry(ctx context.Context, js jetstream.JetStream, key string) (Record, error) {
	stream, seq, err := ParseKey(key)
	if err != nil {
		return Record{}, err
	}
	kv, ok, err := bucket(ctx, js)
	if err != nil {
		return Record{}, err
	}
	if !ok {
		return Record{}, fmt.Errorf("deadletter: retry %s: no failed messages recorded (bucket %s does not exist)", key, Bucket)
	}
	rec, rev, err := get(ctx, kv, key)
	if err != nil {
		return Record{}, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return rec, fmt.Errorf("deadletter: retry %s: open stream %s: %w", key, stream, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return rec, fmt.Errorf("deadletter: retry %s: message %d is no longer in stream %s (expired past its MaxAge or deleted); it cannot be re-driven", key, seq, stream)
	}
	if err != nil {
		return rec, fmt.Errorf("deadletter: retry %s: read message: %w", key, err)
	}

	n := rec.Retries + 1
	base := raw.Header.Get(jetstream.MsgIDHeader)
	if base == "" {
		base = key
	}
	msgID := base + "-retry-" + strconv.Itoa(n)
	msg := &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: natsx.RepublishHeaders(raw.Header)}
	msg.Header.Set(HeaderRetryOf, key)
	ack, err := natsx.PublishMsg(ctx, js, msg, msgID)
	if err != nil {
		return rec, fmt.Errorf("deadletter: retry %s: publish to %s (msg id %s): %w", key, raw.Subject, msgID, err)
	}

	for attempt := 0; ; attempt++ {
		rec.Status = StatusRetried
		rec.Retries = n
		rec.LastRetryAt = time.Now().UTC()
		rec.LastRetryMsgID = msgID
		rec.LastRetrySeq = ack.Sequence
		data, err := json.Marshal(rec)
		if err != nil {
			return rec, fmt.Errorf("deadletter: retry %s: encode record: %w", key, err)
		}
		_, err = kv.Update(ctx, key, data, rev)
		if err == nil {
			return rec, nil
		}
		if (!errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists)) || attempt >= 4 {
			return rec, fmt.Errorf("deadletter: retry %s: published as %s (seq %d) but marking the record failed: %w", key, msgID, ack.Sequence, err)
		}
		// A capturer merged into the record meanwhile: apply ours on top.
		if rec, rev, err = get(ctx, kv, key); err != nil {
			return rec, err
		}
		if rec.Retries >= n {
			return rec, nil // a concurrent retry of the same n got there first
		}
	}
}

// RetryAll retries every record with StatusFailed, oldest first. It keeps
// going past a record that cannot be retried and returns the records it
// re-drove plus every error.
func RetryAll(ctx context.Context, js jetstream.JetStream) ([]Record, error) {
	recs, err := List(ctx, js)
	if err != nil {
		return nil, err
	}
	var done []Record
	var errs []error
	for _, r := range recs {
		if r.Status != StatusFailed {
			continue
		}
		got, err := Retry(ctx, js, r.Key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, got)
	}
	return done, errors.Join(errs...)
}
