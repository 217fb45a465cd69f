package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgsync/orgsync/pkg/telemetry"
)

// Defaults of ConsumerSpec.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 5
	DefaultConcurrency   = 1
	DefaultMaxAckPending = 1000
	DefaultPriorityGroup = "orgsync"
	DefaultPinnedTTL     = 30 * time.Second
	// hookTimeout bounds OnTerminate when it runs during shutdown (its ctx
	// is detached from the runner's so the failed event still goes out).
	hookTimeout = 10 * time.Second
	// maxTermReason bounds the reason sent with TermWithReason (it travels
	// in a server advisory).
	maxTermReason = 512
	// A pull request waits on the consumer's leader. When that node dies
	// (kill -9, crash) the request dies with it, unanswered, and only
	// missing idle heartbeats tell the client to pull again: nats.go's
	// defaults (30s requests, 15s heartbeats) leave the consumer idle for
	// 30s after a node failure; these bound it to 2*pullHeartbeat.
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
)

// DefaultBackoff is the Nak delay schedule for transient errors: the n-th
// failed delivery waits Backoff[n-1] (the last value repeats).
var DefaultBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}

// Handler processes one message. Its ctx carries the publisher's trace
// context and a consumer span, and is cancelled when the runner stops.
// Return nil when done (Ack), Permanent(err) when the message can never
// succeed (Term + OnTerminate), or any other error to retry later (Nak with
// backoff, and Term + OnTerminate on the last allowed delivery).
type Handler func(ctx context.Context, m Msg) error

// TerminateHook is told about every message the runner terminates: reason
// is the handler's Permanent error, or wraps ErrMaxDeliveries and the last
// attempt's error. Services publish a failed Event from it. ctx is detached
// from the runner's cancellation (bounded by a timeout) and keeps the
// message's trace.
type TerminateHook func(ctx context.Context, m Msg, reason error)

