package resolver

import (
	"testing"
	"time"
)

func TestLookupCacheKeepsHitsForTheTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	c := newLookupCache(time.Minute)
	c.now = func() time.Time { return now }
	c.put("t1", "src|QUEUE|Billing", "q-1")
	if id, ok := c.get("t1", "src|QUEUE|Billing"); !ok || id != "q-1" {
		t.Fatalf("fresh entry: %q %v", id, ok)
	}
	if _, ok := c.get("t2", "src|QUEUE|Billing"); ok {
		t.Fatal("an entry of org t1 answered for t2")
	}
	now = now.Add(time.Minute)
	if _, ok := c.get("t1", "src|QUEUE|Billing"); ok {
		t.Fatal("entry still answered after its TTL")
	}
	var none *lookupCache = newLookupCache(-1) // disabled: caches nothing, never panics
	none.put("t1", "x", "y")
	if _, ok := none.get("t1", "x"); ok {
		t.Fatal("disabled cache answered")
	}
}
