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
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", msgID),
		))
	defer span.End()

	msg, err := newMsg(ctx, subject, msgID, m)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	ack, err := PublishMsg(ctx, js, msg, msgID)
	if err != nil {
		err = publishError(subject, msgID, err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)),
		attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return ack, nil
}

// Outgoing is one message of a PublishAll batch: what Publish takes.
type Outgoing struct {
	Subject string
	MsgID   string
	Msg     proto.Message
}

// PublishAll publishes every message of out as Publish does, but pipelined:
// all are sent before any ack is awaited, so a batch costs about one round
// trip to the stream instead of one per message. Messages on one subject
// are stored in the order of out, unless one needed the retry. A message that the pipelined publish did
// not get stored (no ack within publishAttemptTimeout, no responders, too
// many pending acks) is published again through PublishMsg, with its
// retries; its Nats-Msg-Id makes that safe. PublishAll tries every message
// and returns the failures joined.
func PublishAll(ctx context.Context, js jetstream.JetStream, out []Outgoing) error {
	if len(out) == 0 {
		return nil
	}
	ctx, span := telemetry.Tracer(tracerName).Start(ctx, "publish batch",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.Int("messaging.batch.message_count", len(out))))
	defer span.End()
	var errs []error
	pending := make([]jetstream.PubAckFuture, len(out))
	for i, o := range out {
		msg, err := newMsg(ctx, o.Subject, o.MsgID, o.Msg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(o.MsgID)); err == nil {
			pending[i] = f
		}
	}
	deadline, expired := time.After(publishAttemptTimeout), false
	for i, o := range out {
		if f := pending[i]; f != nil && awaitAck(ctx, f, deadline, &expired) {
			continue
		}
		msg, err := newMsg(ctx, o.Subject, o.MsgID, o.Msg)
		if err != nil {
			continue // reported above
		}
		if _, err := PublishMsg(ctx, js, msg, o.MsgID); err != nil {
			errs = append(errs, publishError(o.Subject, o.MsgID, err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// awaitAck reports whether f was acked: waiting until deadline, and once
// the deadline has passed (*expired) only looking.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture, deadline <-chan time.Time, expired *bool) bool {
	if !*expired {
		select {
		case <-f.Ok():
			return true
		case <-f.Err():
			return false
		case <-ctx.Done():
			return false
		case <-deadline:
			*expired = true
		}
	}
	select {
	case <-f.Ok():
		return true
	default:
		return false
	}
}

// newMsg marshals m into a message for subject with orgsync's headers and
// the trace context of ctx.
func newMsg(ctx context.Context, subject, msgID string, m proto.Message) (*nats.Msg, error) {
	if msgID == "" {
		return nil, fmt.Errorf("natsx: publish to %s: empty message id (dedupe needs a deterministic Nats-Msg-Id)", subject)
	}
	if m == nil {
		return nil, fmt.Errorf("natsx: publish to %s (msg id %s): nil message", subject, msgID)
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("natsx: publish to %s (msg id %s): marshal %s: %w", subject, msgID, m.ProtoReflect().Descriptor().FullName(), err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderContentType, ContentTypeProto)
	msg.Header.Set(HeaderMessageType, string(m.ProtoReflect().Descriptor().FullName()))
	telemetry.InjectNATS(ctx, msg.Header)
	return msg, nil
}

func publishError(subject, msgID string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		err = fmt.Errorf("%w (no stream captures %s, or its stream has no leader: did EnsureStreams run, is the cluster up?)", err, subject)
	}
	return fmt.Errorf("natsx: publish to %s (msg id %s): %w", subject, msgID, err)
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
	// A subject this user may not publish to fails at once, naming it.
	ctx, stop := Guard(ctx, js.Conn(), func(s string) bool { return s == msg.Subject })
	defer stop()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
		ack, err := js.PublishMsg(actx, msg, jetstream.WithMsgID(msgID))
		cancel()
		if perr := Refused(ctx); perr != nil {
			return nil, perr
		}
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
