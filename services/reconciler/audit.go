package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// AuditEvent is the part of a Genesys audit record the reconciler needs.
type AuditEvent struct {
	// ID of the audit record; becomes the ChangeEvent id and Nats-Msg-Id.
	ID string
	// EntityType: "USER" for a user (the SDK's "User", any case).
	EntityType string
	// EntityID is the id of the changed entity (the user id for USER).
	EntityID string
	// OccurredAt is when the change happened at the source.
	OccurredAt time.Time
	// OrgID is the Genesys organization id: the EventBridge source's, else
	// the record's userHomeOrgId (empty when absent).
	OrgID string
}

// ErrNotUserEntity is returned (wrapped) for a well-formed audit record of
// an entity other than a user: valid, but nothing to reconcile.
var ErrNotUserEntity = errors.New("audit record is not about a USER entity")

// ErrMalformedAudit is wrapped by every error about a record that is not
// valid JSON or lacks a required field.
var ErrMalformedAudit = errors.New("malformed audit record")

// Ids travel in NATS headers (Nats-Msg-Id), subjects of topics and KV keys:
// a strict alphabet keeps a hostile payload from injecting header lines or
// subject tokens.
var (
	auditIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$`)
	entityIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
)

// auditRecord is the part of an audit notification's eventBody the
// reconciler reads: the Genesys SDK model AuditTopicAuditLogMessage of topic
// v2.audits.entitytype.{type}.entityid.{id}. It is not the audit query
// API's AuditLogMessage (eventDate, status): no push source sends that one.
type auditRecord struct {
	ID         string `json:"id"`
	EntityType string `json:"entityType"`
	Entity     *struct {
		ID string `json:"id"`
	} `json:"entity"`
	EventTime     string `json:"eventTime"`
	UserHomeOrgID string `json:"userHomeOrgId"`
	// EventDate is only read to name the mistake of a relay that forwards
	// audit query results.
	EventDate string `json:"eventDate"`
}

// notificationEnvelope is a message of the Notifications API (WebSocket),
// as Genesys also puts it in an EventBridge event's detail.
type notificationEnvelope struct {
	TopicName string          `json:"topicName"`
	EventBody json.RawMessage `json:"eventBody"`
}

// envelope covers what a relay may deliver: a notification
// ({"topicName","version","eventBody","metadata"}), an EventBridge event
// of the Genesys Cloud integration ({"version":"0","id","detail-type",
// "source":"aws.partner/genesys.com/cloud/<orgId>/<name>","detail":
// <notification>}), or the eventBody alone.
type envelope struct {
	notificationEnvelope
	Source string                `json:"source"`
	Detail *notificationEnvelope `json:"detail"`
}

// eventBridgeSourcePrefix starts the source of an EventBridge event of the
// Genesys Cloud integration; the organization id follows.
const eventBridgeSourcePrefix = "aws.partner/genesys.com/cloud/"

// ParseAuditWebhook parses a relayed audit event: an EventBridge event of
// the Genesys Cloud integration, a notification, or a bare
// AuditTopicAuditLogMessage. Required: the record's id and eventTime (RFC
// 3339), its entity (entity.id and entityType, or the topic naming them).
// The organization id comes from the EventBridge source, else the record's
// userHomeOrgId. Errors wrap ErrMalformedAudit, or ErrNotUserEntity for a
// valid record of another entity type. It never panics, whatever the input.
func ParseAuditWebhook(body []byte) (AuditEvent, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return AuditEvent{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformedAudit)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return AuditEvent{}, fmt.Errorf("%w: %v", ErrMalformedAudit, err)
	}
	record, topic, orgID := body, "", ""
	switch {
	case env.Detail != nil:
		if len(env.Detail.EventBody) == 0 {
			return AuditEvent{}, fmt.Errorf("%w: EventBridge event without detail.eventBody", ErrMalformedAudit)
		}
		record, topic = env.Detail.EventBody, env.Detail.TopicName
		if rest, ok := strings.CutPrefix(env.Source, eventBridgeSourcePrefix); ok {
			orgID, _, _ = strings.Cut(rest, "/")
		}
	case len(env.EventBody) > 0:
		record, topic = env.EventBody, env.TopicName
	}
	ev, err := parseAuditRecord(record, topic)
	if err == nil && orgID != "" {
		ev.OrgID = orgID
	}
	return ev, err
}

// parseAuditRecord decodes one AuditTopicAuditLogMessage; topic, when set,
// is the notification topic it arrived on (its entity id must agree).
func parseAuditRecord(raw []byte, topic string) (AuditEvent, error) {
	var rec auditRecord
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&rec); err != nil {
		return AuditEvent{}, fmt.Errorf("%w: audit record: %v", ErrMalformedAudit, err)
	}
	if dec.More() {
		return AuditEvent{}, fmt.Errorf("%w: trailing data after the audit record", ErrMalformedAudit)
	}
	ev := AuditEvent{ID: rec.ID, EntityType: rec.EntityType, OrgID: rec.UserHomeOrgID}
	if rec.Entity != nil {
		ev.EntityID = rec.Entity.ID
	}
	topicType, topicEntity := parseAuditTopic(topic)
	if ev.EntityType == "" {
		ev.EntityType = topicType
	}
	if ev.EntityID == "" {
		ev.EntityID = topicEntity
	}
	var missing []string
	if ev.ID == "" {
		missing = append(missing, "id")
	}
	if ev.EntityType == "" {
		missing = append(missing, "entityType")
	}
	if ev.EntityID == "" {
		missing = append(missing, "entity.id")
	}
	if rec.EventTime == "" {
		missing = append(missing, "eventTime")
	}
	if len(missing) > 0 {
		err := fmt.Errorf("%w: missing %s", ErrMalformedAudit, strings.Join(missing, ", "))
		if rec.EventTime == "" && rec.EventDate != "" {
			err = fmt.Errorf("%w (eventDate is the audit query API's AuditLogMessage; a notification's AuditTopicAuditLogMessage has eventTime)", err)
		}
		return AuditEvent{}, err
	}
	if !auditIDPattern.MatchString(ev.ID) {
		return AuditEvent{}, fmt.Errorf("%w: id %q is not an id (letters, digits, . _ : -, at most 200)", ErrMalformedAudit, truncate(ev.ID, 64))
	}
	if !entityIDPattern.MatchString(ev.EntityID) {
		return AuditEvent{}, fmt.Errorf("%w: entity id %q is not an id (letters, digits, _ -, at most 128)", ErrMalformedAudit, truncate(ev.EntityID, 64))
	}
	if topicEntity != "" && topicEntity != ev.EntityID {
		return AuditEvent{}, fmt.Errorf("%w: entity id %s differs from topic %s", ErrMalformedAudit, ev.EntityID, truncate(topic, 128))
	}
	t, err := time.Parse(time.RFC3339Nano, rec.EventTime)
	if err != nil {
		return AuditEvent{}, fmt.Errorf("%w: eventTime %q is not RFC 3339", ErrMalformedAudit, truncate(rec.EventTime, 64))
	}
	ev.OccurredAt = t.UTC()
	if !strings.EqualFold(ev.EntityType, "USER") {
		return AuditEvent{}, fmt.Errorf("%w: entityType %q", ErrNotUserEntity, truncate(ev.EntityType, 64))
	}
	ev.EntityType = "USER"
	return ev, nil
}

// auditTopicPrefix starts every audit notification topic.
const auditTopicPrefix = "v2.audits.entitytype."

// parseAuditTopic splits v2.audits.entitytype.<TYPE>.entityid.<id>; empty
// results for any other topic.
func parseAuditTopic(topic string) (entityType, entityID string) {
	rest, ok := strings.CutPrefix(topic, auditTopicPrefix)
	if !ok {
		return "", ""
	}
	typ, id, ok := strings.Cut(rest, ".entityid.")
	if !ok || typ == "" || id == "" {
		return "", ""
	}
	return typ, id
}

// truncate bounds attacker-controlled strings quoted in errors and logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
