package provisioner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Store is the provisioner's bbolt file: per target org, the ID translation
// (external id → target id), the step journal and the baseline (the user
// configuration last applied, for reconciliation). It is a cache of what the
// target org holds: deleted, it is rebuilt by lookups, because every step
// looks up before it creates.
//
// Layout: one top-level bucket per org, with sub-buckets "ids", "steps"
// (the journal: one record per user plan), "baseline" (a digest per user);
// and "~baselines", the baselines by digest (store_baseline.go).
type Store struct {
	db *bolt.DB
}

var (
	bucketIDs     = []byte("ids")
	bucketJournal = []byte("steps")
	// bucketJournalV1 held one record per step (before one per user
	// plan). OpenStore drops it: the journal only spares lookups on resume.
	bucketJournalV1 = []byte("journal")
	bucketBaseline  = []byte("baseline")
	// bucketBaselineData holds the baselines themselves, shared by the
	// users and orgs that have the same one (store_baseline.go). "~"
	// cannot begin an org key, so it is no org's bucket.
	bucketBaselineData = []byte("~baselines")
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
	if err := dropJournalV1(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("provisioner: open state %s: drop the old journal: %w", path, err)
	}
	return &Store{db: db}, nil
}

// dropJournalV1 deletes every org's journal of the old layout, if any.
func dropJournalV1(db *bolt.DB) error {
	found := false
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, ob *bolt.Bucket) error {
			found = found || ob.Bucket(bucketJournalV1) != nil
			return nil
		})
	})
	if !found {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
		return tx.ForEach(func(org []byte, ob *bolt.Bucket) error {
			if ob.Bucket(bucketJournalV1) == nil {
				return nil
			}
			return ob.DeleteBucket(bucketJournalV1)
		})
	})
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

func (s *Store) view(org string, sub []byte, fn func(b *bolt.Bucket) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(orgBucket(tx, org, sub)) })
}

// orgBucket returns org's sub-bucket, or nil when there is none.
func orgBucket(tx *bolt.Tx, org string, sub []byte) *bolt.Bucket {
	ob := tx.Bucket([]byte(org))
	if ob == nil {
		return nil
	}
	return ob.Bucket(sub)
}

// update runs fn in a write transaction on org's sub-bucket. Writes are
// batched with concurrent ones (bolt.DB.Batch): fn may run more than once,
// so it must be idempotent (every caller puts, merges or deletes keys). It
// returns once the write is durable.
func (s *Store) update(org string, sub []byte, fn func(b *bolt.Bucket) error) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := createOrgBucket(tx, org, sub)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// createOrgBucket returns org's sub-bucket, created if needed.
func createOrgBucket(tx *bolt.Tx, org string, sub []byte) (*bolt.Bucket, error) {
	ob, err := tx.CreateBucketIfNotExists([]byte(org))
	if err != nil {
		return nil, err
	}
	return ob.CreateBucketIfNotExists(sub)
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

// ForgetTargetID drops the translation of externalID if it still is staleID
// (the target object was deleted behind our back); the next step looks it
// up again. A translation another plan recorded meanwhile is kept.
func (s *Store) ForgetTargetID(org, externalID, staleID string) error {
	return s.update(org, bucketIDs, func(b *bolt.Bucket) error {
		if string(b.Get([]byte(externalID))) != staleID {
			return nil
		}
		return b.Delete([]byte(externalID))
	})
}

// JournalEntry records a finished step of a user plan.
type JournalEntry struct {
	Status       orgsyncv1.Status
	TargetUserID string
	At           time.Time
}

// userJournal is the stored journal of one user plan: its finished steps
// and the target user id last recorded. One record per user plan rather
// than per step keeps the file (and the pages mapped in memory) a quarter
// of the size: the eleven steps of a user share one key. It is read once
// per phase, so it is encoded in binary (encode, decodeJournal) rather than
// JSON, which cost 5% of a 20,000-user clone's CPU.
type userJournal struct {
	TargetUserID string
	Steps        map[string]stepMark
}

type stepMark struct {
	Status orgsyncv1.Status
	At     int64 // Unix milliseconds
}

func journalKey(planID, userExtID string) []byte {
	return []byte(planID + "\x00" + userExtID)
}

// encode lays j out as: target user id, then per step: id, status, time;
// strings length-prefixed, numbers varint. A step may appear more than
// once (MarkStepsDone appends): the last one holds.
func (j userJournal) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(j.TargetUserID)))
	b = append(b, j.TargetUserID...)
	for id, m := range j.Steps {
		b = appendStepMark(b, id, m)
	}
	return b
}

func appendStepMark(b []byte, stepID string, m stepMark) []byte {
	b = binary.AppendUvarint(b, uint64(len(stepID)))
	b = append(b, stepID...)
	b = binary.AppendUvarint(b, uint64(m.Status))
	return binary.AppendVarint(b, m.At)
}

var errJournalCorrupt = errors.New("journal record is corrupt")

