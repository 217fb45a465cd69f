package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
)

// ErrChannelLimit is wrapped when the tracked users of a source org need
// more topics than MaxChannels × MaxTopicsPerChannel: the overflow is not
// subscribed (only sweeps cover those users) until the limit is raised by
// using another OAuth client or fewer users are tracked.
var ErrChannelLimit = errors.New("notifications channel limit exceeded")

// PackTopics assigns the wanted topics to channels: every current channel
// keeps the topics of its assignment that are still wanted (so no socket is
// torn down for a change elsewhere), new topics fill channels with room in
// order, then new channels are opened up to maxChannels. The result has
// one entry per channel — the current ones first, in order, possibly
// emptied, then new ones. Topics beyond the limit are returned in overflow
// together with an error wrapping ErrChannelLimit.
func PackTopics(current [][]string, wanted []string, maxPerChannel, maxChannels int) (assign [][]string, overflow []string, err error) {
	want := map[string]bool{}
	for _, t := range wanted {
		want[t] = true
	}
	placed := map[string]bool{}
	assign = make([][]string, 0, len(current))
	for _, ch := range current {
		keep := []string{}
		for _, t := range ch {
			if want[t] && !placed[t] && len(keep) < maxPerChannel {
				keep = append(keep, t)
				placed[t] = true
			}
		}
		assign = append(assign, keep)
	}
	var pending []string
	for _, t := range wanted {
		if !placed[t] {
			pending = append(pending, t)
			placed[t] = true
		}
	}
	sort.Strings(pending)
	for i := range assign {
		for len(pending) > 0 && len(assign[i]) < maxPerChannel {
			assign[i] = append(assign[i], pending[0])
			pending = pending[1:]
		}
	}
	for len(pending) > 0 && len(assign) < maxChannels {
		n := min(maxPerChannel, len(pending))
		assign = append(assign, slices.Clone(pending[:n]))
		pending = pending[n:]
	}
	if len(pending) > 0 {
		return assign, pending, fmt.Errorf("%w: %d topics need more than %d channels of %d topics (Genesys allows %d channels per OAuth client); %d users are covered by sweeps only",
			ErrChannelLimit, len(wanted), maxChannels, maxPerChannel, DefaultMaxChannels, len(pending))
	}
	return assign, nil, nil
}

// notifier runs the Notifications API subscription of every source org
// with tracked users.
type notifier struct {
	cfg     Config
	clients orgs.Clients
	js      jetstream.JetStream
	tracked *TrackedSet
	sweeps  *sweeper
	logger  *slog.Logger

	mu    sync.Mutex
	dirty map[string]bool
	wake  chan struct{}
	subs  map[string]*orgSubscriber

	// extra lists more topics to watch in a source org (the sync sets'
	// TEAM topics), onAudit hears every audit notification; both optional.
	extra   func(src string) []string
	onAudit func(src, entityType, entityID string)
}

func newNotifier(cfg Config, clients orgs.Clients, js jetstream.JetStream, tracked *TrackedSet, sweeps *sweeper, logger *slog.Logger) *notifier {
	return &notifier{cfg: cfg, clients: clients, js: js, tracked: tracked, sweeps: sweeps, logger: logger,
		dirty: map[string]bool{}, wake: make(chan struct{}, 1), subs: map[string]*orgSubscriber{}}
}

// orgChanged is the TrackedSet hook: src's tracked users changed.
func (n *notifier) orgChanged(src string) {
	n.mu.Lock()
	n.dirty[src] = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run applies tracked-set changes to the org subscribers until ctx is done.
func (n *notifier) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		n.mu.Lock()
		dirty := n.dirty
		n.dirty = map[string]bool{}
		n.mu.Unlock()
		for src := range dirty {
			sub, ok := n.subs[src]
			if !ok {
				client, err := n.clients.Client(src)
				if err != nil {
					n.logger.Error("notifications: no Genesys client for source org; only sweeps cover it", "org", src, "err", err)
					continue
				}
				sub = &orgSubscriber{n: n, src: src, client: client, ctx: ctx, wg: &wg, catchUp: n.tracked.TrackedAtLoad(src)}
				n.subs[src] = sub
			}
			var extra []string
			if n.extra != nil {
				extra = n.extra(src)
			}
			sub.sync(n.tracked.Users(src), extra)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		if n.cfg.SubscribeGather > 0 {
			// More changes are likely on the way: one repack for the burst.
			t := time.NewTimer(n.cfg.SubscribeGather)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// status lists the channels of every org (tests, diagnostics).
func (n *notifier) status() map[string][]ChannelStatus {
	out := map[string][]ChannelStatus{}
	n.mu.Lock()
	subs := make([]*orgSubscriber, 0, len(n.subs))
	for _, s := range n.subs {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	for _, s := range subs {
		out[s.src] = s.status()
	}
	return out
}

// orgSubscriber owns the channels of one source org. sync is only called
// from notifier.run, so the channel list needs no lock of its own beyond
// what status reads.
type orgSubscriber struct {
	n      *notifier
	src    string
	client *genesys.Client
	ctx    context.Context
	wg     *sync.WaitGroup
	// catchUp: the org's users were tracked before this process started,
	// so the channels of its first sync sweep when they first connect.
	// Channels made later for newly tracked users do not: the extractor
	// has just read those users, and sweeping them would race the clone
	// that is provisioning them.
	catchUp bool

	mu    sync.Mutex
	conns []*channelConn
}

// sync repacks the org's topics for users and starts, updates or stops
// channel connections accordingly.
func (o *orgSubscriber) sync(users, extra []string) {
	wanted := make([]string, len(users), len(users)+len(extra))
	for i, u := range users {
		wanted[i] = genesys.UserAuditTopic(u)
	}
	wanted = append(wanted, extra...)
	o.mu.Lock()
	defer o.mu.Unlock()
	current := make([][]string, len(o.conns))
	for i, c := range o.conns {
		current[i] = c.Topics()
	}
	assign, overflow, err := PackTopics(current, wanted, o.n.cfg.MaxTopicsPerChannel, o.n.cfg.MaxChannels)
	if err != nil {
		o.n.logger.Error("notifications: "+err.Error(), "org", o.src, "unsubscribed", len(overflow))
	}
	var keep []*channelConn
	for i, topics := range assign {
		if i < len(o.conns) {
			c := o.conns[i]
			if len(topics) == 0 {
				c.stop() // nothing left to watch; the channel expires by itself
				continue
			}
			c.SetTopics(topics)
			keep = append(keep, c)
			continue
		}
		if len(topics) == 0 {
			continue
		}
		c := newChannelConn(o.n.cfg, o.src, o.client, o.n.js, o.n.tracked, o.n.sweeps, o.n.logger, topics, o.catchUp)
		c.onAudit = o.n.onAudit
		keep = append(keep, c)
		o.wg.Add(1)
		go func() { defer o.wg.Done(); c.run(o.ctx) }()
	}
	o.conns = keep
	o.catchUp = false
}

func (o *orgSubscriber) status() []ChannelStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]ChannelStatus, 0, len(o.conns))
	for _, c := range o.conns {
		out = append(out, c.Status())
	}
	return out
}

// NotificationStatus reports the channels of every source org (empty when
// the subscriber is disabled).
func (s *Service) NotificationStatus() map[string][]ChannelStatus {
	if s.notif == nil {
		return map[string][]ChannelStatus{}
	}
	return s.notif.status()
}
