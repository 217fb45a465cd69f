package integrator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// expectState checks the KV record and the AUDIT event of a finished sync.
func expectState(t *testing.T, e *env, req *orgsyncv1.IntegrationRequest, ev *orgsyncv1.Event, state string, reason ...string) SyncRecord {
	t.Helper()
	rec := e.state(req)
	if rec.State != state || ev.GetAttributes()["state"] != state {
		t.Fatalf("%s: KV state %s, event state %s; want %s (reason %q)", req.GetUserExternalId(), rec.State, ev.GetAttributes()["state"], state, rec.Reason)
	}
	if rec.Reason != ev.GetReason() || rec.RequestID != req.GetRequestId() || rec.TargetUserID != req.GetTargetUserId() {
		t.Errorf("KV record %+v does not match the event (reason %q) and request %s", rec, ev.GetReason(), req.GetRequestId())
	}
	for _, want := range reason {
		if !strings.Contains(rec.Reason, want) {
			t.Errorf("reason %q does not contain %q", rec.Reason, want)
		}
	}
	if ev.GetOrg() != req.GetTargetOrg() || ev.GetRequestId() != req.GetOriginRequestId() || ev.GetPlanId() != req.GetPlanId() {
		t.Errorf("event %v does not name the org, request and plan of %v", ev, req)
	}
	wantStatus := map[string]orgsyncv1.Status{StateProvisioned: orgsyncv1.Status_STATUS_CHANGED, StateFailed: orgsyncv1.Status_STATUS_FAILED,
		StateSkipped: orgsyncv1.Status_STATUS_SKIPPED}[state]
	if ev.GetStatus() != wantStatus {
		t.Errorf("event status %v, want %v", ev.GetStatus(), wantStatus)
	}
	return rec
}

// TestSlowCRMIsPolledWithBackoff: a CRM that takes 600ms is polled with
// growing waits until PROVISIONED; one upsert, one record.
func TestSlowCRMIsPolledWithBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: 600 * time.Millisecond})
	e.start(e.config())
	req := e.request(1, "slow", "p1")
	e.publish(req, "")
	ev := e.outcome(req, 10*time.Second)
	expectState(t, e, req, ev, StateProvisioned, "PROVISIONED")

	calls := e.crm.of("slow")
	if len(calls) < 3 || calls[0].method != http.MethodPut {
		t.Fatalf("CRM calls %+v: want a PUT then several GETs", calls)
	}
	polls := calls[1:]
	// 20ms doubling to 200ms with ±25% jitter: ~7 polls in 600ms, never 30
	// (hammering), never 1 (no polling).
	if len(polls) > 10 {
		t.Errorf("%d polls for a 600ms CRM: backoff not applied", len(polls))
	}
	first := polls[0].sent.Sub(calls[0].answered)
	last := polls[len(polls)-1].sent.Sub(polls[len(polls)-2].answered)
	t.Logf("%d polls; first wait %v, last wait %v", len(polls), first, last)
	// Timers never fire early, so the lower bound holds on a loaded machine;
	// the cap is TestBackoffDoublesUpToMax's (a wall-clock upper bound is not).
	if last < 2*first {
		t.Errorf("waits between polls did not grow: first %v, last %v", first, last)
	}
	if got := ev.GetAttributes()["polls"]; got != strconv.Itoa(len(polls)) {
		t.Errorf("event counts %s polls, the CRM saw %d", got, len(polls))
	}
	if r, _ := e.sim.CRMRecord(e.orgID(1), "slow"); r.Status != gcsim.CRMProvisioned || r.Submissions != 1 ||
		r.Email != req.GetEmail() || r.GenesysUserID != req.GetTargetUserId() {
		t.Errorf("CRM record %+v", r)
	}
}

// TestBackoffDoublesUpToMax: the backoff between polls doubles from
// InitialBackoff and stays at MaxBackoff.
func TestBackoffDoublesUpToMax(t *testing.T) {
	s := &Service{cfg: Config{MaxBackoff: 200 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // wait returns at once; the backoff still moves
	backoff := 20 * time.Millisecond
	var got []time.Duration
	for range 6 {
		if s.wait(ctx, &Outcome{}, nil, &backoff) {
			t.Fatal("wait on a cancelled context reported a completed sleep")
		}
		got = append(got, backoff)
	}
	want := []time.Duration{40, 80, 160, 200, 200, 200}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff after each wait %v, want %v ms", got, want)
		}
	}
}

