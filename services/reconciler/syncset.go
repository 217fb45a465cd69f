package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Sync sets: named declarations of which source users follow which target
// orgs (proto SyncSet). The reconciler owns their membership because it
// already holds the Notifications API channels of the source orgs: a set's
// teams are watched on their TEAM audit topics (a member added or removed),
// its members on their USER audit topics (tracked by the extractor once
// cloned: a move to another team, division or queue, a deactivation), and
// every set is re-resolved every SyncSetSweepInterval whatever the events
// said. Joiners become one CloneRequest (deterministic request id, so a
// retried converge is deduplicated by stream CLONE); leavers get the set's
// onRemove, a deactivate plan straight to the provisioner for deactivate.
const (
	// SyncSetBucket holds the sets: key = name, value = protobuf SyncSet;
	// the revision versions a set.
	SyncSetBucket = natsx.SyncSetBucket
	// SyncSetStatusBucket holds each set's membership and last converge:
	// key = name, value = JSON SyncSetStatus.
	SyncSetStatusBucket = natsx.SyncSetStatusBucket
	// SyncSetApplySubject takes ApplySyncSetRequest (request/reply).
	SyncSetApplySubject = natsx.SyncSetApplySubject
	// SyncSetDeleteSubject takes DeleteSyncSetRequest (request/reply).
	SyncSetDeleteSubject = natsx.SyncSetDeleteSubject
	syncSetQueue         = "orgsync-syncset"
	// DefaultSyncSetSweepInterval re-resolves every set this often.
	DefaultSyncSetSweepInterval = 5 * time.Minute
	// maxLeftKept bounds the leavers a status remembers.
	maxLeftKept = 200
)

// SyncSetStatus is what the reconciler knows of a set (JSON in
// SyncSetStatusBucket; `orgsync describe syncset` shows it).
type SyncSetStatus struct {
	Name     string `json:"name"`
	Revision uint64 `json:"revision"`
	Source   string `json:"source"`
	// Targets resolved at the last converge.
	Targets []string `json:"targets"`
	// Members by source user id.
	Members map[string]*SyncMemberStatus `json:"members"`
	// Left: users who left the selection, newest last.
	Left []SyncLeft `json:"left,omitempty"`
	// Teams watched on their audit topics (ids).
	Teams []string `json:"teams,omitempty"`
	// Generation counts converges that changed membership (part of the
	// request ids).
	Generation int64 `json:"generation"`
	// LastConverge is the last resolution; LastChange the last one that
	// changed membership; Trigger what caused the last converge (apply,
	// notification, sweep).
	LastConverge time.Time `json:"lastConverge"`
	LastChange   time.Time `json:"lastChange,omitzero"`
	Trigger      string    `json:"trigger"`
	// Requests: clone requests of joiners and deactivate requests, newest
	// last (the CLI shows their per-target outcome).
	Requests  []SyncRequest `json:"requests,omitempty"`
	LastError string        `json:"lastError,omitempty"`
	// OptionsHash identifies the options the members were cloned with; a
	// change re-clones every member.
	OptionsHash string `json:"optionsHash,omitempty"`
}

// SyncMemberStatus is one member.
type SyncMemberStatus struct {
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Targets  []string  `json:"targets"`
	JoinedAt time.Time `json:"joinedAt"`
	// RequestID of the clone that brought the user into the set.
	RequestID string `json:"requestId"`
}

// SyncLeft is a user who left the selection.
type SyncLeft struct {
	UserID    string    `json:"userId"`
	Email     string    `json:"email"`
	Targets   []string  `json:"targets"`
	LeftAt    time.Time `json:"leftAt"`
	Action    string    `json:"action"` // kept, reported, deactivated
	RequestID string    `json:"requestId,omitempty"`
}

// SyncRequest is a request a converge published.
type SyncRequest struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"` // clone, deactivate
	Users   int       `json:"users"`
	Targets []string  `json:"targets"`
	At      time.Time `json:"at"`
}

