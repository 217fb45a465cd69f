package gcsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Platform limits of the Notifications API.
const (
	// MaxChannelsPerClient is the number of live channels one OAuth client
	// may hold in an org.
	MaxChannelsPerClient = 20
	// MaxTopicsPerChannel is the number of topics one channel may subscribe.
	MaxTopicsPerChannel = 1000
)

// auditTopicRE matches the audit topic v2.audits.entitytype.{TYPE}.entityid.{id}.
// TYPE USER carries every change of a user, TYPE TEAM the membership
// changes of a team; other entity types are valid subscriptions that never
// fire.
var auditTopicRE = regexp.MustCompile(`^v2\.audits\.entitytype\.([A-Z_]+)\.entityid\.([^.\s]+)$`)

// UserAuditTopic is the topic carrying audit events of one user.
func UserAuditTopic(userID string) string { return "v2.audits.entitytype.USER.entityid." + userID }

// TeamAuditTopic is the topic carrying membership changes of one team.
func TeamAuditTopic(teamID string) string { return "v2.audits.entitytype.TEAM.entityid." + teamID }

// notifier holds the Notifications API state of all orgs: channels, their
// subscriptions and their WebSocket connection. Lock order: org.mu (held by
// API handlers) before notifier.mu; nothing holding notifier.mu takes an
// org lock or Sim.mu.
type notifier struct {
	mu       sync.Mutex
	channels map[string]*channel // channel id -> channel
	closed   bool                // Sim.Close was called: no new sockets
}

// channel is one notifications channel. Guarded by notifier.mu.
type channel struct {
	id, orgID, clientID, tokenValue string
	connectURI                      string
	created, expires, lastUsed      time.Time
	topics                          map[string]bool
	conn                            *wsConn // the connected socket, at most one
}

func (c *channel) render(withID bool) map[string]any {
	m := map[string]any{"expires": fmtTime(c.expires)}
	if withID {
		m["id"], m["connectUri"] = c.id, c.connectURI
	}
	return m
}