// TestRateLimitedCRMHonoursRetryAfter: every 2nd request of the record is
// a 429 with Retry-After 1s; no request follows a 429 sooner than that.
func TestRateLimitedCRMHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: 300 * time.Millisecond})
	if err := e.sim.SetCRMKeyBehaviour(e.orgID(2), "busy", gcsim.CRMBehaviour{RateLimitEvery: 2, RetryAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	e.start(e.config())
	req := e.request(2, "busy", "p1")
	e.publish(req, "")
	ev := e.outcome(req, 15*time.Second)
	expectState(t, e, req, ev, StateProvisioned)

	calls := e.crm.of("busy")
	limited := 0
	for i, c := range calls {
		if c.status != http.StatusTooManyRequests {
			continue
		}
		limited++
		if c.retryAfter != time.Second {
			t.Errorf("429 #%d: Retry-After %v, want 1s", limited, c.retryAfter)
		}
		if i+1 < len(calls) {
			if gap := calls[i+1].sent.Sub(c.answered); gap < c.retryAfter {
				t.Errorf("request %d came %v after a 429 with Retry-After %v", i+1, gap, c.retryAfter)
			}
		}
	}
	if limited == 0 || strconv.Itoa(limited) != ev.GetAttributes()["rate_limited"] || e.sim.Stats(e.orgID(2)).CRMRateLimited != limited {
		t.Errorf("429s: transport saw %d, event says %s, gcsim served %d", limited, ev.GetAttributes()["rate_limited"], e.sim.Stats(e.orgID(2)).CRMRateLimited)
	}
	if r, _ := e.sim.CRMRecord(e.orgID(2), "busy"); r.Submissions != 1 {
		t.Errorf("retried PUTs started %d attempts, want 1", r.Submissions)
	}
}

// TestCRMErrorIsAFailedSync: the CRM ends the record in ERROR → FAILED with
// the CRM's reason, in KV and the event.
func TestCRMErrorIsAFailedSync(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: 50 * time.Millisecond})
	if err := e.sim.SetCRMKeyBehaviour(e.orgID(1), "bad", gcsim.CRMBehaviour{Fail: true, FailReason: "license pool exhausted"}); err != nil {
		t.Fatal(err)
	}
	e.start(e.config())
	req := e.request(1, "bad", "p1")
	e.publish(req, "")
	rec := expectState(t, e, req, e.outcome(req, 10*time.Second), StateFailed, "CRM rejected the record bad", "license pool exhausted")
	if rec.CRMStatus != StatusError {
		t.Errorf("CRM status %q, want ERROR", rec.CRMStatus)
	}
}

// TestCRMNeverAnsweringHitsTheDeadline: a record PENDING forever fails at
// the deadline, not later, with a reason saying so.
func TestCRMNeverAnsweringHitsTheDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{})
	if err := e.sim.SetCRMKeyBehaviour(e.orgID(3), "silent", gcsim.CRMBehaviour{Never: true}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.Deadline = 700 * time.Millisecond
	e.start(cfg)
	req := e.request(3, "silent", "p1")
	began := time.Now()
	e.publish(req, "")
	ev := e.outcome(req, 10*time.Second)
	took := time.Since(began)
	rec := expectState(t, e, req, ev, StateFailed, "did not finish within the 700ms deadline", "last status PENDING")
	if rec.CRMStatus != StatusPending {
		t.Errorf("CRM status %q, want PENDING", rec.CRMStatus)
	}
	t.Logf("deadline 700ms: failed after %v, %s polls", took, ev.GetAttributes()["polls"])
	if took < cfg.Deadline-100*time.Millisecond || took > cfg.Deadline+2*time.Second {
		t.Errorf("failed after %v, deadline %v: the deadline must end it, not earlier or much later", took, cfg.Deadline)
	}
}