// walkJournal calls fn for every step record of v in order, with the
// record's target user id, without copying: the slices are v's.
func walkJournal(v []byte, fn func(stepID, targetUserID []byte, m stepMark)) error {
	if v == nil {
		return nil
	}
	str := func() ([]byte, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return nil, false
		}
		out := v[k : k+int(n)]
		v = v[k+int(n):]
		return out, true
	}
	target, ok := str()
	if !ok {
		return errJournalCorrupt
	}
	for len(v) > 0 {
		id, ok := str()
		if !ok {
			return errJournalCorrupt
		}
		st, k := binary.Uvarint(v)
		if k <= 0 {
			return errJournalCorrupt
		}
		v = v[k:]
		at, k := binary.Varint(v)
		if k <= 0 {
			return errJournalCorrupt
		}
		v = v[k:]
		fn(id, target, stepMark{Status: orgsyncv1.Status(st), At: at})
	}
	return nil
}

func decodeJournal(v []byte) (userJournal, error) {
	j := userJournal{TargetUserID: journalTarget(v), Steps: map[string]stepMark{}}
	err := walkJournal(v, func(id, _ []byte, m stepMark) { j.Steps[string(id)] = m })
	return j, err
}

// journalTarget is the target user id a journal record names ("" for
// none; a corrupt record is reported by walkJournal).
func journalTarget(v []byte) string { return string(journalTargetBytes(v)) }

// journalTargetBytes is journalTarget without a copy (v's bytes).
func journalTargetBytes(v []byte) []byte {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return nil
	}
	return v[k : k+int(n)]
}

// StepDone returns the journal entry of a step, if the step finished.
func (s *Store) StepDone(org, planID, userExtID, stepID string) (JournalEntry, bool, error) {
	a, err := s.StepsDone(org, planID, []StepQuery{{UserExtID: userExtID, StepID: stepID}})
	if err != nil {
		return JournalEntry{}, false, err
	}
	return a[0].Entry, a[0].Done, a[0].Err
}

// StepQuery names one user's step of a plan (StepsDone).
type StepQuery struct{ UserExtID, StepID string }

// StepAnswer answers a StepQuery: the step's entry when Done; Err when the
// user's journal record is unreadable.
type StepAnswer struct {
	Entry JournalEntry
	Done  bool
	Err   error
}

// StepsDone is StepDone for many users of a plan in one read transaction
// (a phase asks for all its users at once): answers[i] answers qs[i].
func (s *Store) StepsDone(org, planID string, qs []StepQuery) (answers []StepAnswer, err error) {
	answers = make([]StepAnswer, len(qs))
	err = s.view(org, bucketJournal, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		for i, q := range qs {
			a := &answers[i]
			err := walkJournal(b.Get(journalKey(planID, q.UserExtID)), func(id, target []byte, m stepMark) {
				if string(id) == q.StepID {
					a.Entry = JournalEntry{Status: m.Status, TargetUserID: string(target), At: time.UnixMilli(m.At).UTC()}
					a.Done = true
				}
			})
			if err != nil {
				*a = StepAnswer{Err: fmt.Errorf("journal of %s in plan %s: %w", q.UserExtID, planID, err)}
			}
		}
		return nil
	})
	return answers, err
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
	return s.update(org, bucketJournal, func(b *bolt.Bucket) error {
		for _, rec := range recs {
			key := journalKey(planID, rec.UserExtID)
			old := b.Get(key)
			mark := stepMark{Status: rec.Entry.Status, At: rec.Entry.At.UnixMilli()}
			var v []byte
			switch id := rec.Entry.TargetUserID; {
			case old != nil && (id == "" || id == string(journalTargetBytes(old))): // compared without a copy
				// The same user: the step is appended (the last mark holds).
				v = appendStepMark(slices.Clip(old), rec.StepID, mark)
			default:
				j, err := decodeJournal(old)
				if err != nil {
					return fmt.Errorf("journal of %s in plan %s: %w", rec.UserExtID, planID, err)
				}
				if id != "" && j.TargetUserID != "" {
					// The steps done were done to another user (deleted
					// since): none of them holds for this one.
					clear(j.Steps)
				}
				if id != "" {
					j.TargetUserID = id
				}
				j.Steps[rec.StepID] = mark
				v = j.encode()
			}
			if err := b.Put(key, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// DropJournal deletes the journal of plan planID in org. Once a plan has
// ended (acknowledged or terminated) nothing resumes it, and a journal kept
// grew the file by a record per user and plan for good: at 10,000 users × 20
// orgs a third of the file, whose pages count in the process's RSS. A plan
// delivered again after all (its acknowledgement lost) runs without
// it: each step looks up before it creates.
func (s *Store) DropJournal(org, planID string) error {
	prefix := journalKey(planID, "")
	var keys [][]byte
	err := s.view(org, bucketJournal, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	return s.update(org, bucketJournal, func(b *bolt.Bucket) error {
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// journalLen counts the journal records of plan planID in org.
func (s *Store) journalLen(org, planID string) (int, error) {
	prefix := journalKey(planID, "")
	n := 0
	err := s.view(org, bucketJournal, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}
