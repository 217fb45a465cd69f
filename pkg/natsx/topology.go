package natsx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names (DESIGN.md section 3).
const (
	StreamClone        = "CLONE"
	StreamChanges      = "CHANGES"
	StreamSnapshots    = "SNAPSHOTS"
	StreamPlans        = "PLANS"
	StreamIntegrations = "INTEGRATIONS"
	StreamEvents       = "EVENTS"

	// TokenBucket is the KV bucket where the auth service caches tokens,
	// one key per org.
	TokenBucket = "orgsync-tokens"
	// TokenStream is the stream behind TokenBucket.
	TokenStream = "KV_" + TokenBucket
)

// Default topology values.
const (
	DefaultReplicas = 1
	// DefaultDuplicateWindow is how long a Nats-Msg-Id is remembered.
	// Replays beyond it are harmless (handlers are idempotent); the window
	// only absorbs publisher retries and webhook re-sends, and every id in
	// the window costs server memory.
	DefaultDuplicateWindow = 10 * time.Minute
	defaultWorkMaxAge      = 7 * 24 * time.Hour
	defaultEventsMaxAge    = 30 * 24 * time.Hour
	// tokenLimitMarkerTTL enables per-key TTLs in the token bucket (how
	// long the delete marker of an expired key is kept).
	tokenLimitMarkerTTL = time.Minute
)

// StreamSpec is one stream of the topology.
type StreamSpec struct {
	Name     string
	Subjects []string
	// MaxAge is the default retention; Topology.MaxAge overrides it.
	MaxAge time.Duration
}

// Streams lists the orgsync streams with their default retention.
func Streams() []StreamSpec {
	return []StreamSpec{
		{StreamClone, []string{"orgsync.clone.>"}, defaultWorkMaxAge},
		{StreamChanges, []string{"orgsync.change.>"}, defaultWorkMaxAge},
		{StreamSnapshots, []string{"orgsync.snapshot.>"}, defaultWorkMaxAge},
		{StreamPlans, []string{"orgsync.plan.>"}, defaultWorkMaxAge},
		{StreamIntegrations, []string{"orgsync.integration.>"}, defaultWorkMaxAge},
		{StreamEvents, []string{"orgsync.event.>"}, defaultEventsMaxAge},
	}
}

// Topology is every deployment-dependent setting of the streams and KV
// buckets. The zero value is valid: single replica (dev, tests), default
// dedupe window and retention. Production uses Replicas 3.
type Topology struct {
	// Replicas of every stream and bucket: 1 (default) or an odd number up
	// to 5 on a cluster.
	Replicas int
	// DuplicateWindow of every stream (Nats-Msg-Id dedupe); default
	// DefaultDuplicateWindow. Must not exceed any stream's MaxAge.
	DuplicateWindow time.Duration
	// MaxAge overrides the retention of the named streams (7d for work
	// streams, 30d for EVENTS by default).
	MaxAge map[string]time.Duration
}

// WithDefaults returns t with zero fields replaced by defaults.
func (t Topology) WithDefaults() Topology {
	if t.Replicas == 0 {
		t.Replicas = DefaultReplicas
	}
	if t.DuplicateWindow == 0 {
		t.DuplicateWindow = DefaultDuplicateWindow
	}
	return t
}

// maxAge returns the retention of stream s.
func (t Topology) maxAge(s StreamSpec) time.Duration {
	if d, ok := t.MaxAge[s.Name]; ok {
		return d
	}
	return s.MaxAge
}

