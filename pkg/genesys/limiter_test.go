package genesys

import (
	"context"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

type staticToken string

func (s staticToken) Token() (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: string(s)}, nil
}

func TestLimiterAdaptsDownOnThrottleAndRecoversAdditively(t *testing.T) {
	t.Parallel()
	l := NewLimiter(10, 10, 1)
	l.OnThrottled(0)
	if got := l.Stats().Rate; got != 5 {
		t.Fatalf("after one 429 rate = %g, want 5", got)
	}
	for range 10 {
		l.OnThrottled(0)
	}
	if got := l.Stats().Rate; got != 1 {
		t.Fatalf("rate fell to %g, below the floor 1", got)
	}
	for range 5 {
		l.OnSuccess()
	}
	if got := l.Stats().Rate; got != 3.5 {
		t.Fatalf("after 5 successes rate = %g, want 1 + 5×0.5 = 3.5", got)
	}
	for range 100 {
		l.OnSuccess()
	}
	st := l.Stats()
	if st.Rate != 10 || st.Throttled != 11 {
		t.Fatalf("stats = %+v, want rate back at 10 and 11 throttles", st)
	}
}

func TestLimiterPausesAllCallersUntilReset(t *testing.T) {
	t.Parallel()
	l := NewLimiter(1000, 100, 1)
	h := http.Header{}
	h.Set("inin-ratelimit-count", "300")
	h.Set("inin-ratelimit-allowed", "300")
	h.Set("inin-ratelimit-reset", "0.2")
	l.ObserveHeaders(h)
	if l.Stats().PausedUntil.IsZero() {
		t.Fatal("exhausted budget did not pause the org")
	}
	start := time.Now()
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("Wait returned after %s, before the reset", waited)
	}
	// A budget not yet exhausted does not pause.
	h.Set("inin-ratelimit-count", "12")
	l.ObserveHeaders(h)
	if !l.Stats().PausedUntil.IsZero() {
		t.Fatal("paused although budget remains")
	}
	// A cancelled context ends a wait.
	l.Pause(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("Wait ignored a cancelled context")
	}
}

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}.withDefaults()
	for n := 1; n <= 10; n++ {
		ceiling := min(100*time.Millisecond<<(n-1), time.Second)
		for range 50 {
			if d := p.backoff(n); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %s outside [0, %s]", n, d, ceiling)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"3": 3 * time.Second, "0.5": 500 * time.Millisecond, "": 0, "junk": 0, "-1": 0} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// BenchmarkLimiterWait is the cost of passing the org limiter when a token
// is free (the budget is far above the call rate): the overhead every API
// call pays, from many goroutines at once as a provisioner's workers do.
func BenchmarkLimiterWait(b *testing.B) {
	l := NewLimiter(1e9, 1<<30, 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			l.OnSuccess()
		}
	})
}
