package integrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Bucket is the KV bucket of CRM sync states: key "<org>.<hash of the
// user's external id>", value a SyncRecord (JSON). It is the source of the
// per-org counts `orgsync integrations`, `orgsync status` and the metrics
// show.
const Bucket = natsx.CRMHealthBucket

// SyncRecord is the latest CRM sync state of one user in one target.
type SyncRecord struct {
	Org            string    `json:"org"`
	UserExternalID string    `json:"userExternalId"`
	TargetUserID   string    `json:"targetUserId,omitempty"`
	Email          string    `json:"email,omitempty"`
	State          string    `json:"state"` // PENDING, PROVISIONED, FAILED, SKIPPED
	CRMStatus      string    `json:"crmStatus,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	RequestID      string    `json:"requestId"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// Counts are the CRM syncs of one org by state.
type Counts struct {
	Pending     int `json:"pending"`
	Provisioned int `json:"provisioned"`
	Failed      int `json:"failed"`
	Skipped     int `json:"skipped"`
}

// AlertStep is the Step of the failure-rate alert event.
const AlertStep = "crm-alert"

// FailureRate is failed / (provisioned + failed); 0 with no finished sync.
func (c Counts) FailureRate() float64 {
	if c.Provisioned+c.Failed == 0 {
		return 0
	}
	return float64(c.Failed) / float64(c.Provisioned+c.Failed)
}

func recordKey(org, userExtID string) string {
	h := sha256.Sum256([]byte(userExtID))
	return org + "." + hex.EncodeToString(h[:12])
}

// EnsureBucket creates or updates the CRM state bucket.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, topo natsx.Topology) (jetstream.KeyValue, error) {
	topo = topo.WithDefaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket,
		Description: "orgsync CRM integration sync state per target org and user", History: 1,
		Storage: jetstream.FileStorage, Replicas: topo.Replicas})
	if err != nil {
		return nil, fmt.Errorf("integrator: ensure KV bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// OrgCounts counts the CRM syncs of org in the bucket (any reader: the
// integrator, the orgsync CLI). A missing bucket counts nothing.
func OrgCounts(ctx context.Context, js jetstream.JetStream, org string) (Counts, error) {
	recs, err := OrgRecords(ctx, js, org)
	var c Counts
	for _, r := range recs {
		c.add(r.State, 1)
	}
	return c, err
}

// AllCounts counts the CRM syncs of every org in the bucket.
func AllCounts(ctx context.Context, js jetstream.JetStream) (map[string]Counts, error) {
	recs, err := OrgRecords(ctx, js, "")
	out := map[string]Counts{}
	for _, r := range recs {
		c := out[r.Org]
		c.add(r.State, 1)
		out[r.Org] = c
	}
	return out, err
}

// OrgRecords lists the sync records of org (every org when org is ""),
// unordered. A missing bucket lists nothing.
func OrgRecords(ctx context.Context, js jetstream.JetStream, org string) ([]SyncRecord, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("integrator: open KV bucket %s: %w", Bucket, err)
	}
	return orgRecords(ctx, kv, org)
}

func orgRecords(ctx context.Context, kv jetstream.KeyValue, org string) ([]SyncRecord, error) {
	filter := org + ".>"
	if org == "" {
		filter = ">"
	}
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("integrator: list CRM states of %s: %w", org, err)
	}
	var out []SyncRecord
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("integrator: read CRM state %s: %w", key, err)
		}
		var r SyncRecord
		if json.Unmarshal(e.Value(), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// putState records the sync state of a request's user.
func (s *Service) putState(ctx context.Context, req *orgsyncv1.IntegrationRequest, state string, out Outcome) error {
	rec := SyncRecord{Org: req.GetTargetOrg(), UserExternalID: req.GetUserExternalId(), TargetUserID: req.GetTargetUserId(),
		Email: req.GetEmail(), State: state, CRMStatus: out.CRMStatus, Reason: out.Reason, RequestID: req.GetRequestId(),
		UpdatedAt: time.Now().UTC()}
	b, _ := json.Marshal(rec)
	if _, err := s.kv.Put(ctx, recordKey(rec.Org, rec.UserExternalID), b); err != nil {
		return fmt.Errorf("integrator: record CRM state of %s in %s: %w", rec.UserExternalID, rec.Org, err)
	}
	return nil
}

// getState reads the sync state of a request's user (ok false: none yet).
func (s *Service) getState(ctx context.Context, req *orgsyncv1.IntegrationRequest) (SyncRecord, bool, error) {
	e, err := s.kv.Get(ctx, recordKey(req.GetTargetOrg(), req.GetUserExternalId()))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SyncRecord{}, false, nil
	}
	if err != nil {
		return SyncRecord{}, false, fmt.Errorf("integrator: read CRM state of %s in %s: %w", req.GetUserExternalId(), req.GetTargetOrg(), err)
	}
	var r SyncRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return SyncRecord{}, false, nil // unreadable: sync again, the put replaces it
	}
	return r, true, nil
}

// tracker keeps the per-org counts from a watch of the state bucket (every
// instance sees every update, in order: O(1) per outcome, whoever synced
// it) and raises the failure-rate alert when an org's rate crosses the
// threshold — once per crossing, re-armed when the rate falls back. Every
// instance sees the same sequence and derives the same alert event id, so
// JetStream keeps one alert when several instances run.
type tracker struct {
	s *Service

	mu sync.Mutex
	// states: bucket key → state, the key held as its 64-bit hash: 200,000
	// keys (10,000 users × 20 orgs) held 17 MB as strings, each pinning
	// the subject it was cut from; two keys of one bucket sharing a hash
	// (about 1 in 10^9 at that size) would only miscount one of them.
	seed     maphash.Seed
	states   map[uint64]string
	counts   map[string]Counts // org → counts
	alerting map[string]bool
}

