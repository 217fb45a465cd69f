package telemetry

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// Not parallel: Setup installs global providers.
func TestSetupStdoutPropagatesThroughNATSHeaders(t *testing.T) {
	var out bytes.Buffer
	shutdown, err := Setup(context.Background(), Config{ServiceName: "test-svc", Exporter: ExporterStdout, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := Tracer("test").Start(context.Background(), "publish")
	h := nats.Header{}
	InjectNATS(ctx, h)
	if h.Get("traceparent") == "" && len(h["traceparent"]) == 0 {
		t.Fatalf("traceparent not injected: %v", h)
	}
	got := ExtractNATS(context.Background(), h)
	_, child := Tracer("test").Start(got, "consume")
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("trace id not carried: %s vs %s", child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
	child.End()
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), span.SpanContext().TraceID().String()) || !strings.Contains(out.String(), "test-svc") {
		t.Fatalf("stdout exporter did not write the span:\n%s", out.String())
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "ServiceName") {
		t.Fatalf("want ServiceName error, got %v", err)
	}
	if err := (Config{ServiceName: "x", Exporter: "jaeger"}).Validate(); err == nil || !strings.Contains(err.Error(), "jaeger") {
		t.Fatalf("want exporter error, got %v", err)
	}
	if err := (Config{ServiceName: "x"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
