package gcsim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// errorBody is the Genesys ErrorBody shape returned with every API error.
type errorBody struct {
	Message       string            `json:"message"`
	Code          string            `json:"code"`
	Status        int               `json:"status"`
	ContextID     string            `json:"contextId"`
	Details       []any             `json:"details"`
	Errors        []any             `json:"errors"`
	MessageParams map[string]string `json:"messageParams"`
}

// apiError is returned by handlers' helpers and rendered as an ErrorBody.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, "bad.request", format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errf(http.StatusNotFound, "not.found", format, args...)
}

func conflict(format string, args ...any) *apiError {
	return errf(http.StatusConflict, "general.conflict", format, args...)
}

// writeError renders err as an ErrorBody; non-apiErrors become 500.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae, ok := err.(*apiError)
	if !ok {
		ae = errf(http.StatusInternalServerError, "internal.server.error", "%v", err)
	}
	writeJSON(w, ae.status, errorBody{
		Message:       ae.msg,
		Code:          ae.code,
		Status:        ae.status,
		ContextID:     contextID(r),
		Details:       []any{},
		Errors:        []any{},
		MessageParams: map[string]string{},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// decodeBody strictly decodes the JSON request body into v.
func decodeBody(r *http.Request, v any) *apiError {
	if r.Body == nil {
		return badRequest("request body is required")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body for %s %s: %v", r.Method, r.URL.Path, err)
	}
	return nil
}
