package natsx_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/telemetry"
)

func TestMain(m *testing.M) {
	// A real SDK provider (no exporter) so spans carry real trace ids, and
	// the W3C propagator, installed once before tests run in parallel.
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
	telemetry.InstallPropagator()
	os.Exit(m.Run())
}

// runConsumer runs natsx.Consume in the background and returns a stop
// function that cancels it and waits for it to return (also at cleanup).
func runConsumer(t *testing.T, js jetstream.JetStream, spec natsx.ConsumerSpec, h natsx.Handler) (stop func()) {
	t.Helper()
	if spec.Logger == nil {
		spec.Logger = telemetry.NopLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- natsx.Consume(ctx, js, spec, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consume returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Consume did not stop within 30s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	// Return once the durable exists, so tests can inspect it right away.
	natsxtest.Eventually(t, 10*time.Second, "consumer "+spec.Durable+" created", func() bool {
		_, err := js.Consumer(context.Background(), spec.Stream, spec.Durable)
		return err == nil
	})
	return stop
}

// consumerInfo fetches fresh consumer info.
func consumerInfo(t *testing.T, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatalf("consumer %s/%s: %v", stream, durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info %s/%s: %v", stream, durable, err)
	}
	return info
}

// counter is a goroutine-safe call counter.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	return c.n[k]
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}
