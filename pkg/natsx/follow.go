package natsx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow settings. A follower's consumer is R1 (in memory, on one node of
// the stream's peers): when that node dies, the consumer dies with it.
const (
	// followCreateTimeout bounds one consumer creation: right after a node
	// died the meta leader may still place a new consumer on it, and the
	// creation then never answers.
	followCreateTimeout = 5 * time.Second
	// followHeartbeat: a consumer that sent no heartbeat for twice this is
	// abandoned and re-created on a live node.
	followHeartbeat = time.Second
	followExpiry    = 10 * time.Second
	// followInactive lets the server remove a follower's consumer its
	// client abandoned without deleting it.
	followInactive = time.Minute
	followRetryMin = 100 * time.Millisecond
	followRetryMax = 2 * time.Second
)

// Follow delivers the messages of stream from sequence from (1 when 0),
// only those on the filter subjects unless there are none, in stream order and each once,
// to fn until fn returns true (Follow returns nil) or ctx ends (ctx.Err()).
//
// It is what nats.go's ordered consumer is meant to be, made to survive a
// cluster node failure: every consumer it creates has a fresh name and a
// bounded creation time, and when a consumer goes silent (its node died,
// no heartbeat), skips a delivery, or cannot be created, Follow creates a
// new one starting after the last message fn saw, retrying until ctx ends.
// (nats.go's ordered consumer retries the creation of the same consumer,
// which hangs forever when the meta leader placed it on a node that has
// just died.) Errors that no retry fixes, like an unknown stream, are
// returned.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, filters []string, from uint64, fn func(jetstream.Msg) bool) error {
	next := max(from, 1)
	wait := followRetryMin
	for {
		done, progressed, err := followOnce(ctx, js, stream, filters, &next, fn)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrInvalidOption) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return fmt.Errorf("natsx: follow stream %s: %w", stream, err)
		}
		if progressed {
			wait = followRetryMin
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, followRetryMax)
	}
}

// followOnce runs one consumer from *next until fn is done (done), the
// consumer fails (err), or ctx ends; *next advances past every message fn
// saw (progressed).
func followOnce(ctx context.Context, js jetstream.JetStream, stream string, filters []string, next *uint64, fn func(jetstream.Msg) bool) (done, progressed bool, err error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	cfg := jetstream.ConsumerConfig{
		Name:              "orgsync_follow_" + hex.EncodeToString(suffix[:]),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       *next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: followInactive,
		Replicas:          1,
		MemoryStorage:     true,
	}
	cfg.FilterSubjects = filters
	cctx, cancel := context.WithTimeout(ctx, followCreateTimeout)
	cons, err := js.CreateConsumer(cctx, stream, cfg)
	cancel()
	if err != nil {
		return false, false, err
	}
	defer func() {
		go func() { // best effort; InactiveThreshold removes it otherwise
			dctx, cancel := context.WithTimeout(context.Background(), followCreateTimeout)
			defer cancel()
			_ = js.DeleteConsumer(dctx, stream, cfg.Name)
		}()
	}()
	it, err := cons.Messages(jetstream.PullHeartbeat(followHeartbeat), jetstream.PullExpiry(followExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return false, false, err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var consumerSeq uint64
	for {
		m, err := it.Next()
		if err != nil {
			return false, progressed, err
		}
		meta, err := m.Metadata()
		if err != nil {
			return false, progressed, err
		}
		if meta.Sequence.Consumer != consumerSeq+1 {
			// A delivery was lost (reconnect): start over after the last
			// message seen.
			return false, progressed, fmt.Errorf("natsx: follow stream %s: delivery %d after %d", stream, meta.Sequence.Consumer, consumerSeq)
		}
		consumerSeq = meta.Sequence.Consumer
		if meta.Sequence.Stream < *next {
			continue
		}
		*next = meta.Sequence.Stream + 1
		progressed = true
		if fn(m) {
			return true, true, nil
		}
	}
}
