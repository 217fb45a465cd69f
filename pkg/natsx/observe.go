package natsx

import (
	"context"
	"sync"
	"time"
)

// DeliveryOutcome is what the runner did with a delivery.
type DeliveryOutcome string

// Delivery outcomes.
const (
	// OutcomeAcked: the handler succeeded and the message was acked.
	OutcomeAcked DeliveryOutcome = "acked"
	// OutcomeRetry: the handler failed transiently; Nak with backoff.
	OutcomeRetry DeliveryOutcome = "retry"
	// OutcomeTerminated: a permanent error or the last allowed delivery;
	// the message was terminated (and OnTerminate called).
	OutcomeTerminated DeliveryOutcome = "terminated"
	// OutcomeInterrupted: shutdown cancelled the handler; Nak without delay.
	OutcomeInterrupted DeliveryOutcome = "interrupted"
)

// Delivery describes one handled delivery, reported to the observers
// registered with ObserveDeliveries.
type Delivery struct {
	Stream    string
	Consumer  string
	Subject   string
	Delivered uint64 // attempt number, 1 for the first delivery
	Outcome   DeliveryOutcome
	Duration  time.Duration // handler run time
	Err       error         // the handler's error; nil when acked
}

// DeliveryObserver is told about every delivery any Consume runner in the
// process handles (metrics). It runs on the handler's goroutine after the
// ack/nak/term: it must be fast and must not block.
type DeliveryObserver func(ctx context.Context, d Delivery)

var (
	observersMu sync.RWMutex
	observers   []DeliveryObserver
)

// ObserveDeliveries registers f for every delivery of every Consume runner
// in this process (process-wide because metrics are: pkg/metrics registers
// itself once). It returns a function that unregisters f.
func ObserveDeliveries(f DeliveryObserver) (unregister func()) {
	observersMu.Lock()
	defer observersMu.Unlock()
	observers = append(observers, f)
	idx := len(observers) - 1
	return func() {
		observersMu.Lock()
		defer observersMu.Unlock()
		if idx < len(observers) {
			observers[idx] = nil
		}
	}
}

// observeDelivery reports d to every registered observer.
func observeDelivery(ctx context.Context, d Delivery) {
	observersMu.RLock()
	defer observersMu.RUnlock()
	for _, f := range observers {
		if f != nil {
			f(ctx, d)
		}
	}
}
