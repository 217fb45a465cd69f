package integrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
// per-org counts `orgsync integrations` and the metrics show.
const Bucket = "orgsync-crm"

// SyncRecord is the latest CRM sync state of one user in one target.
type SyncRecord struct {
	Org            string    `json:"org"`
	UserExternalID string    `json:"userExternalId"`
	TargetUserID   string    `json:"targetUserId,omitempty"`
	Email          string    `json:"email,omitempty"`
	State          string    `json:"state"` // PENDING, PROVISIONED, FAILED
	CRMStatus      string    `json:"crmStatus,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	RequestID      string    `json:"requestId"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// Counts are the CRM syncs of one org by state.
type Counts struct {
	Pending, Provisioned, Failed int
}

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
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Counts{}, nil
	}
	if err != nil {
		return Counts{}, fmt.Errorf("integrator: open KV bucket %s: %w", Bucket, err)
	}
	recs, err := orgRecords(ctx, kv, org)
	var c Counts
	for _, r := range recs {
		switch r.State {
		case StatePending:
			c.Pending++
		case StateProvisioned:
			c.Provisioned++
		case StateFailed:
			c.Failed++
		}
	}
	return c, err
}

// OrgRecords lists the sync records of org (unordered).
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
	lister, err := kv.ListKeysFiltered(ctx, org+".>")
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

// afterOutcome refreshes the org's counts (metrics) and raises the failure
// rate alert when the rate crosses the threshold (once per crossing; it
// re-arms when the rate falls back).
func (s *Service) afterOutcome(ctx context.Context, org string) {
	c, err := OrgCounts(ctx, s.deps.JS, org)
	if err != nil {
		s.log.Warn("count CRM syncs", "org", org, "err", err)
		return
	}
	s.mu.Lock()
	s.counts[org] = c
	over := c.Provisioned+c.Failed >= s.cfg.MinSamples && c.FailureRate() > s.cfg.FailureRateThreshold
	raise := over && !s.alerting[org]
	s.alerting[org] = over
	s.mu.Unlock()
	if !raise {
		return
	}
	ev := &orgsyncv1.Event{
		EventId: events.ID("crm-alert", org, strconv.Itoa(c.Failed), strconv.Itoa(c.Provisioned)),
		Kind:    orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: orgsyncv1.Status_STATUS_FAILED, Org: org, Step: "crm-alert",
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
// latest counts) when the process has a meter provider.
func (s *Service) registerMetrics() {
	mp := metrics.MeterProvider()
	if mp == nil {
		return
	}
	m := mp.Meter("orgsync/integrator")
	g, err := m.Int64ObservableGauge("orgsync_crm_syncs", metric.WithDescription("CRM integration syncs per target org and state (pending, provisioned, failed)"))
	if err != nil {
		s.log.Warn("register CRM metrics", "err", err)
		return
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for org, c := range s.counts {
			for state, n := range map[string]int{"pending": c.Pending, "provisioned": c.Provisioned, "failed": c.Failed} {
				o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("org", org), attribute.String("state", state)))
			}
		}
		return nil
	}, g)
	if err != nil {
		s.log.Warn("register CRM metrics callback", "err", err)
	}
}
