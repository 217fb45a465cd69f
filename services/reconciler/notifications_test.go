package reconciler

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/apispec"
	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	"github.com/orgsync/orgsync/pkg/orgs"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// Demo fixture source org and its reference users.
const (
	srcOrgID = "5f0c2a4e-0000-4000-8000-000000000001"
	johnID   = "5f0c2a4e-0000-4000-8000-0000000000a1"
	janeID   = "5f0c2a4e-0000-4000-8000-0000000000a2"
)

// simEnv is gcsim with the demo fixture behind spec-validated clients.
type simEnv struct {
	sim     *gcsim.Sim
	clients *orgs.Registry
	offset  atomic.Int64 // added to the simulator's clock
}

func startSim(t *testing.T, cfg gcsim.Config) *simEnv {
	t.Helper()
	se := &simEnv{}
	cfg.RateLimitPerMinute = -1
	cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(se.offset.Load())) }
	sim, err := gcsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.LoadFixture(gcsim.DemoFixture()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { sim.Close(); srv.Close() })
	rec := apispec.NewValidatingTransport(nil)
	t.Cleanup(func() {
		for _, v := range rec.Violations() {
			t.Errorf("API spec violation: %+v", v)
		}
	})
	se.sim = sim
	se.clients = orgs.NewRegistry(map[string]genesys.OrgConfig{
		"src": {APIBaseURL: srv.URL, LoginBaseURL: srv.URL, ClientID: "source-client", ClientSecret: "source-secret"},
	}, orgs.WithTransport(rec))
	return se
}

func (se *simEnv) retitle(t *testing.T, userID, title string) {
	t.Helper()
	c, err := se.clients.Client("src")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchUser(ctxT(t), userID, genesys.UserPatch{Title: &title}); err != nil {
		t.Fatal(err)
	}
}

func fromSource(src orgsyncv1.ChangeSource, user string) func(*orgsyncv1.ChangeEvent) bool {
	return func(ev *orgsyncv1.ChangeEvent) bool { return ev.Source == src && ev.UserId == user }
}

func channelsOf(e *testEnv) []ChannelStatus { return e.svc.NotificationStatus()["src"] }

func TestNotificationsPublishChangesAndSurviveDroppedSockets(t *testing.T) {
	t.Parallel()
	se := startSim(t, gcsim.Config{NotificationHeartbeat: 100 * time.Millisecond})
	// The first reconnect waits 150–300ms, so the change below is made
	// while the socket is down and only the reconnect sweep can cover it.
	e := startEnv(t, Config{SweepInterval: -1, WebhookDisabled: true, ReconnectMin: 300 * time.Millisecond, ReconnectMax: time.Second},
		se.clients, map[string][]string{"src": {johnID, janeID}})

	natsxtest.Eventually(t, 10*time.Second, "one socket for both users", func() bool { return se.sim.SocketCount(srcOrgID) == 1 })
	if n := se.sim.ChannelCount(srcOrgID); n != 1 {
		t.Fatalf("%d channels for 2 topics, want 1", n)
	}
	// Connecting sweeps the org (covers whatever happened before).
	e.waitChange(t, "src", "connect sweep of jane", fromSource(orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP, janeID))

	se.retitle(t, johnID, "Senior Agent")
	ev := e.waitChange(t, "src", "notification for john's change", fromSource(orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION, johnID))
	if ev.EventId == "" || ev.OccurredAt == nil || ev.SourceOrg != "src" {
		t.Fatalf("notification change event: %v", ev)
	}

	sweepsBefore := countSweeps(e.changes(t, "src"), janeID)
	if n := se.sim.DropWebSockets(srcOrgID); n != 1 {
		t.Fatalf("dropped %d sockets, want 1", n)
	}
	se.retitle(t, janeID, "Team Lead") // not delivered: no socket
	e.waitChange(t, "src", "a change event for jane after the drop", func(ev *orgsyncv1.ChangeEvent) bool {
		return ev.UserId == janeID && countSweeps(e.changes(t, "src"), janeID) > sweepsBefore
	})
	natsxtest.Eventually(t, 10*time.Second, "reconnected and re-subscribed", func() bool {
		st := channelsOf(e)
		return len(st) == 1 && st[0].Connected && st[0].Connects == 2 && se.sim.SocketCount(srcOrgID) == 1
	})
	// Still subscribed after the reconnect: a new change arrives live.
	se.retitle(t, janeID, "Supervisor")
	natsxtest.Eventually(t, 10*time.Second, "notification after reconnect", func() bool {
		n := 0
		for _, ev := range e.changes(t, "src") {
			if ev.UserId == janeID && ev.Source == orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION {
				n++
			}
		}
		return n >= 1
	})
}

