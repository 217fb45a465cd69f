package integrator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Sync states kept per user (KV orgsync-crm) and counted per org.
const (
	StatePending     = "PENDING"
	StateProvisioned = "PROVISIONED"
	StateFailed      = "FAILED"
	// StateSkipped: the target has no CRM adapter configured, so there is
	// nothing to sync. Not a failure (it never counts in the failure rate).
	StateSkipped = "SKIPPED"
)

// final reports whether a sync state ends a request.
func final(state string) bool {
	return state == StateProvisioned || state == StateFailed || state == StateSkipped
}

// Outcome is the result of one CRM sync.
type Outcome struct {
	State string // StateProvisioned, StateFailed or StateSkipped
	// CRMStatus is the record's last known status in the CRM ("" when the
	// CRM was never reached).
	CRMStatus string
	// Reason says why a sync failed (or how it ended). Never a secret.
	Reason string
	// Stage where the sync ended: "config", "integration", "upsert", "poll".
	Stage string
	// Calls to the CRM, polls among them, and 429s honoured.
	Calls, Polls, RateLimited int
}

// errRetryLater marks a Genesys failure the next delivery may overcome.
type errRetryLater struct{ err error }

func (e *errRetryLater) Error() string { return e.err.Error() }
func (e *errRetryLater) Unwrap() error { return e.err }

// Sync runs one request: integration instance check, upsert, polls, all
// within the deadline. A returned error is transient (the Genesys check
// failed in a way a redelivery may fix, or ctx was cancelled); every other
// end is an Outcome.
func (s *Service) Sync(ctx context.Context, req *orgsyncv1.IntegrationRequest) (Outcome, error) {
	target := req.GetTargetOrg()
	tc, ok := s.cfg.Targets[target]
	if !ok {
		return Outcome{State: StateSkipped, Stage: "config", Reason: fmt.Sprintf("no CRM adapter is configured for target %s in the integrator (--crm): CRM sync not attempted", target)}, nil
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Deadline)
	defer cancel()
	if out, err := s.checkIntegration(ctx, target, tc.IntegrationName); err != nil || out != nil {
		if out != nil {
			return *out, nil
		}
		if parent.Err() == nil && ctx.Err() != nil {
			return s.failed(Outcome{Stage: "integration"}, ctx, err), nil
		}
		return Outcome{}, err
	}
	crm := NewCRMClient(target, tc, s.http)
	out := Outcome{Stage: "upsert"}
	body := CRMUpsert{Email: req.GetEmail(), Name: req.GetName(), GenesysUserID: req.GetTargetUserId(),
		// Stable content only: a re-sent request must be the same upsert.
		Attributes: map[string]string{"orgsyncSourceOrg": req.GetSourceOrg(), "orgsyncTargetOrg": target}}
	key := req.GetUserExternalId()
	var rec CRMRecord
	backoff := s.cfg.InitialBackoff
	for {
		var err error
		out.Calls++
		if rec, err = crm.Upsert(ctx, key, body); err == nil {
			break
		}
		if !isTransient(err) || ctx.Err() != nil {
			return s.failed(out, ctx, err), nil
		}
		if !s.wait(ctx, &out, err, &backoff) {
			return s.timedOut(out, err), nil
		}
	}
	out.Stage, out.CRMStatus = "poll", rec.Status
	backoff = s.cfg.InitialBackoff
	var lastErr error // the previous poll's transient error (a 429's Retry-After)
	for rec.Status == StatusPending {
		if !s.wait(ctx, &out, lastErr, &backoff) {
			return s.timedOut(out, lastErr), nil
		}
		out.Calls++
		out.Polls++
		got, err := crm.Get(ctx, key)
		var ce *CRMError
		if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
			// The record vanished (CRM restore?): upsert it again.
			out.Calls++
			got, err = crm.Upsert(ctx, key, body)
		}
		if err != nil {
			if !isTransient(err) || ctx.Err() != nil {
				return s.failed(out, ctx, err), nil
			}
			lastErr = err
			continue
		}
		lastErr = nil
		rec = got
		out.CRMStatus = rec.Status
	}
	switch rec.Status {
	case StatusProvisioned:
		out.State, out.Reason = StateProvisioned, fmt.Sprintf("CRM record %s is PROVISIONED", key)
	case StatusError:
		out.State, out.Reason = StateFailed, fmt.Sprintf("CRM rejected the record %s: %s", key, rec.Error)
	default:
		out.State, out.Reason = StateFailed, fmt.Sprintf("CRM answered status %q for %s, which the adapter contract does not define", rec.Status, key)
	}
	return out, nil
}

