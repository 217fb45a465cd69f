// Package orgs hands out Genesys API clients by orgsync org key: one client
// per org, sharing the org's rate budget, authenticated by a pluggable token
// source (the auth service in production, direct client credentials in tests),
// and counting every API call into the counter carried by the call's context.
package orgs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// ErrUnknownOrg is returned (wrapped) for an org key that is not configured.
var ErrUnknownOrg = errors.New("unknown org")

// Clients returns the Genesys client of an org. Implementations are safe for
// concurrent use and return the same client for the same org, so every caller
// in a process draws from one rate budget per org.
type Clients interface {
	Client(org string) (*genesys.Client, error)
}

// Registry is the Clients implementation built from org configurations.
type Registry struct {
	cfgs    map[string]genesys.OrgConfig
	tokens  func(org string) oauth2.TokenSource // nil: the client's own client-credentials grant
	opts    []genesys.Option
	observe []func(context.Context, genesys.Call)

	mu      sync.Mutex
	clients map[string]*genesys.Client
}

// Option configures a Registry.
type Option func(*Registry)

// WithTokenSources makes every client take its tokens from f(org), e.g. the
// auth service through the KV cache.
func WithTokenSources(f func(org string) oauth2.TokenSource) Option {
	return func(r *Registry) { r.tokens = f }
}

// WithTransport sets the clients' base HTTP transport (e.g. the spec validator).
func WithTransport(rt http.RoundTripper) Option {
	return func(r *Registry) { r.opts = append(r.opts, genesys.WithTransport(rt)) }
}

// WithClientOptions passes extra options to every client.
func WithClientOptions(opts ...genesys.Option) Option {
	return func(r *Registry) { r.opts = append(r.opts, opts...) }
}

// WithObserver receives every API attempt of every client (metrics).
func WithObserver(f func(context.Context, genesys.Call)) Option {
	return func(r *Registry) { r.observe = append(r.observe, f) }
}

// NewRegistry builds a registry over org configurations keyed by org key.
// Each OrgConfig's OrgID is set to its key.
func NewRegistry(cfgs map[string]genesys.OrgConfig, opts ...Option) *Registry {
	r := &Registry{cfgs: map[string]genesys.OrgConfig{}, clients: map[string]*genesys.Client{}}
	for k, c := range cfgs {
		c.OrgID = k
		r.cfgs[k] = c
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Orgs lists the configured org keys, sorted.
func (r *Registry) Orgs() []string {
	out := make([]string, 0, len(r.cfgs))
	for k := range r.cfgs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Has reports whether org is configured.
func (r *Registry) Has(org string) bool { _, ok := r.cfgs[org]; return ok }

// Client returns the org's client, building it on first use.
func (r *Registry) Client(org string) (*genesys.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[org]; ok {
		return c, nil
	}
	cfg, ok := r.cfgs[org]
	if !ok {
		return nil, fmt.Errorf("org %q: %w (configured: %v)", org, ErrUnknownOrg, r.Orgs())
	}
	opts := append([]genesys.Option{genesys.WithObserver(r.observeCall)}, r.opts...)
	if r.tokens != nil {
		opts = append(opts, genesys.WithTokenSource(r.tokens(org)))
	}
	c, err := genesys.New(cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("org %q: %w", org, err)
	}
	r.clients[org] = c
	return c, nil
}

func (r *Registry) observeCall(ctx context.Context, c genesys.Call) {
	if n, ok := ctx.Value(counterKey{}).(*Counter); ok {
		n.add(c)
	}
	for _, f := range r.observe {
		f(ctx, c)
	}
}

// Counter counts the API calls made with a context returned by WithCounter.
type Counter struct {
	reads, writes, throttled atomic.Int32
}

type counterKey struct{}

// WithCounter returns a context whose API calls are counted into a new
// Counter (nested counters: the innermost wins).
func WithCounter(ctx context.Context) (context.Context, *Counter) {
	n := &Counter{}
	return context.WithValue(ctx, counterKey{}, n), n
}

func (n *Counter) add(c genesys.Call) {
	if genesys.IsRead(c.Operation) {
		n.reads.Add(1)
	} else {
		n.writes.Add(1)
	}
	if c.Status == http.StatusTooManyRequests {
		n.throttled.Add(1)
	}
}

// Usage returns the counts so far.
func (n *Counter) Usage() *orgsyncv1.ApiUsage {
	return &orgsyncv1.ApiUsage{Reads: n.reads.Load(), Writes: n.writes.Load(), Throttled: n.throttled.Load()}
}

// Counts returns the counts so far without allocating (Usage as values).
func (n *Counter) Counts() (reads, writes, throttled int32) {
	return n.reads.Load(), n.writes.Load(), n.throttled.Load()
}

// Total is reads + writes.
func (n *Counter) Total() int { return int(n.reads.Load() + n.writes.Load()) }
