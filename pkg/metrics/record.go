package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
)

var observeOnce sync.Once

// ObserveDeliveries hooks the process's natsx.Consume runners into the
// message counters (processed, failed by outcome, handler duration). It is
// idempotent; pkg/service calls it when it builds an Env.
func ObserveDeliveries() {
	observeOnce.Do(func() { natsx.ObserveDeliveries(Delivery) })
}

// Delivery records one handled delivery (the natsx.DeliveryObserver).
func Delivery(ctx context.Context, d natsx.Delivery) {
	s := get()
	if s == nil {
		return
	}
	ctx = ctxOrBackground(ctx)
	base := []attribute.KeyValue{attribute.String("stream", d.Stream), attribute.String("consumer", d.Consumer)}
	withSubject := metric.WithAttributes(append(base, attribute.String("subject", d.Subject))...)
	if d.Delivered > 1 {
		s.redelivered.Add(ctx, 1, withSubject)
	}
	if d.Outcome == natsx.OutcomeAcked {
		s.processed.Add(ctx, 1, withSubject)
	} else {
		s.failed.Add(ctx, 1, withSubject, metric.WithAttributes(attribute.String("outcome", string(d.Outcome))))
	}
	s.handleDuration.Record(ctx, d.Duration.Seconds(), metric.WithAttributes(append(base, attribute.String("outcome", string(d.Outcome)))...))
}

// GenesysCall records one Genesys API attempt. Register it on every org
// registry: orgs.WithObserver(metrics.GenesysCall) (pkg/service does).
func GenesysCall(ctx context.Context, c genesys.Call) {
	s := get()
	if s == nil {
		return
	}
	ctx = ctxOrBackground(ctx)
	o := callOptionsOf(c)
	s.apiCalls.Add(ctx, 1, o.calls)
	if c.Status == http.StatusTooManyRequests {
		s.throttled.Add(ctx, 1, o.throttled)
	}
	s.apiDuration.Record(ctx, c.Duration.Seconds(), o.duration)
	s.limiters.sawOrg(c.Org)
}

// callOptions are the attribute sets of one (org, operation, status class):
// built once, since building them per call was about 2 % of a clone's CPU.
type callOptions struct{ calls, throttled, duration metric.MeasurementOption }

type callKey struct{ org, op, class string }

var callAttrs sync.Map // callKey → *callOptions

func callOptionsOf(c genesys.Call) *callOptions {
	k := callKey{c.Org, c.Operation, StatusClass(c.Status)}
	if o, ok := callAttrs.Load(k); ok {
		return o.(*callOptions)
	}
	org := attribute.String("org", k.org)
	o := &callOptions{
		calls:     metric.WithAttributes(org, attribute.String("operation", k.op), attribute.String("status_class", k.class)),
		throttled: metric.WithAttributes(org, attribute.String("operation", k.op)),
		duration:  metric.WithAttributes(org, attribute.String("status_class", k.class)),
	}
	got, _ := callAttrs.LoadOrStore(k, o)
	return got.(*callOptions)
}

// StatusClass maps an HTTP status to its class label: "2xx".."5xx", or
// "error" when no response was received (status 0).
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return statusClasses[status/100-1] // a constant: this runs once per call
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Plan statuses for PlanDuration (the provisioner may pass its own words;
// these are the ones dashboards expect).
const (
	PlanSucceeded = "succeeded"
	PlanFailed    = "failed"
	// PlanRetry: the attempt failed transiently; the plan is redelivered.
	PlanRetry = "retry"
)

// PlanDuration records how long the provisioner took to run a plan for a
// target org, and how it ended (PlanSucceeded, PlanFailed, ...).
func PlanDuration(ctx context.Context, org string, d time.Duration, status string) {
	s := get()
	if s == nil {
		return
	}
	s.planDuration.Record(ctxOrBackground(ctx), d.Seconds(), metric.WithAttributes(attribute.String("org", org), attribute.String("status", status)))
}

// TokenRefreshed records one client-credentials grant of the auth service
// for org (ok=false: the grant failed).
func TokenRefreshed(ctx context.Context, org string, ok bool) {
	s := get()
	if s == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "error"
	}
	s.tokens.Add(ctxOrBackground(ctx), 1, metric.WithAttributes(attribute.String("org", org), attribute.String("outcome", outcome)))
}

// DeadLetterCaptured records a dead letter taken from a JetStream advisory;
// kind is "max_deliveries" or "terminated".
func DeadLetterCaptured(ctx context.Context, stream, consumer, kind string) {
	s := get()
	if s == nil {
		return
	}
	s.deadLetters.Add(ctxOrBackground(ctx), 1, metric.WithAttributes(attribute.String("stream", stream),
		attribute.String("consumer", consumer), attribute.String("kind", kind)))
}
