// Package telemetry sets up tracing (OpenTelemetry) and structured logging
// (log/slog) the same way in every orgsync service.
//
// Tracing: Setup installs a global TracerProvider and the W3C TraceContext
// propagator; HeaderCarrier adapts NATS message headers so a trace crosses
// publish → consume (pkg/natsx does the inject/extract).
//
// Logging: NewLogger returns a *slog.Logger whose handler redacts secrets by
// attribute key, so a careless log call cannot leak a client secret or token.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Exporter names accepted by Config.Exporter.
const (
	ExporterOff    = "off"
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
)

// Config selects where spans go.
type Config struct {
	// ServiceName is the service.name resource attribute (required).
	ServiceName string
	// Exporter is "off" (default: spans are created, so trace ids still
	// propagate across NATS, but nothing is exported), "stdout" (pretty JSON
	// to Stdout) or "otlp" (OTLP/HTTP to OTLPEndpoint).
	Exporter string
	// OTLPEndpoint is host:port of the OTLP/HTTP collector; empty means the
	// exporter's default (OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4318).
	OTLPEndpoint string
	// Stdout is where the stdout exporter writes; nil means os.Stdout.
	Stdout io.Writer
}

// withDefaults returns c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Exporter == "" {
		c.Exporter = ExporterOff
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	return c
}

// Validate reports the first invalid field of c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.ServiceName == "" {
		return errors.New("telemetry config: ServiceName is required")
	}
	switch c.Exporter {
	case ExporterOff, ExporterStdout, ExporterOTLP:
	default:
		return fmt.Errorf("telemetry config: Exporter must be %q, %q or %q, got %q",
			ExporterOff, ExporterStdout, ExporterOTLP, c.Exporter)
	}
	return nil
}

// Setup installs the global TracerProvider and the W3C TraceContext (+
// Baggage) propagator, and returns a shutdown function that flushes pending
// spans; call it before the process exits.
//
// With Exporter "off" a provider with no exporter is still installed, so
// spans get real trace ids and the trace context still flows across
// services: a downstream service with an exporter sees the same trace id.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: build resource for %s: %w", cfg.ServiceName, err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}

	switch cfg.Exporter {
	case ExporterStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cfg.Stdout), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("telemetry: create stdout exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	case ExporterOTLP:
		var eo []otlptracehttp.Option
		if cfg.OTLPEndpoint != "" {
			eo = append(eo, otlptracehttp.WithEndpoint(cfg.OTLPEndpoint), otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: create OTLP exporter (endpoint %q): %w", cfg.OTLPEndpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}

	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	InstallPropagator()
	return tp.Shutdown, nil
}

// InstallPropagator installs the W3C TraceContext + Baggage propagator as the
// global one. Setup calls it; tests that build their own TracerProvider call
// it directly.
func InstallPropagator() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
}

// Tracer returns the named tracer of the global provider.
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }
