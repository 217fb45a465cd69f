package gcsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// createChannel opens a channel with tok and returns its id and connectUri.
func (e *env) createChannel(tok string) (id, connectURI string) {
	e.t.Helper()
	ch := e.expect(200, tok, "POST", "/api/v2/notifications/channels", nil).json(e.t)
	id, _ = ch["id"].(string)
	connectURI, _ = ch["connectUri"].(string)
	if id == "" || !strings.HasPrefix(connectURI, "ws://"+strings.TrimPrefix(e.srv.URL, "http://")+"/channels/"+id) || ch["expires"] == "" {
		e.t.Fatalf("channel %v: want id, connectUri on the sim's host, expires", ch)
	}
	return id, connectURI
}

func (e *env) subscribe(tok, channelID string, topics ...string) {
	e.t.Helper()
	body := []map[string]string{}
	for _, t := range topics {
		body = append(body, map[string]string{"id": t})
	}
	e.expect(200, tok, "POST", "/api/v2/notifications/channels/"+channelID+"/subscriptions", body)
}

// dial connects a WebSocket client to a channel's connectUri.
func dial(t *testing.T, uri string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, uri, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", uri, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

type wsMessage struct {
	TopicName string         `json:"topicName"`
	Version   string         `json:"version"`
	EventBody map[string]any `json:"eventBody"`
	Metadata  map[string]any `json:"metadata"`
}

// readMessage reads the next message, heartbeats included.
func readMessage(t *testing.T, c *websocket.Conn) (wsMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		return wsMessage{}, err
	}
	var m wsMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("websocket message %s: %v", data, err)
	}
	return m, nil
}

// nextEvent reads until the next message that is not channel.metadata.
func nextEvent(t *testing.T, c *websocket.Conn) wsMessage {
	t.Helper()
	for {
		m, err := readMessage(t, c)
		if err != nil {
			t.Fatalf("read websocket: %v", err)
		}
		if m.TopicName != "channel.metadata" {
			return m
		}
	}
}

// retitle changes a user's title through the API (a "profile" change).
func (e *env) retitle(tok, userID, title string) {
	e.t.Helper()
	u := e.expect(200, tok, "GET", "/api/v2/users/"+userID, nil).json(e.t)
	e.expect(200, tok, "PATCH", "/api/v2/users/"+userID, map[string]any{"version": u["version"], "title": title})
}

// auditTopicMessage is the official SDK's AuditTopicAuditLogMessage
// (purecloud-platform-client-v2 262.0.0, index.d.ts) with its nested models,
// every property optional.
type auditTopicMessage struct {
	ID            string `json:"id"`
	UserID        string `json:"userId"`
	UserHomeOrgID string `json:"userHomeOrgId"`
	Username      *struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		SelfURI string `json:"selfUri"`
	} `json:"username"`
	UserDisplay string `json:"userDisplay"`
	ClientID    *struct {
		ID      string `json:"id"`
		SelfURI string `json:"selfUri"`
	} `json:"clientId"`
	RemoteIP    []string `json:"remoteIp"`
	ServiceName string   `json:"serviceName"`
	Level       string   `json:"level"`
	EventTime   string   `json:"eventTime"`
	Message     *struct {
		LocalizableMessageCode string            `json:"localizableMessageCode"`
		Message                string            `json:"message"`
		MessageWithParams      string            `json:"messageWithParams"`
		MessageParams          map[string]string `json:"messageParams"`
	} `json:"message"`
	Action     string `json:"action"`
	EntityType string `json:"entityType"`
	Entity     *struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		SelfURI string `json:"selfUri"`
	} `json:"entity"`
	PropertyChanges []struct {
		Property  string   `json:"property"`
		OldValues []string `json:"oldValues"`
		NewValues []string `json:"newValues"`
	} `json:"propertyChanges"`
	Context map[string]string `json:"context"`
}

