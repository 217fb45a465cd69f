// Package integrator is orgsync's CRM integration workflow, decoupled from
// the core provisioning: it consumes IntegrationRequests
// (orgsync.integration.<target>, stream INTEGRATIONS) that the provisioner
// publishes once a user's core provisioning finished, checks the target's
// Genesys integration instance (GET /api/v2/integrations, reportedState
// ACTIVE), upserts the user's record in the target's CRM through the CRM
// adapter contract (PUT/GET /crm/v1/users/{externalKey}, see gcsim's README
// "Fake CRM"), and polls the record until PROVISIONED, ERROR or a deadline.
// Outcomes are AUDIT events (attribute workflow=crm), the per-org counts of
// pending, provisioned and failed syncs live in KV bucket orgsync-crm, and
// a failure rate above a threshold raises an alert event.
package integrator

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
)

// Durable is the integrator's consumer on INTEGRATIONS.
const Durable = "integrator"

// Defaults of Config.
const (
	DefaultDeadline             = 2 * time.Minute
	DefaultInitialBackoff       = 500 * time.Millisecond
	DefaultMaxBackoff           = 15 * time.Second
	DefaultFailureRateThreshold = 0.2
	DefaultMinSamples           = 5
	DefaultIntegrationName      = "Acme CRM"
	DefaultIntegrationCheckTTL  = time.Minute
)

// ConsumerDefaults are the integrator's defaults of the shared consumer
// settings (progress every third of AckWait while a sync polls).
var ConsumerDefaults = service.ConsumerDefaults{
	AckWait: 30 * time.Second, MinAckWait: 3 * time.Second, MaxDeliver: 5, Concurrency: 8,
	Work: "CRM sync request", ConcurrencyHelp: "CRM syncs run at once",
}

// CRMTarget is how one target org reaches its CRM.
type CRMTarget struct {
	// BaseURL of the CRM adapter (…/crm/v1/users/{key} is appended).
	BaseURL string `yaml:"baseURL"`
	// APIKey is sent as X-CRM-Key. Secret: never logged or evented.
	APIKey string `yaml:"apiKey"`
	// IntegrationName is the Genesys integration instance that must be
	// ACTIVE in the target (default DefaultIntegrationName).
	IntegrationName string `yaml:"integrationName,omitempty"`
}

// String redacts the key.
func (t CRMTarget) String() string {
	key := ""
	if t.APIKey != "" {
		key = "[redacted]"
	}
	return fmt.Sprintf("{baseURL:%s apiKey:%s integrationName:%s}", t.BaseURL, key, t.IntegrationName)
}

// Config tunes the integrator.
type Config struct {
	// Targets are the CRM adapters per target org key. A request for a
	// target without one fails with a clear reason (no retry).
	Targets map[string]CRMTarget
	// Deadline bounds one sync (integration check, upsert, polls) from the
	// moment it starts; a record still PENDING then is a failed sync.
	Deadline time.Duration
	// InitialBackoff and MaxBackoff bound the exponential backoff (with
	// jitter) between status polls and after transient CRM errors.
	InitialBackoff, MaxBackoff time.Duration
	// FailureRateThreshold: when failed / (provisioned + failed) of an org
	// exceeds it (with at least MinSamples finished syncs), an alert event
	// is raised (once per crossing).
	FailureRateThreshold float64
	MinSamples           int
	// IntegrationCheckTTL: how long an ACTIVE integration instance is
	// trusted before GET /api/v2/integrations is asked again (one call per
	// target and TTL instead of one per user). Negative: check every sync.
	IntegrationCheckTTL time.Duration
	// Consumer: topology and the request consumer.
	service.Consumer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Deadline == 0 {
		c.Deadline = DefaultDeadline
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.FailureRateThreshold == 0 {
		c.FailureRateThreshold = DefaultFailureRateThreshold
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.IntegrationCheckTTL == 0 {
		c.IntegrationCheckTTL = DefaultIntegrationCheckTTL
	}
	c.Consumer = c.Consumer.WithDefaults(ConsumerDefaults)
	targets := make(map[string]CRMTarget, len(c.Targets))
	for k, t := range c.Targets {
		if t.IntegrationName == "" {
			t.IntegrationName = DefaultIntegrationName
		}
		targets[k] = t
	}
	c.Targets = targets
	return c
}

// Validate reports every invalid field (after defaults).
func (c Config) Validate() error {
	c = c.WithDefaults()
	errs := []error{c.Consumer.Validate(ConsumerDefaults)}
	keys := make([]string, 0, len(c.Targets))
	for k := range c.Targets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := c.Targets[k]
		if err := natsx.ValidateOrgKey(k); err != nil {
			errs = append(errs, fmt.Errorf("Targets: %w", err))
		}
		u, err := url.Parse(t.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("Targets[%s]: baseURL %q must be an http(s) URL", k, t.BaseURL))
		}
		if t.APIKey == "" {
			errs = append(errs, fmt.Errorf("Targets[%s]: apiKey is required", k))
		}
	}
	if c.Deadline <= 0 || c.InitialBackoff <= 0 || c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("Deadline and InitialBackoff must be > 0 and MaxBackoff >= InitialBackoff (got %v, %v, %v)", c.Deadline, c.InitialBackoff, c.MaxBackoff))
	}
	if c.FailureRateThreshold <= 0 || c.FailureRateThreshold > 1 || c.MinSamples < 1 {
		errs = append(errs, fmt.Errorf("FailureRateThreshold must be in (0, 1] and MinSamples >= 1 (got %g, %d)", c.FailureRateThreshold, c.MinSamples))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("integrator: invalid config: %w", err)
	}
	return nil
}

// Deps are the integrator's collaborators.
type Deps struct {
	JS      jetstream.JetStream
	NC      *nats.Conn
	Clients orgs.Clients // Genesys clients (integration instance check)
	Events  *events.Emitter
	Logger  *slog.Logger
	// HTTP is the CRM adapter's client (default: 10s timeout).
	HTTP *http.Client
}