// Validate reports every invalid field of t (after defaults).
func (t Topology) Validate() error {
	t = t.WithDefaults()
	var errs []error
	if t.Replicas < 1 || t.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas must be 1..5, got %d", t.Replicas))
	} else if t.Replicas%2 == 0 {
		errs = append(errs, fmt.Errorf("Replicas must be odd (a quorum needs a majority), got %d", t.Replicas))
	}
	if t.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("DuplicateWindow must be > 0, got %v", t.DuplicateWindow))
	}
	known := map[string]bool{}
	for _, s := range Streams() {
		known[s.Name] = true
		if age := t.maxAge(s); age <= 0 {
			errs = append(errs, fmt.Errorf("MaxAge of %s must be > 0, got %v", s.Name, age))
		} else if t.DuplicateWindow > age {
			errs = append(errs, fmt.Errorf("DuplicateWindow %v exceeds MaxAge %v of %s", t.DuplicateWindow, age, s.Name))
		}
	}
	for name := range t.MaxAge {
		if !known[name] {
			errs = append(errs, fmt.Errorf("MaxAge names unknown stream %q", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("natsx: invalid topology: %w", errors.Join(errs...))
	}
	return nil
}

// StreamConfig returns the JetStream config of stream s under t.
func (t Topology) StreamConfig(s StreamSpec) jetstream.StreamConfig {
	t = t.WithDefaults()
	return jetstream.StreamConfig{
		Name:        s.Name,
		Description: "orgsync " + s.Subjects[0],
		Subjects:    s.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      t.maxAge(s),
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		Discard:     jetstream.DiscardOld,
	}
}

// TokenBucketConfig returns the KV config of the token cache. Per-key TTLs
// are enabled (LimitMarkerTTL) so each token disappears when it expires;
// readers still check expires_at in the value, which is the authority.
func (t Topology) TokenBucketConfig() jetstream.KeyValueConfig {
	t = t.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:         TokenBucket,
		Description:    "orgsync access tokens per org (auth service cache)",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       t.Replicas,
		LimitMarkerTTL: tokenLimitMarkerTTL,
	}
}

// ensureAttempts bounds create-or-update retries: two services starting at
// the same time can both see "not found" and race on create; the loser's
// retry then finds the stream and updates it.
const ensureAttempts = 5

// EnsureStreams creates every stream of topo, or updates them to topo when
// they exist. It is idempotent and safe to run from several services
// starting at the same time. The token bucket is not among them: only the
// auth service may create it (EnsureTokenBucket); the others open it with
// LazyTokenKV.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, topo Topology) error {
	if err := topo.Validate(); err != nil {
		return err
	}
	for _, s := range Streams() {
		cfg := topo.StreamConfig(s)
		if err := retryEnsure(ctx, func() error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("natsx: ensure stream %s (%v): %w", s.Name, s.Subjects, err)
		}
	}
	return nil
}

// EnsureTokenBucket creates or updates only the token bucket (the auth
// service needs nothing else) and returns it. Idempotent and safe to run
// concurrently, like EnsureStreams.
func EnsureTokenBucket(ctx context.Context, js jetstream.JetStream, topo Topology) (jetstream.KeyValue, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	kvCfg := topo.TokenBucketConfig()
	var kv jetstream.KeyValue
	if err := retryEnsure(ctx, func() (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvCfg)
		return err
	}); err != nil {
		return nil, fmt.Errorf("natsx: ensure KV bucket %s: %w", TokenBucket, err)
	}
	return kv, nil
}

// retryEnsure runs op until it succeeds, fails with an error that is
// neither a create race nor a cluster still forming, or ensureAttempts
// (clusterFormingAttempts for a forming cluster) are spent.
func retryEnsure(ctx context.Context, op func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = op()
		switch {
		case err == nil:
			return nil
		case isCreateRace(err) && attempt < ensureAttempts:
		case isClusterForming(err) && attempt < clusterFormingAttempts:
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(min(attempt, 25)) * 20 * time.Millisecond):
		}
	}
}

// clusterFormingAttempts bound the retries while a JetStream cluster has
// too few peers online to place a replicated stream (about 20 s: a node
// restarting or the cluster still forming when a service starts).
const clusterFormingAttempts = 50

// isClusterForming reports "no suitable peers for placement": transient
// while cluster nodes come up, not a configuration error.
func isClusterForming(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10005 // JSClusterNoPeersErr
}

// isCreateRace reports errors another creator can cause between our
// "not found" and our create.
func isCreateRace(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
		errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// TokenKV opens the token bucket (EnsureTokenBucket must have created it).
func TokenKV(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, TokenBucket)
	if err != nil {
		return nil, fmt.Errorf("natsx: open KV bucket %s (the auth service creates it): %w", TokenBucket, err)
	}
	return kv, nil
}

// LazyTokenKV is the token bucket for readers that may start before the
// auth service has created it: Get opens the bucket on first use (and again
// after a failure) and reports jetstream.ErrKeyNotFound while it is absent.
type LazyTokenKV struct {
	js jetstream.JetStream
	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewLazyTokenKV returns the lazily opened token bucket of js.
func NewLazyTokenKV(js jetstream.JetStream) *LazyTokenKV { return &LazyTokenKV{js: js} }

// Get reads key from the bucket.
func (l *LazyTokenKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	l.mu.Lock()
	kv := l.kv
	if kv == nil {
		var err error
		if kv, err = TokenKV(ctx, l.js); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.kv = kv
	}
	l.mu.Unlock()
	return kv.Get(ctx, key)
}
