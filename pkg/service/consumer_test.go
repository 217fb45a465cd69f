package service

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
)

var testDefaults = ConsumerDefaults{AckWait: 30 * time.Second, MaxInProgressEvery: 10 * time.Second, MaxDeliver: 5, Concurrency: 4, Work: "snapshot"}

// TestConsumerFlagsParseIntoDefaultsAndSettings: a service binary's
// --ack-wait, --max-deliver and concurrency flag land in the Consumer, and
// flags not given leave the service's defaults.
func TestConsumerFlagsParseIntoDefaultsAndSettings(t *testing.T) {
	var c Consumer
	fs := flag.NewFlagSet("resolver", flag.ContinueOnError)
	c.RegisterFlags(fs, testDefaults)
	if err := fs.Parse([]string{"--max-deliver", "3"}); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults(testDefaults)
	if c.AckWait != 30*time.Second || c.MaxDeliver != 3 || c.Concurrency != 4 || c.InProgressEvery != 10*time.Second {
		t.Fatalf("after --max-deliver 3: %+v", c)
	}
	if err := c.Validate(testDefaults); err != nil {
		t.Fatal(err)
	}

	var p Consumer
	pd := ConsumerDefaults{AckWait: time.Minute, MaxDeliver: 5, Concurrency: 4, UnlimitedDeliveries: true,
		Work: "plan", ConcurrencyFlag: "max-concurrent-plans", ConcurrencyHelp: "plans of one org run at once"}
	fs = flag.NewFlagSet("provisioner", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p.RegisterFlags(fs, pd)
	if err := fs.Parse([]string{"--ack-wait", "9s", "--max-concurrent-plans", "8", "--max-deliver", "-1"}); err != nil {
		t.Fatal(err)
	}
	p = p.WithDefaults(pd)
	if p.AckWait != 9*time.Second || p.InProgressEvery != 3*time.Second || p.Concurrency != 8 || p.MaxDeliver != -1 {
		t.Fatalf("provisioner flags: %+v", p)
	}
	if err := p.Validate(pd); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("concurrency") != nil {
		t.Fatal("--concurrency registered next to --max-concurrent-plans")
	}
}

// TestConsumerValidateReportsEveryProblem: one start-up error names every
// bad setting, and -1 deliveries pass only where the service allows them.
func TestConsumerValidateReportsEveryProblem(t *testing.T) {
	bad := Consumer{Topology: natsx.Topology{Replicas: 2}, AckWait: 2 * time.Second, InProgressEvery: 5 * time.Second, MaxDeliver: -1, Concurrency: -3}
	d := testDefaults
	d.MinAckWait = 3 * time.Second
	err := bad.Validate(d)
	if err == nil {
		t.Fatal("invalid consumer accepted")
	}
	for _, want := range []string{"Replicas must be odd", "AckWait must be >= 3s, got 2s", "InProgressEvery 5s must be >= 0 and shorter than AckWait 2s",
		"MaxDeliver must be >= 1, got -1", "Concurrency must be >= 1, got -3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	d.UnlimitedDeliveries = true
	if err := bad.Validate(d); err == nil || strings.Contains(err.Error(), "MaxDeliver") {
		t.Errorf("MaxDeliver -1 where unlimited deliveries are allowed: %v", err)
	}
	if err := (Consumer{AckWait: -time.Second}).Validate(testDefaults); err == nil || !strings.Contains(err.Error(), "AckWait must be > 0, got -1s") {
		t.Errorf("negative AckWait: %v", err)
	}
}
