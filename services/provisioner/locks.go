package provisioner

import (
	"context"
	"slices"
	"sync"
)

// userLocks serialises work on one user of one org across concurrent plans:
// a plan takes the locks of all its users, in sorted order (so two plans
// with overlapping users never deadlock), before its first step. A lock
// lives only while a plan holds or waits for it, so a long-running
// provisioner keeps no entry per user it has ever seen.
type userLocks struct {
	mu    sync.Mutex
	locks map[string]*userLock
}

type userLock struct {
	ch   chan struct{} // holds a token while taken
	refs int           // plans holding or waiting for it
}

func newUserLocks() *userLocks { return &userLocks{locks: map[string]*userLock{}} }

// ref returns key's lock, counting the caller among its users.
func (l *userLocks) ref(key string) *userLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	ul, ok := l.locks[key]
	if !ok {
		ul = &userLock{ch: make(chan struct{}, 1)}
		l.locks[key] = ul
	}
	ul.refs++
	return ul
}

// unref drops the caller from key's users and the lock with its last one.
func (l *userLocks) unref(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ul := l.locks[key]; ul != nil {
		if ul.refs--; ul.refs == 0 {
			delete(l.locks, key)
		}
	}
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
	type heldLock struct {
		key string
		ul  *userLock
	}
	var held []heldLock
	release = func() {
		for _, h := range held {
			<-h.ul.ch
			l.unref(h.key)
		}
	}
	for _, k := range keys {
		ul := l.ref(k)
		select {
		case ul.ch <- struct{}{}:
			held = append(held, heldLock{k, ul})
		case <-ctx.Done():
			l.unref(k)
			release()
			return nil, ctx.Err()
		}
	}
	return release, nil
}
