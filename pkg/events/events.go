// Package events publishes orgsync's events — progress, results, audit
// records, drift — on "orgsync.event.<org>.<kind>" (stream EVENTS), the
// product's audit trail.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Emitter publishes events. The zero value is not usable; use New.
type Emitter struct {
	js  jetstream.JetStream
	now func() time.Time
}

// New returns an Emitter publishing through js.
func New(js jetstream.JetStream) *Emitter { return &Emitter{js: js, now: time.Now} }

// ID derives a deterministic event id from the facts that identify it, so a
// replayed plan re-emits the same ids and JetStream drops the duplicates.
func ID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:12])
}

// Emit publishes e on the subject of its org and kind. A missing event id is
// derived from request, plan, user, step, kind and status; a missing time is now.
func (em *Emitter) Emit(ctx context.Context, e *orgsyncv1.Event) error {
	subj, err := em.prepare(e)
	if err != nil {
		return err
	}
	if err := natsx.Publish(ctx, em.js, subj, e.EventId, e); err != nil {
		return fmt.Errorf("events: publish %v for %s: %w", e.GetKind(), e.GetOrg(), err)
	}
	return nil
}

// EmitAll publishes evs as Emit does each, pipelined (natsx.PublishAll):
// a phase's events of many users cost about one round trip. An event that
// cannot be published does not stop the others; the failures are joined.
func (em *Emitter) EmitAll(ctx context.Context, evs []*orgsyncv1.Event) error {
	var errs []error
	out := make([]natsx.Outgoing, 0, len(evs))
	for _, e := range evs {
		subj, err := em.prepare(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, natsx.Outgoing{Subject: subj, MsgID: e.EventId, Msg: e})
	}
	if err := natsx.PublishAll(ctx, em.js, out); err != nil {
		errs = append(errs, fmt.Errorf("events: publish %d events: %w", len(out), err))
	}
	return errors.Join(errs...)
}

// prepare fills e's missing id and time and returns its subject.
func (em *Emitter) prepare(e *orgsyncv1.Event) (string, error) {
	if e.GetOrg() == "" {
		return "", fmt.Errorf("events: event %v has no org", e.GetKind())
	}
	if e.EventId == "" {
		e.EventId = ID(e.GetRequestId(), e.GetPlanId(), e.GetOrg(), e.GetUserExternalId(), e.GetStep(),
			e.GetKind().String(), e.GetStatus().String())
	}
	if e.Time == nil {
		e.Time = timestamppb.New(em.now())
	}
	subj, err := natsx.EventSubject(e.GetOrg(), e.GetKind())
	if err != nil {
		return "", fmt.Errorf("events: %w", err)
	}
	return subj, nil
}
