package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/authclient"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgconfig"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/auth"
	"github.com/orgsync/orgsync/services/gcsim"
)

const wrongSecret = "wrong-s3cr3t-value"

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one test's world: gcsim over real HTTP, an embedded NATS server
// and a started auth service.
type env struct {
	sim      *gcsim.Sim
	srcOrgID string // gcsim org id of acme-src
	secret   string // acme-src's real secret (to check it never leaks)
	url      string
	nc       *nats.Conn
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	svc      *auth.Service
	logs     *syncBuffer
}

type options struct {
	tokenTTL      time.Duration
	loginLatency  time.Duration
	forceMinAge   time.Duration
	skipAuthStart bool
}

func setup(t *testing.T, o options) *env {
	t.Helper()
	sim, err := gcsim.New(gcsim.Config{TokenTTL: o.tokenTTL})
	if err != nil {
		t.Fatal(err)
	}
	fx := gcsim.DemoFixture()
	if err := sim.LoadFixture(fx); err != nil {
		t.Fatal(err)
	}
	h := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" && o.loginLatency > 0 {
			time.Sleep(o.loginLatency) // a slow login host, not synchronization
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	src := fx.Orgs[0]
	orgs, err := orgconfig.New(map[string]orgconfig.Org{
		"acme-src":  {APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: src.Clients[0].ClientID, ClientSecret: src.Clients[0].ClientSecret},
		"bad-creds": {APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: src.Clients[0].ClientID, ClientSecret: wrongSecret},
		"no-creds":  {APIBaseURL: srv.URL, LoginBaseURL: srv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	nc, js := natsxtest.Start(t)
	kv, err := natsx.TokenKV(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log, _ := telemetry.NewLogger(logs, slog.LevelDebug, "text")
	svc, err := auth.New(auth.Config{Orgs: orgs, NC: nc, JS: js, Logger: log, ForceRefreshMinAge: o.forceMinAge})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	e := &env{sim: sim, srcOrgID: src.ID, secret: src.Clients[0].ClientSecret, url: srv.URL, nc: nc, js: js, kv: kv, svc: svc, logs: logs}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), e.secret) || strings.Contains(logs.String(), wrongSecret) {
			t.Errorf("a client secret appeared in the auth service's logs:\n%s", logs.String())
		}
	})
	return e
}

// oauthCalls counts POST /oauth/token requests gcsim answered 200 for acme-src.
func (e *env) oauthCalls() int { return e.sim.Stats(e.srcOrgID).Requests["POST /oauth/token"] }