func (c *channel) sortedTopics() []string {
	out := make([]string, 0, len(c.topics))
	for t := range c.topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// sweepLocked removes the channels expired at now and closes their sockets
// (they get a socket_closing message and a 1001 close); n.mu must be held.
func (n *notifier) sweepLocked(now time.Time) {
	for id, c := range n.channels {
		if !now.Before(c.expires) {
			delete(n.channels, id)
			if c.conn != nil {
				c.conn.shutdown(closeExpired)
				c.conn = nil
			}
		}
	}
}

// channelForLocked returns the live channel id owned by org o and OAuth
// client clientID, or a 404: channels of other clients and orgs do not
// exist for the caller. notifier.mu must be held (and no Sim.mu taken
// under it: callers resolve the token before locking).
func (s *Sim) channelForLocked(o *org, clientID, id string) (*channel, *apiError) {
	s.notif.sweepLocked(s.now())
	c := s.notif.channels[id]
	if c == nil || c.orgID != o.id || c.clientID != clientID {
		return nil, notFound("notification channel %s not found (it may have expired)", id)
	}
	return c, nil
}

// POST /api/v2/notifications/channels
func (s *Sim) createChannel(r *http.Request, o *org) (int, any, *apiError) {
	tok := s.tokenFrom(r)
	now := s.now()
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweepLocked(now)
	var mine []*channel
	for _, c := range n.channels {
		if c.orgID == o.id && c.clientID == tok.clientID {
			mine = append(mine, c)
		}
	}
	if len(mine) >= MaxChannelsPerClient {
		if !s.cfg.EvictOldestChannel {
			return 0, nil, badRequest("Channel limit reached: OAuth client %s already has %d channels in this organization (maximum %d per user/app). Reuse or let an existing channel expire.",
				tok.clientID, len(mine), MaxChannelsPerClient)
		}
		// Documented platform behaviour: unconnected channels go first, then
		// the one used least recently.
		sort.Slice(mine, func(i, j int) bool {
			if (mine[i].conn == nil) != (mine[j].conn == nil) {
				return mine[i].conn == nil
			}
			return mine[i].lastUsed.Before(mine[j].lastUsed)
		})
		victim := mine[0]
		delete(n.channels, victim.id)
		if victim.conn != nil {
			victim.conn.shutdown(closeEvicted)
		}
	}
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	id := newID()
	c := &channel{
		id: id, orgID: o.id, clientID: tok.clientID, tokenValue: tok.value,
		connectURI: scheme + "://" + r.Host + "/channels/" + id,
		created:    now, expires: now.Add(s.cfg.ChannelTTL), lastUsed: now,
		topics: map[string]bool{},
	}
	n.channels[id] = c
	return http.StatusOK, c.render(true), nil
}

// GET /api/v2/notifications/channels?includechannels=token|oauthclient.
// With oauthclient, channels of the client's other tokens are listed
// without id (as the platform does: shown to prove they exist).
func (s *Sim) listChannels(r *http.Request, o *org) (int, any, *apiError) {
	scope := r.URL.Query().Get("includechannels")
	if scope == "" {
		scope = "token"
	}
	if scope != "token" && scope != "oauthclient" {
		return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [includechannels]. Allowable values are: token, oauthclient", scope)
	}
	tok := s.tokenFrom(r)
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweepLocked(s.now())
	var list []*channel
	for _, c := range n.channels {
		if c.orgID == o.id && c.clientID == tok.clientID && (scope == "oauthclient" || c.tokenValue == tok.value) {
			list = append(list, c)
		}
	}
	sort.Slice(list, func(i, j int) bool {
		return list[i].created.Before(list[j].created) || list[i].created.Equal(list[j].created) && list[i].id < list[j].id
	})
	entities := make([]any, 0, len(list))
	for _, c := range list {
		entities = append(entities, c.render(c.tokenValue == tok.value))
	}
	return http.StatusOK, map[string]any{"entities": entities}, nil
}

// HEAD /api/v2/notifications/channels/{channelId}: 200 while the channel
// lives, 404 once expired or for foreign ids.
func (s *Sim) headChannel(r *http.Request, o *org) (int, any, *apiError) {
	clientID := s.tokenFrom(r).clientID
	s.notif.mu.Lock()
	defer s.notif.mu.Unlock()
	if _, err := s.channelForLocked(o, clientID, r.PathValue("channelId")); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nil, nil
}

// GET /api/v2/notifications/channels/{channelId}/subscriptions
func (s *Sim) listSubscriptions(r *http.Request, o *org) (int, any, *apiError) {
	clientID := s.tokenFrom(r).clientID
	s.notif.mu.Lock()
	defer s.notif.mu.Unlock()
	c, err := s.channelForLocked(o, clientID, r.PathValue("channelId"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, topicListing(c, nil), nil
}

// DELETE /api/v2/notifications/channels/{channelId}/subscriptions
func (s *Sim) deleteSubscriptions(r *http.Request, o *org) (int, any, *apiError) {
	clientID := s.tokenFrom(r).clientID
	s.notif.mu.Lock()
	defer s.notif.mu.Unlock()
	c, err := s.channelForLocked(o, clientID, r.PathValue("channelId"))
	if err != nil {
		return 0, nil, err
	}
	c.topics = map[string]bool{}
	c.lastUsed = s.now()
	return http.StatusOK, nil, nil
}

// subscribe serves POST (add, replace=false) and PUT (replace=true) of
// /api/v2/notifications/channels/{channelId}/subscriptions. Invalid topics
// fail the request with 400 notification.invalid.topic, or with
// ignoreErrors=true are answered as Rejected and not subscribed. The answer
// lists every subscription of the channel afterwards, plus the rejected
// topics. Subscribing renews the channel: expires = now + ChannelTTL.
func (s *Sim) subscribe(replace bool) apiFunc {
	return func(r *http.Request, o *org) (int, any, *apiError) {
		ignoreErrors := false
		if v := r.URL.Query().Get("ignoreErrors"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return 0, nil, errf(400, "invalid.query.param.value", "Value [%s] is not valid for parameter [ignoreErrors]. Allowable values are: true, false", v)
			}
			ignoreErrors = b
		}
		var body []struct {
			ID string `json:"id"`
		}
		if err := decodeBody(r, &body); err != nil {
			return 0, nil, err
		}
		var accepted []string
		var rejected []map[string]any
		for i, t := range body {
			if auditTopicRE.MatchString(t.ID) {
				accepted = append(accepted, t.ID)
				continue
			}
			reason := "The subscription topic is not valid. gcsim simulates v2.audits.entitytype.{TYPE}.entityid.{id} topics only."
			if !ignoreErrors {
				return 0, nil, errf(400, "notification.invalid.topic", "subscriptions[%d]: topic %q: %s", i, t.ID, reason)
			}
			rejected = append(rejected, map[string]any{"id": t.ID, "state": "Rejected", "rejectionReason": reason})
		}
		now, clientID := s.now(), s.tokenFrom(r).clientID
		s.notif.mu.Lock()
		defer s.notif.mu.Unlock()
		c, err := s.channelForLocked(o, clientID, r.PathValue("channelId"))
		if err != nil {
			return 0, nil, err
		}
		next := map[string]bool{}
		if !replace {
			for t := range c.topics {
				next[t] = true
			}
		}
		for _, t := range accepted {
			next[t] = true
		}
		if len(next) > MaxTopicsPerChannel {
			return 0, nil, errf(400, "notification.subscription.too.many.subscriptions",
				"Too many subscriptions: channel %s would have %d topics (maximum %d)", c.id, len(next), MaxTopicsPerChannel)
		}
		c.topics = next
		c.lastUsed, c.expires = now, now.Add(s.cfg.ChannelTTL)
		return http.StatusOK, topicListing(c, rejected), nil
	}
}

func topicListing(c *channel, rejected []map[string]any) map[string]any {
	entities := make([]any, 0, len(c.topics)+len(rejected))
	for _, t := range c.sortedTopics() {
		entities = append(entities, map[string]any{"id": t, "state": "Permitted"})
	}
	for _, r := range rejected {
		entities = append(entities, r)
	}
	return map[string]any{"entities": entities}
}

// GET /api/v2/notifications/availabletopics: the simulated topics. Only id
// is always present; other fields follow `expand`.
func (s *Sim) availableTopics(r *http.Request, o *org) (int, any, *apiError) {
	expand := expandSet(r)
	full := map[string]any{
		"description":               "Audit events of an entity; gcsim raises them for entity type USER on every configuration change and for TEAM on membership changes.",
		"enforced":                  true,
		"visibility":                "Public",
		"transports":                []string{"Websocket"},
		"publicApiTemplateUriPaths": []string{"/api/v2/audits/query/realtime"},
		"requiresPermissions":       []string{"audits:audit:view"},
		"topicParameters":           []string{"entityType", "entityId"},
		"schema":                    map[string]any{"type": "object"},
		"permissionDetails": []any{map[string]any{
			"type": "requiresPermissions", "permissions": []string{"audits:audit:view"}, "enforced": true,
		}},
	}
	topic := map[string]any{"id": "v2.audits.entitytype.{entityType}.entityid.{entityId}"}
	for k, v := range full {
		if expand[k] {
			topic[k] = v
		}
	}
	return http.StatusOK, map[string]any{"entities": []any{topic}}, nil
}

// auditServices names the audit serviceName per change aspect (values of
// the SDK's AuditTopicAuditLogMessage.serviceName enum); the rest is
// Directory.
var auditServices = map[string]string{
	"skills": "Routing", "languages": "Routing", "utilization": "Routing", "queues": "Routing",
	"grants": "PeoplePermissions",
}

// auditLogMessage is the eventBody of an audit notification: the official
// SDK's AuditTopicAuditLogMessage (purecloud-platform-client-v2 index.d.ts),
// with the nested AuditTopicAddressableEntityRef, AuditTopicDomainEntityRef
// and AuditTopicPropertyChange. The caller is an OAuth client (gcsim grants
// client credentials only), so there is no userId/username/userDisplay.
type auditLogMessage struct {
	ID              string           `json:"id"`
	UserHomeOrgID   string           `json:"userHomeOrgId"`
	ClientID        *auditRef        `json:"clientId,omitempty"`
	RemoteIP        []string         `json:"remoteIp,omitempty"`
	ServiceName     string           `json:"serviceName"`
	Level           string           `json:"level"`
	EventTime       string           `json:"eventTime"`
	Action          string           `json:"action"`
	EntityType      string           `json:"entityType"`
	Entity          auditRef         `json:"entity"`
	PropertyChanges []PropertyChange `json:"propertyChanges"`
}

type auditRef struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	SelfURI string `json:"selfUri"`
}

// auditNotification renders a user change as the message the platform
// pushes on the user's audit topic.
func auditNotification(ch UserChange) []byte {
	action := "Update"
	switch ch.Aspect {
	case "created":
		action = "Create"
	case "deleted":
		action = "Delete"
	}
	service := auditServices[ch.Aspect]
	if service == "" {
		service = "Directory"
	}
	body := auditLogMessage{
		ID: newID(), UserHomeOrgID: ch.OrgID,
		ServiceName: service, Level: "USER", EventTime: fmtTime(ch.At),
		Action: action, EntityType: "User",
		Entity:          auditRef{ID: ch.UserID, Name: ch.UserName, SelfURI: "/api/v2/users/" + ch.UserID},
		PropertyChanges: nonNil(ch.Changes),
	}
	return auditMessage(UserAuditTopic(ch.UserID), ch, body)
}

// auditMessage completes body with the caller of change ch and wraps it
// as the notification of topic.
func auditMessage(topic string, ch UserChange, body auditLogMessage) []byte {
	if ch.ClientID != "" {
		body.ClientID = &auditRef{ID: ch.ClientID, SelfURI: "/api/v2/oauth/clients/" + ch.ClientID}
	}
	if ch.RemoteIP != "" {
		body.RemoteIP = []string{ch.RemoteIP}
	}
	b, _ := json.Marshal(map[string]any{
		"topicName": topic,
		"version":   "2",
		"eventBody": body,
		"metadata":  map[string]any{"CorrelationId": newID()},
	})
	return b
}

// auditWatched reports whether a connected channel of orgID listens to
// userID's audit topic. Called with the org lock held (org.mu before
// notifier.mu).
func (s *Sim) auditWatched(orgID, userID string) bool {
	return s.SocketsSubscribed(orgID, UserAuditTopic(userID)) > 0
}

// SocketsSubscribed is the number of channels of orgID with a connected
// WebSocket that are subscribed to topic: a change raised now reaches
// that many sockets.
func (s *Sim) SocketsSubscribed(orgID, topic string) int {
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	now, count := s.now(), 0
	for _, c := range n.channels {
		if c.orgID == orgID && c.conn != nil && c.topics[topic] && now.Before(c.expires) {
			count++
		}
	}
	return count
}

// publishUserChange is the OnUserChanged listener: the change goes to every
// live channel of the org subscribed to the user's audit topic that has a
// connected socket. Channels without a socket miss it, as on the platform.
// A team change also goes to the audit topics of the teams the user left
// and joined (entity Team, property "members", the user's id), so a
// subscriber of a team hears about members it did not know yet. That use
// of the generic v2.audits.entitytype.{type}.entityid.{id} topic for team
// membership is the simulator's modelling, not documented platform
// behaviour.
func (s *Sim) publishUserChange(ch UserChange) {
	s.publishAudit(ch.OrgID, UserAuditTopic(ch.UserID), func() []byte { return auditNotification(ch) })
	if ch.Aspect != "team" {
		return
	}
	if ch.TeamLeft != "" {
		s.publishAudit(ch.OrgID, TeamAuditTopic(ch.TeamLeft), func() []byte {
			return teamAuditNotification(ch, ch.TeamLeft, PropertyChange{Property: "members", OldValues: []string{ch.UserID}, NewValues: []string{}})
		})
	}
	if ch.TeamJoined != "" {
		s.publishAudit(ch.OrgID, TeamAuditTopic(ch.TeamJoined), func() []byte {
			return teamAuditNotification(ch, ch.TeamJoined, PropertyChange{Property: "members", OldValues: []string{}, NewValues: []string{ch.UserID}})
		})
	}
}

// teamAuditNotification renders a membership change of team teamID as the
// message on the team's audit topic (an AuditTopicAuditLogMessage of
// entityType Team).
func teamAuditNotification(ch UserChange, teamID string, change PropertyChange) []byte {
	body := auditLogMessage{
		ID: newID(), UserHomeOrgID: ch.OrgID,
		ServiceName: "Directory", Level: "USER", EventTime: fmtTime(ch.At),
		Action: "Update", EntityType: "Team",
		Entity:          auditRef{ID: teamID, SelfURI: "/api/v2/teams/" + teamID},
		PropertyChanges: []PropertyChange{change},
	}
	return auditMessage(TeamAuditTopic(teamID), ch, body)
}

// publishAudit enqueues the message render makes on every connected channel
// of orgID subscribed to topic.
func (s *Sim) publishAudit(orgID, topic string, render func() []byte) {
	var payload []byte
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweepLocked(s.now())
	for _, c := range n.channels {
		if c.orgID != orgID || !c.topics[topic] || c.conn == nil {
			continue
		}
		if payload == nil {
			payload = render()
		}
		c.conn.enqueue(payload, true)
	}
}

// ChannelCount is the number of live notification channels of orgID.
func (s *Sim) ChannelCount(orgID string) int {
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweepLocked(s.now())
	count := 0
	for _, c := range n.channels {
		if c.orgID == orgID {
			count++
		}
	}
	return count
}

// SocketCount is the number of channels of orgID with a connected
// WebSocket. A socket counts from the moment its upgrade is accepted, so a
// client whose dial returned is already counted.
func (s *Sim) SocketCount(orgID string) int {
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweepLocked(s.now())
	count := 0
	for _, c := range n.channels {
		if c.orgID == orgID && c.conn != nil {
			count++
		}
	}
	return count
}

// DropWebSockets closes every WebSocket of orgID abruptly (no close
// frame, like a network failure) and returns how many it closed. The
// channels stay valid: clients may reconnect to the same connectUri.
// Events raised after DropWebSockets returns are not delivered until a
// socket reconnects.
func (s *Sim) DropWebSockets(orgID string) int {
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	dropped := 0
	for _, c := range n.channels {
		if c.orgID == orgID && c.conn != nil {
			c.conn.shutdown(closeDropped)
			c.conn = nil
			dropped++
		}
	}
	return dropped
}

// Close closes every WebSocket (1001 going away) and refuses new ones. The
// HTTP server is the caller's to stop; Serve calls Close on shutdown.
func (s *Sim) Close() {
	n := s.notif
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for _, c := range n.channels {
		if c.conn != nil {
			c.conn.shutdown(closeShutdown)
			c.conn = nil
		}
	}
}
