package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/genesys"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Notification topics that are not audit events.
const (
	topicHeartbeat     = "channel.metadata"
	topicSocketClosing = "v2.system.socket_closing"
	// maxNotification bounds one WebSocket message (audit records are small).
	maxNotification = 1 << 20
)

// ChannelStatus describes one notifications channel connection.
type ChannelStatus struct {
	ChannelID string    `json:"channel_id"`
	Topics    int       `json:"topics"`
	Connected bool      `json:"connected"`
	Expires   time.Time `json:"expires,omitzero"`
	// Connects counts successful WebSocket connects (1 + reconnects).
	Connects int `json:"connects"`
	// Events counts audit notifications published as ChangeEvents.
	Events    int    `json:"events"`
	LastError string `json:"last_error,omitempty"`
}

// channelConn owns one notifications channel of a source org: it creates
// the channel, subscribes its topics, keeps a WebSocket to it, renews it
// before it expires, and recreates it when it is gone. One goroutine (run)
// does all the API and socket work; SetTopics and stop only signal it.
type channelConn struct {
	cfg     Config
	src     string
	client  *genesys.Client
	js      jetstream.JetStream
	tracked *TrackedSet
	sweeps  *sweeper
	logger  *slog.Logger

	// onAudit, when set, hears every audit notification (sync sets).
	onAudit func(src, entityType, entityID string)

	mu      sync.Mutex
	topics  []string
	st      ChannelStatus
	update  chan struct{} // topics changed (cap 1)
	cancel  context.CancelFunc
	stopped bool
	// sweepOnConnect: a connect sweeps the org, because events may have
	// been raised while no socket listened. Always true after the first
	// connect; before it, true when the users were tracked before this
	// process started (see orgSubscriber.catchUp).
	sweepOnConnect bool
}

func newChannelConn(cfg Config, src string, client *genesys.Client, js jetstream.JetStream, tracked *TrackedSet, sweeps *sweeper, logger *slog.Logger, topics []string, catchUp bool) *channelConn {
	return &channelConn{cfg: cfg, src: src, client: client, js: js, tracked: tracked, sweeps: sweeps,
		logger: logger.With("org", src), topics: slices.Clone(topics), st: ChannelStatus{Topics: len(topics)}, update: make(chan struct{}, 1),
		sweepOnConnect: catchUp}
}

// Topics returns the topics the connection should be subscribed to.
func (c *channelConn) Topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topics)
}

// SetTopics changes the subscription; run applies it (PUT) promptly.
func (c *channelConn) SetTopics(topics []string) {
	c.mu.Lock()
	same := slices.Equal(c.topics, topics)
	c.topics = slices.Clone(topics)
	c.st.Topics = len(topics)
	c.mu.Unlock()
	if same {
		return
	}
	select {
	case c.update <- struct{}{}:
	default:
	}
}

// Status is a snapshot of the connection's state.
func (c *channelConn) Status() ChannelStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *channelConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
}

