package resolver

import (
	"sync"
	"time"
)

// progressTTL bounds how long the settled targets of a snapshot are kept
// when its redelivery went to another instance (or never came): the entry
// is then useless, and resolving those targets again would only republish
// what JetStream drops as duplicates.
const progressTTL = time.Hour

// snapshotProgress remembers, per snapshot being retried (by its stream
// sequence, which redeliveries keep), which targets are settled: planned
// or failed for good. A redelivery resolves only the others. It lives in
// memory: an instance that did not see the earlier deliveries resolves
// every target again, which is safe (plans and events have deterministic
// ids) and only costs pre-flight reads.
type snapshotProgress struct {
	now func() time.Time

	mu sync.Mutex
	m  map[uint64]*targetProgress
}

// targetProgress is one snapshot's settled targets: target → planned.
type targetProgress struct {
	mu      sync.Mutex
	at      time.Time
	planned map[string]bool
}

func newSnapshotProgress() *snapshotProgress {
	return &snapshotProgress{now: time.Now, m: map[uint64]*targetProgress{}}
}

// get returns the progress of the snapshot at stream sequence seq (new
// when unknown), dropping entries older than progressTTL.
func (p *snapshotProgress) get(seq uint64) *targetProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for s, tp := range p.m {
		if now.Sub(tp.at) > progressTTL {
			delete(p.m, s)
		}
	}
	tp, ok := p.m[seq]
	if !ok {
		tp = &targetProgress{planned: map[string]bool{}}
		p.m[seq] = tp
	}
	tp.at = now
	return tp
}

// forget drops the progress of a snapshot that is settled (acked or
// terminated).
func (p *snapshotProgress) forget(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, seq)
}

// settled reports whether target is settled (planned or failed for good).
func (tp *targetProgress) settled(target string) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	_, ok := tp.planned[target]
	return ok
}

func (tp *targetProgress) settle(target string, planned bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.planned[target] = planned
}

// split returns the planned and the failed targets of targets, in order.
func (tp *targetProgress) split(targets []string) (planned, failed []string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, t := range targets {
		if p, ok := tp.planned[t]; ok && p {
			planned = append(planned, t)
		} else if ok {
			failed = append(failed, t)
		}
	}
	return planned, failed
}
