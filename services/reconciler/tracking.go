package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// TrackingBucket is the KV bucket of tracked reference users kept by the
// extractor: key "<src>.<userId>" per tracked user. The reconciler only
// needs the keys (which user of which source org to watch), so it does not
// depend on the value's format.
const TrackingBucket = natsx.TrackingBucket

// TrackedSet is the live set of tracked reference users, kept current by
// watching TrackingBucket. Safe for concurrent use.
type TrackedSet struct {
	mu    sync.RWMutex
	users map[string]map[string]struct{} // src → user ids
	ready bool
	// atLoad: source orgs with tracked users when the bucket was first
	// loaded (users this process may have missed events of while down).
	atLoad map[string]bool
	notify []func(src string)
}

// newTrackedSet returns an empty set.
func newTrackedSet() *TrackedSet {
	return &TrackedSet{users: map[string]map[string]struct{}{}}
}

// Orgs lists the source orgs that have at least one tracked user, sorted.
func (t *TrackedSet) Orgs() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.users))
	for src, us := range t.users {
		if len(us) > 0 {
			out = append(out, src)
		}
	}
	sort.Strings(out)
	return out
}

// Users lists the tracked user ids of src, sorted.
func (t *TrackedSet) Users(src string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.users[src]))
	for u := range t.users[src] {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Has reports whether user of src is tracked.
func (t *TrackedSet) Has(src, user string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.users[src][user]
	return ok
}

// Ready reports whether the initial contents of the bucket were loaded.
func (t *TrackedSet) Ready() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.ready
}

// OnChange registers fn, called (outside the lock) with the source org
// whenever its tracked set changes after the initial load, and once per
// org at the initial load.
func (t *TrackedSet) OnChange(fn func(src string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notify = append(t.notify, fn)
}

func (t *TrackedSet) set(src, user string, present bool) (changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	us := t.users[src]
	_, had := us[user]
	if present == had {
		return false
	}
	if present {
		if us == nil {
			us = map[string]struct{}{}
			t.users[src] = us
		}
		us[user] = struct{}{}
	} else {
		delete(us, user)
	}
	return t.ready
}

func (t *TrackedSet) markReady() []string {
	orgs := t.Orgs()
	t.mu.Lock()
	t.ready = true
	t.atLoad = map[string]bool{}
	for _, src := range orgs {
		t.atLoad[src] = true
	}
	t.mu.Unlock()
	return orgs
}

// TrackedAtLoad reports whether src had tracked users when the bucket was
// first loaded, i.e. before this process started following them.
func (t *TrackedSet) TrackedAtLoad(src string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.atLoad[src]
}

func (t *TrackedSet) fire(src string) {
	t.mu.RLock()
	fns := append([]func(string){}, t.notify...)
	t.mu.RUnlock()
	for _, fn := range fns {
		fn(src)
	}
}

// TrackingKey is the key of a tracked user in TrackingBucket.
func TrackingKey(src, userID string) string { return src + "." + userID }

// ParseTrackingKey splits "<src>.<userId>"; ok is false for keys of any
// other shape (they are ignored, not fatal).
func ParseTrackingKey(key string) (src, userID string, ok bool) {
	src, userID, found := strings.Cut(key, ".")
	if !found || userID == "" || natsx.ValidateOrgKey(src) != nil {
		return "", "", false
	}
	return src, userID, true
}

// OpenTrackingBucket opens TrackingBucket, creating it (history 1) when the
// extractor has not yet; the extractor owns its contents.
func OpenTrackingBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return openOrCreateBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      TrackingBucket,
		Description: "orgsync tracked reference users (<src>.<userId>), kept by the extractor",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
}

func openOrCreateBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for attempt := 0; attempt < 3; attempt++ {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if err == nil {
			return kv, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("reconciler: open KV bucket %s: %w", cfg.Bucket, err)
		}
		kv, err = js.CreateKeyValue(ctx, cfg)
		if err == nil {
			return kv, nil
		}
		if !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("reconciler: create KV bucket %s: %w", cfg.Bucket, err)
		}
		// Another service created it meanwhile: open it on the next round.
	}
	return nil, fmt.Errorf("reconciler: KV bucket %s: could not open or create", cfg.Bucket)
}

// watchTracking keeps set current from kv until ctx is done. It returns
// after the watcher stops; loaded is closed once the initial contents are in.
func watchTracking(ctx context.Context, kv jetstream.KeyValue, set *TrackedSet, logger *slog.Logger, loaded chan<- struct{}) error {
	// Deletes must arrive (jetstream.IgnoreDeletes would drop them for the
	// watcher's whole life): a deleted key untracks the user. In the
	// initial replay a delete of an unknown user is a no-op.
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("reconciler: watch KV bucket %s: %w", TrackingBucket, err)
	}
	defer func() { _ = w.Stop() }()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reconciler: watch of KV bucket %s closed", TrackingBucket)
			}
			if e == nil { // end of initial values
				if initial {
					initial = false
					for _, src := range set.markReady() {
						set.fire(src)
					}
					close(loaded)
				}
				continue
			}
			src, user, ok := ParseTrackingKey(e.Key())
			if !ok {
				logger.Warn("ignoring tracking key of unexpected shape", "bucket", TrackingBucket, "key", e.Key())
				continue
			}
			present := e.Operation() == jetstream.KeyValuePut
			if set.set(src, user, present) {
				set.fire(src)
			}
		}
	}
}
