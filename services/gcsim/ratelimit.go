package gcsim

import (
	"net/http"
	"strconv"
	"time"
)

const rateWindow = time.Minute

// rateLimit applies the per-token fixed one-minute window and, as Genesys
// does on every answer to a valid token, reports it in the inin-ratelimit-*
// headers (count used in the window, allowed, seconds to reset). When the
// token has used its budget it writes a 429 with Retry-After and returns
// true.
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
	retry := max(int((reset.Sub(now)+time.Second-1)/time.Second), 1)
	h := w.Header()
	h.Set("inin-ratelimit-count", strconv.Itoa(min(count, limit)))
	h.Set("inin-ratelimit-allowed", strconv.Itoa(limit))
	h.Set("inin-ratelimit-reset", strconv.Itoa(retry))
	if count <= limit {
		return false
	}
	h.Set("Retry-After", strconv.Itoa(retry))
	writeError(w, r, errf(http.StatusTooManyRequests, "too.many.requests.retry.after",
		"Rate limit exceeded the maximum. Retry the request in [%d] seconds", retry))
	return true
}
