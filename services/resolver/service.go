package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
)

const tracerName = "orgsync/resolver"

// Service is the resolver: it consumes snapshots (orgsync.snapshot.>), and
// for every target builds the plan, runs the pre-flight against the target
// and publishes the plan on orgsync.plan.<target>, or fails that target;
// each target on its own (handleSnapshot).
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	ready   atomic.Bool
	lookups *lookupCache
	// progress: settled targets of snapshots being retried.
	progress *snapshotProgress
}

// New checks cfg and deps and returns an unstarted service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil || deps.Clients == nil {
		return nil, errors.New("resolver: Deps.JS and Deps.Clients are required")
	}
	if deps.Events == nil {
		deps.Events = events.New(deps.JS)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	cfg = cfg.WithDefaults()
	return &Service{cfg: cfg, deps: deps, log: deps.Logger, lookups: newLookupCache(cfg.LookupTTL),
		progress: newSnapshotProgress()}, nil
}

// Ready reports whether the snapshot consumer is bound.
func (s *Service) Ready() bool { return s.ready.Load() }

func (s *Service) spec() natsx.ConsumerSpec {
	spec := s.cfg.Spec(natsx.StreamSnapshots, Durable)
	spec.FilterSubjects = []string{natsx.SubjectRoot + ".snapshot.>"}
	spec.Logger, spec.OnTerminate = s.log, s.onTerminated
	return spec
}

// Run ensures the streams, binds the consumer and handles snapshots until
// ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if err := natsx.EnsureStreams(ctx, s.deps.JS, s.cfg.Topology); err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	spec := s.spec()
	// Bind up front so Ready means "bound" (Consume's create is then a no-op).
	if _, err := s.deps.JS.CreateOrUpdateConsumer(ctx, spec.Stream, spec.ConsumerConfig()); err != nil {
		return fmt.Errorf("resolver: create consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	s.ready.Store(true)
	defer s.ready.Store(false)
	return natsx.Consume(ctx, s.deps.JS, spec, s.handleSnapshot)
}
