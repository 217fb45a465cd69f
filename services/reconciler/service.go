// Package reconciler is orgsync's change-source service: it turns everything
// that says "a tracked source user changed" into ChangeEvents on
// orgsync.change.<src> (stream CHANGES), which the extractor re-extracts and
// the downstream delta plan converges.
//
// Three sources, each one enough on its own eventually, together fast and
// loss-proof:
//   - the Genesys Notifications API: channels subscribed to
//     v2.audits.entitytype.USER.entityid.<id> of every tracked user, read
//     over WebSockets (notifications.go, wsclient.go);
//   - a signed HTTP webhook for audit events relayed by EventBridge or any
//     relay (webhook.go, audit.go);
//   - sweeps: periodic, after every WebSocket (re)connect, and on request
//     over NATS (`orgsync reconcile`) — one event per tracked user (sweep.go).
//
// The tracked users are the keys of the extractor's KV bucket
// orgsync-tracking (tracking.go).
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/orgs"
)

// Deps are the reconciler's collaborators (pipeline service shape).
type Deps struct {
	JS      jetstream.JetStream
	NC      *nats.Conn
	Clients orgs.Clients // Genesys clients of the source orgs (Notifications API)
	Events  *events.Emitter
	Logger  *slog.Logger
	// Orgs is the org registry: target keys and labels of sync sets
	// (nil: sync sets accept any org key and no label selector matches).
	Orgs *orgconfig.Config
}

// Service is the reconciler.
type Service struct {
	cfg     Config
	deps    Deps
	logger  *slog.Logger
	tracked *TrackedSet
	sweeps  *sweeper
	hook    *webhook
	notif   *notifier
	syncs   *syncSets

	ready       atomic.Bool
	webhookAddr atomic.Value // string, once listening
}

// New validates cfg and builds the service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if deps.JS == nil || deps.NC == nil {
		return nil, errors.New("reconciler: Deps.JS and Deps.NC are required")
	}
	if deps.Clients == nil && !cfg.NotificationsDisabled {
		return nil, errors.New("reconciler: Deps.Clients is required for the Notifications API subscriber (or set NotificationsDisabled)")
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "reconciler")
	s := &Service{cfg: cfg, deps: deps, logger: logger, tracked: newTrackedSet()}
	s.sweeps = &sweeper{cfg: cfg, js: deps.JS, tracked: s.tracked, logger: logger, now: time.Now}
	s.hook = &webhook{cfg: cfg, secret: []byte(cfg.WebhookSecret), js: deps.JS, tracked: s.tracked, logger: logger, now: time.Now}
	if !cfg.NotificationsDisabled {
		s.notif = newNotifier(cfg, deps.Clients, deps.JS, s.tracked, s.sweeps, logger)
	}
	if !cfg.SyncSets.Disabled && deps.Clients != nil {
		s.syncs = newSyncSets(cfg.SyncSets, deps, deps.Orgs, logger)
		if s.notif != nil {
			s.notif.extra, s.notif.onAudit = s.syncs.Topics, s.syncs.onAudit
			s.syncs.notify = s.notif.orgChanged
		}
	}
	return s, nil
}

// Ready reports whether the service is serving: tracked users loaded,
// reconcile requests subscribed, webhook listening.
func (s *Service) Ready() bool { return s.ready.Load() }

// Tracked is the live set of tracked users the service watches.
func (s *Service) Tracked() *TrackedSet { return s.tracked }

// WebhookHandler serves the webhook endpoint (POST Config.WebhookPath), for
// mounting in another server.
func (s *Service) WebhookHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+s.cfg.WebhookPath, s.hook)
	return mux
}

// WebhookAddr is the address the webhook listener is bound to (useful with
// ":0"); empty before Run listens or when no listener is configured.
func (s *Service) WebhookAddr() string {
	a, _ := s.webhookAddr.Load().(string)
	return a
}

// Run starts every change source and blocks until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := natsx.EnsureStreams(ctx, s.deps.JS, natsx.Topology{Replicas: s.cfg.Replicas}); err != nil {
		return err
	}
	trackKV, err := OpenTrackingBucket(ctx, s.deps.JS, s.cfg.Replicas)
	if err != nil {
		return err
	}
	cursorKV, err := OpenCursorBucket(ctx, s.deps.JS, s.cfg.Replicas)
	if err != nil {
		return err
	}
	s.sweeps.kv = cursorKV
	s.sweeps.start(ctx)

	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		s.sweeps.wait()
		s.ready.Store(false)
	}()
	errc := make(chan error, 4)

	// The notifier must hear about the initial load, so register first.
	if s.notif != nil {
		s.tracked.OnChange(s.notif.orgChanged)
	}
	loaded := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := watchTracking(ctx, trackKV, s.tracked, s.logger, loaded); err != nil && ctx.Err() == nil {
			errc <- err
		}
	}()
	select {
	case <-loaded:
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}

	sub, err := s.deps.NC.QueueSubscribe(reconcilePrefix+"*", reconcileQueue, func(m *nats.Msg) {
		wg.Add(1)
		go func() { // a sweep may take a while; never block the subscription
			defer wg.Done()
			var followed func(string) bool
			if s.syncs != nil {
				followed = s.syncs.follows
			}
			reply, scope := s.sweeps.handleReconcile(ctx, m.Subject, m.Data, s.knownOrg, followed)
			if s.syncs != nil && reply.Error == "" {
				reply.SyncSets = s.syncs.sweepRequested(ctx, scope.orgs, scope.now)
			}
			if m.Reply != "" {
				_ = m.Respond(mustJSON(reply))
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("reconciler: subscribe %s*: %w", reconcilePrefix, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.deps.NC.Flush(); err != nil {
		return fmt.Errorf("reconciler: subscribe %s*: %w", reconcilePrefix, err)
	}

	if s.cfg.WebhookAddr != "" {
		stop, err := s.serveWebhook()
		if err != nil {
			return err
		}
		defer stop()
	}

	if s.syncs != nil {
		syncReady := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.syncs.run(ctx, s.cfg.Replicas, syncReady); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
		select {
		case <-syncReady:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}

	wg.Add(1)
	go func() { defer wg.Done(); s.sweeps.runPeriodic(ctx) }()
	if s.notif != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.notif.run(ctx) }()
	}
	s.ready.Store(true)
	s.logger.Info("reconciler running", "webhook", s.WebhookAddr(), "notifications", s.notif != nil, "sweep_interval", s.cfg.SweepInterval, "tracked_orgs", s.tracked.Orgs())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// knownOrg rejects reconcile requests for orgs that are not configured.
func (s *Service) knownOrg(src string) error {
	if s.deps.Clients == nil {
		return nil
	}
	if _, err := s.deps.Clients.Client(src); errors.Is(err, orgs.ErrUnknownOrg) {
		return err
	}
	return nil
}

func (s *Service) serveWebhook() (stop func(), err error) {
	ln, err := net.Listen("tcp", s.cfg.WebhookAddr)
	if err != nil {
		return nil, fmt.Errorf("reconciler: webhook listener %s: %w", s.cfg.WebhookAddr, err)
	}
	s.webhookAddr.Store(ln.Addr().String())
	srv := &http.Server{
		Handler:           s.WebhookHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("webhook listener", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
