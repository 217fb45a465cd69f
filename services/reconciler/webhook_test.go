package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

const (
	hookUser = "0f8fad5b-d9cb-469f-a165-70867728950e"
	hookSrc  = "src"
)

// auditBody is a notification of an audit record (AuditTopicAuditLogMessage)
// of an entity of entityType ("User", "Queue").
func auditBody(id, entityType, entityID string) []byte {
	b, _ := json.Marshal(map[string]any{
		"topicName": "v2.audits.entitytype." + strings.ToUpper(entityType) + ".entityid." + entityID, "version": "2",
		"eventBody": map[string]any{
			"id": id, "entityType": entityType, "entity": map[string]any{"id": entityID},
			"eventTime": "2026-03-01T10:00:00.000Z", "action": "Update", "serviceName": "Directory", "level": "USER",
		},
		"metadata": map[string]any{"CorrelationId": "c-" + id},
	})
	return b
}

// post sends body signed at ts (sign=false: unsigned) and decodes the answer.
func (e *testEnv) post(t *testing.T, body []byte, ts time.Time, secret string, header map[string]string) (int, WebhookResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.hookURL+DefaultWebhookPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		tsv, sig := SignWebhook([]byte(secret), ts, body)
		req.Header.Set(HeaderTimestamp, tsv)
		req.Header.Set(HeaderSignature, sig)
	}
	req.Header.Set(HeaderOrg, hookSrc)
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out WebhookResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, out
}

func TestWebhookAcceptsSignedAuditEventOnce(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: -1, WebhookAddr: "127.0.0.1:0"}, nil, map[string][]string{hookSrc: {hookUser}})
	body := auditBody("audit-1", "User", hookUser)
	status, resp := e.post(t, body, time.Now(), testSecret, nil)
	if status != http.StatusAccepted || resp.Status != "accepted" || resp.EventID != "audit-1" {
		t.Fatalf("first delivery: %d %+v", status, resp)
	}
	// The relay retries the same event: harmless.
	status, resp = e.post(t, body, time.Now(), testSecret, nil)
	if status != http.StatusAccepted || resp.Status != "duplicate" {
		t.Fatalf("second delivery: %d %+v", status, resp)
	}
	evs := e.changes(t, hookSrc)
	if len(evs) != 1 {
		t.Fatalf("stored %d change events, want 1: %v", len(evs), evs)
	}
	ev := evs[0]
	if ev.EventId != "audit-1" || ev.UserId != hookUser || ev.SourceOrg != hookSrc ||
		ev.Source != orgsyncv1.ChangeSource_CHANGE_SOURCE_WEBHOOK || !ev.OccurredAt.AsTime().Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("change event: %v", ev)
	}
}

func TestWebhookEventBridgeEnvelopeAndOrgIDMapping(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: -1, WebhookOrgIDs: map[string]string{"genesys-org-uuid": hookSrc}}, nil, map[string][]string{hookSrc: {hookUser}})
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": "eb-envelope-id", "detail-type": "v2.audits.entitytype.USER.entityid." + hookUser,
		"source": "aws.partner/genesys.com/cloud/genesys-org-uuid/orgsync",
		"detail": map[string]any{
			"topicName": "v2.audits.entitytype.USER.entityid." + hookUser, "version": "2",
			"eventBody": map[string]any{"id": "audit-eb-1", "entityType": "User", "entity": map[string]any{"id": hookUser},
				"eventTime": "2026-03-01T10:00:00Z", "userHomeOrgId": "genesys-org-uuid"},
			"metadata": map[string]any{"CorrelationId": "c-eb-1"},
		},
	})
	status, resp := e.post(t, body, time.Now(), testSecret, map[string]string{HeaderOrg: ""})
	if status != http.StatusAccepted || resp.Status != "accepted" || resp.EventID != "audit-eb-1" {
		t.Fatalf("EventBridge delivery: %d %+v", status, resp)
	}
	if evs := e.changes(t, hookSrc); len(evs) != 1 || evs[0].EventId != "audit-eb-1" {
		t.Fatalf("change events: %v", evs)
	}
}

