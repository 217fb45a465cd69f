package genesys

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is the API budget of one org, shared by every Client of that org
// (WithLimiter). It is a token bucket (golang.org/x/time/rate) whose rate
// adapts: a 429 halves it (never below the floor) and pauses every caller
// until the server's Retry-After / inin-ratelimit-reset has passed; each
// success adds back a twentieth of the configured rate, up to that rate
// (additive increase, multiplicative decrease).
type Limiter struct {
	mu          sync.Mutex
	bucket      *rate.Limiter
	max, floor  float64
	step        float64
	pausedUntil time.Time

	throttled int64
	waits     int64
	waited    time.Duration
	now       func() time.Time
}

// LimiterStats is a snapshot of a Limiter.
type LimiterStats struct {
	Rate        float64       // current requests/second
	MaxRate     float64       // configured requests/second
	Throttled   int64         // 429 answers seen
	Waits       int64         // calls that had to wait for a token or a pause
	TotalWait   time.Duration // time spent waiting, summed over callers
	PausedUntil time.Time     // zero when not paused
}

// NewLimiter returns a limiter of rps requests/second with the given burst and
// adaptive floor (values <= 0 take DefaultRateLimit, DefaultBurst and
// min(DefaultMinRateLimit, rps)).
func NewLimiter(rps float64, burst int, floor float64) *Limiter {
	if rps <= 0 {
		rps = DefaultRateLimit
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if floor <= 0 || floor > rps {
		floor = min(DefaultMinRateLimit, rps)
	}
	return &Limiter{
		bucket: rate.NewLimiter(rate.Limit(rps), burst),
		max:    rps, floor: floor, step: rps / 20,
		now: time.Now,
	}
}

// Wait blocks until the org's pause (if any) is over and a token is
// available, or ctx is done.
func (l *Limiter) Wait(ctx context.Context) error {
	start := l.now()
	waited := false
	for {
		l.mu.Lock()
		pause := l.pausedUntil.Sub(l.now())
		l.mu.Unlock()
		if pause <= 0 {
			break
		}
		waited = true
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	r := l.bucket.Reserve()
	if d := r.Delay(); d > 0 {
		waited = true
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			r.Cancel()
			return ctx.Err()
		case <-t.C:
		}
	}
	if waited {
		l.mu.Lock()
		l.waits++
		l.waited += l.now().Sub(start)
		l.mu.Unlock()
	}
	return nil
}

// OnThrottled records a 429: the rate halves (not below the floor) and all
// callers pause for retryAfter (when > 0).
func (l *Limiter) OnThrottled(retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttled++
	l.bucket.SetLimit(rate.Limit(max(float64(l.bucket.Limit())/2, l.floor)))
	l.pauseLocked(retryAfter)
}

// OnSuccess records a success: the rate recovers by one step toward the max.
func (l *Limiter) OnSuccess() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := float64(l.bucket.Limit()); cur < l.max {
		l.bucket.SetLimit(rate.Limit(min(cur+l.step, l.max)))
	}
}

// Pause stops all callers for d (extending, never shortening, a pause).
func (l *Limiter) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pauseLocked(d)
}

func (l *Limiter) pauseLocked(d time.Duration) {
	if d <= 0 {
		return
	}
	if until := l.now().Add(d); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
}

// ObserveHeaders applies Genesys' rate-limit hints of a response: when
// inin-ratelimit-count has reached inin-ratelimit-allowed, every caller pauses
// until inin-ratelimit-reset (seconds) has passed.
func (l *Limiter) ObserveHeaders(h http.Header) {
	count, err1 := strconv.Atoi(strings.TrimSpace(h.Get("inin-ratelimit-count")))
	allowed, err2 := strconv.Atoi(strings.TrimSpace(h.Get("inin-ratelimit-allowed")))
	if err1 != nil || err2 != nil || allowed <= 0 || count < allowed {
		return
	}
	l.Pause(parseRetryAfter(h.Get("inin-ratelimit-reset")))
}

// Stats returns a snapshot of the limiter.
func (l *Limiter) Stats() LimiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LimiterStats{Rate: float64(l.bucket.Limit()), MaxRate: l.max, Throttled: l.throttled, Waits: l.waits, TotalWait: l.waited}
	if l.pausedUntil.After(l.now()) {
		s.PausedUntil = l.pausedUntil
	}
	return s
}

// parseRetryAfter reads a delay in seconds (integer or decimal) or an HTTP
// date; anything else is zero.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
