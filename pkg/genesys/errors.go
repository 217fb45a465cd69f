package genesys

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ErrInvalidArgument marks errors caused by bad input to a client method,
// caught before anything is sent.
var ErrInvalidArgument = errors.New("invalid argument")

func invalidArg(op operation, format string, args ...any) error {
	return fmt.Errorf("genesys: %s: %w: %s", op, ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// APIError is a non-2xx answer of the Platform API, parsed from Genesys'
// ErrorBody. It never contains tokens or secrets: only the status, the error
// code and message the server returned, and where the call went.
type APIError struct {
	Org        string
	Method     string
	Operation  string // spec path template, e.g. /api/v2/users/{userId}
	Status     int
	Code       string // e.g. "general.conflict", "not.found"
	Message    string
	ContextID  string        // Genesys' correlation id, for support tickets
	RetryAfter time.Duration // from Retry-After on 429/503, zero when absent
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "genesys: %s %s (org %s): %d", e.Method, e.Operation, e.Org, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.ContextID != "" {
		b.WriteString(" (contextId " + e.ContextID + ")")
	}
	return b.String()
}

// errorBody is the subset of the spec's ErrorBody the client reads.
type errorBody struct {
	Message   string `json:"message"`
	Code      string `json:"code"`
	Status    int    `json:"status"`
	ContextID string `json:"contextId"`
}

func parseAPIError(org string, op operation, resp *http.Response, body []byte) *APIError {
	e := &APIError{Org: org, Method: op.Method, Operation: op.Path, Status: resp.StatusCode}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		e.Code, e.Message, e.ContextID = eb.Code, eb.Message, eb.ContextID
	}
	if e.Message == "" && e.Code == "" {
		e.Message = strings.TrimSpace(truncate(string(body), 200))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	if e.ContextID == "" {
		e.ContextID = resp.Header.Get("ININ-Correlation-Id")
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// StatusOf returns the HTTP status of err's *APIError, or 0.
func StatusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// RetryableStatus reports whether an HTTP status of the API (or its token
// endpoint) may turn into a success when the same request is sent again
// later: 408 and 429 (the request was not processed), and every 5xx but
// 501 (the server lacks the operation: it always will).
func RetryableStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusNotImplemented:
		return false
	default:
		return status >= 500 && status <= 599
	}
}

// IsPermanent reports whether err is an answer of the API that no retry can
// change: invalid input caught before sending, a token endpoint refusing
// the credentials (4xx, e.g. invalid_client), or an API status that is not
// RetryableStatus (4xx other than 408/429, including 401 after the client's
// own re-authentication, and 501). It is the one classification every
// service applies (the client itself retries exactly the rest): anything
// else — 429s and 5xx that outlasted the retries, connection resets,
// timeouts, cancellation, errors not from this package — may succeed later
// and is not permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrInvalidArgument) {
		return true
	}
	var te *TokenError
	if errors.As(err, &te) {
		return te.Status != 0 && !RetryableStatus(te.Status)
	}
	status := StatusOf(err)
	return status != 0 && !RetryableStatus(status)
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// IsConflict reports whether err is a 409 from the API.
func IsConflict(err error) bool { return StatusOf(err) == http.StatusConflict }

// IsRateLimited reports whether err is a 429 from the API (after retries gave up).
func IsRateLimited(err error) bool { return StatusOf(err) == http.StatusTooManyRequests }

// IsUnauthorized reports whether err is a 401 from the API or the token endpoint.
func IsUnauthorized(err error) bool {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Status == http.StatusUnauthorized
	}
	return StatusOf(err) == http.StatusUnauthorized
}

// isVersionConflict recognises Genesys' answers to a stale `version`: 409, or
// 400 whose message mentions the version.
func isVersionConflict(err error) bool {
	var e *APIError
	if !errors.As(err, &e) {
		return false
	}
	if e.Status == http.StatusConflict {
		return true
	}
	return e.Status == http.StatusBadRequest &&
		(strings.Contains(strings.ToLower(e.Message), "version") || strings.Contains(strings.ToLower(e.Code), "version"))
}

// TokenError is a failure to obtain an access token for an org. It names the
// token endpoint and the OAuth error, never the client secret.
type TokenError struct {
	Org       string
	TokenURL  string
	Status    int    // HTTP status of the token endpoint, 0 for transport errors
	ErrorCode string // OAuth "error", e.g. invalid_client
	Err       error
}

func (e *TokenError) Error() string {
	s := fmt.Sprintf("genesys: get token for org %s from %s", e.Org, e.TokenURL)
	if e.Status != 0 {
		s += fmt.Sprintf(": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.ErrorCode != "" {
		s += " " + e.ErrorCode
	}
	if e.Err != nil && (e.Status == 0 || e.Err.Error() != e.ErrorCode) {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *TokenError) Unwrap() error { return e.Err }
