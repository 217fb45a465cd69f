package extractor_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/gcsim"
)

// Demo fixture facts the tests rely on (services/gcsim/README.md).
const (
	sourceOrgID = "5f0c2a4e-0000-4000-8000-000000000001"
	johnID      = "5f0c2a4e-0000-4000-8000-0000000000a1"
	janeID      = "5f0c2a4e-0000-4000-8000-0000000000a2"
	johnEmail   = "john.smith@acme.example"
	janeEmail   = "jane.doe@acme.example"
)

// env is one embedded NATS server, one gcsim with the demo fixture, and a
// running extractor whose clients are spec-validated.
type env struct {
	t        *testing.T
	js       jetstream.JetStream
	sim      *gcsim.Sim
	clients  *orgs.Registry
	recorder *apispec.Recorder
	svc      *extractor.Service

	events *natsxtest.EventLog // every event published on EVENTS
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, js := natsxtest.Start(t)
	sim, err := gcsim.New(gcsim.Config{RateLimitPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	rec := apispec.NewValidatingTransport(http.DefaultTransport)
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			t.Errorf("SPEC VIOLATION: %v", v)
		}
	})
	org := func(id, secret string) genesys.OrgConfig {
		return genesys.OrgConfig{APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: id, ClientSecret: secret,
			RateLimit: 1000, Burst: 1000, ConsistencyWindow: 2 * time.Second}
	}
	clients := orgs.NewRegistry(map[string]genesys.OrgConfig{
		"src":      org("source-client", "source-secret"),
		"t1":       org("target1-client", "target1-secret"),
		"t2":       org("target2-client", "target2-secret"),
		"t3":       org("target3-client", "target3-secret"),
		"nocreds":  org("", ""),
		"badcreds": org("source-client", "wrong-secret"),
	}, orgs.WithTransport(rec), orgs.WithClientOptions(genesys.WithRetryPolicy(genesys.RetryPolicy{
		MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond})))

	svc, err := extractor.New(extractor.Config{Consumer: service.Consumer{Backoff: []time.Duration{50 * time.Millisecond}}},
		extractor.Deps{JS: js, Clients: clients, Events: events.New(js), Logger: telemetry.NopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	natsxtest.RunService(t, "extractor", svc)
	e := &env{t: t, js: js, sim: sim, clients: clients, recorder: rec, svc: svc}
	e.events = natsxtest.FollowEvents(t, js)
	return e
}

func (e *env) eventsWhere(pred func(*orgsyncv1.Event) bool) []*orgsyncv1.Event {
	return e.events.Find(pred)
}

// waitEvent waits for an event matching pred and returns it.
func (e *env) waitEvent(what string, pred func(*orgsyncv1.Event) bool) *orgsyncv1.Event {
	e.t.Helper()
	return e.events.Wait(e.t, 15*time.Second, what, pred)
}

func (e *env) publishClone(req *orgsyncv1.CloneRequest, msgID string) {
	e.t.Helper()
	subj, err := natsx.CloneSubject(req.GetSourceOrg())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := natsx.Publish(context.Background(), e.js, subj, msgID, req); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) streamMsgs(stream string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) consumer(stream, durable string) *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.js.Consumer(context.Background(), stream, durable)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// waitSettled waits until the consumer has handled (acked or terminated)
// every message of its stream.
func (e *env) waitSettled(stream, durable string) *jetstream.ConsumerInfo {
	e.t.Helper()
	var info *jetstream.ConsumerInfo
	natsxtest.Eventually(e.t, 15*time.Second, durable+" settled", func() bool {
		info = e.consumer(stream, durable)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == e.streamMsgs(stream)
	})
	return info
}

// lastSnapshot returns the newest snapshot of a source org.
func (e *env) snapshots(src string) []*orgsyncv1.Snapshot {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), natsx.StreamSnapshots)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*orgsyncv1.Snapshot
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			continue
		}
		if m.Subject != "orgsync.snapshot."+src {
			continue
		}
		var snap orgsyncv1.Snapshot
		if err := proto.Unmarshal(m.Data, &snap); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, &snap)
	}
	return out
}

func byID(id string) *orgsyncv1.UserSelector {
	return &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_UserId{UserId: id}}
}

func byEmail(email string) *orgsyncv1.UserSelector {
	return &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_Email{Email: email}}
}
