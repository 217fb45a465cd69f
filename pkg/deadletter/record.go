// Package deadletter keeps the record of every message JetStream gave up on:
// terminated by a handler (a Permanent error, or natsx's last allowed
// delivery) or past its consumer's MaxDeliver without an ack. The server
// announces both with advisories; Capture stores those advisories in a
// stream (so none is lost while no capturer runs) and turns each into a
// Record in the KV bucket orgsync-failed, keyed <stream>.<seq>. The message
// itself stays in its stream and is referenced by sequence: Retry fetches it
// and re-publishes it on its subject under a new Nats-Msg-Id.
//
// Every service process runs a capturer (pkg/service); they share one
// durable consumer, and recording is idempotent, so any number may run.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
)

// Names of the dead-letter topology.
const (
	// Bucket holds one Record per failed message.
	Bucket = natsx.FailedBucket
	// AdvisoryStream keeps the advisories until a capturer has recorded them.
	AdvisoryStream = natsx.AdvisoryStream
	// CaptureDurable is the consumer every capturer shares.
	CaptureDurable = "orgsync-deadletter"

	// SubjectMaxDeliveries and SubjectTerminated are the advisory subject
	// prefixes (followed by .<stream>.<consumer>).
	SubjectMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
	SubjectTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"

	// HeaderRetryOf marks a re-published message with the key of the
	// record it re-drives, so a repeat failure links back.
	HeaderRetryOf = "Orgsync-Retry-Of"

	// advisoryMaxAge: how long uncaptured advisories are kept (as long as
	// the work streams keep the messages they refer to).
	advisoryMaxAge = 7 * 24 * time.Hour
)

// Kinds of failure.
const (
	KindMaxDeliveries = "max_deliveries" // MaxDeliver reached without an ack
	KindTerminated    = "terminated"     // the consumer terminated it (AckTerm)
)

// Record statuses.
const (
	StatusFailed  = "failed"  // waiting for an operator
	StatusRetried = "retried" // re-published by Retry (the outcome shows in the pipeline)
)

// Record is one failed message. The payload is not copied: it stays in
// Stream at Seq (until the stream's MaxAge) and Retry reads it from there.
type Record struct {
	Key        string `json:"key"` // <stream>.<seq>
	Stream     string `json:"stream"`
	Seq        uint64 `json:"seq"`
	Subject    string `json:"subject"` // empty when the message was already gone at capture
	Consumer   string `json:"consumer"`
	Kind       string `json:"kind"`   // KindTerminated or KindMaxDeliveries
	Reason     string `json:"reason"` // the terminate reason, or why MaxDeliver was hit
	Deliveries uint64 `json:"deliveries"`
	// FirstSeen is when the server announced the failure.
	FirstSeen time.Time `json:"first_seen"`
	// MsgID is the original Nats-Msg-Id; Headers every original header.
	MsgID   string              `json:"msg_id,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	// RetryOf is the key of the record this message was a retry of.
	RetryOf string `json:"retry_of,omitempty"`

	Status         string    `json:"status"`
	Retries        int       `json:"retries"`
	LastRetryAt    time.Time `json:"last_retry_at,omitzero"`
	LastRetryMsgID string    `json:"last_retry_msg_id,omitempty"`
	LastRetrySeq   uint64    `json:"last_retry_seq,omitempty"`
}

// Key is the record key of a message: <stream>.<seq>.
func Key(stream string, seq uint64) string { return stream + "." + strconv.FormatUint(seq, 10) }

// ParseKey splits a record key into stream and sequence.
func ParseKey(key string) (stream string, seq uint64, err error) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 {
		return "", 0, fmt.Errorf("deadletter: invalid key %q: want <stream>.<seq>", key)
	}
	seq, err = strconv.ParseUint(key[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return "", 0, fmt.Errorf("deadletter: invalid key %q: sequence must be a positive number", key)
	}
	return key[:i], seq, nil
}

// Ensure creates (or updates) the advisory stream and the record bucket
// with topo's replicas. Idempotent and safe to run concurrently.
func Ensure(ctx context.Context, js jetstream.JetStream, topo natsx.Topology) (jetstream.KeyValue, error) {
	topo = topo.WithDefaults()
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AdvisoryStream,
		Description: "orgsync dead-letter advisories (max deliveries, terminated) until captured",
		Subjects:    []string{SubjectMaxDeliveries + ".>", SubjectTerminated + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      advisoryMaxAge,
		Replicas:    topo.Replicas,
		Discard:     jetstream.DiscardOld,
	}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("deadletter: ensure stream %s: %w", AdvisoryStream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "orgsync failed messages (dead letters), key <stream>.<seq>",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    topo.Replicas,
	})
	if err != nil && errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, Bucket) // lost a creation race
	}
	if err != nil {
		return nil, fmt.Errorf("deadletter: ensure KV bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// bucket opens the record bucket; ok=false when no capturer ever ran.
func bucket(ctx context.Context, js jetstream.JetStream) (kv jetstream.KeyValue, ok bool, err error) {
	kv, err = js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("deadletter: open KV bucket %s: %w", Bucket, err)
	}
	return kv, true, nil
}

// Get returns the record of key.
func Get(ctx context.Context, js jetstream.JetStream, key string) (Record, error) {
	if _, _, err := ParseKey(key); err != nil {
		return Record{}, err
	}
	kv, ok, err := bucket(ctx, js)
	if err != nil {
		return Record{}, err
	}
	if !ok {
		return Record{}, fmt.Errorf("deadletter: no failed message %s (bucket %s does not exist: nothing has failed yet)", key, Bucket)
	}
	rec, _, err := get(ctx, kv, key)
	return rec, err
}

func get(ctx context.Context, kv jetstream.KeyValue, key string) (Record, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, fmt.Errorf("deadletter: no failed message %s (see `orgsync failed list`)", key)
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("deadletter: read record %s: %w", key, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("deadletter: decode record %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// List returns every record, oldest failure first. No bucket (nothing ever
// failed) is an empty list.
func List(ctx context.Context, js jetstream.JetStream) ([]Record, error) {
	kv, ok, err := bucket(ctx, js)
	if err != nil || !ok {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("deadletter: list keys of %s: %w", Bucket, err)
	}
	var out []Record
	for key := range keys.Keys() {
		rec, _, err := get(ctx, kv, key)
		if err != nil {
			if strings.Contains(err.Error(), "no failed message") {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}
