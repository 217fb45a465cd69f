package provisioner

import (
	"context"
	"fmt"
	"sync"
)

// sharedReads coalesces identical reads of concurrent plans (the member
// list of a queue that twelve plans of one org verify at about the same
// time): callers asking for a key while a round for it is pending share
// that round's answer. A round starts only after every caller that joined
// it asked, so each caller sees every write it finished before asking —
// what a read-back needs. A new round waits for the key's previous one to
// end, so there is at most one read of a key in flight.
type sharedReads struct {
	mu    sync.Mutex
	keys  map[string]*readKey
	sizes map[string]int // key → entries in its last answer (queueMembers)
}

type readKey struct {
	pending *readRound    // not started yet: new callers join it
	running chan struct{} // closed when the round in flight ends; nil when none
}

type readRound struct {
	done    chan struct{}
	val     any
	err     error
	callers int // who wait for it, its opener included (under sharedReads.mu)
}

func newSharedReads() *sharedReads {
	return &sharedReads{keys: map[string]*readKey{}, sizes: map[string]int{}}
}

// lastSize is how many entries key's last answer held (0 before the first
// read): about what the next read of it will cost.
func (s *sharedReads) lastSize(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sizes[key]
}

func (s *sharedReads) setSize(key string, n int) {
	s.mu.Lock()
	s.sizes[key] = n
	s.mu.Unlock()
}

// do returns the answer of a round of read for key that started after this
// call. The caller that opens a round runs read with its ctx; the others
// wait for it (or for their own ctx). The answer is shared: callers must
// not modify it.
func (s *sharedReads) do(ctx context.Context, key string, read func(context.Context) (any, error)) (any, error) {
	s.mu.Lock()
	k := s.keys[key]
	if k == nil {
		k = &readKey{}
		s.keys[key] = k
	}
	if r := k.pending; r != nil {
		r.callers++
		s.mu.Unlock()
		select {
		case <-r.done:
			return r.val, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r := &readRound{done: make(chan struct{}), callers: 1}
	k.pending = r
	prev := k.running
	s.mu.Unlock()
	if prev != nil {
		<-prev // rounds end: read honours its ctx
	}
	s.mu.Lock()
	k.pending, k.running = nil, r.done
	s.mu.Unlock()

	r.val, r.err = read(ctx)
	close(r.done)

	s.mu.Lock()
	if k.running == r.done {
		k.running = nil
		if k.pending == nil {
			delete(s.keys, key)
		}
	}
	s.mu.Unlock()
	return r.val, r.err
}

// queueMembers returns the ids of queue q's member users, from a listing
// that started after the call (shared with concurrent plans of the org).
// The set is shared: read it, never change it.
func (r *run) queueMembers(ctx context.Context, q string) (map[string]bool, error) {
	key := queueMembersKey(r.org, q)
	v, err := r.e.reads.do(ctx, key, func(ctx context.Context) (any, error) {
		ms, err := r.c.ListQueueMembers(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list members of queue %s: %w", r.nameOf(q), err)
		}
		set := make(map[string]bool, len(ms))
		for _, m := range ms {
			id := m.ID
			if m.User != nil && m.User.ID != "" {
				id = m.User.ID
			}
			set[id] = true
		}
		r.e.reads.setSize(key, len(set))
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]bool), nil
}

func queueMembersKey(org, q string) string { return org + "\x00queue-members\x00" + q }

// queueListingPages estimates what listing queue q's members costs in
// calls: its size at the last listing plus the members a plan may have
// added since (never listed: the adds alone), a page per PageSize.
func (r *run) queueListingPages(q string, added int) int {
	n := r.e.reads.lastSize(queueMembersKey(r.org, q))
	size := max(1, r.c.Config().PageSize)
	return max(1, (n+added+size-1)/size)
}
