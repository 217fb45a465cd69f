package replay_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/replay"
)

// sink is an idempotent handler's state: what it applied (by payload) and
// every delivery it saw.
type sink struct {
	mu         sync.Mutex
	applied    map[string]int // payload → times applied (idempotent: set once)
	deliveries []string       // msg ids
	replayOf   map[string]string
}

func (s *sink) handle(_ context.Context, m natsx.Msg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.applied[string(m.Data())]; !ok {
		s.applied[string(m.Data())] = 1
	}
	s.deliveries = append(s.deliveries, m.MsgID())
	s.replayOf[m.MsgID()] = m.Headers().Get(replay.HeaderReplayOf)
	return nil
}

func (s *sink) count() (applied, deliveries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied), len(s.deliveries)
}

func setup(t *testing.T) (jetstream.JetStream, *sink, []uint64) {
	t.Helper()
	_, js := natsxtest.Start(t)
	ctx := context.Background()
	var seqs []uint64
	for i, subj := range []string{"orgsync.plan.a", "orgsync.plan.b", "orgsync.plan.a", "orgsync.plan.b", "orgsync.plan.a"} {
		msg := &nats.Msg{Subject: subj, Data: []byte(subj + "#" + string(rune('0'+i))), Header: nats.Header{"Orgsync-Message-Type": []string{"test"}}}
		ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID("id-"+string(rune('0'+i))))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	s := &sink{applied: map[string]int{}, replayOf: map[string]string{}}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := natsx.Consume(cctx, js, natsx.ConsumerSpec{Stream: natsx.StreamPlans, Durable: "replay-test"}, s.handle); err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	natsxtest.Eventually(t, 10*time.Second, "original messages processed", func() bool { _, d := s.count(); return d == 5 })
	return js, s, seqs
}

func TestReplayFromSeqWithSubjectFilter(t *testing.T) {
	t.Parallel()
	js, s, seqs := setup(t)
	ctx := context.Background()
	clock := func() time.Time { return time.Unix(1_800_000_000, 0) }

	dry, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, SubjectFilter: "orgsync.plan.a", FromSeq: 1, DryRun: true, Now: clock})
	if err != nil || dry.Selected != 3 || dry.Published != 0 {
		t.Fatalf("dry run = %+v, %v; want 3 selected, none published", dry, err)
	}
	res, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, SubjectFilter: "orgsync.plan.a", FromSeq: 1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if res.Selected != 3 || res.Published != 3 || res.Duplicates != 0 || res.FirstSeq != seqs[0] || res.LastSeq != seqs[4] || res.UpToSeq != seqs[4] {
		t.Fatalf("replay = %+v", res)
	}
	natsxtest.Eventually(t, 10*time.Second, "replayed copies delivered", func() bool { _, d := s.count(); return d == 8 })
	applied, _ := s.count()
	if applied != 5 {
		t.Fatalf("applied = %d, want 5: the replay converged to the same state", applied)
	}
	s.mu.Lock()
	if got := s.replayOf["id-0-replay-1800000000"]; got != "PLANS."+itoa(seqs[0]) {
		t.Errorf("copy of id-0: replay-of = %q (deliveries %v)", got, s.deliveries)
	}
	s.mu.Unlock()

	// The same replay again within the same second: dedupe keeps one copy.
	again, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, SubjectFilter: "orgsync.plan.a", FromSeq: 1, Now: clock})
	if err != nil || again.Selected != 3 || again.Published != 0 || again.Duplicates != 3 || again.Skipped != 3 {
		t.Fatalf("second replay = %+v, %v; want the 3 originals deduped and the 3 earlier copies skipped", again, err)
	}
	// From seq 4, every subject, an hour later: originals 4 and 5, plus the
	// earlier copies of 1 and 3 (their originals are out of range); the
	// copy of 5 is skipped since 5 itself is replayed.
	later, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, FromSeq: seqs[3], Now: func() time.Time { return clock().Add(time.Hour) }})
	if err != nil || later.Selected != 4 || later.Published != 4 || later.Skipped != 1 {
		t.Fatalf("replay from seq %d = %+v, %v", seqs[3], later, err)
	}
	natsxtest.Eventually(t, 10*time.Second, "all copies delivered", func() bool { _, d := s.count(); return d == 12 })
	if applied, _ := s.count(); applied != 5 {
		t.Fatalf("applied = %d after three replays, want 5", applied)
	}
}

func TestReplaySince(t *testing.T) {
	t.Parallel()
	js, s, seqs := setup(t)
	ctx := context.Background()
	stream, err := js.Stream(ctx, natsx.StreamPlans)
	if err != nil {
		t.Fatal(err)
	}
	fourth, err := stream.GetMsg(ctx, seqs[3])
	if err != nil {
		t.Fatal(err)
	}
	res, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, Since: fourth.Time})
	if err != nil || res.Selected != 2 || res.Published != 2 || res.FirstSeq != seqs[3] {
		t.Fatalf("replay since 4th = %+v, %v", res, err)
	}
	natsxtest.Eventually(t, 10*time.Second, "copies delivered", func() bool { _, d := s.count(); return d == 7 })

	none, err := replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, Since: time.Now().Add(time.Hour)})
	if err != nil || none.Selected != 0 {
		t.Fatalf("replay since the future = %+v, %v", none, err)
	}
	none, err = replay.Run(ctx, js, replay.Options{Stream: natsx.StreamPlans, SubjectFilter: "orgsync.plan.nobody", Since: fourth.Time})
	if err != nil || none.Selected != 0 {
		t.Fatalf("replay of an unused subject = %+v, %v", none, err)
	}
}

func TestReplayBadInput(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		o    replay.Options
		want string
	}{
		{replay.Options{FromSeq: 1}, "Stream is required"},
		{replay.Options{Stream: "PLANS"}, "one of FromSeq"},
		{replay.Options{Stream: "PLANS", FromSeq: 1, Since: time.Now()}, "mutually exclusive"},
		{replay.Options{Stream: "NOPE", FromSeq: 1}, "open stream NOPE"},
	} {
		if _, err := replay.Run(ctx, js, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) err = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"2h":                   now.Add(-2 * time.Hour),
		"2026-03-04T10:00:00Z": time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC),
		"2026-03-01":           time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := replay.ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5m", "2027-01-01"} {
		if _, err := replay.ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func itoa(n uint64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	return string(b)
}
