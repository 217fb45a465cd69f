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
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Durable is the resolver's consumer on SNAPSHOTS.
const Durable = "resolver"

// Defaults of Config.
const (
	DefaultAckWait         = 30 * time.Second
	DefaultInProgressEvery = 10 * time.Second
	DefaultMaxDeliver      = 5
	DefaultConcurrency     = 4
	// DefaultLookupTTL is how long pre-flight trusts an object it found.
	DefaultLookupTTL = time.Minute
)

// Config tunes the resolver. The zero value is valid.
type Config struct {
	// EmailMapping is the email rule per target org key; a request's
	// options.email_mapping overrides it for the targets it names. Targets
	// without a rule keep the source email.
	EmailMapping map[string]*orgsyncv1.EmailMapping
	// CapacityPolicy is the capacity pre-flight policy per target org key:
	// CapacityRepair (default for targets not listed) or CapacityReject.
	CapacityPolicy map[string]string
	// Topology of the streams (EnsureStreams at start).
	Topology natsx.Topology
	// AckWait, InProgressEvery, MaxDeliver, Backoff, Concurrency: the
	// snapshot consumer (see natsx.ConsumerSpec).
	AckWait         time.Duration
	InProgressEvery time.Duration
	MaxDeliver      int
	Backoff         []time.Duration
	Concurrency     int
	// LookupTTL: pre-flight reuses the target id of a role, queue, division
	// or license definition it found this recently (default
	// DefaultLookupTTL; negative: always look up).
	LookupTTL time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.InProgressEvery == 0 {
		c.InProgressEvery = min(DefaultInProgressEvery, c.AckWait/3)
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
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
	var errs []error
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
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
	if c.AckWait < 0 || c.InProgressEvery < 0 || c.MaxDeliver < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("AckWait and InProgressEvery must be >= 0, MaxDeliver and Concurrency >= 1"))
	}
	if c.InProgressEvery >= c.AckWait {
		errs = append(errs, fmt.Errorf("InProgressEvery %v must be shorter than AckWait %v", c.InProgressEvery, c.AckWait))
	}
	if len(errs) > 0 {
		return fmt.Errorf("resolver: invalid config: %w", errors.Join(errs...))
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
