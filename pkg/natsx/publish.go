package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Header names and values orgsync sets on every message.
const (
	HeaderContentType = "Content-Type"
	ContentTypeProto  = "application/protobuf"
	// HeaderMessageType carries the protobuf full name (orgsync.v1.Plan)
	// so a consumer can reject a message of the wrong type precisely.
	HeaderMessageType = "Orgsync-Message-Type"
)

const tracerName = "github.com/orgsync/orgsync/pkg/natsx"

// Publish marshals m and publishes it to subject on JetStream, waiting for
// the stream's ack. msgID becomes Nats-Msg-Id: the stream drops a second
// message with the same id within its duplicate window, so callers use a
// deterministic id (request id, event id) and may retry freely. The trace
// context of ctx is injected into the headers (W3C traceparent).
func Publish(ctx context.Context, js jetstream.JetStream, subject, msgID string, m proto.Message) error {
	_, err := PublishAck(ctx, js, subject, msgID, m)
	return err
}

// PublishAck is Publish returning the stream's ack (sequence, and
// Duplicate=true when msgID was already stored).
func PublishAck(ctx context.Context, js jetstream.JetStream, subject, msgID string, m proto.Message) (*jetstream.PubAck, error) {
	if msgID == "" {
		return nil, fmt.Errorf("natsx: publish to %s: empty message id (dedupe needs a deterministic Nats-Msg-Id)", subject)
	}
	if m == nil {
		return nil, fmt.Errorf("natsx: publish to %s (msg id %s): nil message", subject, msgID)
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", msgID),
		))
	defer span.End()

	data, err := proto.Marshal(m)
	if err != nil {
		err = fmt.Errorf("natsx: publish to %s (msg id %s): marshal %s: %w", subject, msgID, m.ProtoReflect().Descriptor().FullName(), err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderContentType, ContentTypeProto)
	msg.Header.Set(HeaderMessageType, string(m.ProtoReflect().Descriptor().FullName()))
	telemetry.InjectNATS(ctx, msg.Header)

	ack, err := PublishMsg(ctx, js, msg, msgID)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			err = fmt.Errorf("%w (no stream captures %s, or its stream has no leader: did EnsureStreams run, is the cluster up?)", err, subject)
		}
		err = fmt.Errorf("natsx: publish to %s (msg id %s): %w", subject, msgID, err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)),
		attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return ack, nil
}

// Publish retries (PublishMsg). While a cluster elects a new stream leader
// (a node died, restarted or stepped down) a publish finds no responder,
// times out, or is answered 503 for a few seconds.
const (
	// PublishRetryFor bounds how long PublishMsg keeps retrying such
	// failures (a leader election takes seconds; ctx may end it sooner).
	PublishRetryFor = 30 * time.Second
	// publishAttemptTimeout bounds one attempt when ctx has no sooner
	// deadline: an attempt whose stream leader died after receiving it
	// gets no answer, and the retry goes to the new leader.
	publishAttemptTimeout = 5 * time.Second
	publishRetryMin       = 50 * time.Millisecond
	publishRetryMax       = time.Second
)

// PublishMsg publishes msg with Nats-Msg-Id msgID (required) and waits for
// the stream's ack, retrying what a leader election or a node restart
// causes (no responders, timeout, 503) with backoff for up to
// PublishRetryFor or until ctx ends. Retrying is safe because of the id:
// when an earlier attempt was stored but its ack was lost, the stream drops
// the retry and acks it as a Duplicate. Other errors (wrong expectations,
// message too large, no stream capturing the subject) are returned at once. Every orgsync publish to a
// stream goes through here (Publish, replay, dead-letter retry).
func PublishMsg(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, msgID string) (*jetstream.PubAck, error) {
	if msgID == "" {
		return nil, fmt.Errorf("natsx: publish to %s: empty message id (retries and dedupe need a deterministic Nats-Msg-Id)", msg.Subject)
	}
	giveUp := time.Now().Add(PublishRetryFor)
	wait := publishRetryMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
		ack, err := js.PublishMsg(actx, msg, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil || !retryablePublish(err) || ctx.Err() != nil || time.Now().Add(wait).After(giveUp) || noStreamFor(ctx, js, msg.Subject, err) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (after %d attempts: %w)", err, attempt, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, publishRetryMax)
	}
}

// noStreamFor reports whether err (of a publish to subject) is "no
// responders" because no stream captures subject — a deployment error
// that waiting does not fix, so it is returned at once — rather than
// because the stream has no leader right now.
func noStreamFor(ctx context.Context, js jetstream.JetStream, subject string, err error) bool {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
	defer cancel()
	_, lerr := js.StreamNameBySubject(lctx, subject)
	return errors.Is(lerr, jetstream.ErrStreamNotFound)
}

// retryablePublish reports publish errors that a leader election or a node
// restart causes and that a retry can overcome.
func retryablePublish(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}
