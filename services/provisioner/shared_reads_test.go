package provisioner

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// pendingCallers is how many callers wait for key's round not started yet.
func (s *sharedReads) pendingCallers(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[key]; k != nil && k.pending != nil {
		return k.pending.callers
	}
	return 0
}

// A caller never gets an answer read before it asked: arriving while a read
// is in flight, it waits for the next round, which later callers share.
func TestSharedReadsAnswerOnlyWithReadsStartedAfterTheCall(t *testing.T) {
	s := newSharedReads()
	ctx := context.Background()
	var rounds atomic.Int32
	started := make(chan int32, 4)
	release := make(chan struct{})
	read := func(context.Context) (any, error) {
		n := rounds.Add(1)
		started <- n
		<-release
		return n, nil
	}
	type answer struct {
		v   any
		err error
	}
	ask := func() chan answer {
		ch := make(chan answer, 1)
		go func() {
			v, err := s.do(ctx, "q1", read)
			ch <- answer{v, err}
		}()
		return ch
	}
	first := ask()
	if n := <-started; n != 1 {
		t.Fatalf("first round is %d", n)
	}
	second := ask() // round 1 is in flight: this one must not share it
	natsxtest.Eventually(t, 5*time.Second, "second caller to open round 2", func() bool { return s.pendingCallers("q1") == 1 })
	third := ask() // joins round 2, still pending
	natsxtest.Eventually(t, 5*time.Second, "third caller to join round 2", func() bool { return s.pendingCallers("q1") == 2 })
	release <- struct{}{}
	if a := <-first; a.v != int32(1) || a.err != nil {
		t.Fatalf("first caller got %v, %v", a.v, a.err)
	}
	if n := <-started; n != 2 {
		t.Fatalf("second round is %d", n)
	}
	close(release)
	for name, ch := range map[string]chan answer{"second": second, "third": third} {
		if a := <-ch; a.v != int32(2) || a.err != nil {
			t.Errorf("%s caller got %v, %v; want round 2", name, a.v, a.err)
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Errorf("%d reads for three callers, want 2", n)
	}
	if len(s.keys) != 0 {
		t.Errorf("%d keys kept after every round ended", len(s.keys))
	}
}

func TestSharedReadsShareErrorsAndHonourTheWaitersContext(t *testing.T) {
	s := newSharedReads()
	boom := errors.New("503")
	if _, err := s.do(context.Background(), "q1", func(context.Context) (any, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("error of the read = %v", err)
	}
	release := make(chan struct{})
	defer close(release)
	go s.do(context.Background(), "q2", func(context.Context) (any, error) { <-release; return 1, nil })
	natsxtest.Eventually(t, 5*time.Second, "the first round of q2 to start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.keys["q2"] != nil && s.keys["q2"].running != nil
	})
	// A third caller joins a pending round, then its context ends.
	go s.do(context.Background(), "q2", func(context.Context) (any, error) { return 2, nil })
	natsxtest.Eventually(t, 5*time.Second, "round 2 of q2 to be pending", func() bool { return s.pendingCallers("q2") > 0 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.do(ctx, "q2", func(context.Context) (any, error) { return 3, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter with an ended context got %v", err)
	}
}
