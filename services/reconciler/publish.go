package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// publishChange publishes a ChangeEvent for user of src on
// orgsync.change.<src> with Nats-Msg-Id = eventID, so the same source event
// delivered twice (webhook retry, notification and webhook for the same
// audit record, two replicas sweeping the same slot) is stored once.
// duplicate reports that the stream already had eventID.
func publishChange(ctx context.Context, js jetstream.JetStream, src, userID, eventID string, occurred time.Time, source orgsyncv1.ChangeSource) (duplicate bool, err error) {
	subj, err := natsx.ChangeSubject(src)
	if err != nil {
		return false, fmt.Errorf("reconciler: change event %s: %w", eventID, err)
	}
	ev := &orgsyncv1.ChangeEvent{
		EventId:   eventID,
		SourceOrg: src,
		UserId:    userID,
		Source:    source,
	}
	if !occurred.IsZero() {
		ev.OccurredAt = timestamppb.New(occurred)
	}
	ack, err := natsx.PublishAck(ctx, js, subj, eventID, ev)
	if err != nil {
		return false, fmt.Errorf("reconciler: publish %v change of user %s (org %s): %w", source, userID, src, err)
	}
	return ack.Duplicate, nil
}

// mustJSON encodes a reply type that always encodes.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"encode reply: ` + err.Error() + `"}`)
	}
	return b
}
