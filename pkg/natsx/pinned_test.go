package natsx_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// receipts records which instance handled which message.
type receipts struct {
	mu  sync.Mutex
	by  map[string][]string
	all map[string]string
}

func (r *receipts) handler(instance string) natsx.Handler {
	return func(ctx context.Context, m natsx.Msg) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.by == nil {
			r.by, r.all = map[string][]string{}, map[string]string{}
		}
		r.by[instance] = append(r.by[instance], m.MsgID())
		r.all[m.MsgID()] = instance
		return nil
	}
}

func (r *receipts) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

func (r *receipts) instances() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.by {
		out[k] = len(v)
	}
	return out
}

func (r *receipts) handledBy(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all[id]
}

func pinnedFailover(t *testing.T, crash bool) {
	s := natsxtest.StartServer(t)
	_, admin := natsxtest.Connect(t, s)
	if err := natsx.EnsureStreams(context.Background(), admin, natsx.Topology{}); err != nil {
		t.Fatal(err)
	}
	spec := planSpec("prov-tgt", "tgt")
	spec.Pinned = true
	spec.PinnedTTL = time.Minute // a clean stop must not need it
	if crash {
		// A dead client keeps the pin for PinnedTTL, and a message the
		// server handed it just before it died comes back after AckWait.
		spec.PinnedTTL = time.Second
		spec.AckWait = 2 * time.Second
	}
	var rec receipts
	// A starts first and gets pinned by the first message; B then joins as
	// a standby on the same durable.
	ncA, jsA := natsxtest.Connect(t, s)
	_, jsB := natsxtest.Connect(t, s)
	stopA := runConsumer(t, jsA, spec, rec.handler("A"))
	publishPlan(t, admin, "tgt", "p0")
	natsxtest.Eventually(t, 10*time.Second, "A handles p0", func() bool { return rec.handledBy("p0") == "A" })
	runConsumer(t, jsB, spec, rec.handler("B"))
	natsxtest.Eventually(t, 10*time.Second, "B is waiting on the consumer", func() bool {
		return consumerInfo(t, admin, natsx.StreamPlans, "prov-tgt").NumWaiting >= 2
	})
	for i := 1; i < 20; i++ {
		publishPlan(t, admin, "tgt", fmt.Sprintf("p%d", i))
	}
	natsxtest.Eventually(t, 10*time.Second, "20 plans handled", func() bool { return rec.count() == 20 })
	if got := rec.instances(); len(got) != 1 || got["A"] != 20 {
		t.Fatalf("pinned consumer delivered to several instances: %v", got)
	}
	standby := "B"
	if crash {
		ncA.Close() // dies without unpinning: B waits out PinnedTTL
	} else {
		stopA()
	}
	start := time.Now()
	publishPlan(t, admin, "tgt", "after")
	natsxtest.Eventually(t, 15*time.Second, "standby takes over", func() bool { return rec.handledBy("after") == standby })
	took := time.Since(start)
	if !crash && took > 10*time.Second {
		t.Fatalf("clean failover took %v; the pin was not released", took)
	}
	t.Logf("failover (crash=%v) took %v", crash, took)
}

func TestConsumePinnedFailoverOnStop(t *testing.T) {
	t.Parallel()
	pinnedFailover(t, false)
}

func TestConsumePinnedFailoverOnCrash(t *testing.T) {
	t.Parallel()
	pinnedFailover(t, true)
}