// checkIntegration verifies the target's Genesys integration instance is
// installed and ACTIVE. A non-nil Outcome is a final failure; an error is
// transient.
func (s *Service) checkIntegration(ctx context.Context, target, name string) (*Outcome, error) {
	// One check per target and IntegrationCheckTTL, not one per user: a
	// batch of users must not cost a Genesys call each. Only an ACTIVE
	// instance is remembered, so a fixed integration is seen at once.
	defer s.checking.lock(target)()
	if s.activeUntil(target, name) {
		return nil, nil
	}
	out, err := s.listIntegration(ctx, target, name)
	if out == nil && err == nil {
		s.rememberActive(target, name)
	}
	return out, err
}

func (s *Service) activeUntil(target, name string) bool {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	return time.Now().Before(s.active[target+"\x00"+name])
}

func (s *Service) rememberActive(target, name string) {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	s.active[target+"\x00"+name] = time.Now().Add(s.cfg.IntegrationCheckTTL)
}

// listIntegration is checkIntegration's Genesys call.
func (s *Service) listIntegration(ctx context.Context, target, name string) (*Outcome, error) {
	fail := func(format string, args ...any) (*Outcome, error) {
		return &Outcome{State: StateFailed, Stage: "integration", Reason: fmt.Sprintf(format, args...)}, nil
	}
	c, err := s.deps.Clients.Client(target)
	if err != nil {
		if errors.Is(err, orgs.ErrUnknownOrg) {
			return fail("target org %s is not configured in the integrator's org registry", target)
		}
		return nil, &errRetryLater{err}
	}
	all, err := c.ListIntegrations(ctx)
	if err != nil {
		if genesys.IsPermanent(err) {
			return fail("cannot check the integration instance %q of %s: %v", name, target, err)
		}
		return nil, &errRetryLater{fmt.Errorf("check integration instance %q of %s: %w", name, target, err)}
	}
	var names []string
	for _, in := range all {
		names = append(names, in.Name)
		if in.Name != name {
			continue
		}
		state := ""
		if in.ReportedState != nil {
			state = in.ReportedState.Code
		}
		if state != "ACTIVE" {
			if state == "" {
				state = "without a reported state"
			}
			return fail("integration instance %q in %s is %s, not ACTIVE: CRM sync not attempted", name, target, state)
		}
		return nil, nil
	}
	installed := "none"
	if len(names) > 0 {
		installed = strings.Join(names, ", ")
	}
	return fail("integration instance %q is not installed in %s (GET /api/v2/integrations lists: %s): CRM sync not attempted", name, target, installed)
}

// wait sleeps before the next CRM call: the Retry-After of a 429 (honoured
// as given: never retried sooner), else the current backoff with ±25%
// jitter, doubling it up to MaxBackoff. It returns false when the deadline
// (or cancellation) comes first.
func (s *Service) wait(ctx context.Context, out *Outcome, cause error, backoff *time.Duration) bool {
	var d time.Duration
	var ce *CRMError
	if errors.As(cause, &ce) && ce.Status == http.StatusTooManyRequests {
		out.RateLimited++
		d = ce.RetryAfter
	}
	retryAfter := d > 0
	if !retryAfter { // no 429, or a 429 without a usable Retry-After
		d = time.Duration(float64(*backoff) * (0.75 + rand.Float64()/2))
		*backoff = min(*backoff*2, s.cfg.MaxBackoff)
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl) - finalPollMargin
		switch {
		case left <= 0 || (d > left && retryAfter):
			return false // no call can be made (or honour Retry-After) in time
		case d > left:
			d = left // one last poll just before the deadline
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// finalPollMargin is left before the deadline for the last poll to answer.
const finalPollMargin = 50 * time.Millisecond

// failed closes a sync that hit a permanent error, or ran out of time
// (ctx done).
func (s *Service) failed(out Outcome, ctx context.Context, err error) Outcome {
	if ctx.Err() != nil || err == nil {
		return s.timedOut(out, err)
	}
	out.State = StateFailed
	out.Reason = fmt.Sprintf("CRM sync failed at %s: %v", out.Stage, err)
	return out
}

// timedOut closes a sync that did not (or could not) finish within the
// deadline; err is the last transient error, if any.
func (s *Service) timedOut(out Outcome, err error) Outcome {
	out.State = StateFailed
	last := out.CRMStatus
	if last == "" {
		last = "never reached"
	}
	out.Reason = fmt.Sprintf("CRM sync did not finish within the %v deadline (stage %s, last status %s, %d call(s), %d rate-limited)",
		s.cfg.Deadline, out.Stage, last, out.Calls, out.RateLimited)
	if err != nil {
		out.Reason += ": last error: " + err.Error()
	}
	return out
}

// keyedMutex serialises work per key (a user's syncs, a target's
// integration check); unused keys are dropped.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*refMutex{}
	}
	l := k.m[key]
	if l == nil {
		l = &refMutex{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
