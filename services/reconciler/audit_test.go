package reconciler

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// realAuditBody is an AuditTopicAuditLogMessage with every property the
// SDK model (purecloud-platform-client-v2 262.0.0) declares, as Genesys
// pushes it for an administrator's change of a user's title in the UI.
const realAuditBody = `{
  "id": "7e3c3b4e-6a61-4a2a-9f0e-2f4c1a9b8d10",
  "userId": "2d1e6a6c-1111-4c3b-9b1e-3c5a7d9e0f12",
  "userHomeOrgId": "genesys-org-uuid",
  "username": {"id": "2d1e6a6c-1111-4c3b-9b1e-3c5a7d9e0f12", "name": "Ada Admin", "selfUri": "/api/v2/users/2d1e6a6c-1111-4c3b-9b1e-3c5a7d9e0f12"},
  "userDisplay": "Ada Admin",
  "clientId": {"id": "e9f4c8a2-2222-4d6e-8f10-4b2c6d8e0a13", "selfUri": "/api/v2/oauth/clients/e9f4c8a2-2222-4d6e-8f10-4b2c6d8e0a13"},
  "remoteIp": ["203.0.113.7"],
  "serviceName": "Directory",
  "level": "USER",
  "eventTime": "2026-03-01T10:00:00.123Z",
  "message": {"localizableMessageCode": "USER_UPDATED", "message": "User updated", "messageWithParams": "User {0} updated", "messageParams": {"0": "Jane Doe"}},
  "action": "Update",
  "entityType": "User",
  "entity": {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "name": "Jane Doe", "selfUri": "/api/v2/users/0f8fad5b-d9cb-469f-a165-70867728950e"},
  "propertyChanges": [{"property": "title", "oldValues": ["Billing Agent"], "newValues": ["Billing Lead"]}],
  "context": {}
}`

var realEventTime = time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)

// realNotification is realAuditBody as the WebSocket delivers it.
func realNotification() []byte {
	return []byte(`{"topicName":"v2.audits.entitytype.USER.entityid.` + hookUser + `","version":"2","eventBody":` + realAuditBody +
		`,"metadata":{"CorrelationId":"5b8a2c1e-3333-4f7a-9c2d-6e8f0a1b3c14"}}`)
}

// realEventBridge is realNotification as the Genesys Cloud EventBridge
// integration puts it on an event bus.
func realEventBridge(orgID string) []byte {
	return []byte(`{"version":"0","id":"4c2e9a1b-4444-4b8d-a1e3-7f9b1c3d5e15","detail-type":"v2.audits.entitytype.USER.entityid.` + hookUser + `",` +
		`"source":"aws.partner/genesys.com/cloud/` + orgID + `/orgsync-audits","account":"123456789012","time":"2026-03-01T10:00:01Z",` +
		`"region":"us-east-1","resources":[],"detail":` + string(realNotification()) + `}`)
}

func TestParseAuditWebhookRealShapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, wantOrg string
	}{
		{"AuditTopicAuditLogMessage alone", realAuditBody, "genesys-org-uuid"},
		{"notification", string(realNotification()), "genesys-org-uuid"},
		{"EventBridge event", string(realEventBridge("eb-org-uuid")), "eb-org-uuid"},
	} {
		ev, err := ParseAuditWebhook([]byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want := AuditEvent{ID: "7e3c3b4e-6a61-4a2a-9f0e-2f4c1a9b8d10", EntityType: "USER", EntityID: hookUser, OccurredAt: realEventTime, OrgID: tc.wantOrg}
		if ev != want {
			t.Errorf("%s: got %+v, want %+v", tc.name, ev, want)
		}
	}
}

