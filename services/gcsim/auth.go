package gcsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// token is an issued access token. Its rate-limit window lives here because
// Genesys limits requests per token.
type token struct {
	value    string
	org      *org
	clientID string
	expires  time.Time

	windowStart time.Time // guarded by Sim.mu
	windowCount int
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// handleToken implements POST /oauth/token (client credentials grant, as on
// login.<region>). Credentials come from HTTP Basic auth or, as a fallback,
// the form fields client_id/client_secret.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form body"})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, oauthError{"unsupported_grant_type", "grant_type must be client_credentials"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.RLock()
	orgID := s.clientOrg[id]
	o := s.orgs[orgID]
	s.mu.RUnlock()
	var want string
	if o != nil {
		o.mu.Lock()
		want = o.clients[id]
		o.mu.Unlock()
	}
	if o == nil || id == "" || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		writeJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", "client authentication failed"})
		return
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	t := &token{
		value:    base64.RawURLEncoding.EncodeToString(raw[:]),
		org:      o,
		clientID: id,
		expires:  s.now().Add(s.cfg.TokenTTL),
	}
	s.mu.Lock()
	s.tokens[t.value] = t
	s.mu.Unlock()
	s.recordRequest(o.id, "POST /oauth/token", http.StatusOK)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": t.value,
		"token_type":   "bearer",
		"expires_in":   int(s.cfg.TokenTTL / time.Second),
	})
}

// authenticate resolves the bearer token of r. Expired and unknown tokens
// are 401 bad.credentials; a missing header is 401 authentication.required.
func (s *Sim) authenticate(r *http.Request) (*token, *apiError) {
	h := r.Header.Get("Authorization")
	scheme, value, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "bearer") || value == "" {
		return nil, errf(http.StatusUnauthorized, "authentication.required", "No authentication bearer token specified in authorization header.")
	}
	s.mu.RLock()
	t := s.tokens[strings.TrimSpace(value)]
	s.mu.RUnlock()
	if t == nil {
		return nil, errf(http.StatusUnauthorized, "bad.credentials", "Invalid login credentials.")
	}
	if !s.now().Before(t.expires) {
		return nil, errf(http.StatusUnauthorized, "bad.credentials", "Invalid login credentials. The access token has expired.")
	}
	return t, nil
}

// tokenFrom returns the token of an authenticated API request.
func (s *Sim) tokenFrom(r *http.Request) *token {
	_, value, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tokens[strings.TrimSpace(value)]
}

// GET /api/v2/tokens/me
func (s *Sim) getTokenMe(w http.ResponseWriter, r *http.Request) {
	t := s.tokenFrom(r)
	o := orgFrom(r)
	named := map[string]any{"id": o.id, "name": o.name}
	writeJSON(w, http.StatusOK, map[string]any{
		"organization":     named,
		"homeOrganization": named,
		"authorizedScope":  []string{},
		"OAuthClient": map[string]any{
			"id":                  t.clientID,
			"name":                t.clientID,
			"authorizedGrantType": "CLIENT-CREDENTIALS",
			"organization":        named,
		},
	})
}

// HEAD /api/v2/tokens/me
func (s *Sim) headTokenMe(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

// DELETE /api/v2/tokens/me revokes the calling token.
func (s *Sim) deleteTokenMe(w http.ResponseWriter, r *http.Request) {
	t := s.tokenFrom(r)
	s.mu.Lock()
	delete(s.tokens, t.value)
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}