func countSweeps(evs []*orgsyncv1.ChangeEvent, user string) int {
	n := 0
	for _, ev := range evs {
		if ev.UserId == user && ev.Source == orgsyncv1.ChangeSource_CHANGE_SOURCE_SWEEP {
			n++
		}
	}
	return n
}

func TestNotificationsPickUpNewlyTrackedUsers(t *testing.T) {
	t.Parallel()
	se := startSim(t, gcsim.Config{})
	e := startEnv(t, Config{SweepInterval: -1, WebhookDisabled: true}, se.clients, map[string][]string{"src": {johnID}})
	natsxtest.Eventually(t, 10*time.Second, "socket", func() bool { return se.sim.SocketCount(srcOrgID) == 1 })
	e.track(t, "src", janeID)
	natsxtest.Eventually(t, 10*time.Second, "jane's topic subscribed", func() bool {
		st := channelsOf(e)
		return len(st) == 1 && st[0].Topics == 2
	})
	// Subscription is applied by PUT before the status shows it; a change
	// made now must come through the socket.
	natsxtest.Eventually(t, 10*time.Second, "jane subscribed at gcsim", func() bool {
		c, _ := se.clients.Client("src")
		subs, err := c.ListSubscriptions(ctxT(t), st0(e).ChannelID)
		return err == nil && slices.ContainsFunc(subs, func(s genesys.ChannelTopic) bool { return s.ID == genesys.UserAuditTopic(janeID) })
	})
	se.retitle(t, janeID, "Coach")
	e.waitChange(t, "src", "notification for newly tracked jane", fromSource(orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION, janeID))

	// Untracking (key deleted) drops the subscription.
	kv, err := OpenTrackingBucket(ctxT(t), e.js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctxT(t), TrackingKey("src", janeID)); err != nil {
		t.Fatal(err)
	}
	natsxtest.Eventually(t, 10*time.Second, "jane unsubscribed", func() bool {
		c, _ := se.clients.Client("src")
		subs, err := c.ListSubscriptions(ctxT(t), st0(e).ChannelID)
		return err == nil && len(subs) == 1 && subs[0].ID == genesys.UserAuditTopic(johnID) && !e.svc.Tracked().Has("src", janeID)
	})
}

// TestTrackingBurstIsRepackedOnce: a clone tracks its users one by one as
// their plans finish; the subscriber gathers such a burst into one repack
// and so a handful of subscription updates at the source, not one per user.
// (The gather is long here so that the burst, 200 KV puts, fits in it on
// any machine.)
func TestTrackingBurstIsRepackedOnce(t *testing.T) {
	t.Parallel()
	se := startSim(t, gcsim.Config{})
	e := startEnv(t, Config{SweepInterval: -1, WebhookDisabled: true, SubscribeGather: 5 * time.Second}, se.clients, map[string][]string{"src": {johnID}})
	natsxtest.Eventually(t, 10*time.Second, "socket", func() bool { return se.sim.SocketCount(srcOrgID) == 1 })
	const putSubs = "PUT /api/v2/notifications/channels/{channelId}/subscriptions"
	before := se.sim.Stats(srcOrgID).Requests[putSubs]
	const burst = 200
	for i := range burst {
		e.track(t, "src", fmt.Sprintf("burst-user-%03d", i))
	}
	natsxtest.Eventually(t, 20*time.Second, "the burst subscribed", func() bool {
		st := channelsOf(e)
		return len(st) == 1 && st[0].Topics == burst+1
	})
	if puts := se.sim.Stats(srcOrgID).Requests[putSubs] - before; puts > 3 {
		t.Errorf("%d subscription updates for a burst of %d tracked users, want at most 3", puts, burst)
	}
}

func st0(e *testEnv) ChannelStatus {
	if st := channelsOf(e); len(st) > 0 {
		return st[0]
	}
	return ChannelStatus{}
}