func TestWebhookRejections(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, SweepInterval: -1, WebhookMaxBody: 4096}, nil, map[string][]string{hookSrc: {hookUser}})
	good := auditBody("audit-x", "User", hookUser)
	now := time.Now()
	big := append(auditBody("audit-big", "User", hookUser)[:0:0], []byte(`{"id":"audit-big","pad":"`+strings.Repeat("a", 5000)+`"}`)...)
	cases := []struct {
		name       string
		body       []byte
		ts         time.Time
		secret     string
		header     map[string]string
		wantStatus int
		wantReason string
		wantResult string
	}{
		{"missing signature", good, now, "", nil, 401, "missing", "rejected"},
		{"wrong secret", good, now, "another-secret-0123456789", nil, 401, "invalid signature", "rejected"},
		{"malformed signature header", good, now, testSecret, map[string]string{HeaderSignature: "md5=abc"}, 401, "want sha256", "rejected"},
		{"timestamp not a number", good, now, testSecret, map[string]string{HeaderTimestamp: "yesterday"}, 401, "not unix seconds", "rejected"},
		{"stale timestamp", good, now.Add(-6 * time.Minute), testSecret, nil, 401, "stale timestamp", "rejected"},
		{"timestamp from the future", good, now.Add(6 * time.Minute), testSecret, nil, 401, "stale timestamp", "rejected"},
		{"oversized body", big, now, testSecret, nil, 413, "exceeds 4096", "rejected"},
		{"malformed JSON", []byte(`{"id":"audit-y",`), now, testSecret, nil, 400, "malformed", "rejected"},
		{"missing entity id", []byte(`{"id":"audit-z","entityType":"User","eventTime":"2026-03-01T10:00:00Z"}`), now, testSecret, nil, 400, "missing entity.id", "rejected"},
		{"bad date", []byte(`{"id":"a","entityType":"User","entity":{"id":"u1"},"eventTime":"yesterday"}`), now, testSecret, nil, 400, "RFC 3339", "rejected"},
		{"header injection in id", []byte(`{"id":"a\r\nNats-Msg-Id: x","entityType":"User","entity":{"id":"u1"},"eventTime":"2026-03-01T10:00:00Z"}`), now, testSecret, nil, 400, "is not an id", "rejected"},
		{"audit query record", []byte(`{"id":"a","entityType":"USER","entity":{"id":"u1"},"eventDate":"2026-03-01T10:00:00Z","status":"SUCCESS"}`), now, testSecret, nil, 400, "missing eventTime (eventDate is the audit query API's", "rejected"},
		{"no source org", good, now, testSecret, map[string]string{HeaderOrg: ""}, 400, "source org unknown", "rejected"},
		{"invalid org key", good, now, testSecret, map[string]string{HeaderOrg: "a.b"}, 400, "invalid org key", "rejected"},
		{"not a user", auditBody("audit-q", "Queue", "q1"), now, testSecret, nil, 202, "not about a USER", "ignored"},
		{"untracked user", auditBody("audit-u", "User", "someone-else"), now, testSecret, nil, 202, "not tracked", "ignored"},
	}
	for _, tc := range cases {
		status, resp := e.post(t, tc.body, tc.ts, tc.secret, tc.header)
		if status != tc.wantStatus || resp.Status != tc.wantResult || !strings.Contains(resp.Reason, tc.wantReason) {
			t.Errorf("%s: got %d %+v, want %d %s containing %q", tc.name, status, resp, tc.wantStatus, tc.wantResult, tc.wantReason)
		}
		if strings.Contains(resp.Reason, testSecret) {
			t.Errorf("%s: answer leaks the secret", tc.name)
		}
	}
	if n := e.streamCount(t); n != 0 {
		t.Fatalf("rejected or ignored deliveries published %d messages, want 0", n)
	}
}

func TestWebhookDisabledAnswers503(t *testing.T) {
	t.Parallel()
	e := startEnv(t, Config{NotificationsDisabled: true, WebhookDisabled: true, SweepInterval: -1}, nil, map[string][]string{hookSrc: {hookUser}})
	status, resp := e.post(t, auditBody("audit-1", "User", hookUser), time.Now(), "any-secret-0123456789", nil)
	if status != http.StatusServiceUnavailable || resp.Status != "rejected" {
		t.Fatalf("disabled webhook: %d %+v", status, resp)
	}
	if n := e.streamCount(t); n != 0 {
		t.Fatalf("published %d, want 0", n)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "WebhookSecret is required") {
		t.Fatalf("missing secret: %v", err)
	}
	err := (Config{WebhookSecret: "short", MaxChannels: 21, MaxTopicsPerChannel: 1001, WebhookTolerance: -1}).Validate()
	for _, want := range []string{"at least 16 bytes", "MaxChannels", "MaxTopicsPerChannel", "WebhookTolerance"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want error about %s, got %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "short") {
		t.Errorf("error leaks the secret: %v", err)
	}
	if err := (Config{WebhookDisabled: true}).Validate(); err != nil {
		t.Fatalf("disabled webhook needs no secret: %v", err)
	}
}

func FuzzParseAuditWebhook(f *testing.F) {
	seeds := []string{
		string(auditBody("audit-1", "User", hookUser)),
		realAuditBody, string(realNotification()), string(realEventBridge("o")),
		`{"id":"a","entityType":"User","entity":{"id":"u1"},"eventTime":"2026-03-01T10:00:00Z"} trailing`,
		// Shapes no real source sends (rejected):
		`{"id":"a","entityType":"USER","entity":{"id":"u1"},"timestamp":"2026-03-01T10:00:00.123Z"}`,
		`{"topicName":"v2.audits.entitytype.USER.entityid.u1","eventBody":{"id":"a","entityType":"USER","entity":{"id":"u1"},"eventDate":"2026-03-01T10:00:00Z"}}`,
		`{"detail":{"topicName":"v2.audits.entitytype.USER.entityid.u1","eventBody":{"id":"a","eventDate":"2026-03-01T10:00:00Z"}}}`,
		`{"id":"a","entityType":"QUEUE","entityId":"q","eventDate":"2026-03-01T10:00:00Z"}`,
		`{"id":"a","entityType":"USER","entityId":"u1","eventDate":"2026-03-01T10:00:00Z"} trailing`,
		`{"id":123}`, `[]`, `null`, ``, `{`, `{"eventBody":"x"}`, `{"detail":null}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseAuditWebhook(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedAudit) && !errors.Is(err, ErrNotUserEntity) {
				t.Fatalf("error of unknown kind: %v", err)
			}
			return
		}
		if !auditIDPattern.MatchString(ev.ID) || !entityIDPattern.MatchString(ev.EntityID) || ev.EntityType != "USER" || ev.OccurredAt.IsZero() {
			t.Fatalf("accepted an invalid event: %+v", ev)
		}
	})
}