func newTracker(s *Service) *tracker {
	return &tracker{s: s, seed: maphash.MakeSeed(), states: map[uint64]string{}, counts: map[string]Counts{}, alerting: map[string]bool{}}
}

// start loads the bucket's current states and follows its updates until
// ctx is done (the returned channel is closed then).
func (t *tracker) start(ctx context.Context, kv jetstream.KeyValue) (<-chan struct{}, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("integrator: watch KV bucket %s: %w", Bucket, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = w.Stop() }()
		loaded := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // initial values loaded: arm the alerts without raising
					loaded = true
					t.arm()
					continue
				}
				if org := t.apply(e); org != "" && loaded {
					t.evaluate(ctx, org)
				}
			}
		}
	}()
	return done, nil
}

// apply folds one bucket update into the counts and returns the org whose
// finished syncs changed ("" when none did).
func (t *tracker) apply(e jetstream.KeyValueEntry) string {
	org, _, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return ""
	}
	state := ""
	if e.Operation() == jetstream.KeyValuePut {
		var r SyncRecord
		if json.Unmarshal(e.Value(), &r) != nil {
			return ""
		}
		state = canonicalState(r.State)
	}
	key := maphash.String(t.seed, e.Key())
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.states[key]
	if old == state {
		return ""
	}
	c := t.counts[org]
	c.add(old, -1)
	c.add(state, 1)
	t.counts[org] = c
	if state == "" {
		delete(t.states, key)
	} else {
		t.states[key] = state
	}
	if state == StateProvisioned || state == StateFailed {
		return org
	}
	return ""
}

// canonicalState returns the constant equal to state, so that what the
// tracker holds per key is not a string decoded for it.
func canonicalState(state string) string {
	for _, c := range []string{StatePending, StateProvisioned, StateFailed, StateSkipped} {
		if state == c {
			return c
		}
	}
	return state
}

// With returns c counting one more sync in state.
func (c Counts) With(state string) Counts {
	c.add(state, 1)
	return c
}

func (c *Counts) add(state string, n int) {
	switch state {
	case StatePending:
		c.Pending += n
	case StateProvisioned:
		c.Provisioned += n
	case StateFailed:
		c.Failed += n
	case StateSkipped:
		c.Skipped += n
	}
}

func (t *tracker) over(c Counts) bool {
	return c.Provisioned+c.Failed >= t.s.cfg.MinSamples && c.FailureRate() > t.s.cfg.FailureRateThreshold
}

func (t *tracker) arm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for org, c := range t.counts {
		t.alerting[org] = t.over(c)
	}
}

// Counts returns the counts of org as this instance last saw them.
func (t *tracker) Counts(org string) Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[org]
}

func (t *tracker) snapshot() map[string]Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

// evaluate raises the alert of org when its failure rate just crossed the
// threshold.
func (t *tracker) evaluate(ctx context.Context, org string) {
	t.mu.Lock()
	c := t.counts[org]
	over := t.over(c)
	raise := over && !t.alerting[org]
	t.alerting[org] = over
	t.mu.Unlock()
	if !raise {
		return
	}
	s := t.s
	ev := &orgsyncv1.Event{
		EventId: events.ID("crm-alert", org, strconv.Itoa(c.Failed), strconv.Itoa(c.Provisioned)),
		Kind:    orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: orgsyncv1.Status_STATUS_FAILED, Org: org, Step: AlertStep,
		Message: fmt.Sprintf("CRM sync failure rate in %s is %.0f%% (%d failed, %d provisioned, %d pending), above the %.0f%% threshold",
			org, 100*c.FailureRate(), c.Failed, c.Provisioned, c.Pending, 100*s.cfg.FailureRateThreshold),
		Reason: "CRM integration failures: agents are provisioned in Genesys but missing or broken in the CRM",
		Attributes: map[string]string{"alert": "crm_failure_rate", "workflow": "crm",
			"failed": strconv.Itoa(c.Failed), "provisioned": strconv.Itoa(c.Provisioned), "pending": strconv.Itoa(c.Pending),
			"rate": strconv.FormatFloat(c.FailureRate(), 'f', 3, 64), "threshold": strconv.FormatFloat(s.cfg.FailureRateThreshold, 'f', 3, 64)},
	}
	if err := s.deps.Events.Emit(ctx, ev); err != nil {
		s.log.Error("emit CRM failure rate alert", "org", org, "err", err)
	}
}

// registerMetrics exposes orgsync_crm_syncs{org,state} (gauge of the
// current counts, every org in the bucket) when the process has a meter
// provider; the returned function unregisters it (the service stopped).
func (s *Service) registerMetrics() (unregister func()) {
	noop := func() {}
	mp := metrics.MeterProvider()
	if mp == nil {
		return noop
	}
	m := mp.Meter("orgsync/integrator")
	g, err := m.Int64ObservableGauge("orgsync_crm_syncs", metric.WithDescription("CRM integration syncs per target org and state (pending, provisioned, failed, skipped)"))
	if err != nil {
		s.log.Warn("register CRM metrics", "err", err)
		return noop
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for org, c := range s.health.snapshot() {
			for state, n := range map[string]int{"pending": c.Pending, "provisioned": c.Provisioned, "failed": c.Failed, "skipped": c.Skipped} {
				o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("org", org), attribute.String("state", state)))
			}
		}
		return nil
	}, g)
	if err != nil {
		s.log.Warn("register CRM metrics callback", "err", err)
		return noop
	}
	return func() { _ = reg.Unregister() }
}
