package natsx_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
)

// Follow delivers a stream in order from a sequence, filtered, each message
// once — also when its consumer disappears under it (as when the node
// holding it dies): it starts a new one after the last message seen.
func TestFollowSurvivesLosingItsConsumer(t *testing.T) {
	t.Parallel()
	_, js := natsxtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			subj := "orgsync.event.follow.target"
			if i%2 == 0 {
				subj = "orgsync.event.other.target"
			}
			if _, err := js.Publish(ctx, subj, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 10)

	var mu sync.Mutex
	var got []string
	deleted := false
	err := natsx.Follow(ctx, js, natsx.StreamEvents, []string{"orgsync.event.follow.>"}, 3, func(m jetstream.Msg) bool {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(m.Data()))
		if len(got) == 2 && !deleted {
			// Lose the consumer, then more messages arrive.
			deleted = true
			st, err := js.Stream(ctx, natsx.StreamEvents)
			if err != nil {
				t.Fatal(err)
			}
			for name := range st.ListConsumers(ctx).Info() {
				if strings.HasPrefix(name.Name, "orgsync_follow_") {
					if err := st.DeleteConsumer(ctx, name.Name); err != nil {
						t.Fatal(err)
					}
				}
			}
			publish(11, 14)
		}
		return string(m.Data()) == "13"
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "3 5 7 9 11 13"; strings.Join(got, " ") != want {
		t.Fatalf("followed %v, want %s (in order, each once)", got, want)
	}

	// ctx ending stops Follow with ctx's error; an unknown stream is an
	// error at once.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := natsx.Follow(short, js, natsx.StreamEvents, []string{"orgsync.event.none.>"}, 1, func(jetstream.Msg) bool { return true }); err != context.DeadlineExceeded {
		t.Fatalf("Follow until ctx ends = %v, want %v", err, context.DeadlineExceeded)
	}
	if err := natsx.Follow(ctx, js, "NOPE", nil, 1, func(jetstream.Msg) bool { return true }); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("Follow of an unknown stream = %v", err)
	}
}
