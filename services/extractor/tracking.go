package extractor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TrackingBucket is the JetStream KV bucket that remembers which source users
// orgsync clones into which targets, so a change of such a user (reconciler →
// orgsync.change.<src>) is re-extracted and re-planned for those targets.
const TrackingBucket = natsx.TrackingBucket

// trackingUpdateAttempts bounds the compare-and-set loop of Track: two
// requests for the same user racing on one key both succeed in turn.
const trackingUpdateAttempts = 10

// kvKeyToken is what a KV key token may contain (a source user id).
var kvKeyToken = regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)

// Tracked is the tracking record of one source user, stored as JSON under
// key "<source org>.<source user id>".
type Tracked struct {
	SourceOrg string `json:"source_org"`
	UserID    string `json:"user_id"`
	// Email in the source org at the last extraction.
	Email string `json:"email"`
	// Targets is the union of the target orgs of every request that cloned
	// the user, sorted.
	Targets []string `json:"targets"`
	// Include, ExistingUsers: of the latest request, i.e. the one with the
	// highest CLONE stream sequence (OptionsSeq), whatever order concurrent
	// handlers finish in (component and policy enum names). Empty include =
	// every component.
	Include       []string `json:"include,omitempty"`
	ExistingUsers string   `json:"existing_users,omitempty"`
	OptionsSeq    uint64   `json:"options_seq,omitempty"`
	// EmailMapping per target, merged over requests (the latest request
	// wins for a target it names; an earlier one only fills targets that
	// have no rule yet).
	EmailMapping map[string]EmailRule `json:"email_mapping,omitempty"`
	// LastRequestID and UpdatedAt: the latest request and when it was recorded.
	LastRequestID string    `json:"last_request_id"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// EmailRule is the JSON form of orgsyncv1.EmailMapping.
type EmailRule struct {
	FromDomain string `json:"from_domain,omitempty"`
	ToDomain   string `json:"to_domain"`
}

// Options rebuilds the clone options a change-triggered snapshot uses.
func (t Tracked) Options() *orgsyncv1.CloneOptions {
	o := &orgsyncv1.CloneOptions{
		ExistingUsers: orgsyncv1.ExistingUserPolicy(orgsyncv1.ExistingUserPolicy_value[t.ExistingUsers]),
	}
	for _, c := range t.Include {
		if v, ok := orgsyncv1.Component_value[c]; ok {
			o.Include = append(o.Include, orgsyncv1.Component(v))
		}
	}
	if len(t.EmailMapping) > 0 {
		o.EmailMapping = map[string]*orgsyncv1.EmailMapping{}
		for target, r := range t.EmailMapping {
			o.EmailMapping[target] = &orgsyncv1.EmailMapping{FromDomain: r.FromDomain, ToDomain: r.ToDomain}
		}
	}
	return o
}

// Tracking reads and writes the tracking bucket. Safe for concurrent use.
type Tracking struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// TrackingBucketConfig is the bucket's configuration under topo (replicas
// follow the streams').
func TrackingBucketConfig(topo natsx.Topology) jetstream.KeyValueConfig {
	topo = topo.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      TrackingBucket,
		Description: "orgsync: source users cloned into targets (extractor); read by the reconciler",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    topo.Replicas,
	}
}

// OpenTracking creates the tracking bucket when missing (idempotent; safe
// when several extractors start at once) and returns a Tracking on it.
func OpenTracking(ctx context.Context, js jetstream.JetStream, topo natsx.Topology) (*Tracking, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	cfg := TrackingBucketConfig(topo)
	var kv jetstream.KeyValue
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		if err == nil || !(errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)) {
			break
		}
		select { // lost a create race with another instance: the retry updates
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("extractor: ensure KV bucket %s: %w", TrackingBucket, err)
	}
	return &Tracking{kv: kv, now: time.Now}, nil
}

// TrackingKey is the KV key of a source user.
func TrackingKey(sourceOrg, userID string) (string, error) {
	if err := natsx.ValidateOrgKey(sourceOrg); err != nil {
		return "", fmt.Errorf("tracking key: %w", err)
	}
	if !kvKeyToken.MatchString(userID) {
		return "", fmt.Errorf("tracking key: source user id %q must be letters, digits, '-', '_' or '='", userID)
	}
	return sourceOrg + "." + userID, nil
}

// Track records that user (of sourceOrg, with its current email) is cloned
// into targets with opts by request requestID (CLONE stream sequence seq),
// merging with what is recorded already (compare-and-set on the key's
// revision).
func (t *Tracking) Track(ctx context.Context, sourceOrg, userID, email string, targets []string, opts *orgsyncv1.CloneOptions, requestID string, seq uint64) error {
	key, err := TrackingKey(sourceOrg, userID)
	if err != nil {
		return err
	}
	for range trackingUpdateAttempts {
		var rec Tracked
		var rev uint64
		entry, err := t.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rec = Tracked{SourceOrg: sourceOrg, UserID: userID}
		case err != nil:
			return fmt.Errorf("tracking: read %s: %w", key, err)
		default:
			if err := json.Unmarshal(entry.Value(), &rec); err != nil {
				// A record we cannot read is replaced: the request at hand
				// is the best knowledge of what to track.
				rec = Tracked{SourceOrg: sourceOrg, UserID: userID}
			}
			rev = entry.Revision()
		}
		merge(&rec, email, targets, opts, requestID, seq, t.now())
		data, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("tracking: encode %s: %w", key, err)
		}
		if rev == 0 {
			_, err = t.kv.Create(ctx, key, data)
		} else {
			_, err = t.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			return fmt.Errorf("tracking: write %s: %w", key, err)
		}
	}
	return fmt.Errorf("tracking: write %s: still conflicting after %d attempts", key, trackingUpdateAttempts)
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func merge(rec *Tracked, email string, targets []string, opts *orgsyncv1.CloneOptions, requestID string, seq uint64, now time.Time) {
	for _, tg := range targets {
		if !slices.Contains(rec.Targets, tg) {
			rec.Targets = append(rec.Targets, tg)
		}
	}
	sort.Strings(rec.Targets)
	latest := seq >= rec.OptionsSeq
	for target, r := range opts.GetEmailMapping() {
		if rec.EmailMapping == nil {
			rec.EmailMapping = map[string]EmailRule{}
		}
		if _, has := rec.EmailMapping[target]; latest || !has {
			rec.EmailMapping[target] = EmailRule{FromDomain: r.GetFromDomain(), ToDomain: r.GetToDomain()}
		}
	}
	if !latest {
		return
	}
	rec.Email = email
	rec.Include = nil
	for _, c := range opts.GetInclude() {
		rec.Include = append(rec.Include, c.String())
	}
	rec.ExistingUsers = ""
	if p := opts.GetExistingUsers(); p != orgsyncv1.ExistingUserPolicy_EXISTING_USER_POLICY_UNSPECIFIED {
		rec.ExistingUsers = p.String()
	}
	rec.OptionsSeq = seq
	rec.LastRequestID = requestID
	rec.UpdatedAt = now.UTC()
}

// Get returns the tracking record of a source user; ok is false when the
// user is not tracked.
func (t *Tracking) Get(ctx context.Context, sourceOrg, userID string) (rec Tracked, ok bool, err error) {
	key, err := TrackingKey(sourceOrg, userID)
	if err != nil {
		return Tracked{}, false, err
	}
	entry, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Tracked{}, false, nil
	}
	if err != nil {
		return Tracked{}, false, fmt.Errorf("tracking: read %s: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return Tracked{}, false, fmt.Errorf("tracking: decode %s: %w", key, err)
	}
	return rec, true, nil
}

// List returns every tracked user of sourceOrg, sorted by user id.
func (t *Tracking) List(ctx context.Context, sourceOrg string) ([]Tracked, error) {
	if err := natsx.ValidateOrgKey(sourceOrg); err != nil {
		return nil, fmt.Errorf("tracking: list: %w", err)
	}
	lister, err := t.kv.ListKeysFiltered(ctx, sourceOrg+".*")
	if err != nil {
		return nil, fmt.Errorf("tracking: list keys of %s: %w", sourceOrg, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Tracked, 0, len(keys))
	for _, k := range keys {
		entry, err := t.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("tracking: read %s: %w", k, err)
		}
		var rec Tracked
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return nil, fmt.Errorf("tracking: decode %s: %w", k, err)
		}
		out = append(out, rec)
	}
	return out, nil
}
