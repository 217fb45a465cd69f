package integrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CRM record statuses (the adapter contract).
const (
	StatusPending     = "PENDING"
	StatusProvisioned = "PROVISIONED"
	StatusError       = "ERROR"
)

// CRMRecord is the adapter's view of a user record.
type CRMRecord struct {
	ExternalKey   string            `json:"externalKey"`
	Email         string            `json:"email,omitempty"`
	Name          string            `json:"name,omitempty"`
	GenesysUserID string            `json:"genesysUserId,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Status        string            `json:"status"`
	Error         string            `json:"error,omitempty"`
	UpdatedAt     string            `json:"updatedAt,omitempty"`
}

// CRMUpsert is the body of PUT /crm/v1/users/{externalKey}.
type CRMUpsert struct {
	Email         string            `json:"email"`
	Name          string            `json:"name,omitempty"`
	GenesysUserID string            `json:"genesysUserId,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
}

// CRMError is a non-2xx answer of the adapter. RetryAfter is set on 429.
type CRMError struct {
	Op         string
	Status     int
	Code, Msg  string
	RetryAfter time.Duration
}

func (e *CRMError) Error() string {
	return fmt.Sprintf("crm: %s: %d %s: %s", e.Op, e.Status, e.Code, e.Msg)
}

// Transient reports whether retrying may help: 429, 408, 5xx.
func (e *CRMError) Transient() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// CRMClient speaks the CRM adapter contract for one target.
type CRMClient struct {
	base   string
	key    string
	target string
	http   *http.Client
}

// NewCRMClient returns the adapter client of target.
func NewCRMClient(target string, t CRMTarget, hc *http.Client) *CRMClient {
	return &CRMClient{base: strings.TrimRight(t.BaseURL, "/"), key: t.APIKey, target: target, http: hc}
}

// Upsert creates or updates the record of externalKey (idempotent: the same
// content again changes nothing) and returns its status.
func (c *CRMClient) Upsert(ctx context.Context, externalKey string, in CRMUpsert) (CRMRecord, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return CRMRecord{}, err
	}
	return c.do(ctx, http.MethodPut, externalKey, body)
}

// Get reads the record of externalKey.
func (c *CRMClient) Get(ctx context.Context, externalKey string) (CRMRecord, error) {
	return c.do(ctx, http.MethodGet, externalKey, nil)
}

func (c *CRMClient) do(ctx context.Context, method, key string, body []byte) (CRMRecord, error) {
	op := fmt.Sprintf("%s /crm/v1/users/%s (target %s)", method, key, c.target)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/crm/v1/users/"+url.PathEscape(key), rd)
	if err != nil {
		return CRMRecord{}, fmt.Errorf("crm: %s: %w", op, err)
	}
	req.Header.Set("X-CRM-Key", c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return CRMRecord{}, fmt.Errorf("crm: %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return CRMRecord{}, fmt.Errorf("crm: %s: read answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &CRMError{Op: op, Status: resp.StatusCode}
		var eb struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &eb) == nil {
			e.Code, e.Msg = eb.Error, eb.Message
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			e.RetryAfter = time.Second
			if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
				e.RetryAfter = time.Duration(s) * time.Second
			}
		}
		return CRMRecord{}, e
	}
	var rec CRMRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return CRMRecord{}, fmt.Errorf("crm: %s: undecodable answer: %w", op, err)
	}
	return rec, nil
}

// isTransient reports whether a CRM call error may succeed when retried.
func isTransient(err error) bool {
	var ce *CRMError
	if errors.As(err, &ce) {
		return ce.Transient()
	}
	return err != nil && !errors.Is(err, context.Canceled)
}
