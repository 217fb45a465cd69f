// Package extractor is orgsync's extractor service: it turns clone requests
// (orgsync.clone.<src>) and change events of tracked users
// (orgsync.change.<src>) into Snapshots of the source users' configuration
// graph with deterministic external ids (orgsync.snapshot.<src>).
package extractor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
)

// Durable consumer names.
const (
	CloneDurable   = "extractor"
	ChangesDurable = "extractor-changes"
)

// ConsumerDefaults are the extractor's defaults of the shared consumer settings.
var ConsumerDefaults = service.ConsumerDefaults{
	AckWait: 30 * time.Second, MaxInProgressEvery: 10 * time.Second, MaxDeliver: 5, Concurrency: 4,
	Work: "request", ConcurrencyHelp: "requests extracted at once per consumer",
}

const (
	// DefaultSnapshotUsers is the largest first snapshot part of a clone
	// request: a request of more users is published in parts, so the
	// targets start provisioning while the rest are still being read.
	DefaultSnapshotUsers = 20
	// DefaultSnapshotUsersMax is the largest later part: parts grow
	// fourfold from DefaultSnapshotUsers up to it (PartSizes).
	DefaultSnapshotUsersMax = 100
)

// Config tunes the extractor. The zero value is valid (see WithDefaults).
type Config struct {
	// Consumer: topology, and both consumers (clone requests, changes).
	// Extraction reports progress every InProgressEvery, so AckWait only
	// bounds how long a crashed instance holds a message.
	service.Consumer
	// SnapshotUsers is the most users one snapshot of a clone request
	// carries (default DefaultSnapshotUsers).
	SnapshotUsers int
	// SnapshotUsersMax is the most users a later part carries: parts
	// grow fourfold from SnapshotUsers up to it (default
	// DefaultSnapshotUsersMax, at least SnapshotUsers).
	SnapshotUsersMax int
	// Now is the clock (extracted_at, tracking timestamps); default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Consumer = c.Consumer.WithDefaults(ConsumerDefaults)
	if c.SnapshotUsers == 0 {
		c.SnapshotUsers = DefaultSnapshotUsers
	}
	if c.SnapshotUsersMax == 0 {
		c.SnapshotUsersMax = max(DefaultSnapshotUsersMax, c.SnapshotUsers)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every invalid field (after defaults).
func (c Config) Validate() error {
	c = c.WithDefaults()
	errs := []error{c.Consumer.Validate(ConsumerDefaults)}
	if c.SnapshotUsers < 1 {
		errs = append(errs, fmt.Errorf("SnapshotUsers must be >= 1, got %d", c.SnapshotUsers))
	}
	if c.SnapshotUsersMax < c.SnapshotUsers {
		errs = append(errs, fmt.Errorf("SnapshotUsersMax %d must be >= SnapshotUsers %d", c.SnapshotUsersMax, c.SnapshotUsers))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("extractor: invalid config: %w", err)
	}
	return nil
}

// Deps are the extractor's collaborators.
type Deps struct {
	JS      jetstream.JetStream
	NC      *nats.Conn
	Clients orgs.Clients
	Events  *events.Emitter
	Logger  *slog.Logger
}

// Service is a running extractor.
type Service struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	ready    atomic.Bool
	tracking atomic.Pointer[Tracking]
}

// New checks cfg and deps and returns an unstarted service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if deps.JS == nil || deps.Clients == nil {
		return nil, errors.New("extractor: Deps.JS and Deps.Clients are required")
	}
	if deps.Events == nil {
		deps.Events = events.New(deps.JS)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Service{cfg: cfg, deps: deps, log: deps.Logger}, nil
}

// Ready reports whether both consumers are bound.
func (s *Service) Ready() bool { return s.ready.Load() }

// Tracking is the tracking bucket once Run has opened it (nil before).
func (s *Service) Tracking() *Tracking { return s.tracking.Load() }

func (s *Service) specs() (natsx.ConsumerSpec, natsx.ConsumerSpec) {
	clone := s.cfg.Spec(natsx.StreamClone, CloneDurable)
	clone.Logger = s.log
	clone.FilterSubjects = []string{natsx.SubjectRoot + ".clone.>"}
	clone.OnTerminate = s.onCloneTerminated
	changes := s.cfg.Spec(natsx.StreamChanges, ChangesDurable)
	changes.Logger = s.log
	changes.FilterSubjects = []string{natsx.SubjectRoot + ".change.>"}
	changes.OnTerminate = s.onChangeTerminated
	return clone, changes
}

// Run ensures the streams and the tracking bucket, binds the consumers and
// handles messages until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if err := natsx.EnsureStreams(ctx, s.deps.JS, s.cfg.Topology); err != nil {
		return fmt.Errorf("extractor: %w", err)
	}
	tr, err := OpenTracking(ctx, s.deps.JS, s.cfg.Topology)
	if err != nil {
		return err
	}
	s.tracking.Store(tr)
	clone, changes := s.specs()
	// Create the consumers up front so Ready means "bound" (Consume's own
	// create-or-update is then a no-op).
	for _, spec := range []natsx.ConsumerSpec{clone, changes} {
		if _, err := s.deps.JS.CreateOrUpdateConsumer(ctx, spec.Stream, spec.ConsumerConfig()); err != nil {
			return fmt.Errorf("extractor: create consumer %s on %s: %w", spec.Durable, spec.Stream, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, run := range []func() error{
		func() error { return natsx.Consume(ctx, s.deps.JS, clone, s.handleClone) },
		func() error { return natsx.Consume(ctx, s.deps.JS, changes, s.handleChange) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = run(); errs[i] != nil {
				cancel() // one consumer down: stop the other, Run reports why
			}
		}()
	}
	s.ready.Store(true)
	wg.Wait()
	s.ready.Store(false)
	return errors.Join(errs...)
}
