package natsx_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestTopologyValidate(t *testing.T) {
	t.Parallel()
	if err := (natsx.Topology{}).Validate(); err != nil {
		t.Fatalf("zero topology: %v", err)
	}
	err := natsx.Topology{Replicas: 2, DuplicateWindow: 48 * time.Hour,
		MaxAge: map[string]time.Duration{natsx.StreamPlans: 24 * time.Hour, "NOPE": time.Hour}}.Validate()
	for _, want := range []string{"odd", "exceeds MaxAge 24h0m0s of PLANS", `unknown stream "NOPE"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestEnsureStreamsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	s := natsxtest.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Six "services" start at once, each with its own connection.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		_, js := natsxtest.Connect(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- natsx.EnsureStreams(ctx, js, natsx.Topology{})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureStreams: %v", err)
		}
	}

	_, js := natsxtest.Connect(t, s)
	// Publish, then ensure again with a changed retention: data survives,
	// config is updated.
	subj, _ := natsx.EventSubject("acme", orgsyncv1.EventKind_EVENT_KIND_AUDIT)
	if err := natsx.Publish(ctx, js, subj, "e1", &orgsyncv1.Event{EventId: "e1"}); err != nil {
		t.Fatal(err)
	}
	topo := natsx.Topology{MaxAge: map[string]time.Duration{natsx.StreamEvents: 90 * 24 * time.Hour}}
	if err := natsx.EnsureStreams(ctx, js, topo); err != nil {
		t.Fatalf("second EnsureStreams: %v", err)
	}
	for _, spec := range natsx.Streams() {
		st, err := js.Stream(ctx, spec.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", spec.Name, err)
		}
		info, _ := st.Info(ctx)
		wantAge := spec.MaxAge
		if spec.Name == natsx.StreamEvents {
			wantAge = 90 * 24 * time.Hour
			if info.State.Msgs != 1 {
				t.Errorf("EVENTS lost data on update: %d msgs", info.State.Msgs)
			}
		}
		if info.Config.MaxAge != wantAge || info.Config.Duplicates != natsx.DefaultDuplicateWindow ||
			info.Config.Subjects[0] != spec.Subjects[0] {
			t.Errorf("stream %s config: age %v dup %v subjects %v", spec.Name, info.Config.MaxAge, info.Config.Duplicates, info.Config.Subjects)
		}
	}
	if _, err := natsx.TokenKV(ctx, js); err == nil {
		t.Error("EnsureStreams created the token bucket: only the auth service may")
	}
	kv, err := natsx.EnsureTokenBucket(ctx, js, natsx.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LimitMarkerTTL() <= 0 {
		t.Errorf("token bucket lacks per-key TTL support (LimitMarkerTTL %v)", st.LimitMarkerTTL())
	}
}

func TestPublishDedupesOnMsgID(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx := context.Background()
	subj, _ := natsx.CloneSubject("acme-src")
	req := &orgsyncv1.CloneRequest{RequestId: "req-1"}
	first, err := natsx.PublishAck(ctx, js, subj, "req-1", req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := natsx.PublishAck(ctx, js, subj, "req-1", req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("dedupe: first %+v second %+v", first, second)
	}
	st, _ := js.Stream(ctx, natsx.StreamClone)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("CLONE holds %d messages, want 1", info.State.Msgs)
	}
	if err := natsx.Publish(ctx, js, "nowhere.acme", "x", req); err == nil || !strings.Contains(err.Error(), "nowhere.acme") {
		t.Fatalf("publish to an uncaptured subject: %v", err)
	}
	if err := natsx.Publish(ctx, js, subj, "", req); err == nil {
		t.Fatal("publish without msg id accepted")
	}
}

func TestPublishAllStoresInOrderDedupesAndReportsEachFailure(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx := context.Background()
	subj, _ := natsx.CloneSubject("acme-src")
	batch := make([]natsx.Outgoing, 50)
	for i := range batch {
		id := fmt.Sprintf("req-%02d", i)
		batch[i] = natsx.Outgoing{Subject: subj, MsgID: id, Msg: &orgsyncv1.CloneRequest{RequestId: id}}
	}
	if err := natsx.PublishAll(ctx, js, batch); err != nil {
		t.Fatal(err)
	}
	// The same batch again (a replayed plan): every message is a duplicate.
	// Two bad messages fail alone; the good one between them is stored.
	again := append(append([]natsx.Outgoing{}, batch...),
		natsx.Outgoing{Subject: "nowhere.acme", MsgID: "x", Msg: &orgsyncv1.CloneRequest{}},
		natsx.Outgoing{Subject: subj, MsgID: "req-50", Msg: &orgsyncv1.CloneRequest{RequestId: "req-50"}},
		natsx.Outgoing{Subject: subj, MsgID: "", Msg: &orgsyncv1.CloneRequest{}})
	err := natsx.PublishAll(ctx, js, again)
	if err == nil || !strings.Contains(err.Error(), "nowhere.acme") || !strings.Contains(err.Error(), "empty message id") {
		t.Fatalf("batch with an uncaptured subject and an empty id: %v", err)
	}
	st, _ := js.Stream(ctx, natsx.StreamClone)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 51 {
		t.Fatalf("CLONE holds %d messages, want 51 (50, no duplicates, and req-50)", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 51; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("req-%02d", seq-1); raw.Header.Get(jetstream.MsgIDHeader) != want {
			t.Fatalf("message %d has id %q, want %q (stored out of order)", seq, raw.Header.Get(jetstream.MsgIDHeader), want)
		}
	}
}