// request sends a raw TokenRequest over NATS.
func (e *env) request(t *testing.T, subject string, req *orgsyncv1.TokenRequest) *orgsyncv1.TokenReply {
	t.Helper()
	data, _ := proto.Marshal(req)
	msg, err := e.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var r orgsyncv1.TokenReply
	if err := proto.Unmarshal(msg.Data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// apiStatus calls gcsim's GET /api/v2/tokens/me with tok.
func (e *env) apiStatus(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+"/api/v2/tokens/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestTokenIssuedAndCached(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	tok, err := authclient.TokenSource(e.nc, e.kv, "acme-src").Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || e.apiStatus(t, tok.AccessToken) != http.StatusOK {
		t.Fatalf("token not usable against the API")
	}
	if n := e.oauthCalls(); n != 1 {
		t.Fatalf("POST /oauth/token called %d times, want 1", n)
	}
	// Another service (fresh source) and a raw request: served from cache.
	tok2, err := authclient.TokenSource(e.nc, e.kv, "acme-src").Token()
	if err != nil {
		t.Fatal(err)
	}
	raw := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src"})
	if tok2.AccessToken != tok.AccessToken || raw.GetAccessToken() != tok.AccessToken || raw.GetError() != "" {
		t.Fatalf("second requests got a different token or error %q", raw.GetError())
	}
	if n := e.oauthCalls(); n != 1 || e.svc.Fetches() != 1 {
		t.Fatalf("cached token refetched: %d oauth calls, %d fetches", n, e.svc.Fetches())
	}
	if strings.Contains(e.logs.String(), tok.AccessToken) {
		t.Fatal("access token logged")
	}
}

func TestKVExpiryIsExpiresInMinusFiveMinutes(t *testing.T) {
	t.Parallel()
	e := setup(t, options{tokenTTL: time.Hour})
	before := time.Now()
	r := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src"})
	after := time.Now()
	if r.GetError() != "" {
		t.Fatal(r.GetError())
	}
	exp := r.GetExpiresAt().AsTime()
	lo, hi := before.Add(55*time.Minute-time.Second), after.Add(55*time.Minute+time.Second)
	if exp.Before(lo) || exp.After(hi) {
		t.Fatalf("expires_at %v not within [%v, %v] (expires_in 1h - 5m)", exp, lo, hi)
	}
	entry, err := e.kv.Get(context.Background(), "acme-src")
	if err != nil {
		t.Fatal(err)
	}
	cached, _ := authclient.DecodeToken(entry.Value())
	if !cached.GetExpiresAt().AsTime().Equal(exp) || cached.GetAccessToken() != r.GetAccessToken() {
		t.Fatal("KV value differs from the reply")
	}
	// The key carries a per-key TTL ending at expires_at.
	st, _ := e.js.Stream(context.Background(), "KV_"+natsx.TokenBucket)
	msg, err := st.GetLastMsgForSubject(context.Background(), "$KV."+natsx.TokenBucket+".acme-src")
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := time.ParseDuration(strings.TrimSpace(msg.Header.Get("Nats-TTL")))
	if err != nil {
		secs, err2 := strconv.Atoi(msg.Header.Get("Nats-TTL"))
		if err2 != nil {
			t.Fatalf("Nats-TTL header %q: %v", msg.Header.Get("Nats-TTL"), err)
		}
		ttl = time.Duration(secs) * time.Second
	}
	if ttl < 55*time.Minute-2*time.Second || ttl > 55*time.Minute+time.Second {
		t.Fatalf("per-key TTL %v, want ~55m", ttl)
	}
}

// A short-lived token: the KV entry disappears by itself at expires_at and
// the next request fetches a new token.
func TestKVEntryExpiresAndIsRefetched(t *testing.T) {
	t.Parallel()
	e := setup(t, options{tokenTTL: 2 * time.Second}) // validity = half: 1s
	first := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src"})
	if first.GetError() != "" {
		t.Fatal(first.GetError())
	}
	natsxtest.Eventually(t, 10*time.Second, "KV entry removed by its TTL", func() bool {
		_, err := e.kv.Get(context.Background(), "acme-src")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	second := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src"})
	if second.GetError() != "" || second.GetAccessToken() == first.GetAccessToken() || e.oauthCalls() != 2 {
		t.Fatalf("after expiry: err %q, same token %v, oauth calls %d", second.GetError(), second.GetAccessToken() == first.GetAccessToken(), e.oauthCalls())
	}
}

func TestSingleFlightUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := setup(t, options{loginLatency: 300 * time.Millisecond})
	const n = 50
	var wg sync.WaitGroup
	tokens := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fresh source per caller: 50 services asking at once.
			tok, err := authclient.TokenSource(e.nc, e.kv, "acme-src").Token()
			if err == nil {
				tokens[i] = tok.AccessToken
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d: err %v, same token %v", i, errs[i], tokens[i] == tokens[0])
		}
	}
	if c := e.oauthCalls(); c != 1 {
		t.Fatalf("%d concurrent requests caused %d POST /oauth/token, want 1", n, c)
	}
}

func TestForceRefresh(t *testing.T) {
	t.Parallel()
	// A force for a token fetched less than ForceRefreshMinAge ago reuses it.
	e := setup(t, options{forceMinAge: time.Hour})
	first := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src"})
	again := e.request(t, "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "acme-src", ForceRefresh: true})
	if again.GetAccessToken() != first.GetAccessToken() || e.oauthCalls() != 1 {
		t.Fatalf("force within ForceRefreshMinAge refetched (%d oauth calls)", e.oauthCalls())
	}

	// With no minimum age, a force discards the cached token; the client
	// sends it after its caller reported a 401 (Invalidate).
	e2 := setup(t, options{forceMinAge: time.Nanosecond})
	src := authclient.New(e2.nc, e2.kv, "acme-src")
	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	src.Invalidate(tok)
	fresh, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == tok.AccessToken || e2.oauthCalls() != 2 || e2.apiStatus(t, fresh.AccessToken) != http.StatusOK {
		t.Fatalf("force refresh: new token %v, oauth calls %d", fresh.AccessToken != tok.AccessToken, e2.oauthCalls())
	}
	cached, _ := e2.kv.Get(context.Background(), "acme-src")
	if r, _ := authclient.DecodeToken(cached.Value()); r.GetAccessToken() != fresh.AccessToken {
		t.Fatal("KV still holds the discarded token")
	}
}

func TestErrorReplies(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	cases := []struct {
		org     string
		subject string
		req     *orgsyncv1.TokenRequest
		want    []string
	}{
		{"nope", "orgsync.auth.token.nope", &orgsyncv1.TokenRequest{Org: "nope"},
			[]string{`unknown org "nope"`, "acme-src, bad-creds, no-creds"}},
		{"bad-creds", "orgsync.auth.token.bad-creds", &orgsyncv1.TokenRequest{Org: "bad-creds"},
			[]string{"org bad-creds", "/oauth/token", "HTTP 401", "invalid_client", "ORGSYNC_ORG_BAD_CREDS_CLIENT_SECRET"}},
		{"no-creds", "orgsync.auth.token.no-creds", &orgsyncv1.TokenRequest{},
			[]string{`org "no-creds" has no client credentials`, "ORGSYNC_ORG_NO_CREDS_CLIENT_ID"}},
		{"mismatch", "orgsync.auth.token.acme-src", &orgsyncv1.TokenRequest{Org: "bad-creds"},
			[]string{`names org "bad-creds"`, "orgsync.auth.token.acme-src"}},
	}
	for _, c := range cases {
		r := e.request(t, c.subject, c.req)
		if r.GetAccessToken() != "" {
			t.Errorf("%s: got a token", c.org)
		}
		for _, w := range c.want {
			if !strings.Contains(r.GetError(), w) {
				t.Errorf("%s: error %q lacks %q", c.org, r.GetError(), w)
			}
		}
		if strings.Contains(r.GetError(), wrongSecret) || strings.Contains(r.GetError(), e.secret) {
			t.Fatalf("%s: error contains a secret: %s", c.org, r.GetError())
		}
	}
	// Through the client: the reply's error becomes a Go error.
	_, err := authclient.TokenSource(e.nc, e.kv, "bad-creds").Token()
	if err == nil || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), wrongSecret) {
		t.Fatalf("client error %v", err)
	}
	if _, err := e.kv.Get(context.Background(), "bad-creds"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("failure was cached: %v", err)
	}
}

