package provisioner

import (
	"encoding/binary"
	"maps"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/extid"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestStorePersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &orgsyncv1.UserConfig{ExternalId: "src|USER|a@x.com", Title: "Agent"}
	at := time.Now().UTC().Truncate(time.Millisecond)
	must(t, s.PutTargetID("t1", "src|SKILL|Billing", "skill-1"))
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "ensure", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_UNCHANGED, TargetUserID: "u-1", At: at}}))
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "routing", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_CHANGED, TargetUserID: "u-1"}},
		StepRecord{UserExtID: "src|USER|b@x.com", StepID: "routing", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_FAILED}}))
	must(t, s.PutBaselines("t1", u))
	must(t, s.Close())

	s, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if id, ok, _ := s.TargetID("t1", "src|SKILL|Billing"); !ok || id != "skill-1" {
		t.Errorf("TargetID = %q, %v", id, ok)
	}
	if _, ok, _ := s.TargetID("t2", "src|SKILL|Billing"); ok {
		t.Error("translation leaked across orgs")
	}
	if e, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "routing"); !ok || e.TargetUserID != "u-1" || e.Status != orgsyncv1.Status_STATUS_CHANGED {
		t.Errorf("StepDone(routing) = %+v, %v", e, ok)
	}
	if e, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "ensure"); !ok || e.Status != orgsyncv1.Status_STATUS_UNCHANGED || !e.At.Equal(at) {
		t.Errorf("StepDone(ensure) after a later step of the same user = %+v, %v", e, ok)
	}
	if e, ok, _ := s.StepDone("t1", "p1", "src|USER|b@x.com", "routing"); !ok || e.Status != orgsyncv1.Status_STATUS_FAILED {
		t.Errorf("StepDone of the second user of the batch = %+v, %v", e, ok)
	}
	if _, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "team"); ok {
		t.Error("StepDone(team) reports a step never journaled")
	}
	if _, ok, _ := s.StepDone("t1", "p2", u.ExternalId, "routing"); ok {
		t.Error("journal leaked across plans")
	}
	if b, _ := s.Baseline("t1", u.ExternalId); !proto.Equal(b, u) {
		t.Errorf("Baseline = %v", b)
	}
	must(t, s.ForgetTargetID("t1", "src|SKILL|Billing", "skill-0"))
	if id, _, _ := s.TargetID("t1", "src|SKILL|Billing"); id != "skill-1" {
		t.Errorf("ForgetTargetID of another id dropped the translation: %q", id)
	}
	must(t, s.ForgetTargetID("t1", "src|SKILL|Billing", "skill-1"))
	if _, ok, _ := s.TargetID("t1", "src|SKILL|Billing"); ok {
		t.Error("ForgetTargetID kept the id")
	}

	// The journal is about one target user: another one (the first was
	// deleted and re-created) starts it afresh.
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "ensure", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_CHANGED, TargetUserID: "u-2"}}))
	if _, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "routing"); ok {
		t.Error("a step done for user u-1 is still journaled after the user became u-2")
	}
	if e, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "ensure"); !ok || e.TargetUserID != "u-2" {
		t.Errorf("StepDone(ensure) for the new user = %+v, %v", e, ok)
	}
	// A step journaled again (a retried phase) holds its last outcome; one
	// read answers a phase's users, a user without a record is not done.
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "routing", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_FAILED}}))
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "routing", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_CHANGED, TargetUserID: "u-2"}}))
	answers, err := s.StepsDone("t1", "p1", []StepQuery{{UserExtID: u.ExternalId, StepID: "routing"}, {UserExtID: "src|USER|nobody@x.com", StepID: "routing"}, {UserExtID: u.ExternalId, StepID: "ensure"}})
	if err != nil || len(answers) != 3 {
		t.Fatalf("StepsDone = %+v, %v", answers, err)
	}
	if a := answers[0]; !a.Done || a.Entry.Status != orgsyncv1.Status_STATUS_CHANGED || a.Entry.TargetUserID != "u-2" {
		t.Errorf("a step journaled twice = %+v, want the last (CHANGED for u-2)", a)
	}
	if answers[1].Done || answers[1].Err != nil || !answers[2].Done {
		t.Errorf("StepsDone answers = %+v", answers)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkTargetIDLookup(b *testing.B) {
	s, err := OpenStore(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 1000 {
		_ = s.PutTargetID("t1", "src|SKILL|"+string(rune('a'+i%26))+string(rune(i)), "id")
	}
	_ = s.PutTargetID("t1", "src|SKILL|Billing", "skill-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := s.TargetID("t1", "src|SKILL|Billing"); !ok {
			b.Fatal("missing")
		}
	}
}

// A file written with the per-step journal layout opens cleanly: the old
// journal is dropped (it only spared lookups) and everything else is kept.
func TestOpenStoreDropsJournalV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.PutTargetID("t1", "src|SKILL|Billing", "skill-1"))
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket([]byte("t1")).CreateBucketIfNotExists(bucketJournalV1)
		if err != nil {
			return err
		}
		return b.Put([]byte("p1\x00src|USER|a@x.com\x00routing"), []byte(`{"status":2}`))
	}))
	must(t, s.Close())
	if s, err = OpenStore(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("t1")).Bucket(bucketJournalV1) != nil {
			t.Error("old journal bucket still there after reopen")
		}
		return nil
	}))
	if id, ok, _ := s.TargetID("t1", "src|SKILL|Billing"); !ok || id != "skill-1" {
		t.Errorf("TargetID after dropping the old journal = %q, %v", id, ok)
	}
}