// SyncSetConfig configures the sync set component.
type SyncSetConfig struct {
	// Disabled turns sync sets off.
	Disabled bool
	// SweepInterval re-resolves every set; default 5 min, negative: never.
	SweepInterval time.Duration
	// Debounce gathers notifications of one set before re-resolving it.
	Debounce time.Duration
}

type syncSets struct {
	cfg     SyncSetConfig
	js      jetstream.JetStream
	nc      *nats.Conn
	clients orgs.Clients
	reg     *orgconfig.Config
	logger  *slog.Logger
	notify  func(src string) // the notifier's topic hook (nil without it)

	sets, status jetstream.KeyValue

	convergeMu sync.Mutex // one converge or apply at a time

	mu      sync.Mutex
	known   map[string]*orgsyncv1.SyncSet // by name, from the bucket
	teams   map[string][]string           // set name → watched team ids
	members map[string]map[string]bool    // set name → member ids
	pending map[string]string             // set name → trigger, queued converges
	wake    chan struct{}
}

func newSyncSets(cfg SyncSetConfig, deps Deps, reg *orgconfig.Config, logger *slog.Logger) *syncSets {
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSyncSetSweepInterval
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	return &syncSets{cfg: cfg, js: deps.JS, nc: deps.NC, clients: deps.Clients, reg: reg, logger: logger.With("part", "syncsets"),
		known: map[string]*orgsyncv1.SyncSet{}, teams: map[string][]string{}, members: map[string]map[string]bool{},
		pending: map[string]string{}, wake: make(chan struct{}, 1)}
}

