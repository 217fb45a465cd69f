package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Phase says which half of an exchange broke the contract.
type Phase string

const (
	PhaseRoute    Phase = "route"    // the request matches no operation of the spec
	PhaseRequest  Phase = "request"  // the request violates its operation
	PhaseResponse Phase = "response" // the response violates its operation
	// PhaseModel: a 2xx body breaks the model the official SDK declares for
	// the operation (sdkmodels.json): an undeclared or missing property, or
	// a value of the wrong type.
	PhaseModel Phase = "sdk-model"
)

// Violation is one contract breach seen by a Recorder.
type Violation struct {
	Phase     Phase
	Operation Operation // zero when Phase == PhaseRoute
	Method    string    // the request as sent
	URL       string    // path and query of the request as sent (no host, no credentials)
	Status    int       // response status; 0 for request and route violations
	Detail    string
}

func (v Violation) String() string {
	op := v.Operation.String()
	if v.Phase == PhaseRoute {
		op = v.Method + " " + v.URL
	}
	s := fmt.Sprintf("%s violation on %s", v.Phase, op)
	if v.Status != 0 {
		s += fmt.Sprintf(" (status %d)", v.Status)
	}
	return s + ": " + v.Detail
}

// Recorder is an http.RoundTripper that validates every request it sends and
// every response it receives against the spec, checks every 2xx body against
// the model the official SDK declares (sdkmodels.json), records the
// violations and the operations exercised, and otherwise passes traffic
// through unchanged.
//
// Only paths under /api/v2/ are validated: /oauth/token and simulator admin
// paths are passed through unvalidated. A violation never fails the round
// trip; callers inspect Violations (tests fail on any).
//
// Pragmatic choices, each because of a known quirk, not to hide our bugs:
//   - security requirements are not checked (NoopAuthenticationFunc): the
//     spec's OAuth scheme is "implicit" and kin-openapi cannot evaluate bearer
//     tokens against it; authentication is tested separately.
//   - defaults are not written back into requests (SkipSettingDefaults), so
//     the validator never changes what is sent.
//   - format validators are kin-openapi's defaults: date-time, date, byte,
//     int32 and int64 are enforced; "uri" is not (the upstream data carries
//     relative selfUri values such as /api/v2/users/{id}).
type Recorder struct {
	base   http.RoundTripper
	spec   *Spec
	models *SDKModels

	mu         sync.Mutex
	violations []Violation
	seen       map[Operation]int // operations requested (spec-matched)
	succeeded  map[Operation]int // operations answered with a 2xx that validated
}

// NewValidatingTransport wraps base (http.DefaultTransport when nil) in a
// Recorder. It panics only if the embedded spec cannot be parsed, which is a
// build defect caught by this package's tests.
func NewValidatingTransport(base http.RoundTripper) *Recorder {
	spec, err := Load()
	if err != nil {
		panic(err)
	}
	models, err := LoadSDKModels()
	if err != nil {
		panic(err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &Recorder{base: base, spec: spec, models: models, seen: map[Operation]int{}, succeeded: map[Operation]int{}}
}

// RoundTrip implements http.RoundTripper.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, APIPrefix) {
		return r.base.RoundTrip(req)
	}
	reqBody, err := readBody(req.Body)
	if err != nil {
		return nil, fmt.Errorf("apispec: read request body of %s %s: %w", req.Method, req.URL.Path, err)
	}
	// A RoundTripper must not modify the caller's request: send a copy whose
	// body is the bytes just read.
	req = req.Clone(req.Context())
	if reqBody != nil {
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}

	route, pathParams, routeErr := r.spec.FindRoute(req)
	var op Operation
	var input *openapi3filter.RequestValidationInput
	if routeErr != nil {
		r.add(Violation{Phase: PhaseRoute, Method: req.Method, URL: req.URL.RequestURI(), Detail: routeErr.Error()})
	} else {
		op = Operation{Method: req.Method, Path: route.Path}
		r.mark(r.seen, op)
		input = r.validateRequest(req, route, pathParams, reqBody, op)
	}

	resp, err := r.base.RoundTrip(req)
	if err != nil || input == nil {
		return resp, err
	}
	respBody, readErr := readBody(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if readErr != nil {
		r.add(Violation{Phase: PhaseResponse, Operation: op, Method: req.Method, URL: req.URL.RequestURI(), Status: resp.StatusCode,
			Detail: "read response body: " + readErr.Error()})
		return resp, nil
	}
	valid := r.validateResponse(req, resp, respBody, input, op)
	if resp.StatusCode/100 == 2 && req.Method != http.MethodHead {
		if problems := r.models.CheckResponse(op.String(), respBody); len(problems) > 0 {
			r.add(Violation{Phase: PhaseModel, Operation: op, Method: req.Method, URL: req.URL.RequestURI(), Status: resp.StatusCode,
				Detail: strings.Join(problems, "; ")})
			valid = false
		}
	}
	if valid && resp.StatusCode/100 == 2 {
		r.mark(r.succeeded, op)
	}
	return resp, nil
}

func (r *Recorder) options() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError:            true,
		IncludeResponseStatus: true,
		SkipSettingDefaults:   true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
}

