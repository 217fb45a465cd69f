package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"
	"golang.org/x/oauth2"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
)

// checkTimeout bounds one org's check (token and read).
const checkTimeout = 20 * time.Second

// handleCheck answers `orgsync orgs check` on natsx.OrgsCheckSubject: per
// org, a token and one cheap read with it. Only this service may do that:
// it holds the credentials, and the CLI's NATS identity may not ask for
// tokens.
func (s *Service) handleCheck(req micro.Request) {
	go func() {
		var in natsx.OrgsCheckRequest
		var reply natsx.OrgsCheckReply
		if len(req.Data()) > 0 {
			if err := json.Unmarshal(req.Data(), &in); err != nil {
				reply.Error = "invalid orgs check request (want JSON {orgs: [...]}): " + err.Error()
			}
		}
		if reply.Error == "" {
			reply.Results = s.Check(context.Background(), in.Orgs)
		}
		data, _ := json.Marshal(reply)
		if err := req.Respond(data); err != nil {
			s.log.Warn("auth: orgs check reply failed", "err", err)
		}
	}()
}

// Check checks orgs (every configured org when empty), concurrently, and
// returns one result per org in order.
func (s *Service) Check(ctx context.Context, orgs []string) []natsx.OrgCheck {
	if len(orgs) == 0 {
		orgs = s.cfg.Orgs.Keys()
	}
	out := make([]natsx.OrgCheck, len(orgs))
	var wg sync.WaitGroup
	for i, org := range orgs {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			out[i] = s.checkOrg(cctx, org)
		})
	}
	wg.Wait()
	return out
}

func (s *Service) checkOrg(ctx context.Context, org string) natsx.OrgCheck {
	res := natsx.OrgCheck{Org: org}
	tok := s.Token(ctx, org, false)
	if tok.GetError() != "" {
		res.Error = "token: " + tok.GetError()
		return res
	}
	res.TokenOK = true
	cfg, err := s.cfg.Orgs.Org(org)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	rec := &headerRecorder{base: s.transport()}
	client, err := genesys.New(cfg, genesys.WithTransport(rec),
		genesys.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.GetAccessToken(), TokenType: "Bearer"})),
		genesys.WithRetryPolicy(genesys.RetryPolicy{MaxAttempts: 1})) // one read: its answer is the finding
	if err != nil {
		res.Error = err.Error()
		return res
	}
	o, err := client.GetOrganization(ctx)
	if h := rec.last(); h != nil {
		if c, a := h.Get("inin-ratelimit-count"), h.Get("inin-ratelimit-allowed"); a != "" {
			res.RateLimit = c + "/" + a
			res.RateLimitReset = h.Get("inin-ratelimit-reset")
		}
	}
	if err != nil {
		res.Error = "read: " + strings.TrimPrefix(err.Error(), "genesys: ")
		return res
	}
	res.Reachable, res.OrgName = true, o.Name
	return res
}

// transport is the HTTP transport of the service's Genesys calls.
func (s *Service) transport() http.RoundTripper {
	if s.cfg.HTTPClient != nil && s.cfg.HTTPClient.Transport != nil {
		return s.cfg.HTTPClient.Transport
	}
	return genesys.DefaultTransport
}

// headerRecorder keeps the response headers of the last API answer (the
// rate-limit headers are not part of the client's results).
type headerRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	h    http.Header
}

func (r *headerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil && strings.HasPrefix(req.URL.Path, "/api/") {
		r.mu.Lock()
		r.h = resp.Header.Clone()
		r.mu.Unlock()
	}
	return resp, err
}

func (r *headerRecorder) last() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h
}
