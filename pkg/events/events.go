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
		e.EventId = rowID(e)
		if len(e.GetRows()) > 0 {
			// A batch is the same fact only with the same rows: a resumed
			// phase reports other users than the first attempt did.
			parts := make([]string, 0, 1+3*len(e.GetRows()))
			parts = append(parts, e.EventId)
			for _, r := range e.GetRows() {
				parts = append(parts, r.GetUserExternalId(), r.GetStep(), r.GetStatus().String())
			}
			e.EventId = ID(parts...)
		}
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

// Batch wraps rows — events of one kind without their envelope — into one
// event of that kind (Event.rows): a phase's steps of many users, a plan's
// finished users. One event instead of one per row is what makes a step
// cheap: one JetStream message, one ack, one decode per reader. A single
// row is sent as itself.
func Batch(kind orgsyncv1.EventKind, rows []*orgsyncv1.Event) *orgsyncv1.Event {
	if len(rows) == 1 {
		rows[0].Kind = kind
		return rows[0]
	}
	return &orgsyncv1.Event{Kind: kind, Rows: rows}
}

// Expand returns the events e stands for: e itself, or the rows of a batch
// (Batch), each completed in place with the batch's envelope — kind,
// request, plan, org, source org, time, plan parts, the batch's attributes
// (a dry run's marker) — and an id of its own. Readers see rows exactly as
// the unbatched events they replace.
func Expand(e *orgsyncv1.Event) []*orgsyncv1.Event {
	if len(e.GetRows()) == 0 {
		return []*orgsyncv1.Event{e}
	}
	rows := e.GetRows()
	for _, r := range rows {
		r.Kind, r.RequestId, r.PlanId, r.Org, r.SourceOrg = e.GetKind(), e.GetRequestId(), e.GetPlanId(), e.GetOrg(), e.GetSourceOrg()
		r.Time, r.PlanParts = e.GetTime(), e.GetPlanParts()
		for k, v := range e.GetAttributes() {
			if _, own := r.GetAttributes()[k]; !own {
				if r.Attributes == nil {
					r.Attributes = map[string]string{}
				}
				r.Attributes[k] = v
			}
		}
		if r.EventId == "" {
			r.EventId = rowID(r)
		}
	}
	return rows
}

// rowID is the id an unbatched event with r's facts gets (prepare).
func rowID(e *orgsyncv1.Event) string {
	return ID(e.GetRequestId(), e.GetPlanId(), e.GetOrg(), e.GetUserExternalId(), e.GetStep(),
		e.GetKind().String(), e.GetStatus().String())
}
