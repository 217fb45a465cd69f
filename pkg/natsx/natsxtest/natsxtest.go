// Package natsxtest starts a real, embedded nats-server with JetStream for
// tests: no mocks, a fresh t.TempDir() store per test, everything cleaned up
// with t.Cleanup.
package natsxtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Start starts an embedded server, connects to it, creates the orgsync
// topology (natsx.EnsureStreams and the token bucket, default single-replica Topology)
// and returns the connection and its JetStream context.
func Start(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := StartServer(t)
	nc, js := Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := natsx.EnsureStreams(ctx, js, natsx.Topology{}); err != nil {
		t.Fatalf("natsxtest: %v", err)
	}
	if _, err := natsx.EnsureTokenBucket(ctx, js, natsx.Topology{}); err != nil {
		t.Fatalf("natsxtest: %v", err)
	}
	return nc, js
}

// StartServer starts an embedded server with an empty store (no streams)
// and shuts it down at cleanup. Use Connect for more connections, e.g. one
// per simulated service instance.
func StartServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("natsxtest: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a connection to s, closed at cleanup.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("natsxtest: connect to %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natsxtest: jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond every 10ms until it returns true or timeout passes,
// then fails the test with msg. It is how tests wait for asynchronous
// outcomes without sleeping for a guessed duration.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natsxtest: condition not met within %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EventLog is what stream EVENTS stored since FollowEvents (the audit trail
// as readers see it: a publish JetStream dropped as a duplicate of an
// earlier Nats-Msg-Id is not in it; a batch's rows, not the batch).
type EventLog struct {
	mu     sync.Mutex
	events []*orgsyncv1.Event
}

// FollowEvents follows stream EVENTS from its start with an ordered
// consumer until the test ends; an undecodable event fails the test.
func FollowEvents(t testing.TB, js jetstream.JetStream) *EventLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, natsx.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("natsxtest: follow stream %s: %v", natsx.StreamEvents, err)
	}
	l := &EventLog{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e orgsyncv1.Event
		if err := proto.Unmarshal(m.Data(), &e); err != nil {
			t.Errorf("natsxtest: undecodable event on %s: %v", m.Subject(), err)
			return
		}
		l.mu.Lock()
		l.events = append(l.events, events.Expand(&e)...)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("natsxtest: follow stream %s: %v", natsx.StreamEvents, err)
	}
	t.Cleanup(cc.Stop)
	return l
}

// Find returns the events so far that match, in stream order.
func (l *EventLog) Find(match func(*orgsyncv1.Event) bool) []*orgsyncv1.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*orgsyncv1.Event
	for _, e := range l.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// Wait waits up to timeout for an event that matches and returns the first
// one; it fails the test naming what when none comes.
func (l *EventLog) Wait(t testing.TB, timeout time.Duration, what string, match func(*orgsyncv1.Event) bool) *orgsyncv1.Event {
	t.Helper()
	var got *orgsyncv1.Event
	Eventually(t, timeout, "event: "+what, func() bool {
		if found := l.Find(match); len(found) > 0 {
			got = found[0]
			return true
		}
		return false
	})
	return got
}

// Service is what RunService runs (pkg/service.Runnable).
type Service interface {
	Run(ctx context.Context) error
	Ready() bool
}

// Running is a service started by RunService.
type Running struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// RunService runs svc until the test ends (or Stop) and returns once it is
// ready; an error from Run fails the test.
func RunService(t testing.TB, name string, svc Service) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.Stop(t) })
	Eventually(t, 10*time.Second, name+" ready", svc.Ready)
	return r
}

// Stop cancels the service and waits up to 20 s for Run to return. Calling
// it again does nothing.
func (r *Running) Stop(t testing.TB) {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("%s Run: %v", r.name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop", r.name)
		}
	})
}

// Cancel cancels the service's context without waiting for Run: an abrupt
// stop, as far as the service can tell. Stop still waits for it.
func (r *Running) Cancel() { r.cancel() }
