package provisioner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

func (l *userLocks) waiters(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ul := l.locks[key]; ul != nil {
		return ul.refs
	}
	return 0
}

func (l *userLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}

func TestUserLocksSerialiseOverlappingPlansAndForgetIdleUsers(t *testing.T) {
	l := newUserLocks()
	ctx := context.Background()
	releaseA, err := l.acquire(ctx, "t1", []string{"u2", "u1", "u1"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		release, err := l.acquire(ctx, "t1", []string{"u3", "u2"})
		if err != nil {
			t.Error(err)
		}
		got <- release
	}()
	natsxtest.Eventually(t, 5*time.Second, "plan B to wait for u2", func() bool { return l.waiters("t1\x00u2") == 2 })
	select {
	case <-got:
		t.Fatal("plan B took u2 while plan A holds it")
	default:
	}
	// A plan of another org, same user ids, is not held up.
	releaseC, err := l.acquire(ctx, "t2", []string{"u2"})
	if err != nil {
		t.Fatal(err)
	}
	releaseC()
	releaseA()
	releaseB := <-got
	releaseB()
	if n := l.size(); n != 0 {
		t.Fatalf("%d locks kept after every plan released its users, want 0", n)
	}
}

func TestUserLocksGiveUpWhenContextEnds(t *testing.T) {
	l := newUserLocks()
	releaseA, err := l.acquire(context.Background(), "t1", []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx, "t1", []string{"u0", "u1"})
		done <- err
	}()
	natsxtest.Eventually(t, 5*time.Second, "the second plan to wait for u1", func() bool { return l.waiters("t1\x00u1") == 2 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire after cancel = %v, want context.Canceled", err)
	}
	// u0, taken before the wait, was given back: another plan gets it now.
	releaseD, err := l.acquire(context.Background(), "t1", []string{"u0"})
	if err != nil {
		t.Fatal(err)
	}
	releaseD()
	releaseA()
	if n := l.size(); n != 0 {
		t.Fatalf("%d locks kept, want 0", n)
	}
}