func (c *channelConn) setStatus(f func(*ChannelStatus)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

// channel is the API side of the connection, owned by run.
type channel struct {
	id, uri string
	expires time.Time
	ttl     time.Duration // observed at creation; a renewal extends by it
}

// run keeps the channel connected until ctx is done or stop is called.
func (c *channelConn) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cancel = cancel
	if c.stopped {
		cancel()
	}
	c.mu.Unlock()
	defer cancel()
	var ch *channel
	failures := 0
	for ctx.Err() == nil {
		var err error
		ch, err = c.session(ctx, ch)
		if ctx.Err() != nil {
			return
		}
		if err == nil { // a session that connected resets the backoff
			failures = 0
		} else {
			failures++
			c.setStatus(func(s *ChannelStatus) { s.LastError = err.Error() })
			c.logger.Warn("notifications channel: reconnecting", "channel", channelID(ch), "attempt", failures, "err", err)
		}
		c.setStatus(func(s *ChannelStatus) { s.Connected = false })
		delay := backoff(c.cfg.ReconnectMin, c.cfg.ReconnectMax, failures)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func channelID(ch *channel) string {
	if ch == nil {
		return ""
	}
	return ch.id
}

// backoff is exponential with equal jitter: half the step fixed, half random,
// so a fleet reconnecting after an outage spreads out but never retries in
// a tight loop.
func backoff(minD, maxD time.Duration, failures int) time.Duration {
	step := minD
	for i := 0; i < failures && step < maxD; i++ {
		step *= 2
	}
	step = min(step, maxD)
	half := step / 2
	return half + rand.N(half+1)
}

// session makes sure ch exists and is subscribed, connects, and reads until
// the socket fails. It returns the channel to reuse (nil: create a new one)
// and nil after a session that did connect, or the error that prevented it.
func (c *channelConn) session(ctx context.Context, ch *channel) (*channel, error) {
	if ch == nil {
		created, err := c.client.CreateChannel(ctx)
		if err != nil {
			return nil, fmt.Errorf("notifications: create channel for org %s: %w", c.src, err)
		}
		ch = &channel{id: created.ID, uri: created.ConnectURI}
		now := time.Now()
		if exp, err := time.Parse(time.RFC3339Nano, created.Expires); err == nil && exp.After(now) {
			ch.expires, ch.ttl = exp, exp.Sub(now)
		} else {
			ch.ttl = 24 * time.Hour // the documented Genesys lifetime
			ch.expires = now.Add(ch.ttl)
		}
		c.logger.Info("notifications channel created", "channel", ch.id, "expires", ch.expires)
	}
	// Subscribing (re)starts the channel's lifetime on Genesys.
	if err := c.subscribe(ctx, ch); err != nil {
		if genesys.IsNotFound(err) {
			return nil, err // expired or gone: create a new channel next round
		}
		return ch, err
	}
	ws, resp, err := websocket.Dial(ctx, ch.uri, nil)
	if err != nil {
		if resp != nil && resp.StatusCode == 404 {
			return nil, fmt.Errorf("notifications: connect channel %s: gone (404): %w", ch.id, err)
		}
		return ch, fmt.Errorf("notifications: connect channel %s: %w", ch.id, err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxNotification)
	c.setStatus(func(s *ChannelStatus) {
		s.Connected = true
		s.Connects++
		s.ChannelID = ch.id
		s.Expires = ch.expires
		s.LastError = ""
	})
	c.logger.Info("notifications channel connected", "channel", ch.id)
	// Events raised while we were away were not delivered: sweep the org.
	if c.sweepOnConnect {
		c.sweeps.Trigger(c.src, TriggerReconnect)
	}
	c.sweepOnConnect = true
	keep, err := c.read(ctx, ws, ch)
	if ctx.Err() != nil {
		_ = ws.Close(websocket.StatusNormalClosure, "shutting down")
		return ch, nil
	}
	c.logger.Warn("notifications socket closed", "channel", ch.id, "err", err)
	if !keep {
		return nil, nil
	}
	return ch, nil
}

// subscribe PUTs the current topics on ch and moves its expiry.
func (c *channelConn) subscribe(ctx context.Context, ch *channel) error {
	topics := c.Topics()
	if _, err := c.client.ReplaceSubscriptions(ctx, ch.id, topics); err != nil {
		return fmt.Errorf("notifications: subscribe channel %s to %d topics: %w", ch.id, len(topics), err)
	}
	ch.expires = time.Now().Add(ch.ttl)
	c.setStatus(func(s *ChannelStatus) { s.Expires = ch.expires })
	return nil
}

// renewAt is how long before ch's expiry it is renewed.
func (c *channelConn) renewAt(ch *channel) time.Duration {
	margin := min(c.cfg.ChannelRenewMargin, ch.ttl/2)
	return time.Until(ch.expires.Add(-margin))
}

// read handles messages until the socket fails. keep reports whether the
// channel is still usable (false after socket_closing or replacement).
func (c *channelConn) read(ctx context.Context, ws *websocket.Conn, ch *channel) (keep bool, err error) {
	type frame struct {
		data []byte
		err  error
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	frames := make(chan frame)
	go func() {
		for {
			_, data, err := ws.Read(rctx)
			select {
			case frames <- frame{data, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	renew := time.NewTimer(c.renewAt(ch))
	defer renew.Stop()
	silence := time.NewTimer(c.cfg.HeartbeatTimeout)
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-c.update:
			if err := c.subscribe(ctx, ch); err != nil {
				return !genesys.IsNotFound(err), err
			}
			renew.Reset(c.renewAt(ch))
		case <-renew.C:
			if err := c.subscribe(ctx, ch); err != nil {
				return !genesys.IsNotFound(err), fmt.Errorf("renew: %w", err)
			}
			c.logger.Debug("notifications channel renewed", "channel", ch.id, "expires", ch.expires)
			renew.Reset(c.renewAt(ch))
		case <-silence.C:
			return true, fmt.Errorf("no message for %v (heartbeats stopped)", c.cfg.HeartbeatTimeout)
		case f := <-frames:
			if f.err != nil {
				status := websocket.CloseStatus(f.err)
				// 1008: another client took the channel over; leave it.
				return status != websocket.StatusPolicyViolation, f.err
			}
			silence.Reset(c.cfg.HeartbeatTimeout)
			if closing := c.handle(ctx, f.data); closing {
				return false, errors.New("channel expired (socket_closing)")
			}
		}
	}
}

// handle processes one socket message; closing reports socket_closing.
func (c *channelConn) handle(ctx context.Context, data []byte) (closing bool) {
	var n notificationEnvelope
	if err := json.Unmarshal(data, &n); err != nil {
		c.logger.Warn("notifications: unreadable message ignored", "err", err, "bytes", len(data))
		return false
	}
	switch {
	case n.TopicName == topicHeartbeat:
		return false
	case n.TopicName == topicSocketClosing:
		return true
	}
	typ, entity := parseAuditTopic(n.TopicName)
	if typ == "" {
		c.logger.Debug("notifications: message of unexpected topic ignored", "topic", truncate(n.TopicName, 128))
		return false
	}
	if c.onAudit != nil {
		c.onAudit(c.src, typ, entity)
	}
	ev, err := parseAuditRecord(n.EventBody, n.TopicName)
	if errors.Is(err, ErrNotUserEntity) {
		return false
	}
	if err != nil {
		c.logger.Warn("notifications: audit event ignored", "topic", truncate(n.TopicName, 128), "err", err)
		return false
	}
	if !c.tracked.Has(c.src, ev.EntityID) {
		return false // untracked since; the subscription is being dropped
	}
	if _, err := publishChange(ctx, c.js, c.src, ev.EntityID, ev.ID, ev.OccurredAt, orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION); err != nil {
		// The event is lost for the notification path; a sweep covers it.
		c.logger.Error("notifications: publish failed, sweeping the org instead", "event_id", ev.ID, "err", err)
		c.sweeps.Trigger(c.src, TriggerReconnect)
		return false
	}
	c.setStatus(func(s *ChannelStatus) { s.Events++ })
	return false
}