func TestNotificationChannelsRenewedAndRecreatedAfterExpiry(t *testing.T) {
	t.Parallel()
	se := startSim(t, gcsim.Config{ChannelTTL: 2 * time.Second, NotificationHeartbeat: 50 * time.Millisecond})
	e := startEnv(t, Config{SweepInterval: -1, WebhookDisabled: true, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond},
		se.clients, map[string][]string{"src": {johnID}})
	natsxtest.Eventually(t, 10*time.Second, "connected", func() bool { return st0(e).Connected })
	first := st0(e)
	// Renewal (re-subscribing at TTL/2) keeps the same channel alive past
	// its original expiry.
	natsxtest.Eventually(t, 10*time.Second, "channel renewed past its first expiry", func() bool {
		st := st0(e)
		return st.ChannelID == first.ChannelID && st.Expires.After(first.Expires.Add(500*time.Millisecond)) && time.Now().After(first.Expires)
	})
	if st := st0(e); st.Connects != 1 || se.sim.ChannelCount(srcOrgID) != 1 {
		t.Fatalf("renewal reconnected or leaked channels: %+v, %d channels", st, se.sim.ChannelCount(srcOrgID))
	}
	// The simulator's clock jumps past the expiry: gcsim closes the socket
	// (socket_closing) and the client opens a new channel.
	se.offset.Add(int64(time.Hour))
	natsxtest.Eventually(t, 10*time.Second, "new channel after expiry", func() bool {
		st := st0(e)
		return st.Connected && st.ChannelID != first.ChannelID && st.Connects == 2
	})
	se.offset.Store(0)
	se.retitle(t, johnID, "Renewed")
	e.waitChange(t, "src", "notification on the new channel", fromSource(orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION, johnID))
}

func TestNotificationTopicPackingRespectsLimits(t *testing.T) {
	t.Parallel()
	se := startSim(t, gcsim.Config{})
	users := make([]string, 5)
	for i := range users {
		users[i] = fmt.Sprintf("u-%d", i) // topics of unknown users are valid subscriptions
	}
	e := startEnv(t, Config{SweepInterval: -1, WebhookDisabled: true, MaxTopicsPerChannel: 2, MaxChannels: 2},
		se.clients, map[string][]string{"src": users})
	natsxtest.Eventually(t, 10*time.Second, "two full channels", func() bool {
		st := channelsOf(e)
		return len(st) == 2 && st[0].Connected && st[1].Connected && st[0].Topics == 2 && st[1].Topics == 2
	})
	if n := se.sim.ChannelCount(srcOrgID); n != 2 {
		t.Fatalf("gcsim has %d channels, want 2 (limit)", n)
	}
}

func TestPackTopics(t *testing.T) {
	t.Parallel()
	topics := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("t%04d", i)
		}
		return out
	}
	assign, overflow, err := PackTopics(nil, topics(2500), 1000, 20)
	if err != nil || len(overflow) != 0 || len(assign) != 3 || len(assign[0]) != 1000 || len(assign[2]) != 500 {
		t.Fatalf("2500 topics: %d channels, overflow %d, err %v", len(assign), len(overflow), err)
	}
	// Existing assignments are kept; removed topics leave; new ones fill gaps.
	current := [][]string{{"a", "b", "c"}, {"d", "e"}}
	assign, _, err = PackTopics(current, []string{"a", "c", "d", "e", "x", "y"}, 3, 20)
	if err != nil || !slices.Equal(assign[0], []string{"a", "c", "x"}) || !slices.Equal(assign[1], []string{"d", "e", "y"}) || len(assign) != 2 {
		t.Fatalf("repack: %v %v", assign, err)
	}
	// Over the limit: what fits is assigned, the rest reported.
	assign, overflow, err = PackTopics(nil, topics(21*1000+1), 1000, 20)
	if err == nil || !strings.Contains(err.Error(), "channel limit") || len(assign) != 20 || len(overflow) != 1001 {
		t.Fatalf("over the limit: %d channels, overflow %d, err %v", len(assign), len(overflow), err)
	}
	// Emptied channels stay in place (the caller stops them).
	assign, _, _ = PackTopics(current, []string{"d"}, 3, 20)
	if len(assign) != 2 || len(assign[0]) != 0 || !slices.Equal(assign[1], []string{"d"}) {
		t.Fatalf("emptied: %v", assign)
	}
}