// OpenSyncSetBuckets opens (creating) the two buckets of sync sets.
func OpenSyncSetBuckets(ctx context.Context, js jetstream.JetStream, replicas int) (sets, status jetstream.KeyValue, err error) {
	sets, err = openOrCreateBucket(ctx, js, jetstream.KeyValueConfig{Bucket: SyncSetBucket,
		Description: "orgsync sync sets (protobuf SyncSet by name; revision = version)", History: 5, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, nil, err
	}
	status, err = openOrCreateBucket(ctx, js, jetstream.KeyValueConfig{Bucket: SyncSetStatusBucket,
		Description: "orgsync sync set membership and last converge (JSON by name)", History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
	return sets, status, err
}

// run serves apply/delete requests, follows the bucket, converges queued
// sets and sweeps until ctx is done. ready is closed once serving.
func (s *syncSets) run(ctx context.Context, replicas int, ready chan<- struct{}) error {
	var err error
	if s.sets, s.status, err = OpenSyncSetBuckets(ctx, s.js, replicas); err != nil {
		return err
	}
	w, err := s.sets.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("reconciler: watch KV bucket %s: %w", SyncSetBucket, err)
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() { // initial contents
		if e == nil {
			break
		}
		s.learn(e)
	}
	var subs []*nats.Subscription
	for subj, h := range map[string]func(context.Context, []byte) proto.Message{SyncSetApplySubject: s.handleApply, SyncSetDeleteSubject: s.handleDelete} {
		sub, err := s.nc.QueueSubscribe(subj, syncSetQueue, func(m *nats.Msg) {
			go func() {
				reply := h(ctx, m.Data)
				if b, err := proto.Marshal(reply); err == nil && m.Reply != "" {
					_ = m.Respond(b)
				}
			}()
		})
		if err != nil {
			return fmt.Errorf("reconciler: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("reconciler: subscribe sync set subjects: %w", err)
	}
	close(ready)
	// Catch up: events raised while nobody listened.
	for _, name := range s.names() {
		s.queue(name, "start")
	}
	var tick <-chan time.Time
	if s.cfg.SweepInterval > 0 {
		t := time.NewTicker(s.cfg.SweepInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reconciler: watch of KV bucket %s closed", SyncSetBucket)
			}
			if e != nil {
				s.learn(e)
			}
		case <-tick:
			for _, name := range s.names() {
				s.queue(name, "sweep")
			}
		case <-s.wake:
			// Gather a burst of events (a team of 20 changed at once).
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(s.cfg.Debounce):
			}
			s.mu.Lock()
			pending := s.pending
			s.pending = map[string]string{}
			s.mu.Unlock()
			for name, trigger := range pending {
				if _, err := s.converge(ctx, name, trigger); err != nil && ctx.Err() == nil {
					s.logger.Error("sync set converge failed", "set", name, "trigger", trigger, "err", err)
				}
			}
		}
	}
}

// learn applies one bucket entry to the in-memory sets.
func (s *syncSets) learn(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.known, name)
		delete(s.teams, name)
		delete(s.members, name)
		go s.topicsChanged()
		return
	}
	var set orgsyncv1.SyncSet
	if err := proto.Unmarshal(e.Value(), &set); err != nil {
		s.logger.Error("sync set unreadable; ignored", "set", name, "err", err)
		return
	}
	set.Revision = e.Revision()
	s.known[name] = &set
}

func (s *syncSets) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.known))
	for n := range s.known {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *syncSets) queue(name, trigger string) {
	s.mu.Lock()
	if _, ok := s.pending[name]; !ok {
		s.pending[name] = trigger
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// topicsChanged tells the notifier the watched topics of every source org
// may have changed.
func (s *syncSets) topicsChanged() {
	if s.notify == nil {
		return
	}
	s.mu.Lock()
	srcs := map[string]bool{}
	for _, set := range s.known {
		srcs[set.GetSourceOrg()] = true
	}
	s.mu.Unlock()
	for src := range srcs {
		s.notify(src)
	}
}

// Topics are the TEAM audit topics the sets of src watch (joins).
func (s *syncSets) Topics(src string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, set := range s.known {
		if set.GetSourceOrg() != src {
			continue
		}
		for _, t := range s.teams[name] {
			out = append(out, genesys.AuditTopic("TEAM", t))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// onAudit is the notifier's hook for every audit notification of src:
// a watched team's, or a member's, re-resolves the sets concerned.
func (s *syncSets) onAudit(src, entityType, entityID string) {
	s.mu.Lock()
	var hit []string
	for name, set := range s.known {
		if set.GetSourceOrg() != src {
			continue
		}
		switch entityType {
		case "TEAM":
			for _, t := range s.teams[name] {
				if t == entityID {
					hit = append(hit, name)
				}
			}
		case "USER":
			if s.members[name][entityID] {
				hit = append(hit, name)
			}
		}
	}
	s.mu.Unlock()
	for _, name := range hit {
		s.queue(name, "notification")
	}
}

// plan is what a converge would do.
type syncPlan struct {
	set      *orgsyncv1.SyncSet
	targets  []string
	sel      selected
	joining  []*orgsyncv1.SyncMember
	leaving  []*orgsyncv1.SyncMember
	status   *SyncSetStatus
	statusRv uint64
}

// makePlan validates set, resolves it and compares it with its status.
func (s *syncSets) makePlan(ctx context.Context, set *orgsyncv1.SyncSet) (*syncPlan, *orgsyncv1.ApplySyncSetReply) {
	targets, ferrs := validateSyncSet(set, s.reg)
	if len(ferrs) > 0 {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: "invalid sync set", FieldErrors: ferrs}
	}
	c, err := s.clients.Client(set.GetSourceOrg())
	if err != nil {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("source org %s: %v", set.GetSourceOrg(), err)}
	}
	sel, ferrs, err := resolveSelection(ctx, c, set.GetSelect())
	if err != nil {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("resolve the selection in %s: %v", set.GetSourceOrg(), err)}
	}
	if len(ferrs) > 0 {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: "invalid sync set", FieldErrors: ferrs}
	}
	max := int(set.GetMaxUsers())
	if max == 0 {
		max = DefaultSyncSetMaxUsers
	}
	if len(sel.users) > max {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("the selection matches %d users, more than the maximum of %d: refused (raise maxUsers if this is intended)", len(sel.users), max),
			FieldErrors: []*orgsyncv1.FieldError{{Path: "select", Message: fmt.Sprintf("matches %d users, more than maxUsers %d", len(sel.users), max)}}, Selected: int32(len(sel.users))}
	}
	st, rev, err := s.loadStatus(ctx, set.GetName())
	if err != nil {
		return nil, &orgsyncv1.ApplySyncSetReply{Error: err.Error()}
	}
	p := &syncPlan{set: set, targets: targets, sel: sel, status: st, statusRv: rev}
	// Options changed since the members were cloned: every member joins
	// again (the clone converges them to the new options).
	reclone := st.OptionsHash != "" && st.OptionsHash != optionsHash(set)
	for _, id := range slices.Sorted(maps.Keys(sel.users)) {
		u := sel.users[id]
		var missing []string
		m := st.Members[id]
		for _, t := range targets {
			if m == nil || reclone || !slices.Contains(m.Targets, t) {
				missing = append(missing, t)
			}
		}
		if len(missing) > 0 {
			p.joining = append(p.joining, &orgsyncv1.SyncMember{UserId: id, Email: u.Email, Name: u.Name, Targets: missing})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(st.Members)) {
		if _, ok := sel.users[id]; !ok {
			m := st.Members[id]
			p.leaving = append(p.leaving, &orgsyncv1.SyncMember{UserId: id, Email: m.Email, Name: m.Name, Targets: m.Targets})
		}
	}
	return p, &orgsyncv1.ApplySyncSetReply{TargetOrgs: targets, Selected: int32(len(sel.users)), Joining: p.joining, Leaving: p.leaving}
}

// optionsHash identifies the options members were cloned with.
func optionsHash(set *orgsyncv1.SyncSet) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(set.GetOptions())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (s *syncSets) loadStatus(ctx context.Context, name string) (*SyncSetStatus, uint64, error) {
	st := &SyncSetStatus{Name: name, Members: map[string]*SyncMemberStatus{}}
	e, err := s.status.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read status of sync set %s: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), st); err != nil {
		return nil, 0, fmt.Errorf("decode status of sync set %s: %w", name, err)
	}
	if st.Members == nil {
		st.Members = map[string]*SyncMemberStatus{}
	}
	return st, e.Revision(), nil
}

