package service

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// Consumer is the configuration every pipeline service shares: the topology
// of the streams it ensures and the JetStream consumer it takes its work
// from. A service's Config embeds it and adds only its own fields; the
// service's ConsumerDefaults give the defaults, the limits and the words of
// its flags.
type Consumer struct {
	// Topology of the streams and buckets the service ensures at start
	// (replicas: 1, or 3 on a cluster). It must be the deployment's:
	// ensuring with fewer replicas scales the existing streams down.
	Topology natsx.Topology
	// AckWait bounds how long an instance that stopped answering holds a
	// message before it is redelivered; the instance handling it reports
	// progress every InProgressEvery.
	AckWait time.Duration
	// InProgressEvery is the progress interval while a message is handled,
	// shorter than AckWait (default: a third of AckWait, capped by
	// ConsumerDefaults.MaxInProgressEvery).
	InProgressEvery time.Duration
	// MaxDeliver bounds delivery attempts of a message failing with
	// transient errors (API 5xx, 429 beyond the client's retries, NATS
	// hiccups); -1, where the service allows it, redelivers forever.
	MaxDeliver int
	// Backoff is the Nak delay between redeliveries (natsx.DefaultBackoff
	// when empty).
	Backoff []time.Duration
	// Concurrency is how many messages are handled at once per consumer.
	Concurrency int
}

// ConsumerDefaults are one service's defaults and limits for Consumer, and
// the words its flags use.
type ConsumerDefaults struct {
	AckWait     time.Duration
	MaxDeliver  int
	Concurrency int
	// MaxInProgressEvery caps the default progress interval (0: a third of
	// AckWait, uncapped).
	MaxInProgressEvery time.Duration
	// MinAckWait is the shortest AckWait accepted (0: any positive).
	MinAckWait time.Duration
	// UnlimitedDeliveries accepts MaxDeliver -1 (redeliver forever).
	UnlimitedDeliveries bool
	// Work names one message in flag help: "snapshot", "plan".
	Work string
	// ConcurrencyFlag and ConcurrencyHelp name and describe the flag of
	// Concurrency (default "concurrency", "<Work>s handled at once").
	ConcurrencyFlag, ConcurrencyHelp string
}

// WithDefaults returns c with its zero fields set from d.
func (c Consumer) WithDefaults(d ConsumerDefaults) Consumer {
	if c.AckWait == 0 {
		c.AckWait = d.AckWait
	}
	if c.InProgressEvery == 0 {
		c.InProgressEvery = c.AckWait / 3
		if d.MaxInProgressEvery > 0 {
			c.InProgressEvery = min(c.InProgressEvery, d.MaxInProgressEvery)
		}
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = d.MaxDeliver
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	return c
}

// Validate reports every invalid field of c after defaults, joined (nil
// when c is valid).
func (c Consumer) Validate(d ConsumerDefaults) error {
	c = c.WithDefaults(d)
	var errs []error
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	if d.MinAckWait > 0 && c.AckWait < d.MinAckWait {
		errs = append(errs, fmt.Errorf("AckWait must be >= %v, got %v", d.MinAckWait, c.AckWait))
	} else if c.AckWait <= 0 {
		errs = append(errs, fmt.Errorf("AckWait must be > 0, got %v", c.AckWait))
	}
	if c.InProgressEvery < 0 || c.InProgressEvery >= c.AckWait {
		errs = append(errs, fmt.Errorf("InProgressEvery %v must be >= 0 and shorter than AckWait %v", c.InProgressEvery, c.AckWait))
	}
	if d.UnlimitedDeliveries && c.MaxDeliver < 1 && c.MaxDeliver != -1 {
		errs = append(errs, fmt.Errorf("MaxDeliver must be >= 1 or -1, got %d", c.MaxDeliver))
	} else if !d.UnlimitedDeliveries && c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("MaxDeliver must be >= 1, got %d", c.MaxDeliver))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("Concurrency must be >= 1, got %d", c.Concurrency))
	}
	return errors.Join(errs...)
}

// RegisterFlags adds --ack-wait, --max-deliver and the concurrency flag to
// fs, with d's defaults.
func (c *Consumer) RegisterFlags(fs *flag.FlagSet, d ConsumerDefaults) {
	fs.DurationVar(&c.AckWait, "ack-wait", d.AckWait, fmt.Sprintf("how long an instance that stopped answering holds a %s before it is redelivered; progress is reported while it is handled", d.Work))
	unlimited := ""
	if d.UnlimitedDeliveries {
		unlimited = "; -1: unlimited"
	}
	fs.IntVar(&c.MaxDeliver, "max-deliver", d.MaxDeliver, fmt.Sprintf("delivery attempts of a %s failing with transient errors before it is reported failed%s", d.Work, unlimited))
	name, help := d.ConcurrencyFlag, d.ConcurrencyHelp
	if name == "" {
		name = "concurrency"
	}
	if help == "" {
		help = d.Work + "s handled at once"
	}
	fs.IntVar(&c.Concurrency, name, d.Concurrency, help)
}

// Spec is the consumer of stream this configuration describes, for the
// durable durable; the service adds its filter, hooks and logger.
func (c Consumer) Spec(stream, durable string) natsx.ConsumerSpec {
	return natsx.ConsumerSpec{Stream: stream, Durable: durable, AckWait: c.AckWait, InProgressEvery: c.InProgressEvery,
		MaxDeliver: c.MaxDeliver, Backoff: c.Backoff, Concurrency: c.Concurrency}
}
