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
	// EntityType, e.g. "USER".
	EntityType string
	// EntityID is the id of the changed entity (the user id for USER).
	EntityID string
	// OccurredAt is when the change happened at the source.
	OccurredAt time.Time
	// OrgID is the Genesys organization id the relay put in the record
	// (empty when absent).
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

// auditRecord is the union of the audit shapes we accept: the Notifications
// API AuditMessage (timestamp, entity.id), the audit query AuditLogMessage
// (eventDate, entity.id) and the flat relay form (entityId, occurred).
type auditRecord struct {
	ID         string `json:"id"`
	EntityType string `json:"entityType"`
	EntityID   string `json:"entityId"`
	Entity     *struct {
		ID string `json:"id"`
	} `json:"entity"`
	EventDate      string `json:"eventDate"`
	Occurred       string `json:"occurred"`
	Timestamp      string `json:"timestamp"`
	OrgID          string `json:"orgId"`
	OrganizationID string `json:"organizationId"`
	UserHomeOrgID  string `json:"userHomeOrgId"`
}

// envelope covers the two wrappers around an audit record: a notification
// ({"topicName", "eventBody"}) and an EventBridge event ({"detail":
// {"topicName","eventBody"}}).
type envelope struct {
	TopicName string          `json:"topicName"`
	EventBody json.RawMessage `json:"eventBody"`
	Detail    *struct {
		TopicName string          `json:"topicName"`
		EventBody json.RawMessage `json:"eventBody"`
	} `json:"detail"`
}

// ParseAuditWebhook parses a relayed audit event: a bare audit record, a
// notification-shaped {"topicName","eventBody"} or an EventBridge event whose
// detail holds one. Required: id, entityType, the entity id (entityId or
// entity.id) and the time (eventDate, occurred or timestamp, RFC 3339).
// Errors wrap ErrMalformedAudit, or ErrNotUserEntity for a valid record of
// another entity type. It never panics, whatever the input.
func ParseAuditWebhook(body []byte) (AuditEvent, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return AuditEvent{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformedAudit)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return AuditEvent{}, fmt.Errorf("%w: %v", ErrMalformedAudit, err)
	}
	record, topic := body, ""
	switch {
	case env.Detail != nil && len(env.Detail.EventBody) > 0:
		record, topic = env.Detail.EventBody, env.Detail.TopicName
	case len(env.EventBody) > 0:
		record, topic = env.EventBody, env.TopicName
	}
	return parseAuditRecord(record, topic)
}

// parseAuditRecord decodes one audit record; topic, when set, is the
// notification topic it arrived on (its entity id must agree).
func parseAuditRecord(raw []byte, topic string) (AuditEvent, error) {
	var rec auditRecord
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&rec); err != nil {
		return AuditEvent{}, fmt.Errorf("%w: audit record: %v", ErrMalformedAudit, err)
	}
	if dec.More() {
		return AuditEvent{}, fmt.Errorf("%w: trailing data after the audit record", ErrMalformedAudit)
	}
	ev := AuditEvent{ID: rec.ID, EntityType: rec.EntityType, EntityID: rec.EntityID}
	if ev.EntityID == "" && rec.Entity != nil {
		ev.EntityID = rec.Entity.ID
	}
	topicType, topicEntity := parseAuditTopic(topic)
	if ev.EntityType == "" {
		ev.EntityType = topicType
	}
	if ev.EntityID == "" {
		ev.EntityID = topicEntity
	}
	for _, o := range []string{rec.OrgID, rec.OrganizationID, rec.UserHomeOrgID} {
		if o != "" {
			ev.OrgID = o
			break
		}
	}
	var missing []string
	if ev.ID == "" {
		missing = append(missing, "id")
	}
	if ev.EntityType == "" {
		missing = append(missing, "entityType")
	}
	if ev.EntityID == "" {
		missing = append(missing, "entityId")
	}
	date := firstNonEmpty(rec.EventDate, rec.Occurred, rec.Timestamp)
	if date == "" {
		missing = append(missing, "eventDate")
	}
	if len(missing) > 0 {
		return AuditEvent{}, fmt.Errorf("%w: missing %s", ErrMalformedAudit, strings.Join(missing, ", "))
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
	t, err := time.Parse(time.RFC3339Nano, date)
	if err != nil {
		return AuditEvent{}, fmt.Errorf("%w: eventDate %q is not RFC 3339", ErrMalformedAudit, truncate(date, 64))
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

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// truncate bounds attacker-controlled strings quoted in errors and logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