// ConsumerSpec describes a durable pull consumer and how the runner drives it.
type ConsumerSpec struct {
	// Stream to consume (required), e.g. StreamPlans.
	Stream string
	// Durable consumer name (required); instances sharing it share the work
	// (or, Pinned, stand by for each other). No dots, wildcards or spaces.
	Durable string
	// FilterSubjects restricts the consumer to these subjects (wildcards
	// allowed); empty means the whole stream.
	FilterSubjects []string
	// AckWait before an unacknowledged message is redelivered (default 30s).
	AckWait time.Duration
	// MaxDeliver is the number of delivery attempts (default 5); -1 means
	// unlimited (transient errors then retry forever).
	MaxDeliver int
	// Backoff is the Nak delay after the n-th failed attempt (default
	// DefaultBackoff; the last value repeats).
	Backoff []time.Duration
	// MaxAckPending bounds unacknowledged messages across all instances
	// (default 1000).
	MaxAckPending int
	// Concurrency is how many handlers run at once in this runner (default 1).
	// The runner also buffers at most this many messages, so none waits
	// out its AckWait in a client buffer.
	Concurrency int
	// Pinned makes the consumer a pinned-client priority group: of all
	// runners on this durable only one (the pinned one) receives messages;
	// another takes over when it stops (immediately on a clean stop, after
	// PinnedTTL when it dies).
	Pinned bool
	// PriorityGroup name for Pinned (default "orgsync").
	PriorityGroup string
	// PinnedTTL: how long a silent pinned client keeps the pin (default 30s).
	PinnedTTL time.Duration
	// InProgressEvery, when > 0, makes the runner send InProgress at this
	// interval while a handler runs (long handlers; keep it < AckWait).
	InProgressEvery time.Duration
	// OnTerminate is called for every terminated message (may be nil).
	OnTerminate TerminateHook
	// Logger for delivery problems; default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns s with zero fields replaced by defaults.
func (s ConsumerSpec) WithDefaults() ConsumerSpec {
	if s.AckWait == 0 {
		s.AckWait = DefaultAckWait
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = DefaultMaxDeliver
	}
	if len(s.Backoff) == 0 {
		s.Backoff = DefaultBackoff
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = DefaultMaxAckPending
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.Pinned && s.PriorityGroup == "" {
		s.PriorityGroup = DefaultPriorityGroup
	}
	if s.Pinned && s.PinnedTTL == 0 {
		s.PinnedTTL = DefaultPinnedTTL
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s
}

// Validate reports every invalid field of s (after defaults).
func (s ConsumerSpec) Validate() error {
	s = s.WithDefaults()
	var errs []error
	if s.Stream == "" {
		errs = append(errs, errors.New("Stream is required"))
	}
	if err := ValidateOrgKey(s.Durable); err != nil && s.Durable == "" {
		errs = append(errs, errors.New("Durable is required"))
	} else if err != nil {
		errs = append(errs, fmt.Errorf("Durable %q must be letters, digits, '-' and '_'", s.Durable))
	}
	if s.AckWait < 0 || s.MaxDeliver < -1 || s.MaxAckPending < -1 || s.Concurrency < 0 || s.PinnedTTL < 0 || s.InProgressEvery < 0 {
		errs = append(errs, errors.New("AckWait, MaxDeliver, MaxAckPending, Concurrency, PinnedTTL and InProgressEvery must not be negative"))
	}
	for _, b := range s.Backoff {
		if b < 0 {
			errs = append(errs, fmt.Errorf("Backoff contains negative delay %v", b))
			break
		}
	}
	if s.InProgressEvery > 0 && s.InProgressEvery >= s.AckWait {
		errs = append(errs, fmt.Errorf("InProgressEvery %v must be shorter than AckWait %v", s.InProgressEvery, s.AckWait))
	}
	if !s.Pinned && (s.PriorityGroup != "" || s.PinnedTTL != 0) {
		errs = append(errs, errors.New("PriorityGroup and PinnedTTL need Pinned"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("natsx: invalid consumer spec %s/%s: %w", s.Stream, s.Durable, errors.Join(errs...))
	}
	return nil
}

// ConsumerConfig is the JetStream consumer config s creates.
func (s ConsumerSpec) ConsumerConfig() jetstream.ConsumerConfig {
	s = s.WithDefaults()
	cfg := jetstream.ConsumerConfig{
		Durable:        s.Durable,
		Description:    "orgsync consumer " + s.Durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.AckWait,
		MaxDeliver:     s.MaxDeliver,
		MaxAckPending:  s.MaxAckPending,
		FilterSubjects: s.FilterSubjects,
	}
	if s.Pinned {
		cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
		cfg.PriorityGroups = []string{s.PriorityGroup}
		cfg.PinnedTTL = s.PinnedTTL
	}
	return cfg
}

// Consume runs handler over the durable consumer spec describes (created or
// updated first) until ctx is cancelled, then returns nil; it returns an
// error only when the consumer cannot be set up.
//
// Delivery contract: explicit ack; handler nil → Ack; Permanent error →
// TermWithReason + OnTerminate (never redelivered); other error → Nak with
// Backoff, and on the MaxDeliver-th attempt TermWithReason + OnTerminate
// with ErrMaxDeliveries. A handler panic counts as a transient error (a
// bug; it is logged with its stack, retried and finally terminated).
//
// Stopping: when ctx is cancelled the runner stops pulling, cancels the
// handlers' ctx, waits for them, and Naks (without delay) every message
// whose handler failed because of the shutdown as well as messages still
// buffered. Nak rather than leaving them to time out: another instance (or
// the restarted one) gets them at once instead of after AckWait; the
// redelivery counts as an attempt, which MaxDeliver headroom absorbs.
// Handlers that finish successfully during shutdown are still acked. A
// pinned runner that holds the pin releases it (UnpinConsumer) after its
// last ack so a standby takes over immediately.
func Consume(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec, handler Handler) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if handler == nil {
		return fmt.Errorf("natsx: consume %s/%s: nil handler", spec.Stream, spec.Durable)
	}
	spec = spec.WithDefaults()
	var cons jetstream.Consumer
	err := retryEnsure(ctx, func() (err error) {
		cons, err = js.CreateOrUpdateConsumer(ctx, spec.Stream, spec.ConsumerConfig())
		return err
	})
	if err != nil {
		return fmt.Errorf("natsx: create consumer %s on stream %s: %w", spec.Durable, spec.Stream, err)
	}

	r := &runner{spec: spec, handler: handler, log: spec.Logger.With("stream", spec.Stream, "consumer", spec.Durable)}
	// Handlers get their own cancellation, fired only once this runner has
	// stopped pulling: a message Nak'd earlier could be redelivered to our
	// still-open subscription and burn a delivery attempt for nothing.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	sem := make(chan struct{}, spec.Concurrency)
	var wg sync.WaitGroup
	var heldMu sync.Mutex
	var held []jetstream.Msg // arrived while stopping; Nak'd after the subscription closed

	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(spec.Concurrency),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.log.Debug("natsx: consume", "err", err)
		}),
	}
	if spec.Pinned {
		opts = append(opts, jetstream.PullPriorityGroup(spec.PriorityGroup))
	}
	hold := func(jm jetstream.Msg) {
		heldMu.Lock()
		held = append(held, jm)
		heldMu.Unlock()
	}
	cc, err := cons.Consume(func(jm jetstream.Msg) {
		if spec.Pinned {
			r.notePin(jm)
		}
		if ctx.Err() != nil { // buffered while stopping: hand back later
			hold(jm)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			hold(jm)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.handle(handlerCtx, jm)
		}()
	}, opts...)
	if err != nil {
		return fmt.Errorf("natsx: consume %s on stream %s: %w", spec.Durable, spec.Stream, err)
	}

	<-ctx.Done()
	cc.Drain() // stop pulling; buffered messages still reach the callback
	select {
	case <-cc.Closed():
	case <-time.After(min(spec.AckWait, 5*time.Second)): // connection gone: nothing more arrives
	}
	cancelHandlers()
	wg.Wait()
	heldMu.Lock()
	for _, jm := range held {
		r.nak(jm, 0)
	}
	heldMu.Unlock()
	if spec.Pinned {
		r.releasePin(js)
	}
	return nil
}

// runner holds the per-Consume state.
type runner struct {
	spec    ConsumerSpec
	handler Handler
	log     *slog.Logger

	mu    sync.Mutex
	pinID string // Nats-Pin-Id of the last message received (pinned only)
}

func (r *runner) notePin(jm jetstream.Msg) {
	if id := jm.Headers().Get("Nats-Pin-Id"); id != "" {
		r.mu.Lock()
		r.pinID = id
		r.mu.Unlock()
	}
}

// releasePin unpins the consumer if this runner holds the pin, so a standby
// runner is pinned on its next pull instead of after PinnedTTL.
func (r *runner) releasePin(js jetstream.JetStream) {
	r.mu.Lock()
	pin := r.pinID
	r.mu.Unlock()
	if pin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, r.spec.Stream)
	if err != nil {
		r.log.Debug("natsx: release pin: open stream", "err", err)
		return
	}
	cons, err := stream.Consumer(ctx, r.spec.Durable)
	if err != nil {
		r.log.Debug("natsx: release pin: open consumer", "err", err)
		return
	}
	info := cons.CachedInfo()
	for _, g := range info.PriorityGroups {
		if g.Group == r.spec.PriorityGroup && g.PinnedClientID == pin {
			if err := stream.UnpinConsumer(ctx, r.spec.Durable, r.spec.PriorityGroup); err != nil {
				r.log.Warn("natsx: release pin", "err", err)
			}
			return
		}
	}
}