func (r *Recorder) validateRequest(req *http.Request, route *routers.Route, pathParams map[string]string, body []byte, op Operation) *openapi3filter.RequestValidationInput {
	// Validate a clone so the validator cannot consume or alter what is sent.
	clone := req.Clone(context.WithoutCancel(req.Context()))
	clone.Body = io.NopCloser(bytes.NewReader(body))
	input := &openapi3filter.RequestValidationInput{Request: clone, PathParams: pathParams, Route: route, Options: r.options()}
	if err := openapi3filter.ValidateRequest(clone.Context(), input); err != nil {
		r.add(Violation{Phase: PhaseRequest, Operation: op, Method: req.Method, URL: req.URL.RequestURI(), Detail: flatten(err)})
	}
	return input
}

func (r *Recorder) validateResponse(req *http.Request, resp *http.Response, body []byte, input *openapi3filter.RequestValidationInput, op Operation) bool {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                r.options(),
	}
	if req.Method == http.MethodHead {
		out.Options.ExcludeResponseBody = true
	}
	if err := openapi3filter.ValidateResponse(context.WithoutCancel(req.Context()), out); err != nil {
		r.add(Violation{Phase: PhaseResponse, Operation: op, Method: req.Method, URL: req.URL.RequestURI(), Status: resp.StatusCode, Detail: flatten(err)})
		return false
	}
	return true
}

// Violations returns the violations recorded so far, in order.
func (r *Recorder) Violations() []Violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Violation(nil), r.violations...)
}

// Covered returns the operations that received at least one 2xx response that
// validated, sorted.
func (r *Recorder) Covered() []Operation { return r.keys(r.succeeded) }

// Requested returns every spec operation that was requested at all, sorted.
func (r *Recorder) Requested() []Operation { return r.keys(r.seen) }

// Merge adds the violations and coverage of other into r, so a suite can use
// one Recorder per client and report them together.
func (r *Recorder) Merge(other *Recorder) {
	vs, seen, ok := other.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, vs...)
	for op, n := range seen {
		r.seen[op] += n
	}
	for op, n := range ok {
		r.succeeded[op] += n
	}
}

func (r *Recorder) snapshot() ([]Violation, map[Operation]int, map[Operation]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, ok := map[Operation]int{}, map[Operation]int{}
	for k, v := range r.seen {
		seen[k] = v
	}
	for k, v := range r.succeeded {
		ok[k] = v
	}
	return append([]Violation(nil), r.violations...), seen, ok
}

// Missing returns the operations of want that never got a validated 2xx.
func (r *Recorder) Missing(want []Operation) []Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing []Operation
	for _, op := range want {
		if r.succeeded[op] == 0 {
			missing = append(missing, op)
		}
	}
	sortOperations(missing)
	return missing
}

func (r *Recorder) keys(m map[Operation]int) []Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := make([]Operation, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	sortOperations(ops)
	return ops
}

func (r *Recorder) add(v Violation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, v)
}

func (r *Recorder) mark(m map[Operation]int, op Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m[op]++
}

// readBody reads and closes body; nil and http.NoBody read as nil.
func readBody(body io.ReadCloser) ([]byte, error) {
	if body == nil || body == http.NoBody {
		return nil, nil
	}
	defer body.Close()
	return io.ReadAll(body)
}

// flatten renders kin-openapi's nested (multi-)errors as one line, every
// cause listed, so a test failure shows all that is wrong at once.
func flatten(err error) string {
	var parts []string
	var walk func(error)
	walk = func(err error) {
		var multi openapi3.MultiError
		var reqErr *openapi3filter.RequestError
		var respErr *openapi3filter.ResponseError
		switch {
		case errors.As(err, &multi):
			for _, e := range multi {
				walk(e)
			}
		case errors.As(err, &reqErr) && reqErr.Err != nil && isMulti(reqErr.Err):
			walk(reqErr.Err)
		case errors.As(err, &respErr) && respErr.Err != nil && isMulti(respErr.Err):
			walk(respErr.Err)
		default:
			// SchemaError.Error() appends the whole schema and value; the
			// first line (pointer and reason) is what a reader needs.
			msg, _, _ := strings.Cut(err.Error(), "\nSchema:")
			parts = append(parts, strings.Join(strings.Fields(msg), " "))
		}
	}
	walk(err)
	return strings.Join(parts, "; ")
}

func isMulti(err error) bool {
	var multi openapi3.MultiError
	return errors.As(err, &multi)
}
