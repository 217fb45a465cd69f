package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
)

// advisory is the common shape of io.nats.jetstream.advisory.v1.max_deliver
// and io.nats.jetstream.advisory.v1.terminated (nats-server
// JSConsumerDeliveryExceededAdvisory / JSConsumerDeliveryTerminatedAdvisory).
type advisory struct {
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason,omitempty"` // terminated only
}

// Advisory schema types.
const (
	typeMaxDeliver = "io.nats.jetstream.advisory.v1.max_deliver"
	typeTerminated = "io.nats.jetstream.advisory.v1.terminated"
)

// Options configure Capture.
type Options struct {
	// Topology gives the replicas of the advisory stream and the bucket.
	Topology natsx.Topology
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Capture ensures the dead-letter topology and records every dead-letter
// advisory until ctx is done (then returns nil). Run one per process; they
// share the durable consumer CaptureDurable. It returns an error only when
// the topology or the consumer cannot be set up.
func Capture(ctx context.Context, js jetstream.JetStream, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	kv, err := Ensure(ctx, js, opts.Topology)
	if err != nil {
		return err
	}
	c := &capturer{js: js, kv: kv, log: log}
	return natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream:      AdvisoryStream,
		Durable:     CaptureDurable,
		Concurrency: 4,
		MaxDeliver:  -1, // a lost advisory is a lost dead letter: retry KV trouble until it works
		Backoff:     []time.Duration{250 * time.Millisecond, time.Second, 5 * time.Second},
		Logger:      log,
	}, c.handle)
}

type capturer struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	log *slog.Logger
}

func (c *capturer) handle(ctx context.Context, m natsx.Msg) error {
	var adv advisory
	if err := json.Unmarshal(m.Data(), &adv); err != nil {
		return natsx.Permanent(fmt.Errorf("deadletter: decode advisory %s: %w", m, err))
	}
	if adv.Stream == "" || adv.StreamSeq == 0 {
		return natsx.Permanent(fmt.Errorf("deadletter: advisory %s lacks stream or stream_seq", m))
	}
	if adv.Stream == AdvisoryStream {
		return nil // our own consumer; recording it could loop
	}
	rec := Record{
		Key: Key(adv.Stream, adv.StreamSeq), Stream: adv.Stream, Seq: adv.StreamSeq, Consumer: adv.Consumer,
		Deliveries: adv.Deliveries, FirstSeen: adv.Time, Status: StatusFailed,
	}
	if rec.FirstSeen.IsZero() {
		rec.FirstSeen = m.Timestamp()
	}
	switch {
	case adv.Type == typeTerminated || strings.HasPrefix(m.Subject(), SubjectTerminated+"."):
		rec.Kind = KindTerminated
		rec.Reason = adv.Reason
		if rec.Reason == "" {
			rec.Reason = "terminated by the consumer (no reason given)"
		}
	case adv.Type == typeMaxDeliver || strings.HasPrefix(m.Subject(), SubjectMaxDeliveries+"."):
		rec.Kind = KindMaxDeliveries
		rec.Reason = fmt.Sprintf("maximum deliveries reached (%d) without an ack: the handler kept failing or timing out", adv.Deliveries)
	default:
		return natsx.Permanent(fmt.Errorf("deadletter: advisory %s has unexpected type %q", m, adv.Type))
	}

	// The payload stays in its stream; keep what identifies the message.
	stream, err := c.js.Stream(ctx, adv.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		rec.Reason += fmt.Sprintf(" [stream %s no longer exists]", adv.Stream)
	case err != nil:
		return fmt.Errorf("deadletter: open stream %s for %s: %w", adv.Stream, rec.Key, err)
	default:
		raw, err := stream.GetMsg(ctx, adv.StreamSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			rec.Reason += " [message no longer in the stream: cannot be retried]"
		case err != nil:
			return fmt.Errorf("deadletter: read %s from stream: %w", rec.Key, err)
		default:
			rec.Subject = raw.Subject
			rec.Headers = map[string][]string(raw.Header)
			rec.MsgID = raw.Header.Get(jetstream.MsgIDHeader)
			rec.RetryOf = raw.Header.Get(HeaderRetryOf)
		}
	}

	created, err := c.store(ctx, rec)
	if err != nil {
		return err
	}
	if created {
		metrics.DeadLetterCaptured(ctx, rec.Stream, rec.Consumer, rec.Kind)
		c.log.Warn("deadletter: message failed", "key", rec.Key, "subject", rec.Subject, "consumer", rec.Consumer,
			"kind", rec.Kind, "deliveries", rec.Deliveries, "reason", rec.Reason)
	}
	return nil
}

// store creates the record, or merges into an existing one (the same failure
// seen by two capturers, or both advisories for one message): the earliest
// FirstSeen, the most deliveries, and a terminate reason over a
// max-deliveries one. It never resets an operator's retry bookkeeping.
func (c *capturer) store(ctx context.Context, rec Record) (created bool, err error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return false, natsx.Permanent(fmt.Errorf("deadletter: encode record %s: %w", rec.Key, err))
	}
	if _, err := c.kv.Create(ctx, rec.Key, data); err == nil {
		return true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, fmt.Errorf("deadletter: store record %s: %w", rec.Key, err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		old, rev, err := get(ctx, c.kv, rec.Key)
		if err != nil {
			return false, err
		}
		merged := old
		if rec.FirstSeen.Before(merged.FirstSeen) {
			merged.FirstSeen = rec.FirstSeen
		}
		merged.Deliveries = max(merged.Deliveries, rec.Deliveries)
		if merged.Kind != KindTerminated && rec.Kind == KindTerminated {
			merged.Kind, merged.Reason = rec.Kind, rec.Reason
		}
		if merged.Subject == "" && rec.Subject != "" {
			merged.Subject, merged.Headers, merged.MsgID, merged.RetryOf = rec.Subject, rec.Headers, rec.MsgID, rec.RetryOf
		}
		if equalJSON(old, merged) {
			return false, nil
		}
		data, err := json.Marshal(merged)
		if err != nil {
			return false, natsx.Permanent(fmt.Errorf("deadletter: encode record %s: %w", rec.Key, err))
		}
		if _, err := c.kv.Update(ctx, rec.Key, data, rev); err == nil {
			return false, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("deadletter: update record %s: %w", rec.Key, err)
		}
	}
	return false, fmt.Errorf("deadletter: update record %s: too many concurrent writers", rec.Key)
}

func equalJSON(a, b Record) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
