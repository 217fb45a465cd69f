package orgsync

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
	"github.com/orgsync/orgsync/services/integrator"
)

// TestCRMSyncIsDecoupledEndToEnd clones through the whole pipeline while
// target1's CRM never answers, target2's rejects every record and
// target3's is slow: the clone succeeds without waiting for any of them,
// each CRM outcome lands in KV, target2 raises the failure-rate alert, the
// job report stays succeeded, `orgsync status` and `orgsync integrations`
// show the counts, and target1 catches up once its CRM recovers.
func TestCRMSyncIsDecoupledEndToEnd(t *testing.T) {
	t.Parallel()
	h := startHarnessConfig(t, DevConfig{Sim: e2eSim(), ServiceArgs: map[string][]string{
		"integrator": {"--deadline", "30s", "--initial-backoff", "20ms", "--max-backoff", "200ms",
			"--alert-failure-rate", "0.5", "--alert-min-samples", "2"},
	}})
	for target, b := range map[string]gcsim.CRMBehaviour{
		"target1": {Never: true},
		"target2": {Delay: time.Nanosecond, Fail: true, FailReason: "seat limit reached"},
		"target3": {Delay: 500 * time.Millisecond},
	} {
		if err := h.dev.Sim.SetCRMBehaviour(h.orgID(target), b); err != nil {
			t.Fatal(err)
		}
	}
	js := h.client.JS
	log := natsxtest.FollowEvents(t, js)
	counts := func(org string) integrator.Counts {
		c, err := integrator.OrgCounts(context.Background(), js, org)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	rep, _ := h.clone(CloneSpec{SourceOrg: "source", Users: e2eUsers, Targets: e2eTargets, RequestedBy: t.Name()})
	// The core is done while target1's CRM has not answered (it never does).
	if c := counts("target1"); c.Provisioned+c.Failed != 0 {
		t.Fatalf("target1 CRM syncs finished before the core report? %+v", c)
	}
	if rep.Status != ReportSucceeded {
		t.Fatalf("clone: %s\n%s", rep.Status, reportJSON(rep))
	}
	for _, target := range e2eTargets {
		if tr := rep.Target(target); tr.Status != "changed" || tr.Counts["changed"] != len(e2eUsers) {
			t.Errorf("%s: %s %v", target, tr.Status, tr.Counts)
		}
	}

	n := len(e2eUsers)
	natsxtest.Eventually(t, 20*time.Second, "CRM outcomes in KV", func() bool {
		return counts("target1") == integrator.Counts{Pending: n} && counts("target2") == integrator.Counts{Failed: n} &&
			counts("target3") == integrator.Counts{Provisioned: n}
	})
	alert := log.Wait(t, 10*time.Second, "target2 failure-rate alert", func(e *orgsyncv1.Event) bool {
		return e.GetStep() == integrator.AlertStep && e.GetOrg() == "target2"
	})
	if alert.GetAttributes()["failed"] != "2" || alert.GetStatus() != orgsyncv1.Status_STATUS_FAILED {
		t.Errorf("alert %v", alert)
	}
	if got := log.Find(func(e *orgsyncv1.Event) bool { return e.GetStep() == integrator.AlertStep && e.GetOrg() != "target2" }); len(got) != 0 {
		t.Errorf("alerts for healthy or pending CRMs: %v", got)
	}
	// Each record is keyed by the user's orgsync external id and carries
	// the target user id the core created.
	for _, u := range rep.Target("target3").Users {
		r, ok := h.dev.Sim.CRMRecord(h.orgID("target3"), u.ExternalID)
		if !ok || r.Status != gcsim.CRMProvisioned || r.GenesysUserID != u.TargetUserID() || r.Submissions != 1 {
			t.Errorf("target3 CRM record of %s: %+v (found %v); want PROVISIONED for %s", u.ExternalID, r, ok, u.TargetUserID())
		}
		if _, err := extid.Parse(u.ExternalID); err != nil {
			t.Errorf("CRM key %q is not the user's orgsync external id: %v", u.ExternalID, err)
		}
	}

	run := h.cli
	t.Run("status shows the CRM counts and the core outcome", func(t *testing.T) {
		code, out, errOut := run("status", rep.RequestID)
		if code != ExitOK || !strings.Contains(out, "succeeded") {
			t.Fatalf("status: %d %s %s", code, out, errOut)
		}
		for _, want := range []string{"CRM integration sync", "target1  2        0            0       0        0%",
			"target2  0        0            2       0        100%", "target3  0        2            0       0        0%"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = run("status", rep.RequestID, "--output", "json")
		var got Report
		if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || got.Status != ReportSucceeded ||
			got.CRM["target2"] != (integrator.Counts{Failed: 2}) {
			t.Errorf("status json: %d %v %+v", code, err, got.CRM)
		}
	})
	t.Run("integrations lists the failed users with the CRM's reason", func(t *testing.T) {
		code, out, errOut := run("integrations", "--org", "target2", "--state", "FAILED")
		if code != ExitOK || strings.Count(out, "seat limit reached") != 2 || strings.Count(out, "FAILED  ERROR") != 2 {
			t.Errorf("integrations --org target2: %d\n%s%s", code, out, errOut)
		}
		code, out, _ = run("integrations", "--output", "json")
		var got struct {
			Orgs map[string]integrator.Counts `json:"orgs"`
		}
		if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || got.Orgs["target3"] != (integrator.Counts{Provisioned: 2}) {
			t.Errorf("integrations json: %d %v %s", code, err, out)
		}
		if code, _, _ := run("integrations", "--state", "FAILED"); code != ExitUsage {
			t.Errorf("--state without --org: exit %d", code)
		}
	})

	// target1's CRM recovers: the pending syncs finish on their own.
	if err := h.dev.Sim.SetCRMBehaviour(h.orgID("target1"), gcsim.CRMBehaviour{Delay: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	natsxtest.Eventually(t, 20*time.Second, "target1 CRM syncs provisioned after recovery", func() bool {
		return counts("target1") == integrator.Counts{Provisioned: n}
	})
	// The job report never changed: the CRM workflow's events are audit records.
	if again, _, err := h.client.Status(context.Background(), rep.RequestID); err != nil || again.Status != ReportSucceeded {
		t.Errorf("report after the CRM outcomes: %v %v", again, err)
	}
}
