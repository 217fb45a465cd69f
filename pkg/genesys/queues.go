package genesys

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

var (
	opListQueues         = op(http.MethodGet, "/api/v2/routing/queues")
	opListQueueMembers   = op(http.MethodGet, "/api/v2/routing/queues/{queueId}/members")
	opChangeQueueMembers = op(http.MethodPost, "/api/v2/routing/queues/{queueId}/members")
	opListUserQueues     = op(http.MethodGet, "/api/v2/users/{userId}/queues")
)

// queueMemberChunk is the most members one POST .../members carries.
const queueMemberChunk = 100

// ListQueues lists queues whose name matches the filter (all when ""):
// Genesys matches the queue name exactly, ignoring case, with a leading
// and/or trailing * as wildcard ("Billing*").
func (c *Client) ListQueues(ctx context.Context, name string) ([]Queue, error) {
	return collect(listByPageNumber[Queue](ctx, c, request{op: opListQueues, query: nameQuery(name)}))
}

// FindQueueByName returns the queue named exactly name (or the one name
// equal ignoring case). A name that starts or ends with * would be read as a
// wildcard by the filter; findExact still keeps only the name itself.
func (c *Client) FindQueueByName(ctx context.Context, name string) (Queue, bool, error) {
	if strings.TrimSpace(name) == "" {
		return Queue{}, false, invalidArg(opListQueues, "empty queue name")
	}
	return findExact(listByPageNumber[Queue](ctx, c, request{op: opListQueues, query: nameQuery(name)}), name)
}

// ListQueueMembers lists a queue's members.
func (c *Client) ListQueueMembers(ctx context.Context, queueID string) ([]QueueMember, error) {
	return collect(listByPageNumber[QueueMember](ctx, c, request{op: opListQueueMembers, params: []string{queueID}}))
}

// AddQueueMembers adds users to a queue, at most 100 per call.
func (c *Client) AddQueueMembers(ctx context.Context, queueID string, userIDs []string) error {
	return c.changeQueueMembers(ctx, queueID, userIDs, false)
}

// RemoveQueueMembers removes users from a queue (delete=true), 100 per call.
func (c *Client) RemoveQueueMembers(ctx context.Context, queueID string, userIDs []string) error {
	return c.changeQueueMembers(ctx, queueID, userIDs, true)
}

func (c *Client) changeQueueMembers(ctx context.Context, queueID string, userIDs []string, remove bool) error {
	var q url.Values
	if remove {
		q = url.Values{"delete": {"true"}}
	}
	for _, chunk := range chunks(userIDs, queueMemberChunk) {
		body := make([]UserRef, len(chunk))
		for i, id := range chunk {
			body[i] = UserRef{ID: id}
		}
		if err := c.do(ctx, request{op: opChangeQueueMembers, params: []string{queueID}, query: q, body: body, idempotent: true}); err != nil {
			return err
		}
	}
	return nil
}

// ListUserQueues lists the queues a user is a member of (the server's
// default filter: joined queues).
func (c *Client) ListUserQueues(ctx context.Context, userID string) ([]UserQueue, error) {
	return collect(listByPageNumber[UserQueue](ctx, c, request{op: opListUserQueues, params: []string{userID}}))
}