// TestMissingOrInactiveIntegrationInstance: the Genesys integration
// instance is checked before the CRM is touched; a missing or inactive one
// is a failed sync naming the instance and the org.
func TestMissingOrInactiveIntegrationInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: time.Nanosecond})
	cfg := e.config()
	t1 := cfg.Targets[e.key(1)]
	t1.IntegrationName = "Salesforce CRM"
	cfg.Targets[e.key(1)] = t1
	if err := e.sim.SetIntegrationState(e.orgID(2), "Acme CRM", "INACTIVE"); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)

	missing := e.request(1, "m", "p1")
	e.publish(missing, "")
	expectState(t, e, missing, e.outcome(missing, 10*time.Second), StateFailed,
		`integration instance "Salesforce CRM" is not installed in t1`, "lists: Acme CRM", "CRM sync not attempted")

	inactive := e.request(2, "i", "p1")
	e.publish(inactive, "")
	expectState(t, e, inactive, e.outcome(inactive, 10*time.Second), StateFailed,
		`integration instance "Acme CRM" in t2 is INACTIVE, not ACTIVE`)
	for _, n := range []int{1, 2} {
		if got := e.sim.Stats(e.orgID(n)).CRMRequests; len(got) != 0 {
			t.Errorf("target %d: CRM called without an active integration: %v", n, got)
		}
	}

	// Fixed by the administrator: the next request syncs (failures are not cached).
	if err := e.sim.SetIntegrationState(e.orgID(2), "Acme CRM", "ACTIVE"); err != nil {
		t.Fatal(err)
	}
	again := e.request(2, "i", "p2")
	e.publish(again, "")
	expectState(t, e, again, e.outcome(again, 10*time.Second), StateProvisioned)
}

// TestIntegrationCheckIsSharedByABatch: a batch of users costs one
// GET /api/v2/integrations per target, not one per user.
func TestIntegrationCheckIsSharedByABatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: time.Nanosecond})
	e.start(e.config())
	var reqs []*orgsyncv1.IntegrationRequest
	for i := range 6 {
		req := e.request(3, "batch"+strconv.Itoa(i), "p1")
		reqs = append(reqs, req)
		e.publish(req, "")
	}
	for _, req := range reqs {
		expectState(t, e, req, e.outcome(req, 10*time.Second), StateProvisioned)
	}
	if n := e.sim.Stats(e.orgID(3)).Requests["GET /api/v2/integrations"]; n != 1 {
		t.Errorf("GET /api/v2/integrations called %d times for 6 users, want 1", n)
	}
}

// TestRedeliveredRequestIsIdempotent: the same request delivered again
// (a replay past the dedupe window) is not synced again; a new request for
// the same user (a re-run) re-upserts the same content: one CRM record,
// one provisioning attempt.
func TestRedeliveredRequestIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: 100 * time.Millisecond})
	e.start(e.config())
	req := e.request(1, "dup", "p1")
	e.publish(req, "")
	e.publish(req, "")         // same Nats-Msg-Id: dropped by JetStream
	e.publish(req, "replay-1") // a replay: delivered, recognised as done
	e.outcome(req, 10*time.Second)
	e.settled()
	puts := e.sim.Stats(e.orgID(1)).CRMRequests["PUT /crm/v1/users/{externalKey}"]
	if puts != 1 {
		t.Errorf("%d PUTs for one request delivered twice, want 1", puts)
	}
	if got := e.events.Find(func(ev *orgsyncv1.Event) bool { return isOutcomeOf(ev, req) }); len(got) != 1 {
		t.Errorf("%d outcome events for one request, want 1", len(got))
	}

	rerun := e.request(1, "dup", "p2")
	e.publish(rerun, "")
	expectState(t, e, rerun, e.outcome(rerun, 10*time.Second), StateProvisioned)
	recs := e.sim.CRMRecords(e.orgID(1))
	if len(recs) != 1 || recs[0].Submissions != 1 || recs[0].Status != gcsim.CRMProvisioned {
		t.Errorf("CRM records after a re-run: %+v; want one, provisioned by one attempt", recs)
	}
	if c, err := OrgCounts(context.Background(), e.js, e.key(1)); err != nil || c != (Counts{Provisioned: 1}) {
		t.Errorf("counts %+v (%v), want 1 provisioned", c, err)
	}
}

