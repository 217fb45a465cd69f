package provisioner

import (
	"context"
	"slices"
	"sync"
)

// userLocks serialises work on one user of one org across concurrent plans:
// a plan takes the locks of all its users, in sorted order (so two plans
// with overlapping users never deadlock), before its first step.
type userLocks struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

func newUserLocks() *userLocks { return &userLocks{locks: map[string]chan struct{}{}} }

func (l *userLocks) get(key string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.locks[key]
	if !ok {
		ch = make(chan struct{}, 1)
		l.locks[key] = ch
	}
	return ch
}

// acquire locks every (org, user) pair and returns the release function, or
// ctx's error (holding nothing) when ctx ends first.
func (l *userLocks) acquire(ctx context.Context, org string, users []string) (release func(), err error) {
	keys := make([]string, 0, len(users))
	for _, u := range users {
		keys = append(keys, org+"\x00"+u)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var held []chan struct{}
	release = func() {
		for _, ch := range held {
			<-ch
		}
	}
	for _, k := range keys {
		ch := l.get(k)
		select {
		case ch <- struct{}{}:
			held = append(held, ch)
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
	return release, nil
}
