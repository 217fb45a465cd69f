package gcsim

import (
	"net/http"
	"strconv"
	"time"
)

const rateWindow = time.Minute

// rateLimit applies the per-token fixed one-minute window. When the token
// has used its budget it writes a 429 with Retry-After and the
// inin-ratelimit-* headers and returns true.
func (s *Sim) rateLimit(w http.ResponseWriter, r *http.Request, t *token) bool {
	limit := s.cfg.RateLimitPerMinute
	if limit < 0 {
		return false
	}
	now := s.now()
	s.mu.Lock()
	if t.windowStart.IsZero() || !now.Before(t.windowStart.Add(rateWindow)) {
		t.windowStart, t.windowCount = now, 0
	}
	t.windowCount++
	count, reset := t.windowCount, t.windowStart.Add(rateWindow)
	s.mu.Unlock()
	if count <= limit {
		return false
	}
	retry := int((reset.Sub(now) + time.Second - 1) / time.Second)
	if retry < 1 {
		retry = 1
	}
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(retry))
	h.Set("inin-ratelimit-count", strconv.Itoa(count-1))
	h.Set("inin-ratelimit-allowed", strconv.Itoa(limit))
	h.Set("inin-ratelimit-reset", strconv.Itoa(retry))
	writeError(w, r, errf(http.StatusTooManyRequests, "too.many.requests.retry.after",
		"Rate limit exceeded the maximum. Retry the request in [%d] seconds", retry))
	return true
}
