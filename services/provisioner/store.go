package provisioner

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Store is the provisioner's bbolt file: per target org, the ID translation
// (external id → target id), the step journal and the baseline (the user
// configuration last applied, for reconciliation). It is a cache of what the
// target org holds: deleted, it is rebuilt by lookups, because every step
// looks up before it creates.
//
// Layout: one top-level bucket per org, with sub-buckets "ids", "journal",
// "baseline".
type Store struct {
	db *bolt.DB
}

var (
	bucketIDs      = []byte("ids")
	bucketJournal  = []byte("journal")
	bucketBaseline = []byte("baseline")
)

// OpenStore opens (creating if needed) the bbolt file at path. A second
// process opening the same file waits up to 5 s and then fails with a clear
// error: one file belongs to one provisioner.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("provisioner: open state %s: %w", path, err)
	}
	// Writes of concurrent steps share one transaction (and one fsync):
	// a lone write waits at most this long for company.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

func (s *Store) view(org string, sub []byte, fn func(b *bolt.Bucket) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket([]byte(org))
		if ob == nil {
			return fn(nil)
		}
		return fn(ob.Bucket(sub))
	})
}

// update runs fn in a write transaction on org's sub-bucket. Writes are
// batched with concurrent ones (bolt.DB.Batch): fn may run more than once,
// so it must be idempotent (every caller puts or deletes one key). It
// returns once the write is durable.
func (s *Store) update(org string, sub []byte, fn func(b *bolt.Bucket) error) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		ob, err := tx.CreateBucketIfNotExists([]byte(org))
		if err != nil {
			return err
		}
		b, err := ob.CreateBucketIfNotExists(sub)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// TargetID returns the target id recorded for an external id in org.
func (s *Store) TargetID(org, externalID string) (string, bool, error) {
	var id string
	err := s.view(org, bucketIDs, func(b *bolt.Bucket) error {
		if b != nil {
			id = string(b.Get([]byte(externalID)))
		}
		return nil
	})
	return id, id != "", err
}

// PutTargetID records the target id of an external id in org.
func (s *Store) PutTargetID(org, externalID, targetID string) error {
	return s.update(org, bucketIDs, func(b *bolt.Bucket) error {
		return b.Put([]byte(externalID), []byte(targetID))
	})
}

// ForgetTargetID drops a translation that turned out stale (the target object
// was deleted behind our back); the next step looks it up again.
func (s *Store) ForgetTargetID(org, externalID string) error {
	return s.update(org, bucketIDs, func(b *bolt.Bucket) error {
		return b.Delete([]byte(externalID))
	})
}

// JournalEntry records a finished step of a user plan.
type JournalEntry struct {
	Status       orgsyncv1.Status `json:"status"`
	TargetUserID string           `json:"targetUserId,omitempty"`
	At           time.Time        `json:"at"`
}

func journalKey(planID, userExtID, stepID string) []byte {
	return []byte(planID + "\x00" + userExtID + "\x00" + stepID)
}

// StepDone returns the journal entry of a step, if the step finished.
func (s *Store) StepDone(org, planID, userExtID, stepID string) (JournalEntry, bool, error) {
	var e JournalEntry
	var found bool
	err := s.view(org, bucketJournal, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		v := b.Get(journalKey(planID, userExtID, stepID))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &e)
	})
	return e, found, err
}

// StepRecord is one finished step of a user plan, for MarkStepsDone.
type StepRecord struct {
	UserExtID, StepID string
	Entry             JournalEntry
}

// MarkStepsDone journals finished steps of a plan, so a restarted
// provisioner resumes at each user's next unfinished one. All records are
// written in one transaction (one fsync for a phase of many users): all are
// journaled or, on error, none.
func (s *Store) MarkStepsDone(org, planID string, recs ...StepRecord) error {
	if len(recs) == 0 {
		return nil
	}
	vals := make([][]byte, len(recs))
	for i, rec := range recs {
		v, err := json.Marshal(rec.Entry)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	return s.update(org, bucketJournal, func(b *bolt.Bucket) error {
		for i, rec := range recs {
			if err := b.Put(journalKey(planID, rec.UserExtID, rec.StepID), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Baseline is the configuration last applied to a user in org (desired state
// in source terms, email mapped), or nil.
func (s *Store) Baseline(org, userExtID string) (*orgsyncv1.UserConfig, error) {
	var out *orgsyncv1.UserConfig
	err := s.view(org, bucketBaseline, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		v := b.Get([]byte(userExtID))
		if v == nil {
			return nil
		}
		out = &orgsyncv1.UserConfig{}
		return proto.Unmarshal(v, out)
	})
	if err != nil {
		return nil, fmt.Errorf("provisioner: baseline of %s in %s: %w", userExtID, org, err)
	}
	return out, nil
}

// PutBaselines stores the configurations applied to users in org, in one
// transaction: all or, on error, none.
func (s *Store) PutBaselines(org string, users ...*orgsyncv1.UserConfig) error {
	if len(users) == 0 {
		return nil
	}
	vals := make([][]byte, len(users))
	for i, u := range users {
		v, err := proto.Marshal(u)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	return s.update(org, bucketBaseline, func(b *bolt.Bucket) error {
		for i, u := range users {
			if err := b.Put([]byte(u.GetExternalId()), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Baselines lists every baseline of org.
func (s *Store) Baselines(org string) ([]*orgsyncv1.UserConfig, error) {
	var out []*orgsyncv1.UserConfig
	err := s.view(org, bucketBaseline, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			u := &orgsyncv1.UserConfig{}
			if err := proto.Unmarshal(v, u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}
