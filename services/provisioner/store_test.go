package provisioner

import (
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func TestStorePersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &orgsyncv1.UserConfig{ExternalId: "src|USER|a@x.com", Title: "Agent"}
	must(t, s.PutTargetID("t1", "src|SKILL|Billing", "skill-1"))
	must(t, s.MarkStepsDone("t1", "p1", StepRecord{UserExtID: u.ExternalId, StepID: "routing", Entry: JournalEntry{Status: orgsyncv1.Status_STATUS_CHANGED, TargetUserID: "u-1"}}))
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
	if e, ok, _ := s.StepDone("t1", "p1", u.ExternalId, "routing"); !ok || e.TargetUserID != "u-1" {
		t.Errorf("StepDone = %+v, %v", e, ok)
	}
	if _, ok, _ := s.StepDone("t1", "p2", u.ExternalId, "routing"); ok {
		t.Error("journal leaked across plans")
	}
	if b, _ := s.Baseline("t1", u.ExternalId); !proto.Equal(b, u) {
		t.Errorf("Baseline = %v", b)
	}
	must(t, s.ForgetTargetID("t1", "src|SKILL|Billing"))
	if _, ok, _ := s.TargetID("t1", "src|SKILL|Billing"); ok {
		t.Error("ForgetTargetID kept the id")
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
