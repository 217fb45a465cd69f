// Package gcsim simulates the Genesys Cloud Platform API v2 for tests, demos
// and benchmarks of orgsync: several organizations in memory, OAuth client
// credentials, per-token rate limits, real paths, field names, listings and
// error shapes (see pkg/apispec/genesys-openapi-subset.json), plus
// eventual-consistency windows and fault injection. It deliberately does not
// import pkg/genesys, so a modelling bug cannot hide on both sides.
package gcsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Sim is a running simulator. All methods are safe for concurrent use.
type Sim struct {
	cfg Config
	api *http.ServeMux // Genesys API routes (authenticated)

	mu        sync.RWMutex
	orgs      map[string]*org
	clientOrg map[string]string // clientId -> orgId
	tokens    map[string]*token
	faults    map[string]Faults
	stats     map[string]*orgStats
	listeners []func(UserChange)

	notif *notifier // Notifications API channels and sockets
	crm   *crmState // fake CRM records and behaviours
}

// New builds a simulator with no organizations; load some with LoadFixture.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{
		cfg:       cfg.withDefaults(),
		api:       http.NewServeMux(),
		orgs:      map[string]*org{},
		clientOrg: map[string]string{},
		tokens:    map[string]*token{},
		faults:    map[string]Faults{},
		stats:     map[string]*orgStats{},
		notif:     &notifier{channels: map[string]*channel{}},
		crm:       newCRMState(),
	}
	s.routes()
	s.OnUserChanged(s.publishUserChange)
	return s, nil
}

func (s *Sim) now() time.Time { return s.cfg.Clock() }

// Handler serves the OAuth endpoint (/oauth/token), the Genesys API under
// /api/v2/, the notification WebSockets under /channels/, the fake CRM
// under /crm/v1/ and the simulator's admin endpoints under /_sim/.
func (s *Sim) Handler() http.Handler {
	root := http.NewServeMux()
	root.HandleFunc("POST /oauth/token", s.handleToken)
	root.Handle("/api/v2/", http.HandlerFunc(s.serveAPI))
	root.HandleFunc("GET /channels/{channelId}", s.serveChannelSocket)
	s.crmRoutes(root)
	s.crmAdminRoutes(root)
	s.adminRoutes(root)
	return root
}

// ListenAndServe serves Handler on addr until ctx is cancelled, then shuts
// down gracefully.
func (s *Sim) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gcsim: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is ListenAndServe on an existing listener.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gcsim: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close() // hijacked WebSockets are not closed by Shutdown
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("gcsim: shutdown: %w", err)
		}
		return nil
	}
}

type ctxKey int

const (
	orgKey ctxKey = iota
	contextIDKey
)

func orgFrom(r *http.Request) *org { return r.Context().Value(orgKey).(*org) }

func contextID(r *http.Request) string {
	if v, ok := r.Context().Value(contextIDKey).(string); ok {
		return v
	}
	return ""
}

// serveAPI is the pipeline of every /api/v2 request: latency, authentication
// (the token decides the org), rate limit, fault injection, the handler, and
// statistics.
func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	r = r.WithContext(context.WithValue(r.Context(), contextIDKey, newID()))
	w.Header().Set("ININ-Correlation-Id", contextID(r))
	_, pattern := s.api.Handler(r)
	op := pattern
	if op == "" {
		op = r.Method + " (unmatched)"
	}

	tok, aerr := s.authenticate(r)
	if aerr != nil {
		s.sleep(r.Context(), s.requestLatency(Faults{}))
		writeError(w, r, aerr)
		return
	}
	o := tok.org
	faults := s.Faults(o.id)
	s.sleep(r.Context(), s.requestLatency(faults))

	rec := &statusRecorder{ResponseWriter: w}
	defer func() { s.recordRequest(o.id, op, rec.status()) }()

	if limited := s.rateLimit(rec, r, tok); limited {
		return
	}
	if faults.ErrorRate > 0 && rand.Float64() < faults.ErrorRate {
		writeError(rec, r, faults.injectedError())
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), orgKey, o))
	if faults.ResetRate > 0 && rand.Float64() < faults.ResetRate {
		// The write takes effect, then the response is lost: run the handler
		// against a discarded writer and drop the connection.
		s.api.ServeHTTP(&discardWriter{header: http.Header{}}, r)
		rec.code = -1 // counted as "connection reset"
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2 or no hijack: abort the stream
	}
	s.api.ServeHTTP(rec, r)
}

// requestLatency is the configured latency plus jitter plus injected latency.
func (s *Sim) requestLatency(f Faults) time.Duration {
	d := s.cfg.Latency + f.Latency
	if s.cfg.LatencyJitter > 0 {
		d += rand.N(s.cfg.LatencyJitter)
	}
	return d
}

// sleep simulates network/server latency; it returns early if the client
// goes away.
func (s *Sim) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// lookupOrg returns the org with id, or nil.
func (s *Sim) lookupOrg(id string) *org {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.orgs[id]
}
