package natsx

import (
	"context"
	"errors"
	"fmt"

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

	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			err = fmt.Errorf("%w (no stream captures %s: did EnsureStreams run?)", err, subject)
		}
		err = fmt.Errorf("natsx: publish to %s (msg id %s): %w", subject, msgID, err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)),
		attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return ack, nil
}
