package clienttest_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/metrics/metricstest"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/services/gcsim"
)

var runs atomic.Int32

// TestScrapeAfterWork runs real work — messages through natsx.Consume on an
// embedded nats-server, Genesys API calls against gcsim (one of them
// throttled), a plan duration, a token refresh — and then finds every series
// an operator's dashboard needs on /metrics.
func TestScrapeAfterWork(t *testing.T) {
	// Metrics are process-wide: names unique to this run keep -count=N honest.
	run := strconv.Itoa(int(runs.Add(1)))
	consumer, orgKey := "metrics-test-"+run, "metrics-t"+run
	metrics.ObserveDeliveries()
	srv := httptest.NewServer(metrics.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Messages: two succeed, one is terminated as permanent.
	_, js := natsxtest.Start(t)
	for i, body := range []string{"ok-1", "ok-2", "bad"} {
		if _, err := js.Publish(ctx, "orgsync.plan.metricsorg", []byte(body), jetstream.WithMsgID("m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- natsx.Consume(cctx, js, natsx.ConsumerSpec{Stream: natsx.StreamPlans, Durable: consumer}, func(_ context.Context, m natsx.Msg) error {
			if string(m.Data()) == "bad" {
				return natsx.Permanent(errors.New("bad payload"))
			}
			return nil
		})
	}()
	labels := map[string]string{"stream": "PLANS", "consumer": consumer, "subject": "orgsync.plan.metricsorg"}
	natsxtest.Eventually(t, 10*time.Second, "3 deliveries observed", func() bool {
		body := metricstest.Scrape(t, srv.URL)
		return metricstest.Value(body, "orgsync_messages_processed_total", labels) == 2 &&
			metricstest.Value(body, "orgsync_messages_failed_total", map[string]string{"consumer": consumer, "outcome": "terminated"}) == 1
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Genesys calls: gcsim allows 4 requests per token per minute. The
	// client makes 2; another user of the same token makes 2 more, so the
	// client's third is a 429 it could not see coming (the headers of its
	// last answer showed budget left; one attempt only: no retry wait).
	sim, err := gcsim.New(gcsim.Config{RateLimitPerMinute: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sim.Handler())
	t.Cleanup(api.Close)
	cc := clientcredentials.Config{ClientID: "target1-client", ClientSecret: "target1-secret", TokenURL: api.URL + "/oauth/token"}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reg := orgs.NewRegistry(map[string]genesys.OrgConfig{
		orgKey: {APIBaseURL: api.URL, LoginBaseURL: api.URL, ClientID: "target1-client", ClientSecret: "target1-secret"},
	}, orgs.WithObserver(metrics.GenesysCall), orgs.WithClientOptions(genesys.WithRetryPolicy(genesys.RetryPolicy{MaxAttempts: 1}),
		genesys.WithTokenSource(oauth2.StaticTokenSource(tok))))
	metrics.WatchLimiters(reg)
	c, err := reg.Client(orgKey)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.ListSkills(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	other := oauth2.NewClient(ctx, oauth2.StaticTokenSource(tok)) // another user of the token
	for i := 0; i < 2; i++ {
		resp, err := other.Get(api.URL + "/api/v2/organizations/me")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET organizations/me with the shared token: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if _, err := c.ListSkills(ctx, ""); err == nil {
		t.Fatal("third call within the minute was not throttled by gcsim")
	}

	metrics.PlanDuration(ctx, orgKey, 1500*time.Millisecond, metrics.PlanSucceeded)
	metrics.TokenRefreshed(ctx, orgKey, true)
	metrics.DeadLetterCaptured(ctx, "PLANS", consumer, "terminated")

	body := metricstest.Scrape(t, srv.URL)
	org := map[string]string{"org": orgKey}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64 // -1: only present
	}{
		{"orgsync_genesys_api_calls_total", map[string]string{"org": orgKey, "operation": "GET /api/v2/routing/skills", "status_class": "2xx"}, 2},
		{"orgsync_genesys_api_calls_total", map[string]string{"org": orgKey, "status_class": "4xx"}, 1},
		{"orgsync_genesys_throttled_total", map[string]string{"org": orgKey, "operation": "GET /api/v2/routing/skills"}, 1},
		{"orgsync_genesys_api_call_duration_seconds_count", map[string]string{"org": orgKey, "status_class": "2xx"}, 2},
		{"orgsync_genesys_api_call_duration_seconds_count", map[string]string{"org": orgKey, "status_class": "4xx"}, 1},
		{"orgsync_genesys_ratelimit_rate", org, -1},
		{"orgsync_genesys_ratelimit_wait_seconds_total", org, -1},
		{"orgsync_plan_duration_seconds_count", map[string]string{"org": orgKey, "status": "succeeded"}, 1},
		{"orgsync_plan_duration_seconds_sum", map[string]string{"org": orgKey, "status": "succeeded"}, 1.5},
		{"orgsync_auth_tokens_refreshed_total", map[string]string{"org": orgKey, "outcome": "ok"}, 1},
		{"orgsync_deadletters_captured_total", map[string]string{"stream": "PLANS", "consumer": consumer, "kind": "terminated"}, 1},
		{"orgsync_message_handle_duration_seconds_count", map[string]string{"consumer": consumer, "outcome": "acked"}, 2},
	}
	for _, c := range checks {
		got := metricstest.Value(body, c.name, c.labels)
		if got < 0 || (c.want >= 0 && got != c.want) {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if metricstest.Value(body, "orgsync_genesys_ratelimit_rate", org) <= 0 {
		t.Errorf("rate-limit budget of %s not exported as a positive rate", orgKey)
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Error("Go runtime metrics missing")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}