// handleApply serves ApplySyncSetRequest.
func (s *syncSets) handleApply(ctx context.Context, data []byte) proto.Message {
	var req orgsyncv1.ApplySyncSetRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("undecodable ApplySyncSetRequest: %v", err)}
	}
	set := req.GetSyncSet()
	if set == nil {
		return &orgsyncv1.ApplySyncSetReply{Error: "ApplySyncSetRequest has no sync_set"}
	}
	s.convergeMu.Lock()
	defer s.convergeMu.Unlock()
	p, reply := s.makePlan(ctx, set)
	if p == nil || req.GetDryRun() {
		return reply
	}
	set = proto.Clone(set).(*orgsyncv1.SyncSet)
	set.Revision, set.AppliedAt, set.AppliedBy = 0, timestamppb.Now(), req.GetRequestedBy()
	if set.GetOptions() != nil {
		set.Options.DryRun = false
	}
	b, err := proto.Marshal(set)
	if err != nil {
		return &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("encode sync set: %v", err)}
	}
	rev, err := s.sets.Put(ctx, set.GetName(), b)
	if err != nil {
		return &orgsyncv1.ApplySyncSetReply{Error: fmt.Sprintf("store sync set %s: %v", set.GetName(), err)}
	}
	set.Revision = rev
	s.mu.Lock()
	s.known[set.GetName()] = set
	s.mu.Unlock()
	reply.Revision = rev
	if err := s.act(ctx, p, "apply", reply); err != nil {
		reply.Error = err.Error()
	}
	return reply
}

