package genesys

import (
	"context"
	"net/http"
	"strings"
)

var (
	opCreateChannel        = op(http.MethodPost, "/api/v2/notifications/channels")
	opListChannels         = op(http.MethodGet, "/api/v2/notifications/channels")
	opHeadChannel          = op(http.MethodHead, "/api/v2/notifications/channels/{channelId}")
	opListSubscriptions    = op(http.MethodGet, "/api/v2/notifications/channels/{channelId}/subscriptions")
	opAddSubscriptions     = op(http.MethodPost, "/api/v2/notifications/channels/{channelId}/subscriptions")
	opReplaceSubscriptions = op(http.MethodPut, "/api/v2/notifications/channels/{channelId}/subscriptions")
)

// UserAuditTopic is the notification topic of audit events of one user.
func UserAuditTopic(userID string) string { return AuditTopic("USER", userID) }

// CreateChannel opens a notifications channel. Creating one is not
// idempotent and has no key to look it up by, so a lost answer is surfaced
// as an error rather than re-posted (an unused channel expires by itself).
func (c *Client) CreateChannel(ctx context.Context) (*Channel, error) {
	var ch Channel
	err := c.do(ctx, request{op: opCreateChannel, out: &ch})
	return &ch, err
}

// ListChannels lists the channels of the client's token.
func (c *Client) ListChannels(ctx context.Context) ([]Channel, error) {
	var page entityPage[Channel]
	err := c.do(ctx, request{op: opListChannels, out: &page, idempotent: true})
	return page.Entities, err
}

// ChannelExists reports whether a channel is still open (HEAD).
func (c *Client) ChannelExists(ctx context.Context, channelID string) (bool, error) {
	err := c.do(ctx, request{op: opHeadChannel, params: []string{channelID}, idempotent: true})
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ListSubscriptions lists the topics a channel is subscribed to.
func (c *Client) ListSubscriptions(ctx context.Context, channelID string) ([]ChannelTopic, error) {
	var page entityPage[ChannelTopic]
	err := c.do(ctx, request{op: opListSubscriptions, params: []string{channelID}, out: &page, idempotent: true})
	return page.Entities, err
}

// AddSubscriptions subscribes a channel to more topics (POST).
func (c *Client) AddSubscriptions(ctx context.Context, channelID string, topics []string) ([]ChannelTopic, error) {
	return c.subscriptions(ctx, opAddSubscriptions, channelID, topics)
}

// ReplaceSubscriptions sets exactly these topics on a channel (PUT).
func (c *Client) ReplaceSubscriptions(ctx context.Context, channelID string, topics []string) ([]ChannelTopic, error) {
	return c.subscriptions(ctx, opReplaceSubscriptions, channelID, topics)
}

func (c *Client) subscriptions(ctx context.Context, o operation, channelID string, topics []string) ([]ChannelTopic, error) {
	body := make([]ChannelTopic, 0, len(topics))
	for _, t := range topics {
		if strings.TrimSpace(t) == "" {
			return nil, invalidArg(o, "empty topic")
		}
		body = append(body, ChannelTopic{ID: t})
	}
	var page entityPage[ChannelTopic]
	err := c.do(ctx, request{op: o, params: []string{channelID}, body: body, out: &page, idempotent: true})
	return page.Entities, err
}
