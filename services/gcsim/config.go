package gcsim

import (
	"fmt"
	"time"
)

// Default values applied by Config.withDefaults.
const (
	DefaultRateLimitPerMinute = 300
	DefaultTokenTTL           = 86400 * time.Second
)

// Config tunes the simulator. The zero value is valid: no latency, the
// Genesys default rate limit of 300 requests per minute per token, no
// eventual-consistency windows and 24h tokens.
type Config struct {
	// Latency is added to every API request before it is handled.
	Latency time.Duration
	// LatencyJitter adds a uniformly random extra delay in [0, LatencyJitter).
	LatencyJitter time.Duration
	// RateLimitPerMinute is the number of requests one access token may make
	// per one-minute window. 0 means DefaultRateLimitPerMinute; a negative
	// value disables rate limiting.
	RateLimitPerMinute int
	// NotFoundAfterCreate is the window after creation during which
	// GET by id of a freshly created user, skill or team returns 404, as the
	// real platform does while the object propagates.
	NotFoundAfterCreate time.Duration
	// ActivationDelay is how long a newly created user stays in state
	// "inactive" before becoming "active".
	ActivationDelay time.Duration
	// TokenTTL is the lifetime of issued access tokens (expires_in).
	// 0 means DefaultTokenTTL.
	TokenTTL time.Duration
	// Clock returns the current time; nil means time.Now. Tests inject a
	// controllable clock to drive rate-limit windows, token expiry,
	// activation and 404 windows without sleeping.
	Clock func() time.Time
}

// withDefaults returns a copy of c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.RateLimitPerMinute == 0 {
		c.RateLimitPerMinute = DefaultRateLimitPerMinute
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Validate reports the first invalid field of c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Latency < 0:
		return fmt.Errorf("gcsim config: Latency must be >= 0, got %v", c.Latency)
	case c.LatencyJitter < 0:
		return fmt.Errorf("gcsim config: LatencyJitter must be >= 0, got %v", c.LatencyJitter)
	case c.NotFoundAfterCreate < 0:
		return fmt.Errorf("gcsim config: NotFoundAfterCreate must be >= 0, got %v", c.NotFoundAfterCreate)
	case c.ActivationDelay < 0:
		return fmt.Errorf("gcsim config: ActivationDelay must be >= 0, got %v", c.ActivationDelay)
	case c.TokenTTL < time.Second:
		return fmt.Errorf("gcsim config: TokenTTL must be >= 1s, got %v", c.TokenTTL)
	}
	return nil
}
