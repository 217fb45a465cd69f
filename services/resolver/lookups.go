package resolver

import (
	"sync"
	"time"
)

// lookupCache remembers, per target org, the ids pre-flight found for the
// objects orgsync cannot create (roles, queues, divisions, license
// definitions), which change rarely: the parts of a large request, or a
// burst of requests, check each once per TTL instead of once per plan. Only
// hits are kept, so an object an administrator adds is seen at once; an
// object deleted within the TTL fails at provisioning with the API's error.
// A nil cache caches nothing. Safe for concurrent use.
type lookupCache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedID // "<org>|<external id>"
}

type cachedID struct {
	id string
	at time.Time
}

func newLookupCache(ttl time.Duration) *lookupCache {
	if ttl <= 0 {
		return nil
	}
	return &lookupCache{ttl: ttl, now: time.Now, m: map[string]cachedID{}}
}

func (c *lookupCache) get(org, extID string) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[org+"|"+extID]
	if !ok || c.now().Sub(e.at) >= c.ttl {
		return "", false
	}
	return e.id, true
}

func (c *lookupCache) put(org, extID, id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[org+"|"+extID] = cachedID{id: id, at: c.now()}
}
