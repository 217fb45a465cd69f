package orgsync

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/deadletter"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// The operator's path through a poison message: it shows in `failed list`
// with its reason, `failed retry KEY` re-drives it once the handler is fixed,
// and `replay` re-publishes the stream.
func TestFailedAndReplayCommands(t *testing.T) {
	t.Parallel()
	srv := natsxtest.StartServer(t)
	_, js := natsxtest.Connect(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := natsx.EnsureStreams(ctx, js, natsx.Topology{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = deadletter.Capture(ctx, js, deadletter.Options{}) }()
	natsxtest.Eventually(t, 10*time.Second, "advisory stream", func() bool { _, err := js.Stream(ctx, deadletter.AdvisoryStream); return err == nil })

	var fixed atomic.Bool
	var handled atomic.Int32
	go func() {
		_ = natsx.Consume(ctx, js, natsx.ConsumerSpec{Stream: natsx.StreamPlans, Durable: "ops", MaxDeliver: 2, Backoff: []time.Duration{10 * time.Millisecond}},
			func(context.Context, natsx.Msg) error {
				if !fixed.Load() {
					return errors.New("provisioner bug")
				}
				handled.Add(1)
				return nil
			})
	}()
	ack, err := js.Publish(ctx, "orgsync.plan.ops", []byte("x"), jetstream.WithMsgID("ops-1"))
	if err != nil {
		t.Fatal(err)
	}
	key := deadletter.Key(natsx.StreamPlans, ack.Sequence)
	run := func(args ...string) (int, string) {
		var o, e bytes.Buffer
		code := Main(ctx, append(args, "--nats", srv.ClientURL()), IO{Out: &o, Err: &e})
		return code, o.String() + e.String()
	}
	natsxtest.Eventually(t, 10*time.Second, "failed list shows the poison message", func() bool {
		_, out := run("failed", "list")
		return strings.Contains(out, key) && strings.Contains(out, "provisioner bug")
	})

	fixed.Store(true)
	if code, out := run("failed", "retry", key); code != ExitOK || !strings.Contains(out, "ops-1-retry-1") {
		t.Fatalf("failed retry = %d: %s", code, out)
	}
	natsxtest.Eventually(t, 10*time.Second, "retried message handled", func() bool { return handled.Load() == 1 })

	if code, out := run("replay", "--stream", "plans", "--from-seq", "1"); code != ExitOK || !strings.Contains(out, "replayed 2 message(s) of PLANS") {
		t.Fatalf("replay = %d: %s", code, out)
	}
	natsxtest.Eventually(t, 10*time.Second, "replayed messages handled", func() bool { return handled.Load() == 3 })

	for _, args := range [][]string{{"retry"}, {"retry", "PLANS.1", "--all"}, {"nope"}} {
		if code, _ := run(append([]string{"failed"}, args...)...); code != ExitUsage {
			t.Errorf("failed %v = %d, want usage error", args, code)
		}
	}
	if code, out := run("replay", "--stream", "PLANS"); code != ExitUsage || !strings.Contains(out, "[from-seq since] is required") {
		t.Errorf("replay without --from-seq/--since = %d: %s", code, out)
	}
}