func TestJournalRecordRoundTripsAndRejectsTruncation(t *testing.T) {
	j := userJournal{TargetUserID: "u-1", Steps: map[string]stepMark{
		"ensure": {Status: orgsyncv1.Status_STATUS_UNCHANGED, At: 1764650000123},
		"team":   {Status: orgsyncv1.Status_STATUS_CHANGED, At: -5},
	}}
	rec := j.encode()
	got, err := decodeJournal(rec)
	if err != nil || got.TargetUserID != j.TargetUserID || len(got.Steps) != 2 ||
		got.Steps["ensure"] != j.Steps["ensure"] || got.Steps["team"] != j.Steps["team"] {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", j, got, err)
	}
	for n := 1; n < len(rec); n++ {
		if cut, err := decodeJournal(rec[:n]); err == nil && len(cut.Steps) == 2 {
			t.Fatalf("record cut to %d of %d bytes decoded whole: %+v", n, len(rec), cut)
		}
	}
}

// TestBaselinesAreStoredOnce: a clone applies one configuration to a user
// in every target; the state file holds it once (deflated), each org a
// reference to it, and a configuration no user refers to any more is
// deleted. A plain protobuf baseline written by an earlier version still
// reads.
func TestBaselinesAreStoredOnce(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	user := func(email, title string) *orgsyncv1.UserConfig {
		return &orgsyncv1.UserConfig{ExternalId: extid.User("source", email), Name: "Agent", Email: email,
			Title: title, Department: "Billing", DivisionRef: ref(tDiv, "Billing Division"),
			Skills:    []*orgsyncv1.Proficiency{prof(tSkill, "Billing", 3), prof(tSkill, "Billing Escalations", 2.5), prof(tSkill, "Sales", 1)},
			Languages: []*orgsyncv1.Proficiency{prof(tLang, "English", 5), prof(tLang, "French", 2)},
			TeamRef:   ref(tTeam, "Billing Team"),
			Grants: []*orgsyncv1.Grant{{RoleRef: ref(tRole, "Agent"), DivisionRef: ref(tDiv, "Billing Division")},
				{RoleRef: ref(tRole, "employee"), DivisionRef: ref(tDiv, "Home")}},
			QueueRefs:   []string{ref(tQueue, "Billing Queue"), ref(tQueue, "Support Queue")},
			Phones:      []*orgsyncv1.Phone{{Alias: email + "/work", Type: "WORK"}},
			LicenseRefs: []string{ref(tLic, "cx2")},
		}
	}
	jane, joe := user("jane@acme.example", "Agent"), user("joe@acme.example", "Agent")
	orgs := []string{"t1", "t2", "t3"}
	for _, org := range orgs {
		must(t, s.PutBaselines(org, jane, joe))
	}
	must(t, s.PutBaselines("t1", jane, joe)) // a replayed plan
	stored := func() map[string]int {
		out := map[string]int{}
		must(t, s.db.View(func(tx *bolt.Tx) error {
			data := tx.Bucket(bucketBaselineData)
			if data == nil {
				return nil
			}
			return data.ForEach(func(k, v []byte) error {
				if v == nil {
					return nil // the refs sub-bucket
				}
				var u orgsyncv1.UserConfig
				raw, err := inflate(v)
				if err != nil {
					return err
				}
				if err := proto.Unmarshal(raw, &u); err != nil {
					return err
				}
				if len(v) >= len(raw)*3/4 {
					t.Errorf("configuration of %s stored in %d bytes, %d plain: want deflated", u.GetEmail(), len(v), len(raw))
				}
				out[u.GetEmail()+" "+u.GetTitle()] = int(binary.BigEndian.Uint32(data.Bucket(baselineDataRefs).Get(k)))
				return nil
			})
		}))
		return out
	}
	if got, want := stored(), map[string]int{"jane@acme.example Agent": 3, "joe@acme.example Agent": 3}; !maps.Equal(got, want) {
		t.Errorf("after a clone of 2 users into 3 orgs, configurations stored (with their references) %v; want %v", got, want)
	}
	for _, org := range orgs {
		if got, err := s.Baseline(org, jane.GetExternalId()); err != nil || !proto.Equal(got, jane) {
			t.Errorf("Baseline(%s, jane) = %v, %v; want what was put", org, got, err)
		}
	}

	// Jane is promoted, one org after the other: her old configuration
	// goes with its last reference.
	lead := user("jane@acme.example", "Lead")
	must(t, s.PutBaselines("t1", lead))
	if got, want := stored(), map[string]int{"jane@acme.example Agent": 2, "jane@acme.example Lead": 1, "joe@acme.example Agent": 3}; !maps.Equal(got, want) {
		t.Errorf("after one org's change: %v; want %v", got, want)
	}
	must(t, s.PutBaselines("t2", lead))
	must(t, s.PutBaselines("t3", lead))
	if got, want := stored(), map[string]int{"jane@acme.example Lead": 3, "joe@acme.example Agent": 3}; !maps.Equal(got, want) {
		t.Errorf("after every org's change: %v; want %v", got, want)
	}
	if got, err := s.Baseline("t2", jane.GetExternalId()); err != nil || !proto.Equal(got, lead) {
		t.Errorf("Baseline(t2, jane) = %v, %v; want the promoted one", got, err)
	}

	// A baseline as an earlier version wrote it: plain protobuf.
	old := user("old@acme.example", "Old Timer")
	oldPlain, _ := proto.Marshal(old)
	must(t, s.update("t1", bucketBaseline, func(b *bolt.Bucket) error { return b.Put([]byte(old.GetExternalId()), oldPlain) }))
	all, err := s.Baselines("t1")
	if err != nil || len(all) != 3 {
		t.Fatalf("Baselines(t1) = %d, %v; want 3", len(all), err)
	}
	for _, got := range all {
		if want := map[string]*orgsyncv1.UserConfig{lead.GetExternalId(): lead, joe.GetExternalId(): joe, old.GetExternalId(): old}[got.GetExternalId()]; !proto.Equal(got, want) {
			t.Errorf("Baselines(t1): %v, want %v", got, want)
		}
	}
	// Replaced by this version, it becomes a reference like the others.
	must(t, s.PutBaselines("t1", old))
	if got := stored()["old@acme.example Old Timer"]; got != 1 {
		t.Errorf("a plain baseline replaced: %d references to it; want 1", got)
	}
}
