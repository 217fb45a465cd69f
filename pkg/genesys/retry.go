package genesys

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how the client retries the statuses RetryableStatus
// names (429, 408, 5xx but 501) and transport errors: at most MaxAttempts
// attempts in all and no new attempt after MaxElapsed since the first,
// waiting a full-jitter exponential backoff (uniform in [0, min(MaxDelay,
// BaseDelay·2^n)]) or the server's Retry-After, whichever is longer.
type RetryPolicy struct {
	MaxAttempts int
	MaxElapsed  time.Duration
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// DefaultRetryPolicy is used when WithRetryPolicy is not given.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 6, MaxElapsed: 2 * time.Minute, BaseDelay: 200 * time.Millisecond, MaxDelay: 15 * time.Second}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = d.MaxElapsed
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = max(d.MaxDelay, p.BaseDelay)
	}
	return p
}

// backoff is the full-jitter delay before retry number n (n >= 1).
func (p RetryPolicy) backoff(n int) time.Duration {
	ceiling := p.BaseDelay
	for i := 1; i < n && ceiling < p.MaxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.MaxDelay)
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}
