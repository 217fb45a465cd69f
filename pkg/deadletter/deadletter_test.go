package deadletter_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// startCapture runs n capturers (as n service processes would) until the
// test ends.
func startCapture(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := deadletter.Capture(ctx, js, deadletter.Options{}); err != nil {
				t.Errorf("capture: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The advisory stream must exist before anything fails.
	natsxtest.Eventually(t, 10*time.Second, "advisory stream created", func() bool {
		_, err := js.Stream(context.Background(), deadletter.AdvisoryStream)
		return err == nil
	})
}

func publish(t *testing.T, js jetstream.JetStream, subject, msgID, body string) uint64 {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Data: []byte(body), Header: nats.Header{"Orgsync-Test": []string{"kept"}}}
	ack, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func waitRecord(t *testing.T, js jetstream.JetStream, key string) deadletter.Record {
	t.Helper()
	var rec deadletter.Record
	natsxtest.Eventually(t, 10*time.Second, "record "+key+" in List", func() bool {
		recs, err := deadletter.List(context.Background(), js)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Key == key {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// consume runs handler on a PLANS consumer (MaxDeliver 2, fast backoff)
// until the test ends.
func consume(t *testing.T, js jetstream.JetStream, durable string, handler natsx.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := natsx.Consume(ctx, js, natsx.ConsumerSpec{Stream: natsx.StreamPlans, Durable: durable,
			FilterSubjects: []string{"orgsync.plan." + durable}, MaxDeliver: 2, Backoff: []time.Duration{10 * time.Millisecond}}, handler)
		if err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// A poison message (transient error every time) is recorded after
// MaxDeliver with its reason; once the handler is fixed, Retry re-drives it
// under a new message id and it is processed.
func TestPoisonMessageRecordedAndRetried(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	startCapture(t, js, 2)

	var fixed atomic.Bool
	var processed sync.Map // msg id → subject
	var attempts atomic.Int32
	consume(t, js, "poison", func(_ context.Context, m natsx.Msg) error {
		if !fixed.Load() {
			attempts.Add(1)
			return errors.New("target org unreachable")
		}
		processed.Store(m.MsgID(), m.Headers().Get(deadletter.HeaderRetryOf))
		return nil
	})
	seq := publish(t, js, "orgsync.plan.poison", "plan-1", "payload")
	key := deadletter.Key(natsx.StreamPlans, seq)

	rec := waitRecord(t, js, key)
	if rec.Status != deadletter.StatusFailed || rec.Subject != "orgsync.plan.poison" || rec.Consumer != "poison" ||
		rec.Deliveries != 2 || rec.MsgID != "plan-1" || rec.Headers["Orgsync-Test"][0] != "kept" {
		t.Fatalf("record = %+v", rec)
	}
	if !strings.Contains(rec.Reason, "maximum deliveries reached") || !strings.Contains(rec.Reason, "target org unreachable") {
		t.Fatalf("reason = %q, want the max-deliveries reason with the last error", rec.Reason)
	}
	if got := attempts.Load(); got != 2 {
		t.Fatalf("handler attempts = %d, want 2 (MaxDeliver)", got)
	}

	fixed.Store(true)
	got, err := deadletter.Retry(context.Background(), js, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != deadletter.StatusRetried || got.Retries != 1 || got.LastRetryMsgID != "plan-1-retry-1" {
		t.Fatalf("after retry: %+v", got)
	}
	natsxtest.Eventually(t, 10*time.Second, "retried message processed", func() bool {
		v, ok := processed.Load("plan-1-retry-1")
		return ok && v == key
	})
	stored, err := deadletter.Get(context.Background(), js, key)
	if err != nil || stored.Status != deadletter.StatusRetried {
		t.Fatalf("stored record after retry = %+v, %v", stored, err)
	}
	// Two capturers ran: still exactly one record.
	recs, _ := deadletter.List(context.Background(), js)
	if len(recs) != 1 {
		t.Fatalf("List = %d records, want 1: %+v", len(recs), recs)
	}
}

// A terminated message carries the handler's terminate reason; RetryAll
// re-drives every failed record, and a retried record is not retried again.
func TestTerminatedMessageReasonAndRetryAll(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	startCapture(t, js, 1)
	var fixed atomic.Bool
	var processed atomic.Int32
	consume(t, js, "term", func(_ context.Context, m natsx.Msg) error {
		if !fixed.Load() {
			return natsx.Permanent(errors.New("plan references unknown org \"nope\""))
		}
		processed.Add(1)
		return nil
	})
	seq := publish(t, js, "orgsync.plan.term", "plan-t", "x")
	rec := waitRecord(t, js, deadletter.Key(natsx.StreamPlans, seq))
	if rec.Kind != deadletter.KindTerminated || rec.Reason != `plan references unknown org "nope"` || rec.Deliveries != 1 {
		t.Fatalf("record = %+v", rec)
	}
	fixed.Store(true)
	done, err := deadletter.RetryAll(context.Background(), js)
	if err != nil || len(done) != 1 {
		t.Fatalf("RetryAll = %d, %v", len(done), err)
	}
	natsxtest.Eventually(t, 10*time.Second, "re-driven message processed", func() bool { return processed.Load() == 1 })
	if done, err := deadletter.RetryAll(context.Background(), js); err != nil || len(done) != 0 {
		t.Fatalf("second RetryAll = %d, %v; want nothing left to retry", len(done), err)
	}
}

// A consumer that never acks (a crashing handler) past MaxDeliver produces
// the MAX_DELIVERIES advisory, recorded as such.
func TestMaxDeliveriesAdvisoryRecorded(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	startCapture(t, js, 1)
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, natsx.StreamPlans, jetstream.ConsumerConfig{
		Durable: "noack", FilterSubject: "orgsync.plan.noack", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 100 * time.Millisecond, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	seq := publish(t, js, "orgsync.plan.noack", "plan-n", "x")
	for i := 0; i < 3; i++ { // two deliveries, then the server gives up
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for range b.Messages() {
		}
	}
	rec := waitRecord(t, js, deadletter.Key(natsx.StreamPlans, seq))
	if rec.Kind != deadletter.KindMaxDeliveries || rec.Deliveries != 2 || !strings.Contains(rec.Reason, "maximum deliveries reached (2)") {
		t.Fatalf("record = %+v", rec)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx := context.Background()
	if recs, err := deadletter.List(ctx, js); err != nil || len(recs) != 0 {
		t.Fatalf("List before any capture = %v, %v; want empty", recs, err)
	}
	for _, key := range []string{"", "PLANS", "PLANS.x", "PLANS.0", ".5"} {
		if _, err := deadletter.Retry(ctx, js, key); err == nil || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Retry(%q) err = %v, want invalid key", key, err)
		}
	}
	if _, err := deadletter.Ensure(ctx, js, natsx.Topology{}); err != nil {
		t.Fatal(err)
	}
	if _, err := deadletter.Retry(ctx, js, "PLANS.42"); err == nil || !strings.Contains(err.Error(), "no failed message PLANS.42") {
		t.Fatalf("Retry(unknown) err = %v", err)
	}
}
