package extractor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// NewSnapshot assembles the snapshot of an extraction. Its id is
// "<request id>|<hash>", the hash covering everything but the extraction
// time, so extracting an unchanged source again for the same request yields
// the same id and JetStream drops the second publish (Nats-Msg-Id).
func NewSnapshot(requestID, sourceOrg string, targets []string, opts *orgsyncv1.CloneOptions,
	trigger orgsyncv1.Trigger, ex *Extracted, extractedAt time.Time) (*orgsyncv1.Snapshot, error) {
	snap := &orgsyncv1.Snapshot{
		RequestId:  requestID,
		SourceOrg:  sourceOrg,
		TargetOrgs: append([]string(nil), targets...),
		Options:    opts,
		Trigger:    trigger,
		Users:      ex.Users,
		Resources:  ex.Resources,
	}
	h, err := contentHash(snap)
	if err != nil {
		return nil, err
	}
	snap.SnapshotId = requestID + "|" + h
	snap.ExtractedAt = timestamppb.New(extractedAt)
	return snap, nil
}

// contentHash hashes the deterministic encoding of snap (which must not yet
// carry snapshot_id and extracted_at).
func contentHash(snap *orgsyncv1.Snapshot) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		return "", fmt.Errorf("extractor: hash snapshot of %s: %w", snap.GetRequestId(), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}