// handleDelete serves DeleteSyncSetRequest: the set stops being followed;
// nothing changes in the targets.
func (s *syncSets) handleDelete(ctx context.Context, data []byte) proto.Message {
	var req orgsyncv1.DeleteSyncSetRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return &orgsyncv1.DeleteSyncSetReply{Error: fmt.Sprintf("undecodable DeleteSyncSetRequest: %v", err)}
	}
	s.convergeMu.Lock()
	defer s.convergeMu.Unlock()
	if _, err := s.sets.Get(ctx, req.GetName()); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
			return &orgsyncv1.DeleteSyncSetReply{Error: fmt.Sprintf("no sync set %q", req.GetName())}
		}
		return &orgsyncv1.DeleteSyncSetReply{Error: fmt.Sprintf("read sync set %s: %v", req.GetName(), err)}
	}
	if err := s.sets.Delete(ctx, req.GetName()); err != nil {
		return &orgsyncv1.DeleteSyncSetReply{Error: fmt.Sprintf("delete sync set %s: %v", req.GetName(), err)}
	}
	if err := s.status.Delete(ctx, req.GetName()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return &orgsyncv1.DeleteSyncSetReply{Error: fmt.Sprintf("delete status of sync set %s: %v", req.GetName(), err)}
	}
	s.mu.Lock()
	delete(s.known, req.GetName())
	delete(s.teams, req.GetName())
	delete(s.members, req.GetName())
	s.mu.Unlock()
	s.topicsChanged()
	return &orgsyncv1.DeleteSyncSetReply{}
}

// SyncSetRun is one sync set a reconcile request re-resolved.
type SyncSetRun struct {
	Name      string `json:"name"`
	SourceOrg string `json:"source_org"`
	Queued    bool   `json:"queued,omitempty"`
	// Joined and Left count the members the converge found joining and
	// leaving (a clone request and onRemove were published for them).
	Joined int    `json:"joined"`
	Left   int    `json:"left"`
	Error  string `json:"error,omitempty"`
}

// follows reports whether a sync set has src as its source.
func (s *syncSets) follows(src string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.known {
		if set.GetSourceOrg() == src {
			return true
		}
	}
	return false
}

// sweepRequested is a selection sweep of the sets of srcs (nil: every
// set) asked by a reconcile request: run now, or queued.
func (s *syncSets) sweepRequested(ctx context.Context, srcs []string, now bool) []SyncSetRun {
	var runs []SyncSetRun
	for _, name := range s.names() {
		s.mu.Lock()
		set := s.known[name]
		s.mu.Unlock()
		if set == nil || srcs != nil && !slices.Contains(srcs, set.GetSourceOrg()) {
			continue
		}
		run := SyncSetRun{Name: name, SourceOrg: set.GetSourceOrg(), Queued: !now}
		if !now {
			s.queue(name, TriggerRequest)
			runs = append(runs, run)
			continue
		}
		reply, err := s.converge(ctx, name, TriggerRequest)
		run.Joined, run.Left = len(reply.GetJoining()), len(reply.GetLeaving())
		if err != nil {
			run.Error = err.Error()
		}
		runs = append(runs, run)
	}
	return runs
}

// converge re-resolves the stored set name and acts on the difference.
func (s *syncSets) converge(ctx context.Context, name, trigger string) (*orgsyncv1.ApplySyncSetReply, error) {
	s.convergeMu.Lock()
	defer s.convergeMu.Unlock()
	s.mu.Lock()
	set := s.known[name]
	s.mu.Unlock()
	if set == nil {
		return nil, nil // deleted meanwhile
	}
	p, reply := s.makePlan(ctx, set)
	if p == nil {
		s.recordError(ctx, name, reply)
		return reply, errors.New(replyError(reply))
	}
	reply.Revision = set.GetRevision()
	return reply, s.act(ctx, p, trigger, reply)
}