func (r *runner) nak(jm jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = jm.NakWithDelay(delay)
	} else {
		err = jm.Nak()
	}
	if err != nil {
		r.log.Warn("natsx: nak failed; the message will be redelivered after AckWait", "subject", jm.Subject(), "err", err)
	}
}

// backoff is the Nak delay after the given failed delivery (1-based).
func (r *runner) backoff(delivered uint64) time.Duration {
	i := int(delivered) - 1
	if i >= len(r.spec.Backoff) {
		i = len(r.spec.Backoff) - 1
	}
	if i < 0 {
		i = 0
	}
	return r.spec.Backoff[i]
}

func (r *runner) handle(ctx context.Context, jm jetstream.Msg) {
	meta, metaErr := jm.Metadata()
	m := Msg{raw: jm, meta: meta}

	hctx := telemetry.ExtractNATS(ctx, jm.Headers())
	hctx, span := telemetry.Tracer(tracerName).Start(hctx, "consume "+jm.Subject(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", jm.Subject()),
			attribute.String("messaging.consumer.group.name", r.spec.Durable),
			attribute.String("messaging.message.id", m.MsgID()),
			attribute.Int64("messaging.nats.delivery", int64(m.Delivered())),
		))
	defer span.End()

	began := time.Now()
	var err error
	if metaErr != nil {
		err = Permanent(fmt.Errorf("natsx: %s is not a JetStream message: %w", jm.Subject(), metaErr))
	} else {
		if r.spec.InProgressEvery > 0 {
			stop := KeepInProgress(hctx, m, r.spec.InProgressEvery)
			err = r.call(hctx, m)
			stop()
		} else {
			err = r.call(hctx, m)
		}
	}

	took := time.Since(began)
	outcome := OutcomeRetry
	switch {
	case err == nil:
		outcome = OutcomeAcked
	case IsPermanent(err):
		outcome = OutcomeTerminated
	case ctx.Err() != nil:
		// Shutdown interrupted the handler (ctx is the handlers' ctx,
		// cancelled only on stop): not the message's fault.
		outcome = OutcomeInterrupted
	case r.spec.MaxDeliver > 0 && m.Delivered() >= uint64(r.spec.MaxDeliver):
		outcome = OutcomeTerminated
		err = fmt.Errorf("%w (%d attempts), last error: %w", ErrMaxDeliveries, m.Delivered(), err)
	}
	// Counted before it is settled: whoever sees the message acked (the
	// consumer drained) or terminated sees it in the metrics too.
	observeDelivery(hctx, Delivery{Stream: r.spec.Stream, Consumer: r.spec.Durable, Subject: jm.Subject(),
		Delivered: m.Delivered(), Outcome: outcome, Duration: took, Err: err})
	switch outcome {
	case OutcomeAcked:
		if aerr := jm.Ack(); aerr != nil {
			r.log.Warn("natsx: ack failed; the message will be redelivered (handlers are idempotent)", "msg", m.String(), "err", aerr)
		}
	case OutcomeTerminated:
		span.SetStatus(codes.Error, err.Error())
		r.terminate(hctx, m, err)
	case OutcomeInterrupted:
		span.SetStatus(codes.Error, "interrupted by shutdown")
		r.nak(jm, 0)
	default:
		span.SetStatus(codes.Error, err.Error())
		delay := r.backoff(m.Delivered())
		r.log.Info("natsx: handler failed, will retry", "msg", m.String(), "retry_in", delay, "err", err)
		r.nak(jm, delay)
	}
}

// call runs the handler, turning a panic into an error.
func (r *runner) call(ctx context.Context, m Msg) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("natsx: handler panicked", "msg", m.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("natsx: handler panicked on %s: %v", m, p)
		}
	}()
	return r.handler(ctx, m)
}

func (r *runner) terminate(ctx context.Context, m Msg, reason error) {
	text := reason.Error()
	if len(text) > maxTermReason {
		text = text[:maxTermReason-3] + "..."
	}
	if err := m.raw.TermWithReason(text); err != nil {
		r.log.Warn("natsx: term failed", "msg", m.String(), "err", err)
	}
	r.log.Warn("natsx: message terminated", "msg", m.String(), "reason", text)
	if r.spec.OnTerminate == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
	defer cancel()
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("natsx: OnTerminate panicked", "msg", m.String(), "panic", fmt.Sprint(p))
			}
		}()
		r.spec.OnTerminate(hctx, m, reason)
	}()
}