func TestParseAuditWebhookRejectsWithReason(t *testing.T) {
	t.Parallel()
	real := func(edit func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(realAuditBody), &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		name, body, want string
		notUser          bool
	}{
		{"no eventTime", real(func(m map[string]any) { delete(m, "eventTime") }), "missing eventTime", false},
		{"audit query record", real(func(m map[string]any) { delete(m, "eventTime"); m["eventDate"] = "2026-03-01T10:00:00Z" }),
			"missing eventTime (eventDate is the audit query API's AuditLogMessage", false},
		{"invented flat relay form", `{"id":"a","entityType":"USER","entityId":"u1","occurred":"2026-03-01T10:00:00Z"}`, "missing entity.id, eventTime", false},
		{"no id, no entity", real(func(m map[string]any) { delete(m, "id"); delete(m, "entity") }), "missing id, entity.id", false},
		{"eventTime not a time", real(func(m map[string]any) { m["eventTime"] = "yesterday" }), `eventTime "yesterday" is not RFC 3339`, false},
		{"eventTime not a string", real(func(m map[string]any) { m["eventTime"] = 1700000000 }), "eventTime of type string", false},
		{"entity of another topic", `{"topicName":"v2.audits.entitytype.USER.entityid.someone-else","eventBody":` + realAuditBody + `}`, "differs from topic", false},
		{"EventBridge event without eventBody", `{"version":"0","source":"aws.partner/genesys.com/cloud/o/n","detail":{"topicName":"x"}}`, "EventBridge event without detail.eventBody", false},
		{"queue", real(func(m map[string]any) { m["entityType"] = "Queue" }), `entityType "Queue"`, true},
	} {
		_, err := ParseAuditWebhook([]byte(tc.body))
		wantKind := ErrMalformedAudit
		if tc.notUser {
			wantKind = ErrNotUserEntity
		}
		if !errors.Is(err, wantKind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %v containing %q", tc.name, err, wantKind, tc.want)
		}
	}
}

// A real-shaped notification read from the socket becomes a ChangeEvent
// keyed by the audit id, dated by its eventTime.
func TestNotificationHandlesRealAuditMessage(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, WebhookDisabled: true, SweepInterval: -1}, nil, map[string][]string{hookSrc: {hookUser}})
	natsxtest.Eventually(t, 10*time.Second, "tracked users loaded", func() bool { return e.svc.Tracked().Has(hookSrc, hookUser) })
	c := newChannelConn(e.svc.cfg, hookSrc, nil, e.js, e.svc.tracked, e.svc.sweeps, testLogger(t), nil, false)
	if closing := c.handle(ctxT(t), realNotification()); closing {
		t.Fatal("an audit event read as socket_closing")
	}
	evs := e.changes(t, hookSrc)
	if len(evs) != 1 || evs[0].EventId != "7e3c3b4e-6a61-4a2a-9f0e-2f4c1a9b8d10" || evs[0].UserId != hookUser ||
		evs[0].Source != orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION || !evs[0].OccurredAt.AsTime().Equal(realEventTime) {
		t.Fatalf("change events: %v", evs)
	}
	if st := c.Status(); st.Events != 1 {
		t.Fatalf("status counts %d events, want 1", st.Events)
	}
}

// The signed webhook takes the real shapes a relay forwards: the
// notification and the EventBridge event (its org id mapped to a key).
func TestWebhookAcceptsRealAuditShapes(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: -1, WebhookOrgIDs: map[string]string{"eb-org-uuid": hookSrc}},
		nil, map[string][]string{hookSrc: {hookUser}})
	status, resp := e.post(t, realNotification(), time.Now(), testSecret, nil)
	if status != http.StatusAccepted || resp.Status != "accepted" || resp.EventID != "7e3c3b4e-6a61-4a2a-9f0e-2f4c1a9b8d10" {
		t.Fatalf("notification: %d %+v", status, resp)
	}
	// The same audit record relayed by EventBridge, without the org header:
	// one event, the org found from the EventBridge source.
	status, resp = e.post(t, realEventBridge("eb-org-uuid"), time.Now(), testSecret, map[string]string{HeaderOrg: ""})
	if status != http.StatusAccepted || resp.Status != "duplicate" {
		t.Fatalf("EventBridge: %d %+v", status, resp)
	}
	evs := e.changes(t, hookSrc)
	if len(evs) != 1 || evs[0].Source != orgsyncv1.ChangeSource_CHANGE_SOURCE_WEBHOOK || !evs[0].OccurredAt.AsTime().Equal(realEventTime) {
		t.Fatalf("change events: %v", evs)
	}
}