func replyError(r *orgsyncv1.ApplySyncSetReply) string {
	msg := r.GetError()
	for _, f := range r.GetFieldErrors() {
		msg += "; " + f.GetPath() + ": " + f.GetMessage()
	}
	return msg
}

func (s *syncSets) recordError(ctx context.Context, name string, reply *orgsyncv1.ApplySyncSetReply) {
	st, rev, err := s.loadStatus(ctx, name)
	if err != nil {
		return
	}
	st.LastError, st.LastConverge = replyError(reply), time.Now().UTC()
	_ = s.saveStatus(ctx, st, rev)
}

func (s *syncSets) saveStatus(ctx context.Context, st *SyncSetStatus, rev uint64) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.status.Create(ctx, st.Name, b)
	} else {
		_, err = s.status.Update(ctx, st.Name, b, rev)
	}
	if err != nil {
		return fmt.Errorf("store status of sync set %s: %w", st.Name, err)
	}
	return nil
}

// act publishes the clone of the joiners and applies onRemove to the
// leavers, then records the new membership.
func (s *syncSets) act(ctx context.Context, p *syncPlan, trigger string, reply *orgsyncv1.ApplySyncSetReply) error {
	set, st := p.set, p.status
	now := time.Now().UTC()
	src := set.GetSourceOrg()
	if len(p.joining) > 0 {
		reqID := requestID(set.GetName(), "clone", st.Generation, p.joining)
		req := &orgsyncv1.CloneRequest{RequestId: reqID, SourceOrg: src, Options: proto.Clone(orEmpty(set.GetOptions())).(*orgsyncv1.CloneOptions),
			RequestedAt: timestamppb.New(now), RequestedBy: "syncset/" + set.GetName()}
		req.Options.DryRun = false
		tset := map[string]bool{}
		for _, j := range p.joining {
			req.Users = append(req.Users, &orgsyncv1.UserSelector{Selector: &orgsyncv1.UserSelector_UserId{UserId: j.GetUserId()}})
			for _, t := range j.GetTargets() {
				tset[t] = true
			}
		}
		req.TargetOrgs = slices.Sorted(maps.Keys(tset))
		subj, err := natsx.CloneSubject(src)
		if err != nil {
			return err
		}
		if _, err := natsx.PublishAck(ctx, s.js, subj, reqID, req); err != nil {
			return fmt.Errorf("publish the clone of %d joiners of sync set %s: %w", len(p.joining), set.GetName(), err)
		}
		reply.RequestId = reqID
		st.Requests = append(st.Requests, SyncRequest{ID: reqID, Kind: "clone", Users: len(p.joining), Targets: req.TargetOrgs, At: now})
		for _, j := range p.joining {
			m := st.Members[j.GetUserId()]
			if m == nil {
				m = &SyncMemberStatus{JoinedAt: now}
				st.Members[j.GetUserId()] = m
			}
			m.Email, m.Name, m.RequestID = j.GetEmail(), j.GetName(), reqID
			m.Targets = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(m.Targets), j.GetTargets()...))))
		}
	}
	if len(p.leaving) > 0 {
		action := "kept"
		switch set.GetOnRemove() {
		case orgsyncv1.OnRemove_ON_REMOVE_REPORT:
			action = "reported"
		case orgsyncv1.OnRemove_ON_REMOVE_DEACTIVATE:
			action = "deactivated"
			reqID := requestID(set.GetName(), "deactivate", st.Generation, p.leaving)
			targets, err := s.publishDeactivate(ctx, reqID, set, p.leaving)
			if err != nil {
				return err
			}
			reply.DeactivateRequestId = reqID
			st.Requests = append(st.Requests, SyncRequest{ID: reqID, Kind: "deactivate", Users: len(p.leaving), Targets: targets, At: now})
		}
		for _, l := range p.leaving {
			st.Left = append(st.Left, SyncLeft{UserID: l.GetUserId(), Email: l.GetEmail(), Targets: l.GetTargets(), LeftAt: now, Action: action, RequestID: reply.GetDeactivateRequestId()})
			delete(st.Members, l.GetUserId())
			s.logger.Info("user left sync set", "set", set.GetName(), "user", l.GetUserId(), "action", action)
		}
		if len(st.Left) > maxLeftKept {
			st.Left = st.Left[len(st.Left)-maxLeftKept:]
		}
	}
	if len(st.Requests) > 20 {
		st.Requests = st.Requests[len(st.Requests)-20:]
	}
	changed := len(p.joining) > 0 || len(p.leaving) > 0
	if changed {
		st.Generation++
		st.LastChange = now
	}
	st.Revision, st.Source, st.Targets, st.Teams = set.GetRevision(), src, p.targets, p.sel.teams
	st.OptionsHash = optionsHash(set)
	st.LastConverge, st.Trigger, st.LastError = now, trigger, ""
	if err := s.saveStatus(ctx, st, p.statusRv); err != nil {
		return err
	}
	members := map[string]bool{}
	for id := range st.Members {
		members[id] = true
	}
	s.mu.Lock()
	teamsChanged := !slices.Equal(s.teams[set.GetName()], p.sel.teams)
	s.teams[set.GetName()], s.members[set.GetName()] = p.sel.teams, members
	s.mu.Unlock()
	if teamsChanged {
		s.topicsChanged()
	}
	if changed {
		s.logger.Info("sync set converged", "set", set.GetName(), "trigger", trigger, "joined", len(p.joining), "left", len(p.leaving), "members", len(st.Members))
	}
	return nil
}

