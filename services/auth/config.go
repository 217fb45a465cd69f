// Package auth is the orgsync auth service: the only process that holds
// Genesys client credentials. It answers TokenRequests on
// "orgsync.auth.token.<org>" (a nats micro service "orgsync-auth"), gets
// tokens with the OAuth client-credentials grant (HTTP Basic auth) from the
// org's login host, and caches them in the KV bucket "orgsync-tokens" so
// other services read them without a round trip (pkg/authclient).
//
// Contract:
//   - cache entry = marshaled TokenReply, expires_at = issue time +
//     expires_in − SafetyMargin (5 min; half the lifetime for tokens shorter
//     than twice the margin), stored with a per-key TTL that removes it then;
//   - one token fetch per org at a time (singleflight): 50 concurrent
//     requests for an org with no cached token cause one POST /oauth/token;
//   - force_refresh discards the cached token unless it was fetched less
//     than ForceRefreshMinAge ago (then a refresh just happened);
//   - failures are TokenReply.error with a precise reason (unknown org,
//     missing or invalid credentials, login host unreachable) and never
//     contain a secret; neither do logs.
package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
)

// Defaults of Config.
const (
	ServiceName               = "orgsync-auth"
	ServiceVersion            = "1.0.0"
	QueueGroup                = "orgsync-auth"
	DefaultSafetyMargin       = 5 * time.Minute
	DefaultForceRefreshMinAge = time.Second
	DefaultMaxConcurrent      = 256
	DefaultFetchTimeout       = 30 * time.Second
)

// Config builds a Service.
type Config struct {
	// Orgs is the org registry with credentials (required).
	Orgs *orgconfig.Config
	// NC is the NATS connection (required).
	NC *nats.Conn
	// JS is the JetStream context; default jetstream.New(NC).
	JS jetstream.JetStream
	// Topology of the token bucket (replicas); zero = single replica.
	Topology natsx.Topology
	// Logger; default slog.Default(). Secrets are never passed to it.
	Logger *slog.Logger
	// HTTPClient for the login hosts; default one with FetchTimeout.
	HTTPClient *http.Client
	// FetchTimeout bounds one POST /oauth/token (default 30s).
	FetchTimeout time.Duration
	// SafetyMargin is subtracted from expires_in (default 5 min).
	SafetyMargin time.Duration
	// ForceRefreshMinAge: a force_refresh for a token younger than this is
	// answered with it instead of fetching again (default 1s). It absorbs
	// the race of several services reporting the same rejected token at
	// once (authclient already skips the force when the cache holds a token
	// other than the rejected one); kept short so a token revoked right
	// after issue is still replaced promptly.
	ForceRefreshMinAge time.Duration
	// MaxConcurrent bounds requests handled at once (default 256); more
	// wait in the subscription's buffer.
	MaxConcurrent int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.FetchTimeout}
	}
	if c.SafetyMargin == 0 {
		c.SafetyMargin = DefaultSafetyMargin
	}
	if c.ForceRefreshMinAge == 0 {
		c.ForceRefreshMinAge = DefaultForceRefreshMinAge
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every invalid field of c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Orgs == nil {
		errs = append(errs, errors.New("Orgs is required"))
	}
	if c.NC == nil {
		errs = append(errs, errors.New("NC is required"))
	}
	if c.SafetyMargin < 0 || c.ForceRefreshMinAge < 0 || c.FetchTimeout < 0 || c.MaxConcurrent < 0 {
		errs = append(errs, errors.New("SafetyMargin, ForceRefreshMinAge, FetchTimeout and MaxConcurrent must not be negative"))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("auth: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
