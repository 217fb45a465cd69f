package reconciler

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Config.
const (
	DefaultWebhookPath        = "/webhooks/audit"
	DefaultWebhookTolerance   = 5 * time.Minute
	DefaultWebhookMaxBody     = 1 << 20 // 1 MiB
	DefaultSweepInterval      = 24 * time.Hour
	DefaultChannelRenewMargin = 10 * time.Minute
	DefaultMaxTopicsPerChan   = 1000
	DefaultMaxChannels        = 20
	DefaultReconnectMin       = 250 * time.Millisecond
	DefaultReconnectMax       = 30 * time.Second
	DefaultHeartbeatTimeout   = 2 * time.Minute
	DefaultSubscribeGather    = 250 * time.Millisecond
	// MinWebhookSecretLen keeps the shared secret out of brute-force range.
	MinWebhookSecretLen = 16
)

// Config configures the reconciler. The zero value plus a webhook secret (or
// WebhookDisabled) is valid: WithDefaults fills the rest.
type Config struct {
	// WebhookAddr is where the signed webhook endpoint listens
	// ("127.0.0.1:8090", ":0" for a random port). Empty disables the
	// listener; Service.WebhookHandler still serves the endpoint for
	// embedding in another server.
	WebhookAddr string
	// WebhookPath of the endpoint; default "/webhooks/audit".
	WebhookPath string
	// WebhookSecret is the HMAC-SHA256 shared secret of the relay (at least
	// 16 bytes). Required unless WebhookDisabled. Never logged.
	WebhookSecret string `json:"-"`
	// WebhookTolerance is how far X-Orgsync-Timestamp may be from now, in
	// either direction (replay window); default 5 min.
	WebhookTolerance time.Duration
	// WebhookMaxBody caps the request body in bytes; default 1 MiB.
	WebhookMaxBody int64
	// WebhookDisabled turns the endpoint off (it answers 503).
	WebhookDisabled bool
	// WebhookOrgIDs maps Genesys organization ids (of an EventBridge
	// event's source, else the record's userHomeOrgId) to orgsync org keys,
	// for relays that cannot set the X-Orgsync-Org header.
	WebhookOrgIDs map[string]string

	// SweepInterval between periodic sweeps of every source org; default
	// 24h. Negative disables the periodic sweep (on-demand sweeps still run).
	SweepInterval time.Duration

	// NotificationsDisabled turns the Notifications API subscriber off.
	NotificationsDisabled bool
	// ChannelRenewMargin: a channel is renewed this long before its
	// `expires`; default 10 min.
	ChannelRenewMargin time.Duration
	// MaxTopicsPerChannel (Genesys: 1000) and MaxChannels per OAuth client
	// (Genesys: 20) bound how topics are packed; tests lower them.
	MaxTopicsPerChannel int
	MaxChannels         int
	// ReconnectMin/Max bound the WebSocket reconnect backoff (exponential
	// with full jitter); defaults 250ms and 30s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// HeartbeatTimeout: a socket silent for this long (Genesys sends a
	// heartbeat every 30s) is considered dead and reconnected; default 2 min.
	HeartbeatTimeout time.Duration
	// SubscribeGather: after a change of the tracked users, how long the
	// notification subscriber waits for more before it repacks the org's
	// topics (a clone tracks its users one by one as their plans finish;
	// one repack per change costs O(users) each, O(users²) per clone);
	// default 250ms, negative repacks at once.
	SubscribeGather time.Duration

	// Replicas of the KV buckets the reconciler creates (1 or 3).
	Replicas int

	// SyncSets configures sync set membership (syncset.go).
	SyncSets SyncSetConfig
}

// WithDefaults returns c with zero fields replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.WebhookPath == "" {
		c.WebhookPath = DefaultWebhookPath
	}
	if c.WebhookTolerance == 0 {
		c.WebhookTolerance = DefaultWebhookTolerance
	}
	if c.WebhookMaxBody == 0 {
		c.WebhookMaxBody = DefaultWebhookMaxBody
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.ChannelRenewMargin == 0 {
		c.ChannelRenewMargin = DefaultChannelRenewMargin
	}
	if c.MaxTopicsPerChannel == 0 {
		c.MaxTopicsPerChannel = DefaultMaxTopicsPerChan
	}
	if c.MaxChannels == 0 {
		c.MaxChannels = DefaultMaxChannels
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.SubscribeGather == 0 {
		c.SubscribeGather = DefaultSubscribeGather
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// Validate reports every invalid field of c (after defaults). Errors never
// contain the secret.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if !c.WebhookDisabled {
		if c.WebhookSecret == "" {
			errs = append(errs, errors.New("WebhookSecret is required unless the webhook is disabled (env ORGSYNC_WEBHOOK_SECRET)"))
		} else if len(c.WebhookSecret) < MinWebhookSecretLen {
			errs = append(errs, fmt.Errorf("WebhookSecret must be at least %d bytes, got %d", MinWebhookSecretLen, len(c.WebhookSecret)))
		}
	}
	if c.WebhookPath[0] != '/' {
		errs = append(errs, fmt.Errorf("WebhookPath must start with '/', got %q", c.WebhookPath))
	}
	if c.WebhookTolerance < 0 {
		errs = append(errs, fmt.Errorf("WebhookTolerance must be > 0, got %v", c.WebhookTolerance))
	}
	if c.WebhookMaxBody < 0 {
		errs = append(errs, fmt.Errorf("WebhookMaxBody must be > 0, got %d", c.WebhookMaxBody))
	}
	if c.ChannelRenewMargin < 0 {
		errs = append(errs, fmt.Errorf("ChannelRenewMargin must be > 0, got %v", c.ChannelRenewMargin))
	}
	if c.MaxTopicsPerChannel < 0 || c.MaxTopicsPerChannel > DefaultMaxTopicsPerChan {
		errs = append(errs, fmt.Errorf("MaxTopicsPerChannel must be 1..%d (Genesys limit), got %d", DefaultMaxTopicsPerChan, c.MaxTopicsPerChannel))
	}
	if c.MaxChannels < 0 || c.MaxChannels > DefaultMaxChannels {
		errs = append(errs, fmt.Errorf("MaxChannels must be 1..%d (Genesys limit per OAuth client), got %d", DefaultMaxChannels, c.MaxChannels))
	}
	if c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, fmt.Errorf("reconnect backoff must satisfy 0 < ReconnectMin <= ReconnectMax, got %v..%v", c.ReconnectMin, c.ReconnectMax))
	}
	if c.HeartbeatTimeout < 0 {
		errs = append(errs, fmt.Errorf("HeartbeatTimeout must be > 0, got %v", c.HeartbeatTimeout))
	}
	if c.Replicas < 1 || c.Replicas > 5 || c.Replicas%2 == 0 {
		errs = append(errs, fmt.Errorf("Replicas must be 1, 3 or 5, got %d", c.Replicas))
	}
	if len(errs) > 0 {
		return fmt.Errorf("reconciler: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// redacted returns c with the secret replaced, for printing.
func (c Config) redacted() any {
	type plain Config // no methods: no recursion into String
	p := plain(c)
	if p.WebhookSecret != "" {
		p.WebhookSecret = "[REDACTED]"
	}
	return p
}

// String prints c without the webhook secret (fmt's %v and %+v use it).
func (c Config) String() string { return fmt.Sprintf("%+v", c.redacted()) }

// GoString is String for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue logs c without the webhook secret.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
