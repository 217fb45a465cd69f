package resolver

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
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Durable is the resolver's consumer on SNAPSHOTS.
const Durable = "resolver"

// ConsumerDefaults are the resolver's defaults of the shared consumer settings.
var ConsumerDefaults = service.ConsumerDefaults{
	AckWait: 30 * time.Second, MaxInProgressEvery: 10 * time.Second, MaxDeliver: 5, Concurrency: 4,
	Work: "snapshot", ConcurrencyHelp: "snapshots planned at once",
}

// DefaultLookupTTL is how long pre-flight trusts an object it found.
const DefaultLookupTTL = time.Minute

// Config tunes the resolver. The zero value is valid.
type Config struct {
	// EmailMapping is the email rule per target org key; a request's
	// options.email_mapping overrides it for the targets it names. Targets
	// without a rule keep the source email.
	EmailMapping map[string]*orgsyncv1.EmailMapping
	// CapacityPolicy is the capacity pre-flight policy per target org key:
	// CapacityRepair (default for targets not listed) or CapacityReject.
	CapacityPolicy map[string]string
	// Consumer: topology and the snapshot consumer.
	service.Consumer
	// LookupTTL: pre-flight reuses the target id of a role, queue, division
	// or license definition it found this recently (default
	// DefaultLookupTTL; negative: always look up).
	LookupTTL time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Consumer = c.Consumer.WithDefaults(ConsumerDefaults)
	if c.LookupTTL == 0 {
		c.LookupTTL = DefaultLookupTTL
	}
	return c
}

// Validate reports every invalid field (after defaults), including every
// invalid email rule, so a bad rule stops the service at start instead of
// failing plans later.
func (c Config) Validate() error {
	c = c.WithDefaults()
	errs := []error{c.Consumer.Validate(ConsumerDefaults)}
	for target, rule := range c.EmailMapping {
		if err := natsx.ValidateOrgKey(target); err != nil {
			errs = append(errs, fmt.Errorf("EmailMapping: %w", err))
		}
		if err := ValidateEmailMapping(rule); err != nil {
			errs = append(errs, fmt.Errorf("EmailMapping[%s]: %w", target, err))
		}
	}
	for target, p := range c.CapacityPolicy {
		if err := natsx.ValidateOrgKey(target); err != nil {
			errs = append(errs, fmt.Errorf("CapacityPolicy: %w", err))
		}
		if !ValidCapacityPolicy(p) {
			errs = append(errs, fmt.Errorf("CapacityPolicy[%s]: %q is neither %q nor %q", target, p, CapacityRepair, CapacityReject))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resolver: invalid config: %w", err)
	}
	return nil
}

// Deps are the resolver's collaborators.
type Deps struct {
	JS      jetstream.JetStream
	NC      *nats.Conn
	Clients orgs.Clients
	Events  *events.Emitter
	Logger  *slog.Logger
}
