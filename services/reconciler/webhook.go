package reconciler

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/telemetry"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Webhook request headers.
const (
	// HeaderTimestamp carries the signing time in unix seconds.
	HeaderTimestamp = "X-Orgsync-Timestamp"
	// HeaderSignature carries "sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>".
	HeaderSignature = "X-Orgsync-Signature"
	// HeaderOrg names the source org by orgsync org key; without it the
	// Genesys organization id of the event (EventBridge source, else the
	// record's userHomeOrgId) is mapped through Config.WebhookOrgIDs (or
	// used as the key itself).
	HeaderOrg = "X-Orgsync-Org"
	// signaturePrefix names the algorithm in HeaderSignature.
	signaturePrefix = "sha256="
	// publishTimeout bounds the JetStream publish so the relay gets its
	// answer fast; on timeout it gets 503 and retries (same id: harmless).
	publishTimeout = 5 * time.Second
)

// SignWebhook returns the HeaderSignature value of body signed at ts, as a
// relay computes it (used by tests and the CLI's `orgsync webhook send`).
func SignWebhook(secret []byte, ts time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	return timestamp, signaturePrefix + hex.EncodeToString(webhookMAC(secret, timestamp, body))
}

func webhookMAC(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// WebhookResponse is the JSON body of every webhook answer.
type WebhookResponse struct {
	// Status: "accepted" (published), "duplicate" (already published),
	// "ignored" (valid but nothing to do) or "rejected".
	Status string `json:"status"`
	// Reason says why a request was rejected or ignored.
	Reason  string `json:"reason,omitempty"`
	EventID string `json:"eventId,omitempty"`
}

// webhook serves POST <WebhookPath>.
type webhook struct {
	cfg     Config
	secret  []byte
	js      jetstream.JetStream
	tracked *TrackedSet
	logger  *slog.Logger
	now     func() time.Time
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, span := telemetry.Tracer("orgsync/reconciler").Start(r.Context(), "webhook audit")
	defer span.End()
	status, resp := h.handle(ctx, r)
	span.SetAttributes(attribute.Int("http.response.status_code", status), attribute.String("orgsync.webhook.status", resp.Status))
	level := slog.LevelDebug
	if status >= 400 {
		level = slog.LevelWarn
	}
	// Never the body or the signature: only what identifies the outcome.
	h.logger.Log(ctx, level, "webhook", "status", status, "result", resp.Status, "reason", resp.Reason, "event_id", resp.EventID, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

func reject(status int, reason string) (int, WebhookResponse) {
	return status, WebhookResponse{Status: "rejected", Reason: reason}
}

// handle validates, authenticates and publishes one delivery. Order: cheap
// header checks, bounded body read, signature, freshness, then content — so
// nothing unauthenticated is parsed.
func (h *webhook) handle(ctx context.Context, r *http.Request) (int, WebhookResponse) {
	if h.cfg.WebhookDisabled {
		return reject(http.StatusServiceUnavailable, "webhook endpoint is disabled")
	}
	tsHeader := r.Header.Get(HeaderTimestamp)
	sigHeader := r.Header.Get(HeaderSignature)
	if tsHeader == "" || sigHeader == "" {
		return reject(http.StatusUnauthorized, "missing "+HeaderTimestamp+" or "+HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return reject(http.StatusUnauthorized, "invalid "+HeaderTimestamp+": not unix seconds")
	}
	sigHex, ok := strings.CutPrefix(sigHeader, signaturePrefix)
	if !ok {
		return reject(http.StatusUnauthorized, "invalid "+HeaderSignature+": want sha256=<hex>")
	}
	given, err := hex.DecodeString(sigHex)
	if err != nil || len(given) != sha256.Size {
		return reject(http.StatusUnauthorized, "invalid "+HeaderSignature+": want sha256=<64 hex digits>")
	}
	if r.ContentLength > h.cfg.WebhookMaxBody {
		return reject(http.StatusRequestEntityTooLarge, "body exceeds "+strconv.FormatInt(h.cfg.WebhookMaxBody, 10)+" bytes")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.cfg.WebhookMaxBody+1))
	if err != nil {
		return reject(http.StatusBadRequest, "reading body failed")
	}
	if int64(len(body)) > h.cfg.WebhookMaxBody {
		return reject(http.StatusRequestEntityTooLarge, "body exceeds "+strconv.FormatInt(h.cfg.WebhookMaxBody, 10)+" bytes")
	}
	if !hmac.Equal(given, webhookMAC(h.secret, tsHeader, body)) {
		return reject(http.StatusUnauthorized, "invalid signature")
	}
	skew := h.now().Sub(time.Unix(ts, 0))
	if skew > h.cfg.WebhookTolerance || skew < -h.cfg.WebhookTolerance {
		return reject(http.StatusUnauthorized, "stale timestamp: outside the "+h.cfg.WebhookTolerance.String()+" tolerance")
	}
	ev, err := ParseAuditWebhook(body)
	if errors.Is(err, ErrNotUserEntity) {
		return http.StatusAccepted, WebhookResponse{Status: "ignored", Reason: err.Error()}
	}
	if err != nil {
		return reject(http.StatusBadRequest, err.Error())
	}
	src, err := h.sourceOrg(r.Header.Get(HeaderOrg), ev.OrgID)
	if err != nil {
		return reject(http.StatusBadRequest, err.Error())
	}
	if !h.tracked.Has(src, ev.EntityID) {
		return http.StatusAccepted, WebhookResponse{Status: "ignored", Reason: "user " + ev.EntityID + " of org " + src + " is not tracked", EventID: ev.ID}
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	dup, err := publishChange(pctx, h.js, src, ev.EntityID, ev.ID, ev.OccurredAt, orgsyncv1.ChangeSource_CHANGE_SOURCE_WEBHOOK)
	if err != nil {
		h.logger.Error("webhook publish failed", "event_id", ev.ID, "org", src, "err", err)
		return http.StatusServiceUnavailable, WebhookResponse{Status: "rejected", Reason: "could not queue the event, retry later", EventID: ev.ID}
	}
	if dup {
		return http.StatusAccepted, WebhookResponse{Status: "duplicate", EventID: ev.ID}
	}
	return http.StatusAccepted, WebhookResponse{Status: "accepted", EventID: ev.ID}
}

// sourceOrg resolves the org key of a delivery: the header, else the
// event's Genesys org id mapped through WebhookOrgIDs, else that id as a
// key.
func (h *webhook) sourceOrg(header, recordOrg string) (string, error) {
	key := header
	if key == "" {
		key = recordOrg
		if mapped, ok := h.cfg.WebhookOrgIDs[recordOrg]; ok {
			key = mapped
		}
	}
	if key == "" {
		return "", errors.New("source org unknown: set " + HeaderOrg + " (the event names no Genesys organization id: no EventBridge source, no userHomeOrgId)")
	}
	if err := natsx.ValidateOrgKey(key); err != nil {
		return "", errors.New("source org: invalid org key " + strconv.Quote(truncate(key, 64)))
	}
	return key, nil
}
