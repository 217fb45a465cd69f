package orgsync

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// TestRequestInParts clones 7 users with snapshots of at most 3 users: the
// extractor publishes 3 snapshot parts (the manager of everybody in the
// first), every target gets 3 plans, and the job report folds them into one
// target result that is complete only when all 3 finished. Every user
// exists once with its manager set, and a re-run changes nothing.
func TestRequestInParts(t *testing.T) {
	t.Parallel()
	const users = 7
	fx, err := BenchFixture(users, 2)
	if err != nil {
		t.Fatal(err)
	}
	h := startHarnessConfig(t, DevConfig{Fixture: fx, Sim: e2eSim(),
		ServiceArgs: map[string][]string{"extractor": {"--snapshot-users", "3", "--snapshot-users-max", "3"}}})
	targets := benchTargets(2)
	// The manager (user 0) is listed last: the extractor must still put
	// it in the first part.
	emails := append(benchUsers(users)[1:], BenchUserEmail(0))
	spec := CloneSpec{SourceOrg: BenchSourceOrg, Users: emails, Targets: targets, RequestedBy: t.Name()}

	first, sub := h.clone(spec)
	if first.Status != ReportSucceeded {
		t.Fatalf("first run: %s\n%s", first.Status, reportJSON(first))
	}
	for _, target := range targets {
		tr := first.Target(target)
		if tr.Status != "changed" || tr.Total != users || tr.Done != users || tr.Counts["changed"] != users || len(tr.Users) != users {
			t.Errorf("%s: status %s, %d/%d done, counts %v, %d users; want changed, %d/%d, all changed",
				target, tr.Status, tr.Done, tr.Total, tr.Counts, len(tr.Users), users, users)
		}
		if got := plansOf(t, h, sub.Request.GetRequestId(), target); len(got) != 3 {
			t.Errorf("%s: %d plans %v, want 3 parts", target, len(got), got)
		}
		id := h.orgID(target)
		for i, email := range benchUsers(users) {
			if n := h.dev.Sim.CountUsersByEmail(id, email); n != 1 {
				t.Errorf("%s: %d users %s, want 1", target, n, email)
				continue
			}
			u, _ := h.dev.Sim.UserByEmail(id, email)
			if want := BenchUserEmail(0); i > 0 && u.Manager != want {
				t.Errorf("%s: manager of %s is %q, want %s", target, email, u.Manager, want)
			}
		}
	}

	second, _ := h.clone(spec)
	for _, target := range targets {
		if tr := second.Target(target); second.Status != ReportSucceeded || tr.Status != "unchanged" || tr.Counts["unchanged"] != users {
			t.Errorf("re-run %s: %s / %s %v, want unchanged ×%d", target, second.Status, tr.Status, tr.Counts, users)
		}
	}
}

// plansOf lists the plan ids the PLANS stream holds for request in target.
func plansOf(t *testing.T, h *harness, request, target string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject, err := natsx.PlanSubject(target)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.client.JS.Stream(ctx, natsx.StreamPlans)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	err = followRaw(ctx, h.client.JS, natsx.StreamPlans, []string{subject}, 1, info.State.LastSeq, func(m jetstream.Msg) bool {
		var p orgsyncv1.Plan
		if unmarshal(m.Data(), &p) == nil && p.GetRequestId() == request {
			ids = append(ids, p.GetPlanId())
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