func orEmpty(o *orgsyncv1.CloneOptions) *orgsyncv1.CloneOptions {
	if o == nil {
		return &orgsyncv1.CloneOptions{}
	}
	return o
}

// requestID is deterministic in (set, kind, generation, users, targets): a
// converge retried after a crash publishes the same id, which stream CLONE
// (or PLANS) deduplicates.
func requestID(name, kind string, generation int64, users []*orgsyncv1.SyncMember) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d", name, kind, generation)
	for _, u := range users {
		fmt.Fprintf(h, "|%s:%s", u.GetUserId(), strings.Join(u.GetTargets(), ","))
	}
	id := "ss-" + name + "-"
	if kind == "deactivate" {
		id += "off-"
	}
	return id + hex.EncodeToString(h.Sum(nil)[:8])
}

// publishDeactivate sends one deactivate plan per target to the provisioner.
func (s *syncSets) publishDeactivate(ctx context.Context, reqID string, set *orgsyncv1.SyncSet, leaving []*orgsyncv1.SyncMember) ([]string, error) {
	byTarget := map[string][]*orgsyncv1.UserPlan{}
	for _, l := range leaving {
		for _, t := range l.GetTargets() {
			byTarget[t] = append(byTarget[t], &orgsyncv1.UserPlan{
				Desired: &orgsyncv1.UserConfig{ExternalId: extid.User(set.GetSourceOrg(), l.GetEmail()), SourceUserId: l.GetUserId(), Email: l.GetEmail(), Name: orDefault(l.GetName(), l.GetEmail())},
				Steps:   []*orgsyncv1.Step{{Id: "deactivate", Kind: orgsyncv1.StepKind_STEP_KIND_DEACTIVATE}},
			})
		}
	}
	targets := slices.Sorted(maps.Keys(byTarget))
	for _, t := range targets {
		planID := reqID + "-" + t
		plan := &orgsyncv1.Plan{PlanId: planID, RequestId: reqID, SourceOrg: set.GetSourceOrg(), TargetOrg: t,
			Users: byTarget[t], RequestUserCount: int32(len(leaving)), Part: 1, Parts: 1}
		subj, err := natsx.PlanSubject(t)
		if err != nil {
			return nil, err
		}
		if _, err := natsx.PublishAck(ctx, s.js, subj, planID, plan); err != nil {
			return nil, fmt.Errorf("publish deactivate plan for %s: %w", t, err)
		}
	}
	return targets, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
