package genesys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Client talks to the Platform API of one org. It is safe for concurrent use.
// Every call is rate limited by the org's Limiter, authenticated with the
// org's token, retried per the RetryPolicy and reported to the observer.
type Client struct {
	cfg      OrgConfig
	http     *http.Client
	tokens   *tokenCache
	limiter  *Limiter
	retry    RetryPolicy
	observer func(context.Context, Call)

	mu sync.Mutex
	// created: user ids this client created within ConsistencyWindow →
	// when (eventual consistency); createdOrder the same in creation
	// order, so that ids leave as their window ends.
	created      map[string]time.Time
	createdOrder []createdUser
}

type createdUser struct {
	id string
	at time.Time
}

// Call describes one HTTP attempt, reported to the observer (WithObserver).
type Call struct {
	Org       string
	Method    string
	Operation string // "POST /api/v2/users": method and spec path template
	Status    int    // 0 when no response was received
	Attempt   int    // 1 for the first attempt
	Duration  time.Duration
	Err       error // transport error or *APIError; nil on 2xx
}

// Option configures a Client.
type Option func(*options)

type options struct {
	tokenSource oauth2.TokenSource
	transport   http.RoundTripper
	limiter     *Limiter
	observer    func(context.Context, Call)
	retry       RetryPolicy
}

// WithTokenSource replaces the default client-credentials grant, e.g. with the
// auth service. The client caches its tokens until near expiry.
func WithTokenSource(ts oauth2.TokenSource) Option { return func(o *options) { o.tokenSource = ts } }

// WithTransport sets the base transport for API and token requests
// (DefaultTransport when nil), e.g. apispec's validating Recorder.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithLimiter shares one org budget among several clients of the same org.
func WithLimiter(l *Limiter) Option { return func(o *options) { o.limiter = l } }

// WithObserver receives every HTTP attempt the client makes, with the
// context of the call that made it.
func WithObserver(f func(ctx context.Context, c Call)) Option {
	return func(o *options) { o.observer = f }
}

// WithRetryPolicy overrides DefaultRetryPolicy (zero fields take its values).
func WithRetryPolicy(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// DefaultTransport is the transport clients share unless WithTransport
// says otherwise: NewTransport's.
var DefaultTransport http.RoundTripper = NewTransport()

// NewTransport returns http.DefaultTransport's settings with up to 512 idle
// connections kept per host instead of 2: every org of a region shares one
// API host, and a connection closed because too many were idle is dialed
// again for the next request (with 2, 5 % of a 1,000-user clone's CPU went
// to dialing; with 128, still 1 % of a 2,000 × 10 one, whose provisioner
// runs 400 requests at once: 10 orgs × 5 plans × 8 users).
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 512
	return t
}

// New builds a client for cfg (defaults applied, then validated).
func New(cfg OrgConfig, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(o.tokenSource == nil); err != nil {
		return nil, err
	}
	if o.transport == nil {
		o.transport = DefaultTransport
	}
	src, tokenURL := o.tokenSource, ""
	if src == nil {
		src, tokenURL = defaultTokenSource(cfg, o.transport)
	}
	if o.limiter == nil {
		o.limiter = NewLimiter(cfg.RateLimit, cfg.Burst, cfg.MinRateLimit)
	}
	return &Client{
		cfg: cfg,
		// No Client.Timeout: attempt bounds each request with a context
		// deadline, which costs a timer instead of a goroutine per call.
		http:     &http.Client{Transport: o.transport},
		tokens:   newTokenCache(cfg.OrgID, src, cfg.TokenRefreshEarly, tokenURL),
		limiter:  o.limiter,
		retry:    o.retry.withDefaults(),
		observer: o.observer,
		created:  map[string]time.Time{},
	}, nil
}

// Org returns the org id the client acts for.
func (c *Client) Org() string { return c.cfg.OrgID }

// Config returns the client's effective configuration (defaults applied).
func (c *Client) Config() OrgConfig { return c.cfg }

// Limiter returns the org budget the client draws from.
func (c *Client) Limiter() *Limiter { return c.limiter }

// TokenFetches counts tokens fetched from the token source so far.
func (c *Client) TokenFetches() int64 { return c.tokens.fetchCount() }

// request is one API call as the operation methods describe it.
type request struct {
	op     operation
	params []string   // values for the path template's {placeholders}, in order
	query  url.Values // may be nil
	body   any        // JSON-encoded when non-nil
	out    any        // JSON-decoded from a 2xx body when non-nil
	rawURL string     // follow a server-given nextUri (path+query) instead of op.Path+query

	// idempotent says the request may be re-sent after it may have reached
	// the server (transport error after writing, 5xx). A create is not.
	idempotent bool
	// lookup, for non-idempotent creates, finds the object the lost request
	// may have created. found=true fills out and ends the call with success;
	// found=false makes a re-send safe.
	lookup func(ctx context.Context) (found bool, err error)
}

// path expands the path template with escaped parameter values.
func (r request) path() (string, error) {
	p := r.op.Path
	for _, v := range r.params {
		i := strings.Index(p, "{")
		j := strings.Index(p, "}")
		if i < 0 || j < i {
			return "", fmt.Errorf("genesys: %s: too many path parameters", r.op)
		}
		if strings.TrimSpace(v) == "" {
			return "", invalidArg(r.op, "empty value for path parameter %s", p[i:j+1])
		}
		p = p[:i] + url.PathEscape(v) + p[j+1:]
	}
	if strings.Contains(p, "{") {
		return "", fmt.Errorf("genesys: %s: missing path parameters", r.op)
	}
	return p, nil
}

