package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Service is the auth service. Create with New, then Start; Stop ends it.
type Service struct {
	cfg Config
	log *slog.Logger
	js  jetstream.JetStream

	kv     jetstream.KeyValue
	micro  micro.Service
	flight singleflight.Group
	sem    chan struct{}

	fetches atomic.Int64 // POST /oauth/token calls made
}

// New validates cfg and builds the service (no I/O).
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js := cfg.JS
	if js == nil {
		var err error
		if js, err = jetstream.New(cfg.NC); err != nil {
			return nil, fmt.Errorf("auth: jetstream: %w", err)
		}
	}
	return &Service{
		cfg: cfg,
		log: cfg.Logger, // the runtime (pkg/service, orgsync dev) adds service=auth
		js:  js,
		sem: make(chan struct{}, cfg.MaxConcurrent),
	}, nil
}

// Start ensures the token bucket and registers the micro service with its
// endpoint "token" on orgsync.auth.token.* (queue group orgsync-auth, so
// several instances share the load).
func (s *Service) Start(ctx context.Context) error {
	kv, err := natsx.EnsureTokenBucket(ctx, s.js, s.cfg.Topology)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	s.kv = kv
	svc, err := micro.AddService(s.cfg.NC, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "Genesys Cloud access tokens per org (client credentials), cached in KV " + natsx.TokenBucket,
	})
	if err != nil {
		return fmt.Errorf("auth: register micro service %s: %w", ServiceName, err)
	}
	if err := svc.AddEndpoint("token", micro.HandlerFunc(s.handle),
		micro.WithEndpointSubject(natsx.TokenSubjectWildcard),
		micro.WithEndpointQueueGroup(QueueGroup)); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("auth: add endpoint on %s: %w", natsx.TokenSubjectWildcard, err)
	}
	if err := svc.AddEndpoint("orgs-check", micro.HandlerFunc(s.handleCheck),
		micro.WithEndpointSubject(natsx.OrgsCheckSubject),
		micro.WithEndpointQueueGroup(QueueGroup)); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("auth: add endpoint on %s: %w", natsx.OrgsCheckSubject, err)
	}
	s.micro = svc
	s.log.Info("auth service started", "subject", natsx.TokenSubjectWildcard, "orgs", s.cfg.Orgs.Keys())
	return nil
}

// Run starts the service and serves until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Stop()
}

// Stop unregisters the micro service (draining its subscriptions).
func (s *Service) Stop() error {
	if s.micro == nil {
		return nil
	}
	if err := s.micro.Stop(); err != nil {
		return fmt.Errorf("auth: stop: %w", err)
	}
	return nil
}

// Fetches is the number of token requests sent to login hosts.
func (s *Service) Fetches() int64 { return s.fetches.Load() }

// handle serves one request on its own goroutine (bounded by
// MaxConcurrent), so a slow login host for one org does not hold up the
// others and concurrent requests for one org meet in the singleflight.
func (s *Service) handle(req micro.Request) {
	s.sem <- struct{}{} // full: back-pressure on the subscription
	go func() {
		defer func() { <-s.sem }()
		reply := s.serve(req.Subject(), req.Data())
		data, err := proto.Marshal(reply)
		if err == nil {
			err = req.Respond(data)
		}
		if err != nil {
			s.log.Warn("auth: reply failed", "subject", req.Subject(), "err", err)
		}
	}()
}

// serve decodes a request received on subject and answers it.
func (s *Service) serve(subject string, data []byte) *orgsyncv1.TokenReply {
	org, err := natsx.OrgFromSubject(subject)
	if err != nil {
		return errorReply(fmt.Sprintf("invalid token subject %q: %v", subject, err))
	}
	var req orgsyncv1.TokenRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return errorReply(fmt.Sprintf("malformed TokenRequest on %s: %v", subject, err))
	}
	if req.GetOrg() != "" && req.GetOrg() != org {
		return errorReply(fmt.Sprintf("TokenRequest names org %q but was sent on %s (org %q)", req.GetOrg(), subject, org))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FetchTimeout+5*time.Second)
	defer cancel()
	return s.Token(ctx, org, req.GetForceRefresh())
}

// errorReply is a refusal that asking again cannot fix (bad request, unknown
// org, missing or rejected credentials).
func errorReply(reason string) *orgsyncv1.TokenReply {
	return &orgsyncv1.TokenReply{Error: reason, Permanent: true}
}

// transientReply is a failure worth retrying (login host unreachable,
// throttled, 5xx).
func transientReply(reason string) *orgsyncv1.TokenReply { return &orgsyncv1.TokenReply{Error: reason} }
