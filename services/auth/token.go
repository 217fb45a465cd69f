package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/metrics"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Token returns a token of org: the cached one unless it expired (or force
// asks to discard it), else a fresh one from the org's login host. Errors
// come back as TokenReply.error. Start must have run.
func (s *Service) Token(ctx context.Context, org string, force bool) *orgsyncv1.TokenReply {
	if err := natsx.ValidateOrgKey(org); err != nil {
		return errorReply(err.Error())
	}
	entry, ok := s.cfg.Orgs.Entry(org)
	if !ok {
		return errorReply(fmt.Sprintf("unknown org %q: not in the auth service's org config (configured: %s)",
			org, strings.Join(s.cfg.Orgs.Keys(), ", ")))
	}
	if !entry.HasCredentials() {
		return errorReply(fmt.Sprintf("org %q has no client credentials in the auth service's config (set clientId/clientSecret in the config file or %s and %s)",
			org, orgconfig.EnvClientID(org), orgconfig.EnvClientSecret(org)))
	}
	if !force {
		if r, _ := s.cached(ctx, org); r != nil {
			return r
		}
	}
	v, _, _ := s.flight.Do(org, func() (any, error) {
		// Re-check inside the flight: the previous flight (or another
		// instance) may have just stored a token.
		if r, age := s.cached(ctx, org); r != nil && (!force || age < s.cfg.ForceRefreshMinAge) {
			return r, nil
		}
		// Detached from the first caller's ctx: the others share the result.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.FetchTimeout)
		defer cancel()
		return s.fetch(fctx, org, entry), nil
	})
	return v.(*orgsyncv1.TokenReply)
}

// cached returns the org's unexpired cache entry and its age, or nil.
func (s *Service) cached(ctx context.Context, org string) (*orgsyncv1.TokenReply, time.Duration) {
	e, err := s.kv.Get(ctx, org)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Warn("auth: read token cache", "org", org, "err", err)
		}
		return nil, 0
	}
	r, err := authclient.DecodeToken(e.Value())
	if err != nil || r.GetAccessToken() == "" || r.GetExpiresAt() == nil {
		return nil, 0
	}
	now := s.cfg.Now()
	if !now.Before(r.GetExpiresAt().AsTime()) {
		return nil, 0 // expired (no per-key TTL, or its marker not yet applied)
	}
	return r, now.Sub(e.Created())
}

// fetch runs the client-credentials grant for org and caches the result.
func (s *Service) fetch(ctx context.Context, org string, o orgconfig.Org) *orgsyncv1.TokenReply {
	gc, err := s.cfg.Orgs.Org(org)
	if err != nil {
		return errorReply(err.Error())
	}
	tokenURL := gc.LoginBaseURL + "/oauth/token"
	cc := clientcredentials.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		TokenURL:     tokenURL,
		AuthStyle:    oauth2.AuthStyleInHeader, // Genesys: HTTP Basic auth
	}
	start := s.cfg.Now()
	s.fetches.Add(1)
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient))
	metrics.TokenRefreshed(ctx, org, err == nil)
	if err != nil {
		reason := scrub(describeFetchError(org, tokenURL, err), o.ClientSecret)
		s.log.Warn("auth: token request failed", "org", org, "reason", reason)
		if rejectedCredentials(err) {
			return errorReply(reason)
		}
		return transientReply(reason)
	}
	lifetime := time.Duration(tok.ExpiresIn) * time.Second
	if lifetime <= 0 && !tok.Expiry.IsZero() {
		lifetime = time.Until(tok.Expiry)
	}
	if lifetime <= 0 {
		return errorReply(fmt.Sprintf("token response from %s for org %s has no expires_in", tokenURL, org))
	}
	reply := &orgsyncv1.TokenReply{
		AccessToken: tok.AccessToken,
		TokenType:   "bearer",
		ExpiresAt:   timestamppb.New(start.Add(s.validity(lifetime))),
	}
	if err := s.store(ctx, org, reply, start); err != nil {
		// The token is still good; other services just will not find it
		// in the cache and will ask us.
		s.log.Warn("auth: cache token", "org", org, "err", err)
	}
	s.log.Info("auth: token issued", "org", org, "expires_in", lifetime, "cached_until", reply.GetExpiresAt().AsTime())
	return reply
}

// validity is how long a token of the given lifetime is handed out:
// lifetime − SafetyMargin, or half the lifetime when that would leave less
// than a margin's worth (short-lived tokens in tests and simulators).
func (s *Service) validity(lifetime time.Duration) time.Duration {
	if lifetime > 2*s.cfg.SafetyMargin {
		return lifetime - s.cfg.SafetyMargin
	}
	return lifetime / 2
}

// store writes the cache entry with a per-key TTL ending at expires_at.
// The KV API has a per-key TTL only on Create, so it publishes to the key's
// subject with a Nats-TTL header, which is what a KV put is. If the server
// or bucket does not support per-message TTLs it falls back to a plain Put:
// readers check expires_at anyway.
func (s *Service) store(ctx context.Context, org string, r *orgsyncv1.TokenReply, now time.Time) error {
	data, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	ttl := r.GetExpiresAt().AsTime().Sub(now).Round(time.Second)
	if ttl < time.Second {
		ttl = time.Second
	}
	subject := "$KV." + natsx.TokenBucket + "." + org
	if _, err := s.js.Publish(ctx, subject, data, jetstream.WithMsgTTL(ttl)); err == nil {
		return nil
	} else {
		s.log.Debug("auth: per-key TTL unavailable, plain put", "org", org, "err", err)
	}
	_, err = s.kv.Put(ctx, org, data)
	return err
}

// describeFetchError explains a failed token request precisely: HTTP
// status and OAuth error code for a rejection (with a hint for the usual
// cause), the transport error otherwise. It never includes the request.
func describeFetchError(org, tokenURL string, err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		msg := fmt.Sprintf("token request for org %s to %s rejected: HTTP %d", org, tokenURL, status)
		if re.ErrorCode != "" {
			msg += " " + re.ErrorCode
		}
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		if re.ErrorCode == "invalid_client" || status == 401 {
			msg += fmt.Sprintf(" (check the clientId/clientSecret of org %s: config file or %s/%s)", org, orgconfig.EnvClientID(org), orgconfig.EnvClientSecret(org))
		}
		return msg
	}
	return fmt.Sprintf("token request for org %s to %s failed: %v", org, tokenURL, err)
}

// scrub removes secret from msg, whatever produced it.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "[REDACTED]")
}

// rejectedCredentials reports whether the login host refused the grant itself
// (4xx other than 408/429: invalid_client, unauthorized_client, ...), which no
// retry fixes; transport errors, throttling and 5xx are worth retrying.
func rejectedCredentials(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return false
	}
	c := re.Response.StatusCode
	return c >= 400 && c < 500 && c != http.StatusTooManyRequests && c != http.StatusRequestTimeout
}
