package gcsim

import (
	"fmt"
	"time"
)

// Default values applied by Config.withDefaults.
const (
	DefaultRateLimitPerMinute = 300
	DefaultTokenTTL           = 86400 * time.Second
	// DefaultChannelTTL is the lifetime of a notifications channel (Genesys:
	// 24 hours, renewed by (re)subscribing).
	DefaultChannelTTL = 24 * time.Hour
	// DefaultNotificationHeartbeat is the interval of the WebSocket
	// "channel.metadata" heartbeat (Genesys: 30 seconds).
	DefaultNotificationHeartbeat = 30 * time.Second
	// DefaultCRMDelay is how long a fake-CRM record stays PENDING.
	DefaultCRMDelay = 2 * time.Second
	// DefaultNotFoundAfterCreate and DefaultActivationDelay are the eventual
	// consistency the real platform shows right after a create (a new user,
	// skill or team reads 404 by id for a moment; a new user is inactive for
	// a moment), on by default so every client of gcsim copes with them.
	DefaultNotFoundAfterCreate = 500 * time.Millisecond
	DefaultActivationDelay     = 300 * time.Millisecond
)

// Config tunes the simulator. The zero value is valid: no latency, the
// Genesys default rate limit of 300 requests per minute per token, the
// default eventual-consistency windows and 24h tokens.
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
	// real platform does while the object propagates. 0 means
	// DefaultNotFoundAfterCreate; negative disables it (a test about
	// something else that must read a new object at once).
	NotFoundAfterCreate time.Duration
	// ActivationDelay is how long a newly created user stays in state
	// "inactive" before becoming "active". 0 means DefaultActivationDelay;
	// negative disables it.
	ActivationDelay time.Duration
	// TokenTTL is the lifetime of issued access tokens (expires_in).
	// 0 means DefaultTokenTTL.
	TokenTTL time.Duration
	// ChannelTTL is the lifetime of a notifications channel; creating it and
	// every POST/PUT of its subscriptions set expires = now + ChannelTTL.
	// 0 means DefaultChannelTTL.
	ChannelTTL time.Duration
	// NotificationHeartbeat is the interval of the WebSocket heartbeat
	// message; expired channels' sockets are also closed on this tick.
	// 0 means DefaultNotificationHeartbeat; negative disables heartbeats.
	NotificationHeartbeat time.Duration
	// EvictOldestChannel switches the 21st channel of an OAuth client from
	// the default 400 to the documented platform behaviour: the channel with
	// the oldest last use (unconnected ones first) is removed to make room.
	EvictOldestChannel bool
	// CRMDelay is how long a fake-CRM user record stays PENDING after a PUT
	// before it turns PROVISIONED (or ERROR); per-org and per-key
	// overrides: Sim.SetCRMBehaviour. 0 means DefaultCRMDelay.
	CRMDelay time.Duration
	// Clock returns the current time; nil means time.Now. Tests inject a
	// controllable clock to drive rate-limit windows, token expiry,
	// activation and 404 windows without sleeping.
	Clock func() time.Time
}

// withDefaults returns a copy of c with zero fields replaced by defaults and
// disabled (negative) windows set to 0. Apply it once.
func (c Config) withDefaults() Config {
	c.NotFoundAfterCreate = window(c.NotFoundAfterCreate, DefaultNotFoundAfterCreate)
	c.ActivationDelay = window(c.ActivationDelay, DefaultActivationDelay)
	if c.RateLimitPerMinute == 0 {
		c.RateLimitPerMinute = DefaultRateLimitPerMinute
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.ChannelTTL == 0 {
		c.ChannelTTL = DefaultChannelTTL
	}
	if c.NotificationHeartbeat == 0 {
		c.NotificationHeartbeat = DefaultNotificationHeartbeat
	}
	if c.CRMDelay == 0 {
		c.CRMDelay = DefaultCRMDelay
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
	case c.TokenTTL < time.Second:
		return fmt.Errorf("gcsim config: TokenTTL must be >= 1s, got %v", c.TokenTTL)
	case c.ChannelTTL < time.Second:
		return fmt.Errorf("gcsim config: ChannelTTL must be >= 1s, got %v", c.ChannelTTL)
	case c.CRMDelay < 0:
		return fmt.Errorf("gcsim config: CRMDelay must be >= 0, got %v", c.CRMDelay)
	}
	return nil
}

// window is a consistency window setting: 0 is def, negative is off.
func window(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
