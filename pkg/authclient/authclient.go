// Package authclient gives services Genesys access tokens without holding
// credentials: it reads the auth service's token cache (KV bucket
// "orgsync-tokens", key = org) and, on a miss or an expired entry, asks the
// auth service over NATS request/reply on "orgsync.auth.token.<org>".
package authclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Defaults of Source.
const (
	// DefaultRequestTimeout bounds one request to the auth service (which
	// may itself wait for the Genesys login host).
	DefaultRequestTimeout = 15 * time.Second
	// expirySkew: a cached token this close to expires_at is treated as
	// expired, so it does not die in flight.
	expirySkew = 10 * time.Second
	// minForceInterval rate-limits force_refresh requests from one Source:
	// a caller that re-asks for a token it already has (see Token) gets at
	// most one forced refresh per interval.
	minForceInterval = 30 * time.Second
)

// ErrNoAuthService is wrapped when nothing answers on the token subject.
var ErrNoAuthService = errors.New("no auth service is running")

// DecodeToken parses a token cache value (a marshaled TokenReply).
func DecodeToken(b []byte) (*orgsyncv1.TokenReply, error) {
	var r orgsyncv1.TokenReply
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Cache is the token bucket as the source reads it: a jetstream.KeyValue,
// or natsx.LazyTokenKV when the bucket may not exist yet.
type Cache interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}

// Source is an oauth2.TokenSource for one org, safe for concurrent use.
type Source struct {
	nc      *nats.Conn
	kv      Cache
	org     string
	timeout time.Duration
	now     func() time.Time

	mu         sync.Mutex
	last       string    // access token returned last (compared, never logged)
	lastForced time.Time // when we last sent force_refresh
	rejected   string    // token the caller reported invalid (Invalidate)
}

// TokenSource returns the token source of org. kv may be nil (then every
// Token call asks the auth service). The source does not cache by itself
// beyond the KV: wrap it in a cache (the genesys client does; else
// oauth2.ReuseTokenSource).
func TokenSource(nc *nats.Conn, kv Cache, org string) oauth2.TokenSource {
	return New(nc, kv, org)
}

// New is TokenSource returning the concrete type (for Invalidate).
func New(nc *nats.Conn, kv Cache, org string) *Source {
	return &Source{nc: nc, kv: kv, org: org, timeout: DefaultRequestTimeout, now: time.Now}
}

// Invalidate reports that the API rejected tok (401): the next Token call
// asks the auth service for a fresh token instead of returning it again.
func (s *Source) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	s.rejected = tok.AccessToken
	s.mu.Unlock()
}

// Token returns a valid token of the org: the cached one from the KV when
// it has not expired, else one from the auth service.
//
// A caller that asks again while the cache still holds the very token this
// source returned last has dropped it — after a 401 or to refresh early —
// so the source asks the auth service with force_refresh (at most once per
// 30s; the auth service also ignores a force for a token it fetched seconds
// ago), instead of handing back a token the caller already gave up on.
func (s *Source) Token() (*oauth2.Token, error) {
	if err := natsx.ValidateOrgKey(s.org); err != nil {
		return nil, fmt.Errorf("authclient: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()

	now := s.now()
	force := false
	if cached, ok := s.cached(ctx, now); ok {
		switch {
		case cached.GetAccessToken() == s.rejected:
			force = true
		case cached.GetAccessToken() != s.last || now.Sub(s.lastForced) < minForceInterval:
			return s.hand(cached), nil
		default:
			force = true
		}
	}
	reply, err := s.request(ctx, force)
	if err != nil {
		return nil, err
	}
	if force {
		s.lastForced = now
	}
	return s.hand(reply), nil
}

// hand records and converts the token handed to the caller.
func (s *Source) hand(r *orgsyncv1.TokenReply) *oauth2.Token {
	s.last = r.GetAccessToken()
	if s.rejected == s.last {
		s.rejected = ""
	}
	tok := &oauth2.Token{AccessToken: r.GetAccessToken(), TokenType: r.GetTokenType()}
	if r.GetExpiresAt() != nil {
		tok.Expiry = r.GetExpiresAt().AsTime()
	}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	return tok
}

// cached returns the KV entry of the org when present and unexpired. KV
// errors other than "not found" are ignored: the auth service is the
// fallback and reports its own errors.
func (s *Source) cached(ctx context.Context, now time.Time) (*orgsyncv1.TokenReply, bool) {
	if s.kv == nil {
		return nil, false
	}
	// A user without read access to the bucket fails fast, not at the timeout.
	ctx, stop := natsx.Guard(ctx, s.nc, natsx.SubjectPrefix("$JS.API.DIRECT.GET."+natsx.TokenStream, "$JS.API.STREAM.MSG.GET."+natsx.TokenStream, "$JS.API.STREAM.INFO."+natsx.TokenStream))
	defer stop()
	e, err := s.kv.Get(ctx, s.org)
	if err != nil {
		return nil, false
	}
	r, err := DecodeToken(e.Value())
	if err != nil || r.GetAccessToken() == "" || r.GetExpiresAt() == nil {
		return nil, false
	}
	if !now.Add(expirySkew).Before(r.GetExpiresAt().AsTime()) {
		return nil, false
	}
	return r, true
}

// request asks the auth service.
func (s *Source) request(ctx context.Context, force bool) (*orgsyncv1.TokenReply, error) {
	subject, err := natsx.TokenSubject(s.org)
	if err != nil {
		return nil, fmt.Errorf("authclient: %w", err)
	}
	req, err := proto.Marshal(&orgsyncv1.TokenRequest{Org: s.org, ForceRefresh: force})
	if err != nil {
		return nil, fmt.Errorf("authclient: marshal token request for org %s: %w", s.org, err)
	}
	ctx, stop := natsx.Guard(ctx, s.nc, func(subj string) bool { return subj == subject })
	defer stop()
	msg, err := s.nc.RequestWithContext(ctx, subject, req)
	switch {
	case natsx.Refused(ctx) != nil:
		return nil, fmt.Errorf("authclient: token for org %s: %w", s.org, natsx.Refused(ctx))
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("authclient: token for org %s: %w for org %s (nothing listens on %s; start the auth service)", s.org, ErrNoAuthService, s.org, subject)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("authclient: token for org %s: the auth service did not answer on %s within %v", s.org, subject, s.timeout)
	case err != nil:
		return nil, fmt.Errorf("authclient: token for org %s: request on %s: %w", s.org, subject, err)
	}
	reply, err := DecodeToken(msg.Data)
	if err != nil {
		return nil, fmt.Errorf("authclient: token for org %s: malformed reply on %s: %w", s.org, subject, err)
	}
	if reply.GetError() != "" && reply.GetPermanent() {
		// A refusal no retry fixes: a 4xx TokenError, which every service
		// already treats as permanent (fail the work, don't redeliver).
		return nil, &genesys.TokenError{Org: s.org, TokenURL: "orgsync auth service (" + subject + ")",
			Status: http.StatusUnauthorized, ErrorCode: "refused", Err: errors.New(reply.GetError())}
	}
	if reply.GetError() != "" {
		return nil, fmt.Errorf("authclient: token for org %s: auth service: %s", s.org, reply.GetError())
	}
	if reply.GetAccessToken() == "" {
		return nil, fmt.Errorf("authclient: token for org %s: auth service replied without a token", s.org)
	}
	return reply, nil
}