// TestShutdownMidSyncHandsTheRequestBack: stopping the integrator while a
// record is PENDING leaves the sync PENDING (not failed); the next instance
// finishes it.
func TestShutdownMidSyncHandsTheRequestBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: time.Nanosecond})
	if err := e.sim.SetCRMKeyBehaviour(e.orgID(2), "slowpoke", gcsim.CRMBehaviour{Never: true}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.Deadline = time.Minute
	first := e.start(cfg)
	req := e.request(2, "slowpoke", "p1")
	e.publish(req, "")
	natsxtest.Eventually(t, 10*time.Second, "first poll", func() bool { return len(e.crm.of("slowpoke")) >= 2 })
	first.Stop(t)
	if rec := e.state(req); rec.State != StatePending {
		t.Fatalf("after shutdown mid-sync: state %s (%s), want PENDING", rec.State, rec.Reason)
	}
	if got := e.events.Find(func(ev *orgsyncv1.Event) bool { return isOutcomeOf(ev, req) }); len(got) != 0 {
		t.Fatalf("shutdown produced an outcome: %v", got[0])
	}

	if err := e.sim.SetCRMKeyBehaviour(e.orgID(2), "slowpoke", gcsim.CRMBehaviour{}); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	expectState(t, e, req, e.outcome(req, 10*time.Second), StateProvisioned)
}

// TestTargetWithoutCRMIsSkipped: a target without an adapter is not a
// failure; nothing is called.
func TestTargetWithoutCRMIsSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{})
	cfg := e.config()
	delete(cfg.Targets, e.key(3))
	e.start(cfg)
	req := e.request(3, "nocrm", "p1")
	e.publish(req, "")
	expectState(t, e, req, e.outcome(req, 10*time.Second), StateSkipped, "no CRM adapter is configured for target t3")
	if st := e.sim.Stats(e.orgID(3)); len(st.CRMRequests) != 0 || st.Requests["GET /api/v2/integrations"] != 0 {
		t.Errorf("a skipped sync called out: %v %v", st.CRMRequests, st.Requests)
	}
	if c, _ := OrgCounts(context.Background(), e.js, e.key(3)); c != (Counts{Skipped: 1}) || c.FailureRate() != 0 {
		t.Errorf("counts %+v", c)
	}
}

// TestFailureRateAlert: with threshold 50% over at least 4 finished syncs,
// the alert is raised once when the rate crosses it (3 failed of 5), not
// again while it stays above, and again after it fell back and crossed
// anew; counts are in KV and on /metrics.
func TestFailureRateAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "alert", gcsim.Config{CRMDelay: time.Nanosecond})
	cfg := e.config()
	cfg.FailureRateThreshold, cfg.MinSamples = 0.5, 4
	e.start(cfg)
	org := e.key(1)
	alerts := func() []*orgsyncv1.Event {
		return e.events.Find(func(ev *orgsyncv1.Event) bool { return ev.GetOrg() == org && ev.GetStep() == AlertStep })
	}
	// ok ok FAIL FAIL FAIL(3/5: alert) FAIL(4/6) ok ok(4/8: re-armed) FAIL(5/9: alert)
	plan := []bool{true, true, false, false, false, false, true, true, false}
	for i, ok := range plan {
		user := "u" + strconv.Itoa(i)
		if !ok {
			if err := e.sim.SetCRMKeyBehaviour(e.orgID(1), user, gcsim.CRMBehaviour{Fail: true}); err != nil {
				t.Fatal(err)
			}
		}
		req := e.request(1, user, "p1")
		e.publish(req, "")
		e.outcome(req, 10*time.Second)
		if i == 4 {
			e.events.Wait(t, 10*time.Second, "first alert", func(ev *orgsyncv1.Event) bool { return ev.GetStep() == AlertStep })
		}
	}
	e.events.Wait(t, 10*time.Second, "second alert", func(ev *orgsyncv1.Event) bool {
		return ev.GetStep() == AlertStep && ev.GetAttributes()["failed"] == "5"
	})
	got := alerts()
	if len(got) != 2 {
		t.Fatalf("%d alerts, want 2: %v", len(got), got)
	}
	for i, want := range []map[string]string{{"failed": "3", "provisioned": "2", "rate": "0.600"}, {"failed": "5", "provisioned": "4", "rate": "0.556"}} {
		a := got[i]
		for k, v := range want {
			if a.GetAttributes()[k] != v {
				t.Errorf("alert %d: %s=%s, want %s (%v)", i+1, k, a.GetAttributes()[k], v, a.GetAttributes())
			}
		}
		if a.GetStatus() != orgsyncv1.Status_STATUS_FAILED || a.GetKind() != orgsyncv1.EventKind_EVENT_KIND_AUDIT || !strings.Contains(a.GetMessage(), "above the 50% threshold") {
			t.Errorf("alert %d: %v", i+1, a)
		}
	}
	if c, err := OrgCounts(context.Background(), e.js, org); err != nil || c != (Counts{Provisioned: 4, Failed: 5}) {
		t.Errorf("KV counts %+v (%v), want 4 provisioned, 5 failed", c, err)
	}

	srv := httptest.NewServer(metrics.Handler())
	t.Cleanup(srv.Close)
	re := regexp.MustCompile(`(?m)^orgsync_crm_syncs\{org="` + org + `",state="(\w+)"\} (\d+)$`)
	natsxtest.Eventually(t, 5*time.Second, "orgsync_crm_syncs on /metrics", func() bool {
		res, err := http.Get(srv.URL)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		got := map[string]string{}
		for _, m := range re.FindAllStringSubmatch(string(body), -1) {
			got[m[1]] = m[2]
		}
		return got["failed"] == "5" && got["provisioned"] == "4" && got["pending"] == "0"
	})
}

