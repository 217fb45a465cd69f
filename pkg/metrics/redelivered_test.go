package metrics_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/metrics/metricstest"
	"github.com/orgsync/orgsync/pkg/natsx"
)

// Metrics are process-wide: names unique to this run keep -count=N honest.
var runs atomic.Int32

// TestRedeliveriesAreCounted: a delivery after the first (a retry, or a
// plan taken over from a dead instance) shows in
// orgsync_messages_redelivered_total; first deliveries do not.
func TestRedeliveriesAreCounted(t *testing.T) {
	consumer := "redelivered-test-" + strconv.Itoa(int(runs.Add(1)))
	srv := httptest.NewServer(metrics.Handler())
	t.Cleanup(srv.Close)
	ctx := context.Background()
	base := natsx.Delivery{Stream: "PLANS", Consumer: consumer, Subject: "orgsync.plan.t1", Outcome: natsx.OutcomeAcked}
	first, second, third := base, base, base
	first.Delivered, second.Delivered, third.Delivered = 1, 2, 3
	third.Outcome = natsx.OutcomeRetry
	for _, d := range []natsx.Delivery{first, second, third} {
		metrics.Delivery(ctx, d)
	}
	labels := map[string]string{"stream": "PLANS", "consumer": consumer, "subject": "orgsync.plan.t1"}
	if got := metricstest.Value(metricstest.Scrape(t, srv.URL), "orgsync_messages_redelivered_total", labels); got != 2 {
		t.Errorf("orgsync_messages_redelivered_total = %v, want 2", got)
	}
}
