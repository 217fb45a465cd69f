package failover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestPoisonPlanFailedAndRetried is "Done when" 4 of issue 6 with the real
// binaries: a plan whose target org answers every request with 503 fails
// on each of its --max-deliver 2 deliveries in a provisioner process; the
// operator finds it in `orgsync failed list` with the reason, fixes the
// org, and `orgsync failed retry KEY` re-drives it: the users are then
// cloned, once each, and the record says it was retried.
func TestPoisonPlanFailedAndRetried(t *testing.T) {
	requireBinaries(t)
	t.Parallel()
	users := []string{agentEmail(0), agentEmail(1)}
	target := targetKey(1)
	sys := newSystem(t, buildFixture(t, len(users), 1), simConfig(0), natsServer(t), 1)
	pipeline := sys.startPipeline()

	// The plan is published while the target works (the resolver's
	// pre-flight reads it); then the target fails every request and only
	// then does the provisioner start.
	sub := sys.submit(t.Name(), users, []string{target})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitFor(t, time.Minute, "the plan in PLANS", func() bool {
		st, err := sys.js.Stream(ctx, natsx.StreamPlans)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("orgsync.plan."+target))
		return err == nil && info.State.Subjects["orgsync.plan."+target] == 1
	})
	if err := sys.sim.SetFaults(sys.orgIDs[target], gcsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	prov := sys.startService("provisioner", "provisioner", "--state", filepath.Join(sys.dir, "provisioner.db"),
		"--max-deliver", "2", "--ack-wait", testAckWait)

	// The request fails for the target with the reason...
	rep, err := sys.client.Wait(ctx, sub, nil)
	if err != nil {
		t.Fatalf("no complete report: %v\n%s", err, reportJSON(rep))
	}
	if rep.Status == "succeeded" || len(rep.Targets) != 1 || !strings.Contains(rep.Targets[0].Reason, "maximum deliveries reached") {
		t.Fatalf("report of the poisoned request: %s", reportJSON(rep))
	}
	// ...and the operator sees the plan in `orgsync failed list`.
	var rec deadletter.Record
	waitForState(t, time.Minute, "the failed plan in `orgsync failed list`", func() (bool, string) {
		out, err := sys.cli("failed", "list", "--output", "json")
		if err != nil {
			return false, out
		}
		var recs []deadletter.Record
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			return false, out
		}
		for _, r := range recs {
			if r.Subject == "orgsync.plan."+target {
				rec = r
				return true, ""
			}
		}
		return false, out
	})
	// The runner terminates the message on its last allowed delivery
	// (Kind terminated) with the MaxDeliver reason and the last error.
	if rec.Status != deadletter.StatusFailed || rec.Deliveries != 2 ||
		rec.Consumer != "provisioner-"+target || !strings.Contains(rec.Reason, "maximum deliveries reached (2 attempts)") || !strings.Contains(rec.Reason, "503") {
		t.Fatalf("failed record: %+v", rec)
	}
	text, err := sys.cli("failed", "list")
	if err != nil || !strings.Contains(text, rec.Key) || !strings.Contains(text, "maximum deliveries reached") {
		t.Fatalf("`orgsync failed list` (text) does not show %s with its reason (%v):\n%s", rec.Key, err, text)
	}
	for _, email := range users {
		if n := sys.sim.CountUsersByEmail(sys.orgIDs[target], email); n != 0 {
			t.Fatalf("%s: %d users %s before the retry", target, n, email)
		}
	}

	// Fixed: the org answers again. `failed retry` re-drives the plan.
	if err := sys.sim.SetFaults(sys.orgIDs[target], gcsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	if out, err := sys.cli("failed", "retry", rec.Key); err != nil || !strings.Contains(out, rec.MsgID+"-retry-1") {
		t.Fatalf("orgsync failed retry %s: %v\n%s", rec.Key, err, out)
	}
	waitFor(t, time.Minute, "the retried plan handled", func() bool {
		for _, email := range users {
			if sys.sim.CountUsersByEmail(sys.orgIDs[target], email) != 1 {
				return false
			}
		}
		ok, err := sys.consumerDrained(ctx, "provisioner-"+target)
		return err == nil && ok
	})
	sys.assertCloned([]string{target}, users)
	sys.assertExactlyOnce([]string{target}, users)

	out, err := sys.cli("failed", "list", "--output", "json")
	var recs []deadletter.Record
	if err != nil || json.Unmarshal([]byte(out), &recs) != nil {
		t.Fatalf("orgsync failed list: %v\n%s", err, out)
	}
	if len(recs) != 1 || recs[0].Key != rec.Key || recs[0].Status != deadletter.StatusRetried || recs[0].Retries != 1 {
		t.Fatalf("records after the retry (want only %s, retried once): %s", rec.Key, out)
	}
	// What happened shows in the provisioner's metrics.
	m := prov.metrics()
	if n := m.sum("orgsync_messages_failed_total", "consumer=provisioner-"+target, "outcome=terminated"); n != 1 {
		t.Errorf("provisioner: orgsync_messages_failed_total{outcome=terminated} = %v, want 1", n)
	}
	if n := m.sum("orgsync_messages_processed_total", "subject=orgsync.plan."+target); n < 1 {
		t.Errorf("provisioner: no plan of %s processed after the retry (orgsync_messages_processed_total %v)", target, n)
	}
	_ = pipeline
}

// cli runs the orgsync binary with args against the system's NATS and
// returns its combined output.
func (s *system) cli(args ...string) (string, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin("orgsync"), append(args, "--nats", s.natsURLs)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
