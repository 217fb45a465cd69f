package gcsim

import "time"

// UserChange is the internal "user changed" event, raised on every change of
// a user's configuration. It is the hook for the Notifications API and the
// fake CRM: subscribe with Sim.OnUserChanged.
type UserChange struct {
	OrgID  string
	UserID string
	// Aspect names what changed: "created", "deleted", "profile",
	// "addresses", "skills", "languages", "utilization", "team", "queues",
	// "grants", "licenses", "externalid".
	Aspect string
	At     time.Time
	// OldValues and NewValues are the audit record's propertyChanges values
	// where the simulator knows them: for "team" the previous and the new
	// team id (empty when none).
	OldValues, NewValues []string
}

// OnUserChanged registers fn to be called after every user change. fn runs
// on the goroutine that made the change, after the org lock is released, so
// it may call back into the Sim; it must not block for long.
func (s *Sim) OnUserChanged(fn func(UserChange)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

// userChanged queues a change event; o.mu must be held.
func (s *Sim) userChanged(o *org, userID, aspect string) {
	o.pending = append(o.pending, UserChange{OrgID: o.id, UserID: userID, Aspect: aspect, At: s.now()})
}

// teamChanged queues the "team" change of a user moved from team old to
// team new (either may be ""); o.mu must be held.
func (s *Sim) teamChanged(o *org, userID, old, new string) {
	o.pending = append(o.pending, UserChange{OrgID: o.id, UserID: userID, Aspect: "team", At: s.now(),
		OldValues: nonEmpty(old), NewValues: nonEmpty(new)})
}

func nonEmpty(v string) []string {
	if v == "" {
		return []string{}
	}
	return []string{v}
}

// lock acquires o.mu and returns the matching unlock, which delivers the
// events queued meanwhile to the listeners.
func (s *Sim) lock(o *org) (unlock func()) {
	o.mu.Lock()
	return func() {
		events := o.pending
		o.pending = nil
		o.mu.Unlock()
		if len(events) == 0 {
			return
		}
		s.mu.RLock()
		listeners := append([]func(UserChange){}, s.listeners...)
		s.mu.RUnlock()
		for _, ev := range events {
			for _, fn := range listeners {
				fn(ev)
			}
		}
	}
}