// TestBatchRequestSyncsEachUserOnce: a plan's users arrive as one batch
// request (IntegrationRequest.users, as the provisioner publishes them);
// each valid user is synced and recorded, an invalid row is left out
// without holding back the others, the outcomes are one AUDIT message,
// and the batch replayed syncs nobody again.
func TestBatchRequestSyncsEachUserOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "t", gcsim.Config{CRMDelay: 50 * time.Millisecond})
	e.start(e.config())
	batch := &orgsyncv1.IntegrationRequest{RequestId: "p1|crm|batch", TargetOrg: e.key(1),
		OriginRequestId: "req-p1", PlanId: "p1", SourceOrg: "src"}
	var want []*orgsyncv1.IntegrationRequest
	for i := range 4 {
		full := e.request(1, "row"+strconv.Itoa(i), "p1")
		want = append(want, full)
		batch.Users = append(batch.Users, &orgsyncv1.IntegrationRequest{RequestId: full.GetRequestId(),
			UserExternalId: full.GetUserExternalId(), TargetUserId: full.GetTargetUserId(), Email: full.GetEmail(), Name: full.GetName()})
	}
	batch.Users = append(batch.Users, &orgsyncv1.IntegrationRequest{RequestId: "p1|noemail|crm", UserExternalId: "noemail"})
	e.publish(batch, "")
	for _, req := range want {
		rec := expectState(t, e, req, e.outcome(req, 10*time.Second), StateProvisioned)
		if rec.RequestID != req.GetRequestId() || rec.TargetUserID != req.GetTargetUserId() {
			t.Errorf("state of %s: %+v", req.GetUserExternalId(), rec)
		}
	}
	e.settled()
	auditSubject, err := natsx.EventSubject(e.key(1), orgsyncv1.EventKind_EVENT_KIND_AUDIT)
	if err != nil {
		t.Fatal(err)
	}
	auditMessages := func() uint64 {
		st, err := e.js.Stream(context.Background(), natsx.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(auditSubject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[auditSubject]
	}
	if n := auditMessages(); n != 1 {
		t.Errorf("%d AUDIT messages for a batch of 4 outcomes, want 1", n)
	}
	if c, err := OrgCounts(context.Background(), e.js, e.key(1)); err != nil || c != (Counts{Provisioned: 4}) {
		t.Errorf("counts %+v (%v), want 4 provisioned (the invalid row recorded nothing)", c, err)
	}

	e.publish(batch, "replay-1")
	e.settled()
	if puts := e.sim.Stats(e.orgID(1)).CRMRequests["PUT /crm/v1/users/{externalKey}"]; puts != 4 {
		t.Errorf("%d CRM PUTs after the batch was replayed, want 4 (one per user)", puts)
	}
	if n := auditMessages(); n != 1 {
		t.Errorf("%d AUDIT messages after a replay, want 1", n)
	}
}
