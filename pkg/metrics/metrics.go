// Package metrics is the one place orgsync's OpenTelemetry instruments are
// defined, and serves them in the Prometheus text format (/metrics, mounted
// by pkg/service next to /healthz and /readyz).
//
// The meter provider is process-wide (created on first use): `orgsync dev`
// runs every service in one process and they share one /metrics. Recording
// functions never fail and never block on I/O, so call sites need no error
// handling. Label values are bounded: org keys, stream and consumer names,
// subjects (partitioned by org), API operations (spec path templates), and
// small enumerations (status class, outcome).
//
// Series (Prometheus names):
//
//	orgsync_messages_processed_total{stream,consumer,subject}            handler succeeded (acked)
//	orgsync_messages_failed_total{stream,consumer,subject,outcome}       retry | terminated | interrupted
//	orgsync_messages_redelivered_total{stream,consumer,subject}          handled deliveries after the first (a retry, or a failover: another instance died holding it)
//	orgsync_message_handle_duration_seconds{stream,consumer,outcome}     handler time (histogram)
//	orgsync_genesys_api_calls_total{org,operation,status_class}          every HTTP attempt: 2xx 3xx 4xx 5xx error
//	orgsync_genesys_throttled_total{org,operation}                       429 answers
//	orgsync_genesys_api_call_duration_seconds{org,status_class}          attempt time incl. rate-limit wait (histogram)
//	orgsync_genesys_ratelimit_wait_seconds_total{org}                    time callers waited for the org's budget
//	orgsync_genesys_ratelimit_rate{org}                                  current adaptive budget, requests/second
//	orgsync_plan_duration_seconds{org,status}                            provisioner plan run time (histogram)
//	orgsync_auth_tokens_refreshed_total{org,outcome}                     client-credentials grants: ok | error
//	orgsync_deadletters_captured_total{stream,consumer,kind}             max_deliveries | terminated
//	orgsync_crm_syncs{org,state}                                         CRM sync states now: pending provisioned failed skipped (gauge, services/integrator)
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// meterName is the instrumentation scope of every orgsync instrument.
const meterName = "github.com/orgsync/orgsync/pkg/metrics"

// durationBuckets (seconds) cover a fast API call (5 ms) to a long plan
// (10 min: a plan waits for user activation and shares an org budget).
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// state is the process-wide provider and its instruments.
type state struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	meter    metric.Meter

	processed      metric.Int64Counter
	failed         metric.Int64Counter
	redelivered    metric.Int64Counter
	handleDuration metric.Float64Histogram
	apiCalls       metric.Int64Counter
	throttled      metric.Int64Counter
	apiDuration    metric.Float64Histogram
	planDuration   metric.Float64Histogram
	tokens         metric.Int64Counter
	deadLetters    metric.Int64Counter

	limiters limiterWatch
}

var (
	once    sync.Once
	global  *state
	initErr error
)

// get returns the process-wide state, creating it on first use. A failure
// to create it (it cannot fail with the options used here, but the SDK
// signatures allow it) leaves a nil state: recording becomes a no-op and
// Handler answers 500 with the reason.
func get() *state {
	once.Do(func() { global, initErr = newState() })
	return global
}

func newState() (*state, error) {
	reg := prometheus.NewRegistry()
	// Process and Go runtime series, as every Go service exposes them.
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: durationBuckets}})))
	s := &state{registry: reg, provider: provider, meter: provider.Meter(meterName)}
	m := s.meter
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	s.processed, err = m.Int64Counter("orgsync.messages.processed", metric.WithDescription("Messages whose handler succeeded (acked), per stream, consumer and subject."))
	add(err)
	s.failed, err = m.Int64Counter("orgsync.messages.failed", metric.WithDescription("Failed deliveries per stream, consumer, subject and outcome: retry (nak with backoff), terminated (permanent error or last delivery), interrupted (shutdown)."))
	add(err)
	s.redelivered, err = m.Int64Counter("orgsync.messages.redelivered", metric.WithDescription("Handled deliveries that were not the message's first (delivery count > 1): retries after a failure, and messages taken over from an instance that died holding them; per stream, consumer and subject."))
	add(err)
	s.handleDuration, err = m.Float64Histogram("orgsync.message.handle.duration", metric.WithUnit("s"), metric.WithDescription("Handler run time per stream, consumer and outcome."))
	add(err)
	s.apiCalls, err = m.Int64Counter("orgsync.genesys.api.calls", metric.WithDescription("Genesys Cloud API attempts per org, operation and status class (2xx..5xx, error = no response)."))
	add(err)
	s.throttled, err = m.Int64Counter("orgsync.genesys.throttled", metric.WithDescription("Genesys Cloud 429 answers per org and operation."))
	add(err)
	s.apiDuration, err = m.Float64Histogram("orgsync.genesys.api.call.duration", metric.WithUnit("s"), metric.WithDescription("Genesys Cloud API attempt time (including the rate-limit wait) per org and status class."))
	add(err)
	s.planDuration, err = m.Float64Histogram("orgsync.plan.duration", metric.WithUnit("s"), metric.WithDescription("Provisioner plan run time per target org and final status."))
	add(err)
	s.tokens, err = m.Int64Counter("orgsync.auth.tokens.refreshed", metric.WithDescription("Client-credentials token grants per org and outcome (ok, error)."))
	add(err)
	s.deadLetters, err = m.Int64Counter("orgsync.deadletters.captured", metric.WithDescription("Dead letters recorded from JetStream advisories per stream, consumer and kind (max_deliveries, terminated)."))
	add(err)
	add(s.limiters.register(m))
	if len(errs) > 0 {
		return nil, fmt.Errorf("metrics: create instruments: %v", errs)
	}
	return s, nil
}

// Handler serves the process's metrics in the Prometheus exposition format.
func Handler() http.Handler {
	s := get()
	if s == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, initErr.Error(), http.StatusInternalServerError)
		})
	}
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// MeterProvider is the process-wide provider, for code that wants its own
// instruments exported on the same /metrics (prefer adding them here).
func MeterProvider() metric.MeterProvider {
	if s := get(); s != nil {
		return s.provider
	}
	return nil
}

// ctxOrBackground keeps recording safe with a nil context.
func ctxOrBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}