// decodeAuditTopicMessage decodes an eventBody strictly: a property the SDK
// model does not declare fails the test.
func decodeAuditTopicMessage(t *testing.T, body map[string]any) auditTopicMessage {
	t.Helper()
	raw, _ := json.Marshal(body)
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var m auditTopicMessage
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("eventBody %s is not an AuditTopicAuditLogMessage: %v", raw, err)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.EventTime); err != nil {
		t.Fatalf("eventTime %q: %v", m.EventTime, err)
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func topicIDs(t *testing.T, listing map[string]any) []string {
	t.Helper()
	var out []string
	for _, e := range listing["entities"].([]any) {
		m := e.(map[string]any)
		out = append(out, m["id"].(string)+"="+m["state"].(string))
	}
	return out
}

func TestNotificationChannelsAndSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	src, src2, tgt := e.token(srcCID, srcSec), e.token(srcCID, srcSec), e.token(t1CID, t1Sec)
	id, _ := e.createChannel(src)
	path := "/api/v2/notifications/channels/" + id
	e.expect(200, src, "HEAD", path, nil)
	// Tenant isolation: the channel does not exist for another org.
	e.expect(404, tgt, "HEAD", path, nil)
	e.expectError(404, "not.found", tgt, "GET", path+"/subscriptions", nil)

	// Listing: per token by default; per OAuth client shows other tokens'
	// channels without their id.
	list := e.expect(200, src, "GET", "/api/v2/notifications/channels", nil).json(t)["entities"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("channels of token: %v", list)
	}
	if l := e.expect(200, src2, "GET", "/api/v2/notifications/channels", nil).json(t)["entities"].([]any); len(l) != 0 {
		t.Fatalf("channels of another token: %v", l)
	}
	l := e.expect(200, src2, "GET", "/api/v2/notifications/channels?includechannels=oauthclient", nil).json(t)["entities"].([]any)
	if len(l) != 1 || l[0].(map[string]any)["id"] != nil || l[0].(map[string]any)["expires"] == nil {
		t.Fatalf("channels of the OAuth client seen by another token: %v", l)
	}

	jane, john := UserAuditTopic(janeID), UserAuditTopic(johnID)
	r := e.expect(200, src, "POST", path+"/subscriptions", []map[string]string{{"id": jane}}).json(t)
	if got := topicIDs(t, r); !slices.Equal(got, []string{jane + "=Permitted"}) {
		t.Fatalf("POST subscriptions: %v", got)
	}
	r = e.expect(200, src, "POST", path+"/subscriptions", []map[string]string{{"id": john}, {"id": jane}}).json(t)
	if got := topicIDs(t, r); len(got) != 2 {
		t.Fatalf("POST adds (set semantics): %v", got)
	}
	r = e.expect(200, src, "PUT", path+"/subscriptions", []map[string]string{{"id": john}}).json(t)
	if got := topicIDs(t, e.expect(200, src, "GET", path+"/subscriptions", nil).json(t)); !slices.Equal(got, []string{john + "=Permitted"}) {
		t.Fatalf("after PUT: %v (PUT answered %v)", got, r)
	}
	// Invalid topics: 400, or Rejected with ignoreErrors.
	e.expectError(400, "notification.invalid.topic", src, "POST", path+"/subscriptions", []map[string]string{{"id": "v2.users.x.presence"}})
	r = e.expect(200, src, "POST", path+"/subscriptions?ignoreErrors=true", []map[string]string{{"id": "bogus"}, {"id": jane}}).json(t)
	if got := topicIDs(t, r); !slices.Equal(got, []string{john + "=Permitted", jane + "=Permitted", "bogus=Rejected"}) { // sorted, rejected last
		t.Fatalf("ignoreErrors: %v", got)
	}
	// At most 1000 topics per channel.
	many := []map[string]string{}
	for i := range MaxTopicsPerChannel - 1 {
		many = append(many, map[string]string{"id": UserAuditTopic(fmt.Sprintf("u%04d", i))})
	}
	e.expect(200, src, "PUT", path+"/subscriptions", many)
	e.expectError(400, "notification.subscription.too.many.subscriptions", src, "POST", path+"/subscriptions",
		[]map[string]string{{"id": jane}, {"id": john}})
	e.expect(200, src, "DELETE", path+"/subscriptions", nil)
	if got := e.expect(200, src, "GET", path+"/subscriptions", nil).json(t)["entities"].([]any); len(got) != 0 {
		t.Fatalf("after DELETE: %v", got)
	}

	topics := e.expect(200, src, "GET", "/api/v2/notifications/availabletopics?expand=description&expand=transports", nil).json(t)
	ts := topics["entities"].([]any)
	if len(ts) != 1 || ts[0].(map[string]any)["id"] != "v2.audits.entitytype.{entityType}.entityid.{entityId}" || ts[0].(map[string]any)["description"] == nil {
		t.Fatalf("availabletopics: %v", ts)
	}
}

func TestNotificationChannelLimitAndExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ChannelTTL: time.Hour})
	src, tgt := e.token(srcCID, srcSec), e.token(t1CID, t1Sec)
	first, _ := e.createChannel(src)
	e.clock.Advance(50 * time.Minute)
	for range MaxChannelsPerClient - 1 {
		e.createChannel(src)
	}
	m := e.expectError(400, "bad.request", src, "POST", "/api/v2/notifications/channels", nil)
	if !strings.Contains(m["message"].(string), "20") {
		t.Fatalf("limit message %q should name the limit", m["message"])
	}
	// The limit is per OAuth client: another org's client is unaffected.
	e.createChannel(tgt)
	if n := e.sim.ChannelCount(srcOrg); n != 20 {
		t.Fatalf("ChannelCount = %d, want 20", n)
	}

	// Expiry (the first channel is 10 minutes from its end); subscribing
	// renews a channel.
	renewed, _ := e.createChannel(tgt)
	e.clock.Advance(5 * time.Minute)
	e.subscribe(tgt, renewed, UserAuditTopic("x"))
	e.clock.Advance(5 * time.Minute)
	e.expect(404, src, "HEAD", "/api/v2/notifications/channels/"+first, nil)
	if n := e.sim.ChannelCount(srcOrg); n != 19 {
		t.Fatalf("ChannelCount after expiry = %d, want 19", n)
	}
	e.createChannel(src)              // room again
	e.clock.Advance(52 * time.Minute) // 112m: past the original 110m expiry, before the renewed 115m
	e.expect(200, tgt, "HEAD", "/api/v2/notifications/channels/"+renewed, nil)
	e.clock.Advance(5 * time.Minute)
	e.expect(404, tgt, "HEAD", "/api/v2/notifications/channels/"+renewed, nil)
	if n := e.sim.ChannelCount(srcOrg); n != 1 {
		t.Fatalf("ChannelCount after the others expired = %d, want 1", n)
	}
}

func TestNotificationChannelEvictionMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{EvictOldestChannel: true})
	src := e.token(srcCID, srcSec)
	ids := []string{}
	var connected string
	for i := range MaxChannelsPerClient {
		id, uri := e.createChannel(src)
		ids = append(ids, id)
		if i == 0 {
			connected = id
			dial(t, uri)
		}
		e.clock.Advance(time.Second)
	}
	newest, _ := e.createChannel(src)
	// The oldest channel without a socket was removed, not the connected one.
	e.expect(200, src, "HEAD", "/api/v2/notifications/channels/"+connected, nil)
	e.expect(404, src, "HEAD", "/api/v2/notifications/channels/"+ids[1], nil)
	e.expect(200, src, "HEAD", "/api/v2/notifications/channels/"+newest, nil)
	if n := e.sim.ChannelCount(srcOrg); n != 20 {
		t.Fatalf("ChannelCount = %d, want 20", n)
	}
}

func TestNotificationUserChangePushedToSubscribers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: -1})
	src, tgt := e.token(srcCID, srcSec), e.token(t1CID, t1Sec)
	tgtUser := e.expect(200, tgt, "GET", "/api/v2/users?state=any", nil).json(t)["entities"].([]any)[0].(map[string]any)["id"].(string)

	janeCh, janeURI := e.createChannel(src)
	e.subscribe(src, janeCh, UserAuditTopic(janeID))
	johnCh, johnURI := e.createChannel(src)
	e.subscribe(src, johnCh, UserAuditTopic(johnID))
	// A target-org channel subscribed to the source user's topic must not
	// see the source org's events.
	tgtCh, tgtURI := e.createChannel(tgt)
	e.subscribe(tgt, tgtCh, UserAuditTopic(janeID), UserAuditTopic(tgtUser))
	// A subscribed channel without a socket misses events.
	idleCh, idleURI := e.createChannel(src)
	e.subscribe(src, idleCh, UserAuditTopic(janeID))

	janeWS, johnWS, tgtWS := dial(t, janeURI), dial(t, johnURI), dial(t, tgtURI)
	e.retitle(src, janeID, "Billing Lead")

	m := nextEvent(t, janeWS)
	body := m.EventBody
	if m.TopicName != UserAuditTopic(janeID) || m.Version != "2" || m.Metadata["CorrelationId"] == "" {
		t.Fatalf("audit notification envelope: %+v", m)
	}
	audit := decodeAuditTopicMessage(t, body)
	if audit.EntityType != "User" || audit.Action != "Update" || audit.ServiceName != "Directory" || audit.Level != "USER" ||
		audit.UserHomeOrgID != srcOrg || audit.EventTime != "2025-03-01T12:00:00.000Z" ||
		audit.Entity == nil || audit.Entity.ID != janeID || audit.Entity.Name != "Jane Doe" || audit.Entity.SelfURI != "/api/v2/users/"+janeID ||
		audit.ClientID == nil || audit.ClientID.ID != srcCID || audit.ClientID.SelfURI != "/api/v2/oauth/clients/"+srcCID ||
		len(audit.RemoteIP) != 1 || audit.RemoteIP[0] != "127.0.0.1" {
		t.Fatalf("audit notification body: %+v", audit)
	}
	if got := fmt.Sprint(audit.PropertyChanges); got != "[{title [Billing Agent] [Billing Lead]}]" {
		t.Fatalf("propertyChanges = %s, want the title from Billing Agent to Billing Lead", got)
	}
	firstAuditID := body["id"]

	// John's channel's first event is John's: it never got Jane's.
	e.expect(200, src, "POST", "/api/v2/users/"+johnID+"/routingskills",
		map[string]any{"id": e.sim.mustSkillID(t, srcOrg, "Sales"), "proficiency": 2})
	if m := nextEvent(t, johnWS); m.TopicName != UserAuditTopic(johnID) || m.EventBody["serviceName"] != "Routing" {
		t.Fatalf("john's channel got %+v", m)
	} else if a := decodeAuditTopicMessage(t, m.EventBody); len(a.PropertyChanges) != 1 || a.PropertyChanges[0].Property != "skills" ||
		!slices.Contains(a.PropertyChanges[0].NewValues, "Sales: 2") || slices.Contains(a.PropertyChanges[0].OldValues, "Sales: 2") {
		t.Fatalf("john's skill change: %+v", a.PropertyChanges)
	}
	// The target channel's first event is its own user's change.
	e.retitle(tgt, tgtUser, "Legacy")
	if m := nextEvent(t, tgtWS); m.TopicName != UserAuditTopic(tgtUser) || m.EventBody["userHomeOrgId"] != t1Org {
		t.Fatalf("target channel got %+v", m)
	}
	// The idle channel connects now: the earlier change is gone, the next arrives.
	idleWS := dial(t, idleURI)
	e.retitle(src, janeID, "Billing Lead II")
	second := nextEvent(t, janeWS)
	if second.EventBody["id"] == firstAuditID {
		t.Fatalf("audit ids must be unique, got %v twice", firstAuditID)
	}
	if m := nextEvent(t, idleWS); m.EventBody["id"] != second.EventBody["id"] {
		t.Fatalf("idle channel got %+v, want the change after it connected (%v)", m, second.EventBody["id"])
	}
	// A delivery is counted once written, which may be after the client read it.
	waitFor(t, "4 source notifications counted", func() bool { return e.sim.Stats(srcOrg).NotificationsDelivered == 4 })
	waitFor(t, "1 target notification counted", func() bool { return e.sim.Stats(t1Org).NotificationsDelivered == 1 })
}

// mustSkillID returns the id of the named skill of orgID.
func (s *Sim) mustSkillID(t *testing.T, orgID, name string) string {
	t.Helper()
	o := s.lookupOrg(orgID)
	unlock := s.lock(o)
	defer unlock()
	for _, sk := range o.skills {
		if sk.name == name {
			return sk.id
		}
	}
	t.Fatalf("org %s has no skill %q", orgID, name)
	return ""
}