// do runs r with rate limiting, authentication, retries and observation.
func (c *Client) do(ctx context.Context, r request) error {
	target := r.rawURL
	if target == "" {
		p, err := r.path()
		if err != nil {
			return err
		}
		target = p
		if len(r.query) > 0 {
			target += "?" + r.query.Encode()
		}
	}
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("genesys: %s (org %s): encode body: %w", r.op, c.cfg.OrgID, err)
		}
	}

	start := time.Now()
	reauthed := false
	for attempt := 1; ; attempt++ {
		res := c.attempt(ctx, r, target, payload, attempt)
		if res.err == nil {
			c.limiter.OnSuccess()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("genesys: %s (org %s): %w", r.op, c.cfg.OrgID, ctx.Err())
		}
		var wait time.Duration
		switch {
		case res.status == http.StatusUnauthorized && !reauthed:
			// The token may have been rotated or revoked: drop it and try once
			// more with a fresh one (the request was rejected, so re-sending
			// is safe even for creates).
			reauthed = true
			c.tokens.invalidate(res.token)
			attempt-- // a re-auth does not use up the retry budget
			continue
		case res.status == http.StatusTooManyRequests:
			// Rejected before processing: safe to re-send anything.
			ra := res.retryAfter
			c.limiter.OnThrottled(ra)
			wait = max(ra, c.retry.backoff(attempt))
		case RetryableStatus(res.status) || res.transport:
			if !res.sent || r.idempotent {
				wait = max(res.retryAfter, c.retry.backoff(attempt))
				break
			}
			if r.lookup == nil {
				return res.err // ambiguous and nothing to check with: surface it
			}
			found, err := r.lookup(ctx)
			if err != nil {
				return fmt.Errorf("%w (and the lookup to check whether it took effect failed: %v)", res.err, err)
			}
			if found {
				c.limiter.OnSuccess()
				return nil
			}
			wait = c.retry.backoff(attempt)
		default:
			return res.err // permanent (IsPermanent): 4xx but 401/408/429, 501, refused credentials
		}
		if attempt >= c.retry.MaxAttempts || time.Since(start)+wait > c.retry.MaxElapsed {
			return fmt.Errorf("%w (gave up after %d attempts in %s)", res.err, attempt, time.Since(start).Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("genesys: %s (org %s): %w (last error: %v)", r.op, c.cfg.OrgID, ctx.Err(), res.err)
		case <-t.C:
		}
	}
}

type attemptResult struct {
	err        error
	status     int
	transport  bool // err is a transport error (no HTTP response)
	sent       bool // the request was fully written to the connection
	retryAfter time.Duration
	token      *oauth2.Token
}

func (c *Client) attempt(ctx context.Context, r request, target string, payload []byte, n int) (res attemptResult) {
	began := time.Now()
	defer func() {
		if c.observer != nil {
			c.observer(ctx, Call{Org: c.cfg.OrgID, Method: r.op.Method, Operation: r.op.String(), Status: res.status,
				Attempt: n, Duration: time.Since(began), Err: res.err})
		}
	}()
	if err := c.limiter.Wait(ctx); err != nil {
		return attemptResult{err: fmt.Errorf("genesys: %s (org %s): wait for rate limiter: %w", r.op, c.cfg.OrgID, err)}
	}
	tok, err := c.tokens.Token()
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) && (te.Status == 0 || RetryableStatus(te.Status)) {
			return attemptResult{err: err, transport: true} // token endpoint down: retryable, nothing sent
		}
		return attemptResult{err: err}
	}
	res.token = tok

	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	var sent bool
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { sent = true }}
	reqCtx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout) // the request and its body
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(reqCtx, trace), r.op.Method, c.cfg.APIBaseURL+target, body)
	if err != nil {
		res.err = fmt.Errorf("genesys: %s (org %s): build request: %w", r.op, c.cfg.OrgID, err)
		return res
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		res.err = fmt.Errorf("genesys: %s (org %s): %w", r.op, c.cfg.OrgID, scrubURLError(err))
		res.transport, res.sent = true, sent
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	c.limiter.ObserveHeaders(resp.Header)
	buf := getBodyBuffer()
	defer putBodyBuffer(buf)
	_, err = buf.ReadFrom(resp.Body)
	data := buf.Bytes() // valid until putBodyBuffer: decoding copies what it keeps
	if err != nil {
		res.err = fmt.Errorf("genesys: %s (org %s): read response: %w", r.op, c.cfg.OrgID, err)
		res.transport, res.sent = true, true
		return res
	}
	if resp.StatusCode/100 != 2 {
		apiErr := parseAPIError(c.cfg.OrgID, r.op, resp, data)
		res.err, res.retryAfter = apiErr, apiErr.RetryAfter
		res.sent = true
		return res
	}
	if r.out != nil && len(bytes.TrimSpace(data)) > 0 && r.op.Method != http.MethodHead {
		if err := json.Unmarshal(data, r.out); err != nil {
			res.err = fmt.Errorf("genesys: %s (org %s): decode %d response: %w", r.op, c.cfg.OrgID, resp.StatusCode, err)
		}
	}
	return res
}

// scrubURLError drops the URL from *url.Error (it is already named by the
// operation, and a query could carry user data) and keeps the cause.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// bodyBuffers hold response bodies while they are decoded: a clone reads
// 100,000s of them, and growing a fresh slice for each was a tenth of the
// bytes the provisioner allocated.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody: a buffer grown past it (a rare huge page) is left to the
// GC rather than kept.
const maxPooledBody = 1 << 20

func getBodyBuffer() *bytes.Buffer {
	b := bodyBuffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBodyBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBody {
		bodyBuffers.Put(b)
	}
}
