package genesys

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenCache hands out the cached token until it is within `early` of its
// expiry (capped at half the token's lifetime, so short-lived tokens are not
// refetched on every call), then fetches a new one. invalidate drops a token
// the API rejected with 401 (rotated or revoked) so the next call refetches.
type tokenCache struct {
	org   string
	src   oauth2.TokenSource
	early time.Duration

	mu       sync.Mutex
	tok      *oauth2.Token
	refresh  time.Time // when to fetch a new token
	fetches  int64
	tokenURL string // for errors of the default source
}

func newTokenCache(org string, src oauth2.TokenSource, early time.Duration, tokenURL string) *tokenCache {
	return &tokenCache{org: org, src: src, early: early, tokenURL: tokenURL}
}

func (c *tokenCache) Token() (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.tok != nil && (c.refresh.IsZero() || now.Before(c.refresh)) {
		return c.tok, nil
	}
	tok, err := c.src.Token()
	if err != nil {
		return nil, c.wrap(err)
	}
	c.fetches++
	c.tok = tok
	c.refresh = time.Time{}
	if !tok.Expiry.IsZero() {
		lifetime := tok.Expiry.Sub(now)
		c.refresh = tok.Expiry.Add(-min(c.early, lifetime/2))
	}
	return tok, nil
}

func (c *tokenCache) invalidate(tok *oauth2.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == tok {
		c.tok = nil
	}
}

func (c *tokenCache) fetchCount() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// wrap turns the oauth2 package's errors into a *TokenError that names the
// endpoint and OAuth error code but not the response body verbatim (it could
// echo request fields) and never the secret.
func (c *tokenCache) wrap(err error) error {
	var te *TokenError
	if errors.As(err, &te) {
		return err
	}
	out := &TokenError{Org: c.org, TokenURL: c.tokenURL, Err: err}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		out.ErrorCode = re.ErrorCode
		out.Err = errors.New(re.ErrorCode)
		if re.Response != nil {
			out.Status = re.Response.StatusCode
		}
	}
	if out.TokenURL == "" {
		out.TokenURL = "token source"
	}
	return out
}

// defaultTokenSource is the client-credentials grant against
// LoginBaseURL/oauth/token with the credentials in a Basic auth header, as
// Genesys requires, sent over the client's base transport.
func defaultTokenSource(cfg OrgConfig, base http.RoundTripper) (oauth2.TokenSource, string) {
	tokenURL := cfg.LoginBaseURL + "/oauth/token"
	cc := clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     tokenURL,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: base, Timeout: cfg.RequestTimeout})
	// cc.Token fetches a fresh token on every call; cc.TokenSource would add
	// oauth2's own reuse cache, which would hand back the old token when
	// tokenCache asks for an early refresh.
	return tokenSourceFunc(func() (*oauth2.Token, error) { return cc.Token(ctx) }), tokenURL
}

type tokenSourceFunc func() (*oauth2.Token, error)

func (f tokenSourceFunc) Token() (*oauth2.Token, error) { return f() }