func writeConfig(t *testing.T, mode os.FileMode, url, clientID, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "orgs.yaml")
	body := fmt.Sprintf("orgs:\n  acme-src: {apiBaseURL: %q, loginBaseURL: %q, clientId: %q, clientSecret: %q}\n", url, url, clientID, secret)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMainRefusesReadableSecretsFile(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, 0o644, "http://127.0.0.1:1", "source-client", "file-s3cr3t")
	var stderr bytes.Buffer
	err := auth.Main(context.Background(), []string{"--config", p, "--nats", "nats://127.0.0.1:1"}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error()+stderr.String(), "file-s3cr3t") {
		t.Fatal("secret in error output")
	}
}

func TestMainServesTokens(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	_ = e.svc.Stop() // Main's own service answers below
	s := natsxtest.StartServer(t)
	nc, js := natsxtest.Connect(t, s)
	fx := gcsim.DemoFixture()
	client := fx.Orgs[0].Clients[0]
	p := writeConfig(t, 0o600, e.url, client.ClientID, client.ClientSecret)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr syncBuffer
	go func() {
		done <- auth.Main(ctx, []string{"--nats", s.ClientURL(), "--config", p, "--log-level", "debug"}, &stderr)
	}()
	var tok string
	natsxtest.Eventually(t, 10*time.Second, "Main answers token requests", func() bool {
		kv, err := js.KeyValue(context.Background(), natsx.TokenBucket)
		if err != nil {
			return false
		}
		got, err := authclient.TokenSource(nc, kv, "acme-src").Token()
		if err != nil {
			return false
		}
		tok = got.AccessToken
		return true
	})
	if e.apiStatus(t, tok) != http.StatusOK {
		t.Fatal("token from Main rejected by the API")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not stop")
	}
	if out := stderr.String(); strings.Contains(out, client.ClientSecret) || strings.Contains(out, tok) {
		t.Fatalf("secret or token in logs:\n%s", out)
	}
}

func TestMainHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := auth.Main(context.Background(), []string{"--help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-nats", "-config", "-log-level", "-trace-exporter", "chmod", "0600"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help lacks %q", f)
		}
	}
}
