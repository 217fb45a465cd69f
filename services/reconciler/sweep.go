package reconciler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// CursorBucket is the reconciler's KV bucket; key "sweep.<src>" holds the
// SweepCursor of source org src.
const CursorBucket = natsx.CursorBucket

// Sweep triggers (SweepCursor.Trigger, run id prefix).
const (
	TriggerPeriodic  = "periodic"
	TriggerRequest   = "request"
	TriggerReconnect = "reconnect"
)

// SweepCursor records the last sweep of a source org.
type SweepCursor struct {
	SourceOrg   string    `json:"source_org"`
	RunID       string    `json:"run_id"`
	Trigger     string    `json:"trigger"`
	LastSweepAt time.Time `json:"last_sweep_at"`
	// Users is how many tracked users the sweep published a change for.
	Users int `json:"users"`
}

// SweepResult describes one sweep run.
type SweepResult struct {
	SourceOrg string `json:"source_org"`
	RunID     string `json:"run_id"`
	Trigger   string `json:"trigger"`
	// Users tracked in the org when the sweep ran; Published change events
	// were stored, Duplicates were already in the stream (same run id).
	Users      int       `json:"users"`
	Published  int       `json:"published"`
	Duplicates int       `json:"duplicates"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Queued: the sweep was scheduled, not awaited (request without now).
	Queued bool `json:"queued,omitempty"`
}

// SweepEventID is the ChangeEvent id of user in sweep run runID: the same
// run re-published (retry, a second replica on the same periodic slot) is
// deduplicated by the stream.
func SweepEventID(src, runID, userID string) string {
	return "sweep:" + src + ":" + runID + ":" + userID
}

// cursorKey is the KV key of src's sweep cursor.
func cursorKey(src string) string { return "sweep." + src }

// OpenCursorBucket opens (creating if needed) the reconciler's bucket.
func OpenCursorBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return openOrCreateBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      CursorBucket,
		Description: "orgsync reconciler state: last sweep per source org",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
}

// ReadSweepCursor returns src's cursor; ok is false when src was never swept.
func ReadSweepCursor(ctx context.Context, kv jetstream.KeyValue, src string) (c SweepCursor, ok bool, err error) {
	e, err := kv.Get(ctx, cursorKey(src))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SweepCursor{}, false, nil
	}
	if err != nil {
		return SweepCursor{}, false, fmt.Errorf("reconciler: read sweep cursor of %s: %w", src, err)
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return SweepCursor{}, false, fmt.Errorf("reconciler: sweep cursor of %s is not valid JSON: %w", src, err)
	}
	return c, true, nil
}

// sweeper publishes sweep change events and keeps the cursor.
type sweeper struct {
	cfg     Config
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	tracked *TrackedSet
	logger  *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	workers map[string]chan string // src → coalescing trigger queue (cap 1)
	wg      sync.WaitGroup
	ctx     context.Context
}

// Sweep publishes one SWEEP ChangeEvent per tracked user of src, with ids
// derived from runID, then records the cursor. A failed publish stops the
// sweep with an error (the cursor is not advanced).
func (s *sweeper) Sweep(ctx context.Context, src, runID, trigger string) (SweepResult, error) {
	ctx, span := telemetry.Tracer("orgsync/reconciler").Start(ctx, "sweep "+src)
	defer span.End()
	users := s.tracked.Users(src)
	res := SweepResult{SourceOrg: src, RunID: runID, Trigger: trigger, Users: len(users), StartedAt: s.now().UTC()}
	span.SetAttributes(attribute.String("orgsync.run_id", runID), attribute.Int("orgsync.users", len(users)))
	for _, u := range users {
		// Dated by the sweep's start: the state the extractor reads is at
		// least that recent, which orders it against audit events.
		dup, err := publishChange(ctx, s.js, src, u, SweepEventID(src, runID, u), res.StartedAt, orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP)
		if err != nil {
			return res, fmt.Errorf("reconciler: sweep %s of %s: %w", runID, src, err)
		}
		if dup {
			res.Duplicates++
		} else {
			res.Published++
		}
	}
	res.FinishedAt = s.now().UTC()
	cur, _ := json.Marshal(SweepCursor{SourceOrg: src, RunID: runID, Trigger: trigger, LastSweepAt: res.StartedAt, Users: len(users)})
	if _, err := s.kv.Put(ctx, cursorKey(src), cur); err != nil {
		return res, fmt.Errorf("reconciler: sweep %s of %s: record cursor: %w", runID, src, err)
	}
	s.logger.Info("sweep done", "org", src, "run_id", runID, "trigger", trigger, "users", len(users), "published", res.Published, "duplicates", res.Duplicates)
	return res, nil
}

// start binds the sweeper to the service's lifetime.
func (s *sweeper) start(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.workers = map[string]chan string{}
	s.mu.Unlock()
}

// wait returns when every worker has stopped.
func (s *sweeper) wait() { s.wg.Wait() }

// Trigger schedules a sweep of src without waiting. Triggers arriving while
// one is queued coalesce (a burst of reconnects sweeps once more, not N
// times); one arriving while a sweep runs queues exactly one follow-up, so
// changes made during the running sweep are covered.
func (s *sweeper) Trigger(src, trigger string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.ctx.Err() != nil {
		return
	}
	q, ok := s.workers[src]
	if !ok {
		q = make(chan string, 1)
		s.workers[src] = q
		s.wg.Add(1)
		go s.work(s.ctx, src, q)
	}
	select {
	case q <- trigger:
	default: // one is queued already
	}
}

func (s *sweeper) work(ctx context.Context, src string, q chan string) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case trigger := <-q:
			if _, err := s.Sweep(ctx, src, newRunID(trigger), trigger); err != nil && ctx.Err() == nil {
				s.logger.Error("sweep failed", "org", src, "trigger", trigger, "err", err)
			}
		}
	}
}

// newRunID returns a fresh run id: "<trigger>-<unix ms>-<random>".
func newRunID(trigger string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return trigger + "-" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(b[:])
}

// periodicRunID names the periodic run of the interval slot containing t:
// every replica checking the same slot derives the same id, so their
// change events deduplicate.
func periodicRunID(t time.Time, interval time.Duration) string {
	return TriggerPeriodic + "-" + strconv.FormatInt(t.Truncate(interval).Unix(), 10)
}

// checkEvery is how often the periodic loop looks for due orgs.
func checkEvery(interval time.Duration) time.Duration {
	return min(max(interval/10, 10*time.Millisecond), time.Minute)
}

// TriggerTracked is the trigger of the cursor recorded when a source org is
// first tracked: no sweep ran; the interval counts from then.
const TriggerTracked = "tracked"

// startInterval records src's first cursor without sweeping. Create, not
// Put: a cursor another reconciler replica recorded meanwhile wins.
func (s *sweeper) startInterval(ctx context.Context, src string, now time.Time) {
	cur, _ := json.Marshal(SweepCursor{SourceOrg: src, Trigger: TriggerTracked, LastSweepAt: now.UTC()})
	if _, err := s.kv.Create(ctx, cursorKey(src), cur); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		s.logger.Warn("periodic sweep: record first cursor", "org", src, "err", err)
	}
}

// runPeriodic sweeps every tracked org whose last sweep is at least
// SweepInterval old, until ctx is done. An org tracked for the first time
// (no cursor) is first swept one interval later.
func (s *sweeper) runPeriodic(ctx context.Context) {
	if s.cfg.SweepInterval < 0 {
		return
	}
	t := time.NewTicker(checkEvery(s.cfg.SweepInterval))
	defer t.Stop()
	for {
		for _, src := range s.tracked.Orgs() {
			if ctx.Err() != nil {
				return
			}
			cur, ok, err := ReadSweepCursor(ctx, s.kv, src)
			if err != nil {
				s.logger.Warn("periodic sweep: cursor unreadable, sweeping", "org", src, "err", err)
			}
			now := s.now()
			if !ok && err == nil {
				// Newly tracked: the extractor has just read these users,
				// so the interval starts now instead of sweeping them
				// while their clone is still being provisioned.
				s.startInterval(ctx, src, now)
				continue
			}
			if ok && now.Sub(cur.LastSweepAt) < s.cfg.SweepInterval {
				continue
			}
			if _, err := s.Sweep(ctx, src, periodicRunID(now, s.cfg.SweepInterval), TriggerPeriodic); err != nil && ctx.Err() == nil {
				s.logger.Error("periodic sweep failed", "org", src, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile request/reply subjects (core NATS, no stream).
const (
	reconcilePrefix = natsx.SubjectRoot + ".reconcile."
	// ReconcileAll asks for a sweep of every source org with tracked users.
	ReconcileAll = "all"
	// reconcileQueue makes exactly one reconciler replica answer a request.
	reconcileQueue = "orgsync-reconciler"
)

// ReconcileSubject is where `orgsync reconcile --org src` sends its
// request; ReconcileSubject(ReconcileAll) sweeps every source org.
func ReconcileSubject(src string) (string, error) {
	if src == ReconcileAll {
		return reconcilePrefix + ReconcileAll, nil
	}
	if err := natsx.ValidateOrgKey(src); err != nil {
		return "", fmt.Errorf("reconcile subject: %w", err)
	}
	return reconcilePrefix + src, nil
}

// ReconcileRequest is the JSON body of a reconcile request. An empty body
// is a request with zero values.
type ReconcileRequest struct {
	// RequestID names the run (run id "request-<id>"), so a CLI retry does
	// not publish twice. Optional; at most 64 of [A-Za-z0-9_-].
	RequestID string `json:"request_id,omitempty"`
	// Now runs the sweep before replying (the reply carries the counts);
	// false queues it and replies at once.
	Now bool `json:"now,omitempty"`
	// RequestedBy is logged (who asked).
	RequestedBy string `json:"requested_by,omitempty"`
}

// ReconcileReply answers a ReconcileRequest.
type ReconcileReply struct {
	Runs []SweepResult `json:"runs"`
	// SyncSets are the sync sets of the swept orgs, re-resolved like a
	// selection sweep (queued unless the request says now).
	SyncSets []SyncSetRun `json:"sync_sets,omitempty"`
	Error    string       `json:"error,omitempty"`
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// reconcileScope is what a valid reconcile request asks for: its source
// orgs (nil: all) and whether to run now.
type reconcileScope struct {
	orgs []string
	now  bool
}

// handleReconcile answers one request on orgsync.reconcile.<src|all>;
// followed (nil: none) reports whether sync sets follow an org, which makes
// it a source worth sweeping before anything was cloned from it.
func (s *sweeper) handleReconcile(ctx context.Context, subject string, data []byte, known func(string) error, followed func(string) bool) (ReconcileReply, reconcileScope) {
	target, ok := cutPrefix(subject, reconcilePrefix)
	if !ok {
		return ReconcileReply{Error: "unexpected subject " + subject}, reconcileScope{}
	}
	var req ReconcileRequest
	if len(data) > 0 {
		if err := json.Unmarshal(data, &req); err != nil {
			return ReconcileReply{Error: "invalid reconcile request (want JSON {request_id, now, requested_by}): " + err.Error()}, reconcileScope{}
		}
	}
	reply := s.reconcile(ctx, target, req, known, followed)
	scope := reconcileScope{now: req.Now}
	if target != ReconcileAll {
		scope.orgs = []string{target}
	}
	return reply, scope
}

func (s *sweeper) reconcile(ctx context.Context, target string, req ReconcileRequest, known func(string) error, followed func(string) bool) ReconcileReply {
	runID := ""
	if req.RequestID != "" {
		if !requestIDPattern.MatchString(req.RequestID) {
			return ReconcileReply{Error: "invalid request_id: at most 64 of [A-Za-z0-9_-]"}
		}
		runID = TriggerRequest + "-" + req.RequestID
	}
	var srcs []string
	if target == ReconcileAll {
		srcs = s.tracked.Orgs()
	} else {
		if err := natsx.ValidateOrgKey(target); err != nil {
			return ReconcileReply{Error: err.Error()}
		}
		if known != nil {
			if err := known(target); err != nil {
				return ReconcileReply{Error: err.Error()}
			}
		}
		// A target org, or a source nothing was cloned from, has nothing
		// to sweep: saying "done, 0 users" would hide the mistake.
		if sources := s.tracked.Orgs(); !slices.Contains(sources, target) && (followed == nil || !followed(target)) {
			return ReconcileReply{Error: fmt.Sprintf("org %s is not the source of any cloned user, nothing to sweep (sources with tracked users: %s)", target, orNone(sources))}
		}
		srcs = []string{target}
	}
	s.logger.Info("reconcile requested", "orgs", srcs, "now", req.Now, "requested_by", truncate(req.RequestedBy, 64), "request_id", req.RequestID)
	reply := ReconcileReply{Runs: []SweepResult{}}
	for _, src := range srcs {
		if !req.Now {
			s.Trigger(src, TriggerRequest)
			reply.Runs = append(reply.Runs, SweepResult{SourceOrg: src, Trigger: TriggerRequest, Users: len(s.tracked.Users(src)), StartedAt: s.now().UTC(), Queued: true})
			continue
		}
		id := runID
		if id == "" {
			id = newRunID(TriggerRequest)
		}
		res, err := s.Sweep(ctx, src, id, TriggerRequest)
		reply.Runs = append(reply.Runs, res)
		if err != nil {
			reply.Error = err.Error()
			break
		}
	}
	return reply
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) <= len(p) || s[:len(p)] != p {
		return "", false
	}
	return s[len(p):], true
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
