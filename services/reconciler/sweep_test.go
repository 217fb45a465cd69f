package reconciler

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

func (e *testEnv) reconcile(t *testing.T, target string, req ReconcileRequest) ReconcileReply {
	t.Helper()
	subj, err := ReconcileSubject(target)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(req)
	msg, err := e.nc.Request(subj, data, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subj, err)
	}
	var reply ReconcileReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("reply of %s: %v: %s", subj, err, msg.Data)
	}
	return reply
}

func TestSweepRequestPublishesOneChangePerTrackedUser(t *testing.T) {
	t.Parallel()
	users := []string{"u-1", "u-2", "u-3"}
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: -1}, nil, map[string][]string{"src": users, "other": {"o-1"}})

	reply := e.reconcile(t, "src", ReconcileRequest{RequestID: "r1", Now: true, RequestedBy: "test"})
	if reply.Error != "" || len(reply.Runs) != 1 || reply.Runs[0].Published != 3 || reply.Runs[0].RunID != "request-r1" {
		t.Fatalf("reply: %+v", reply)
	}
	evs := e.changes(t, "src")
	if len(evs) != 3 {
		t.Fatalf("%d change events, want 3: %v", len(evs), evs)
	}
	for i, ev := range evs {
		if ev.UserId != users[i] || ev.Source != orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP || ev.EventId != SweepEventID("src", "request-r1", users[i]) {
			t.Errorf("event %d: %v", i, ev)
		}
		// Dated by the sweep's start, which orders it against audit events.
		if ev.OccurredAt == nil || !ev.OccurredAt.AsTime().Equal(reply.Runs[0].StartedAt) {
			t.Errorf("event %d: occurred_at %v, want the sweep's start %v", i, ev.OccurredAt, reply.Runs[0].StartedAt)
		}
	}
	if got := e.changes(t, "other"); len(got) != 0 {
		t.Fatalf("sweep of src published for other: %v", got)
	}
	// The CLI retrying the same request publishes nothing new.
	reply = e.reconcile(t, "src", ReconcileRequest{RequestID: "r1", Now: true})
	if reply.Runs[0].Duplicates != 3 || reply.Runs[0].Published != 0 || e.streamCount(t) != 3 {
		t.Fatalf("retried request: %+v, stream has %d", reply, e.streamCount(t))
	}
	// The cursor records the sweep.
	kv, err := OpenCursorBucket(ctxT(t), e.js, 1)
	if err != nil {
		t.Fatal(err)
	}
	cur, ok, err := ReadSweepCursor(ctxT(t), kv, "src")
	if err != nil || !ok || cur.RunID != "request-r1" || cur.Users != 3 || cur.Trigger != TriggerRequest {
		t.Fatalf("cursor: %+v %v %v", cur, ok, err)
	}

	// "all" without now: queued, then published for every source org.
	reply = e.reconcile(t, ReconcileAll, ReconcileRequest{})
	if reply.Error != "" || len(reply.Runs) != 2 || !reply.Runs[0].Queued {
		t.Fatalf("reconcile all: %+v", reply)
	}
	e.waitChange(t, "other", "queued sweep of org other", func(ev *orgsyncv1.ChangeEvent) bool {
		return ev.UserId == "o-1" && strings.HasPrefix(ev.EventId, "sweep:other:request-")
	})
	natsxtest.Eventually(t, 10*time.Second, "queued sweep of src", func() bool { return len(e.changes(t, "src")) == 6 })

	// Bad requests get a precise error.
	if r := e.reconcile(t, "src", ReconcileRequest{RequestID: "bad id!", Now: true}); !strings.Contains(r.Error, "invalid request_id") {
		t.Fatalf("bad request id: %+v", r)
	}
}

func TestPeriodicSweepFollowsTrackedUsers(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: 300 * time.Millisecond}, nil, map[string][]string{"src": {"u-1"}})
	e.waitChange(t, "src", "first periodic sweep", func(ev *orgsyncv1.ChangeEvent) bool {
		return ev.UserId == "u-1" && strings.HasPrefix(ev.EventId, "sweep:src:periodic-")
	})
	// A user tracked later (a new clone request) is swept too.
	e.track(t, "src", "u-2")
	natsxtest.Eventually(t, 10*time.Second, "tracked set picks up u-2", func() bool { return e.svc.Tracked().Has("src", "u-2") })
	e.waitChange(t, "src", "periodic sweep covers the new user", func(ev *orgsyncv1.ChangeEvent) bool {
		return ev.UserId == "u-2" && ev.Source == orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP
	})
	// Sweeps are spaced by the interval, not run on every check.
	runs := map[string]bool{}
	for _, ev := range e.changes(t, "src") {
		runs[strings.Split(ev.EventId, ":")[2]] = true
	}
	if limit := int(time.Since(start)/(300*time.Millisecond)) + 2; len(runs) > limit {
		t.Fatalf("%d periodic runs in %v with a 300ms interval: %v", len(runs), time.Since(start), runs)
	}
}
