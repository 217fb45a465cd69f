package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// natsHeaderCarrier adapts nats.Header to propagation.TextMapCarrier.
type natsHeaderCarrier nats.Header

// HeaderCarrier returns a TextMapCarrier over h, for the global propagator's
// Inject (publishing) and Extract (consuming). h must be non-nil for Inject.
//
// NATS headers are case-sensitive maps; the W3C keys are written lower-case
// ("traceparent") and Get also tries the canonical MIME form, so a header set
// by another client library is still found.
func HeaderCarrier(h nats.Header) propagation.TextMapCarrier { return natsHeaderCarrier(h) }

func (c natsHeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return nats.Header(c).Get(key)
}

func (c natsHeaderCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsHeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes ctx's trace context into h with the global propagator.
func InjectNATS(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(h))
}

// ExtractNATS returns ctx extended with the trace context found in h (if any).
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, HeaderCarrier(h))
}
