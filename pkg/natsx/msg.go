package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Msg is the message a Consume handler receives. The runner owns
// acknowledgement: handlers never Ack/Nak/Term themselves, they return nil,
// an error, or a Permanent error.
type Msg struct {
	raw  jetstream.Msg
	meta *jetstream.MsgMetadata
}

// Data is the message payload (protobuf bytes for orgsync messages).
func (m Msg) Data() []byte { return m.raw.Data() }

// Subject the message was published to.
func (m Msg) Subject() string { return m.raw.Subject() }

// Headers of the message (trace context, Nats-Msg-Id, Content-Type...).
func (m Msg) Headers() nats.Header { return m.raw.Headers() }

// MsgID is the Nats-Msg-Id the publisher set (empty when none).
func (m Msg) MsgID() string { return m.raw.Headers().Get(jetstream.MsgIDHeader) }

// Delivered is the delivery attempt, 1 for the first delivery.
func (m Msg) Delivered() uint64 {
	if m.meta == nil {
		return 1
	}
	return m.meta.NumDelivered
}

// StreamSequence is the message's sequence number in its stream.
func (m Msg) StreamSequence() uint64 {
	if m.meta == nil {
		return 0
	}
	return m.meta.Sequence.Stream
}

// Timestamp is when the stream stored the message.
func (m Msg) Timestamp() time.Time {
	if m.meta == nil {
		return time.Time{}
	}
	return m.meta.Timestamp
}

// InProgress tells the server the handler is still working, resetting the
// ack wait so the message is not redelivered to another consumer meanwhile.
func (m Msg) InProgress() error { return m.raw.InProgress() }

// Raw is the underlying JetStream message, for the rare caller that needs
// more than this type offers. Do not acknowledge it yourself.
func (m Msg) Raw() jetstream.Msg { return m.raw }

// String identifies the message in errors and logs (no payload).
func (m Msg) String() string {
	return fmt.Sprintf("%s seq %d (delivery %d)", m.Subject(), m.StreamSequence(), m.Delivered())
}

// KeepInProgress sends InProgress every interval until the returned stop
// function is called or ctx is done. Use it around work that may outlast the
// consumer's AckWait (or set ConsumerSpec.InProgressEvery to have the runner
// do it for every message). stop waits for the ticker goroutine to exit, so
// no InProgress is sent after the handler returns.
func KeepInProgress(ctx context.Context, m Msg, interval time.Duration) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = m.InProgress() // best effort: a lost one only risks an early redelivery
			}
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-exited
	}
}

// Decode unmarshals the payload of m into into. A payload that is not a
// valid message of that type can never succeed, so the error is Permanent
// and names the subject, sequence and expected type. A message published by
// Publish carries its type in HeaderMessageType; a mismatch is reported too.
func Decode(m Msg, into proto.Message) error {
	want := string(into.ProtoReflect().Descriptor().FullName())
	if got := m.Headers().Get(HeaderMessageType); got != "" && got != want {
		return Permanent(fmt.Errorf("natsx: decode %s: message type is %s, want %s", m, got, want))
	}
	if err := proto.Unmarshal(m.Data(), into); err != nil {
		return Permanent(fmt.Errorf("natsx: decode %s as %s: %w", m, want, err))
	}
	return nil
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that no redelivery can fix (bad payload,
// unknown org, invalid request). A handler returning it gets its message
// terminated (TermWithReason) instead of redelivered, and the runner calls
// ConsumerSpec.OnTerminate. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	if IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ErrMaxDeliveries is wrapped in the reason OnTerminate receives when a
// message failed with transient errors on every allowed delivery.
var ErrMaxDeliveries = errors.New("natsx: maximum deliveries reached")