func TestNotificationHeartbeatAndPing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: 10 * time.Millisecond})
	src := e.token(srcCID, srcSec)
	_, uri := e.createChannel(src)
	ws := dial(t, uri)
	m, err := readMessage(t, ws)
	if err != nil || m.TopicName != "channel.metadata" || m.EventBody["message"] != "WebSocket Heartbeat" {
		t.Fatalf("heartbeat: %+v %v", m, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"message":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := readMessage(t, ws)
		if err != nil {
			t.Fatalf("waiting for pong: %v", err)
		}
		if m.EventBody["message"] == "pong" {
			break
		}
	}
	if n := e.sim.Stats(srcOrg).NotificationsDelivered; n != 0 {
		t.Fatalf("heartbeats must not count as notifications, got %d", n)
	}
}

func TestNotificationDropWebSocketsAndReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: -1})
	src, tgt := e.token(srcCID, srcSec), e.token(t1CID, t1Sec)
	ch1, uri1 := e.createChannel(src)
	e.subscribe(src, ch1, UserAuditTopic(janeID))
	_, uri2 := e.createChannel(src)
	_, uriT := e.createChannel(tgt)
	ws1, ws2, wsT := dial(t, uri1), dial(t, uri2), dial(t, uriT)
	if n := e.sim.SocketCount(srcOrg); n != 2 {
		t.Fatalf("SocketCount = %d, want 2", n)
	}
	if n := e.sim.DropWebSockets(srcOrg); n != 2 {
		t.Fatalf("DropWebSockets = %d, want 2", n)
	}
	for i, ws := range []*websocket.Conn{ws1, ws2} {
		_, err := readMessage(t, ws)
		if err == nil || websocket.CloseStatus(err) != -1 {
			t.Fatalf("socket %d after drop: %v, want an abrupt close (no close frame)", i, err)
		}
	}
	if e.sim.SocketCount(srcOrg) != 0 || e.sim.SocketCount(t1Org) != 1 {
		t.Fatalf("after drop: src sockets %d, target sockets %d", e.sim.SocketCount(srcOrg), e.sim.SocketCount(t1Org))
	}
	_ = wsT
	// Changes while disconnected are lost; the channel is still valid and a
	// reconnect gets the next change.
	e.retitle(src, janeID, "lost")
	ws1 = dial(t, uri1)
	e.retitle(src, janeID, "seen")
	if m := nextEvent(t, ws1); m.TopicName != UserAuditTopic(janeID) {
		t.Fatalf("after reconnect: %+v", m)
	}
	waitFor(t, "1 notification counted", func() bool { return e.sim.Stats(srcOrg).NotificationsDelivered == 1 })
}

func TestNotificationSocketClosedOnExpiryAndReplace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: -1, ChannelTTL: time.Hour})
	src := e.token(srcCID, srcSec)
	_, uri := e.createChannel(src)
	old := dial(t, uri)
	ws := dial(t, uri) // replaces old
	if _, err := readMessage(t, old); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("replaced socket: %v, want close 1008", err)
	}

	e.clock.Advance(time.Hour)
	if n := e.sim.ChannelCount(srcOrg); n != 0 { // the sweep closes the socket
		t.Fatalf("ChannelCount = %d after expiry", n)
	}
	m, err := readMessage(t, ws)
	if err != nil || m.TopicName != "v2.system.socket_closing" {
		t.Fatalf("expiry message: %+v %v", m, err)
	}
	if _, err := readMessage(t, ws); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("expired socket: %v, want close 1001", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, uri, nil)
	if err == nil || resp == nil || resp.StatusCode != 404 {
		t.Fatalf("dial an expired channel: %v (resp %v), want 404", err, resp)
	}
}

func TestSimCloseClosesSockets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NotificationHeartbeat: -1})
	_, uri := e.createChannel(e.token(srcCID, srcSec))
	ws := dial(t, uri)
	e.sim.Close()
	_, err := readMessage(t, ws)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("after Close: %v, want 1001", err)
	}
}
