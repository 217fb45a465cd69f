package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func publishPlan(t *testing.T, js jetstream.JetStream, target, id string) {
	t.Helper()
	subj, err := natsx.PlanSubject(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.Publish(context.Background(), js, subj, id, &orgsyncv1.Plan{PlanId: id}); err != nil {
		t.Fatal(err)
	}
}

func planSpec(durable, target string) natsx.ConsumerSpec {
	subj, _ := natsx.PlanSubject(target)
	return natsx.ConsumerSpec{Stream: natsx.StreamPlans, Durable: durable, FilterSubjects: []string{subj},
		Backoff: []time.Duration{10 * time.Millisecond}}
}

type termination struct {
	planID string
	reason error
}

func TestConsumeAcksDecodedMessages(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	var mu sync.Mutex
	var got []string
	runConsumer(t, js, planSpec("ok", "tgt"), func(ctx context.Context, m natsx.Msg) error {
		var p orgsyncv1.Plan
		if err := natsx.Decode(m, &p); err != nil {
			return err
		}
		mu.Lock()
		got = append(got, p.GetPlanId())
		mu.Unlock()
		return nil
	})
	for i := range 3 {
		publishPlan(t, js, "tgt", fmt.Sprintf("p%d", i))
	}
	natsxtest.Eventually(t, 10*time.Second, "3 plans acked", func() bool {
		info := consumerInfo(t, js, natsx.StreamPlans, "ok")
		return info.AckFloor.Consumer == 3 && info.NumAckPending == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "p0,p1,p2" {
		t.Fatalf("handled %v", got)
	}
}

func TestConsumePermanentErrorTerminatesOnce(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	var calls counter
	terms := make(chan termination, 10)
	spec := planSpec("perm", "tgt")
	spec.OnTerminate = func(ctx context.Context, m natsx.Msg, reason error) {
		var p orgsyncv1.Plan
		_ = natsx.Decode(m, &p)
		terms <- termination{p.GetPlanId(), reason}
	}
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		calls.inc(m.MsgID())
		if m.MsgID() == "bad" {
			return natsx.Permanent(errors.New("unknown org tgt"))
		}
		return nil
	})
	publishPlan(t, js, "tgt", "bad")
	// A raw garbage payload: Decode's error is Permanent too.
	if _, err := js.Publish(context.Background(), "orgsync.plan.tgt", []byte{0xff, 0x01}, jetstream.WithMsgID("garbage")); err != nil {
		t.Fatal(err)
	}
	publishPlan(t, js, "tgt", "good")

	select {
	case tm := <-terms:
		if tm.planID != "bad" || !natsx.IsPermanent(tm.reason) || !strings.Contains(tm.reason.Error(), "unknown org tgt") {
			t.Fatalf("termination %+v", tm)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnTerminate not called for the permanent error")
	}
	natsxtest.Eventually(t, 10*time.Second, "all three settled", func() bool {
		info := consumerInfo(t, js, natsx.StreamPlans, "perm")
		return info.AckFloor.Stream == 3 && info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := calls.get("bad"); n != 1 {
		t.Fatalf("permanently failing message handled %d times, want 1", n)
	}
	if info := consumerInfo(t, js, natsx.StreamPlans, "perm"); info.NumRedelivered != 0 {
		t.Fatalf("%d redeliveries after a permanent error", info.NumRedelivered)
	}
}

func TestConsumeDecodeGarbageIsPermanent(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	terms := make(chan error, 1)
	spec := planSpec("garbage", "tgt")
	spec.OnTerminate = func(_ context.Context, _ natsx.Msg, reason error) { terms <- reason }
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		var p orgsyncv1.Plan
		return natsx.Decode(m, &p)
	})
	// Right type header, wrong bytes.
	msg := &nats.Msg{Subject: "orgsync.plan.tgt", Data: []byte{0xff, 0xff, 0xff}, Header: nats.Header{}}
	msg.Header.Set(natsx.HeaderMessageType, "orgsync.v1.Plan")
	if _, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID("g1")); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-terms:
		if !natsx.IsPermanent(reason) || !strings.Contains(reason.Error(), "orgsync.plan.tgt seq 1") || !strings.Contains(reason.Error(), "orgsync.v1.Plan") {
			t.Fatalf("reason %v", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("garbage payload not terminated")
	}
}

func TestConsumeTransientErrorRetriesUntilMaxDeliver(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	var calls counter
	terms := make(chan termination, 10)
	spec := planSpec("transient", "tgt")
	spec.MaxDeliver = 3
	spec.OnTerminate = func(ctx context.Context, m natsx.Msg, reason error) {
		terms <- termination{m.MsgID(), reason}
	}
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		n := calls.inc(m.MsgID())
		if m.Delivered() != uint64(n) {
			t.Errorf("Delivered() = %d on call %d", m.Delivered(), n)
		}
		if m.MsgID() == "flaky" && n == 2 {
			return nil // recovers on the second attempt
		}
		if m.MsgID() == "flaky" || m.MsgID() == "down" {
			return fmt.Errorf("genesys: 503 on attempt %d", n)
		}
		return nil
	})
	publishPlan(t, js, "tgt", "flaky")
	publishPlan(t, js, "tgt", "down")

	select {
	case tm := <-terms:
		if tm.planID != "down" || !errors.Is(tm.reason, natsx.ErrMaxDeliveries) ||
			!strings.Contains(tm.reason.Error(), "genesys: 503 on attempt 3") || natsx.IsPermanent(tm.reason) {
			t.Fatalf("termination %+v", tm)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnTerminate not called after MaxDeliver")
	}
	natsxtest.Eventually(t, 10*time.Second, "both settled", func() bool {
		info := consumerInfo(t, js, natsx.StreamPlans, "transient")
		return info.AckFloor.Stream == 2 && info.NumAckPending == 0
	})
	if calls.get("down") != 3 || calls.get("flaky") != 2 {
		t.Fatalf("calls: down %d (want 3), flaky %d (want 2)", calls.get("down"), calls.get("flaky"))
	}
	select {
	case tm := <-terms:
		t.Fatalf("unexpected second termination %+v", tm)
	default:
	}
}

func TestConsumeCarriesTraceContext(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	type seen struct {
		trace  trace.TraceID
		parent bool
	}
	got := make(chan seen, 1)
	runConsumer(t, js, planSpec("traced", "tgt"), func(ctx context.Context, m natsx.Msg) error {
		sc := trace.SpanContextFromContext(ctx)
		got <- seen{sc.TraceID(), sc.IsValid() && m.Headers().Get("traceparent") != ""}
		return nil
	})
	ctx, span := telemetry.Tracer("test").Start(context.Background(), "clone request")
	subj, _ := natsx.PlanSubject("tgt")
	if err := natsx.Publish(ctx, js, subj, "p-traced", &orgsyncv1.Plan{PlanId: "p-traced"}); err != nil {
		t.Fatal(err)
	}
	span.End()
	select {
	case s := <-got:
		if !s.parent || s.trace != span.SpanContext().TraceID() {
			t.Fatalf("handler trace %s (valid %v), publisher trace %s", s.trace, s.parent, span.SpanContext().TraceID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not consumed")
	}
}

func TestConsumeConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	spec := planSpec("conc", "tgt")
	spec.Concurrency = 3
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	for i := range 10 {
		publishPlan(t, js, "tgt", fmt.Sprintf("c%d", i))
	}
	natsxtest.Eventually(t, 10*time.Second, "3 handlers running", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running == 3
	})
	close(release)
	natsxtest.Eventually(t, 10*time.Second, "all acked", func() bool {
		return consumerInfo(t, js, natsx.StreamPlans, "conc").AckFloor.Stream == 10
	})
	if peak != 3 {
		t.Fatalf("peak concurrency %d, want 3", peak)
	}
}

// Cancelling the runner's ctx interrupts a running handler; the message is
// Nak'd so another instance gets it at once, well before its 1-minute AckWait.
func TestConsumeShutdownNaksInFlight(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	spec := planSpec("shutdown", "tgt")
	spec.AckWait = time.Minute
	started := make(chan struct{}, 1)
	stop1 := runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	publishPlan(t, js, "tgt", "long")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not started")
	}
	stop1()
	handled := make(chan uint64, 1)
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		handled <- m.Delivered()
		return nil
	})
	select {
	case n := <-handled:
		if n != 2 {
			t.Fatalf("second instance saw delivery %d, want 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("interrupted message was not handed back (Nak) on shutdown")
	}
}

func TestConsumeKeepsLongHandlerInProgress(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	spec := planSpec("long", "tgt")
	spec.AckWait = 300 * time.Millisecond
	spec.InProgressEvery = 50 * time.Millisecond
	var calls counter
	runConsumer(t, js, spec, func(ctx context.Context, m natsx.Msg) error {
		calls.inc("x")
		// Outlive AckWait several times over; wait on a timer, not to
		// synchronize the test but to be a slow handler.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		return nil
	})
	publishPlan(t, js, "tgt", "slow")
	natsxtest.Eventually(t, 10*time.Second, "slow message acked", func() bool {
		return consumerInfo(t, js, natsx.StreamPlans, "long").AckFloor.Stream == 1
	})
	if n := calls.get("x"); n != 1 {
		t.Fatalf("slow handler ran %d times; InProgress did not hold the message", n)
	}
}
