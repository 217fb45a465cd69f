// Package provisioner applies orgsync Plans to target orgs: one durable,
// pinned JetStream consumer per owned target org feeds plans to the Engine,
// which runs each user's steps (DESIGN.md section 5) against the org's
// rate-limited Genesys API, journaling every finished step in bbolt so a
// redelivered plan resumes where the last attempt stopped.
package provisioner

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/orgs"
	"github.com/orgsync/orgsync/pkg/service"
)

// Defaults of Config.
const (
	DefaultUserConcurrency = 4
	DefaultInstance        = "provisioner"
)

// ConsumerDefaults are the provisioner's defaults of the shared consumer
// settings, for each org's plan consumer: Concurrency is how many plans of
// one org run at once (plans sharing a user still run one after the other
// for that user); progress is reported every third of AckWait.
var ConsumerDefaults = service.ConsumerDefaults{
	AckWait: 60 * time.Second, MinAckWait: 3 * time.Second, MaxDeliver: 5, UnlimitedDeliveries: true, Concurrency: 4,
	Work: "plan", ConcurrencyFlag: "max-concurrent-plans", ConcurrencyHelp: "plans of one org run at once",
}

// Config tunes the provisioner service.
type Config struct {
	// Orgs are the target org keys this instance owns. Empty means every org
	// the Clients registry knows (Deps.Clients must then implement OrgLister).
	Orgs []string
	// StatePath is the bbolt file (ID translation, step journal, baselines).
	// Required. One file belongs to one provisioner process.
	StatePath string
	// Instance names this provisioner in logs (default "provisioner").
	Instance string
	// UserConcurrency is how many users of one plan are worked on at once
	// within a step (default 4); the org's rate limiter is the real bound.
	UserConcurrency int
	// PinnedTTL: how long a silent pinned instance keeps an org (natsx default when 0).
	PinnedTTL time.Duration
	// DriftPolicy per target org key: DriftEnforce ("enforce", the default
	// for orgs not listed: manual edits of cloned users are reverted) or
	// DriftReport ("report": drift is only reported). See delta.go.
	DriftPolicy map[string]string
	// Phones is the phone alias policy per target org key (phone_alias.go).
	Phones map[string]PhonePolicy
	// NoIntegrationRequests stops publishing CRM sync requests
	// (orgsync.integration.<target>) for provisioned users.
	NoIntegrationRequests bool
	// Consumer: topology (streams and the drift bucket) and each org's plan
	// consumer (see ConsumerDefaults).
	service.Consumer
}

// WithDefaults returns c with zero fields replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.Instance == "" {
		c.Instance = DefaultInstance
	}
	if c.UserConcurrency == 0 {
		c.UserConcurrency = DefaultUserConcurrency
	}
	c.Consumer = c.Consumer.WithDefaults(ConsumerDefaults)
	return c
}

// Validate reports every invalid field (after defaults).
func (c Config) Validate() error {
	c = c.WithDefaults()
	errs := []error{c.Consumer.Validate(ConsumerDefaults)}
	if c.StatePath == "" {
		errs = append(errs, errors.New("StatePath is required"))
	}
	for _, o := range c.Orgs {
		if err := natsx.ValidateOrgKey(o); err != nil {
			errs = append(errs, fmt.Errorf("Orgs: %w", err))
		}
	}
	if err := validatePhones(c.Phones); err != nil {
		errs = append(errs, err)
	}
	if c.UserConcurrency < 1 {
		errs = append(errs, fmt.Errorf("UserConcurrency must be >= 1, got %d", c.UserConcurrency))
	}
	for org, p := range c.DriftPolicy {
		if err := natsx.ValidateOrgKey(org); err != nil {
			errs = append(errs, fmt.Errorf("DriftPolicy: %w", err))
		}
		if !ValidDriftPolicy(p) {
			errs = append(errs, fmt.Errorf("DriftPolicy[%s]: %q is not %q or %q", org, p, DriftEnforce, DriftReport))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("provisioner: invalid config: %w", err)
	}
	return nil
}

// Deps are the provisioner's collaborators.
type Deps struct {
	JS      jetstream.JetStream
	NC      *nats.Conn
	Clients orgs.Clients
	Events  *events.Emitter
	Logger  *slog.Logger
	// Observer, when set, is told about every finished step (tests use it to
	// stop a provisioner at a step boundary).
	Observer StepObserver
}

// OrgLister is implemented by Clients registries that know their orgs
// (orgs.Registry does); Config.Orgs empty means "all of them".
type OrgLister interface {
	Orgs() []string
}
