package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"google.golang.org/protobuf/proto"
)

const testSecret = "test-webhook-secret-0123456789"

// testEnv is one reconciler on an embedded NATS server.
type testEnv struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	svc     *Service
	hookURL string // base URL of the webhook endpoint
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RECONCILER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startEnv starts NATS, tracks users (map src → user ids) and runs a
// reconciler with cfg (secret filled in when empty) until the test ends.
func startEnv(t *testing.T, cfg Config, clients orgs.Clients, tracked map[string][]string) *testEnv {
	t.Helper()
	nc, js := natsxtest.Start(t)
	e := &testEnv{nc: nc, js: js}
	for src, users := range tracked {
		for _, u := range users {
			e.track(t, src, u)
		}
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = testSecret
	}
	svc, err := New(cfg, Deps{JS: js, NC: nc, Clients: clients, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	natsxtest.RunService(t, "reconciler", svc)
	if cfg.WebhookAddr != "" { // the service's own listener
		e.hookURL = "http://" + svc.WebhookAddr()
	} else {
		srv := httptest.NewServer(svc.WebhookHandler())
		t.Cleanup(srv.Close)
		e.hookURL = srv.URL
	}
	return e
}

// track adds a user to the tracking bucket as the extractor does.
func (e *testEnv) track(t *testing.T, src, user string) {
	t.Helper()
	ctx := ctxT(t)
	kv, err := OpenTrackingBucket(ctx, e.js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, TrackingKey(src, user), []byte(`{"source_org":"`+src+`","user_id":"`+user+`"}`)); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// changes returns every ChangeEvent stored for src, in stream order.
func (e *testEnv) changes(t *testing.T, src string) []*orgsyncv1.ChangeEvent {
	t.Helper()
	ctx := ctxT(t)
	st, err := e.js.Stream(ctx, natsx.StreamChanges)
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := natsx.ChangeSubject(src)
	var out []*orgsyncv1.ChangeEvent
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			info, ierr := st.Info(ctx)
			if ierr != nil {
				t.Fatal(ierr)
			}
			if seq > info.State.LastSeq {
				return out
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subj {
			continue
		}
		ev := &orgsyncv1.ChangeEvent{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.EventId {
			t.Fatalf("Nats-Msg-Id %q differs from event id %q", got, ev.EventId)
		}
		out = append(out, ev)
	}
}

// streamCount is the number of messages in CHANGES.
func (e *testEnv) streamCount(t *testing.T) uint64 {
	t.Helper()
	st, err := e.js.Stream(ctxT(t), natsx.StreamChanges)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitChange waits until a ChangeEvent of src matching pred is stored.
func (e *testEnv) waitChange(t *testing.T, src, what string, pred func(*orgsyncv1.ChangeEvent) bool) *orgsyncv1.ChangeEvent {
	t.Helper()
	var found *orgsyncv1.ChangeEvent
	natsxtest.Eventually(t, 15*time.Second, what, func() bool {
		for _, ev := range e.changes(t, src) {
			if pred(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}
