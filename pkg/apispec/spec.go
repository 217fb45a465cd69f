// Package apispec checks HTTP traffic against the Genesys Cloud Platform API v2
// contract: the Swagger 2.0 subset embedded in this package
// (genesys-openapi-subset.json, a copy of shared/reference/...).
//
// The spec is converted to OpenAPI 3 with kin-openapi (openapi2conv) and every
// request and response is validated with openapi3filter. Both orgsync's client
// (pkg/genesys) and its simulator (services/gcsim) are checked against the same
// document, so the two independent implementations cannot drift apart silently.
package apispec

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

//go:embed genesys-openapi-subset.json
var specJSON []byte

// APIPrefix is the path prefix of every Genesys Platform API operation. Requests
// outside it (/oauth/token, simulator admin paths) are not part of the contract.
const APIPrefix = "/api/v2/"

// Spec is the parsed contract: the OpenAPI 3 document and a router that maps a
// request to its operation. It is safe for concurrent use.
type Spec struct {
	Doc    *openapi3.T
	router routers.Router
}

var (
	loadOnce   sync.Once
	loadedSpec *Spec
	loadErr    error
)

// Load parses the embedded spec once and returns the shared *Spec.
func Load() (*Spec, error) {
	loadOnce.Do(func() { loadedSpec, loadErr = parse(specJSON) })
	return loadedSpec, loadErr
}

// RawJSON returns a copy of the embedded Swagger 2.0 document.
func RawJSON() []byte { return append([]byte(nil), specJSON...) }

func parse(raw []byte) (*Spec, error) {
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		return nil, fmt.Errorf("apispec: parse swagger 2.0 document: %w", err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("apispec: convert swagger 2.0 to openapi 3: %w", err)
	}
	// The document names api.mypurecloud.com as its only server. orgsync talks
	// to every region and to gcsim on loopback, so the router must match on
	// path alone: with no servers, gorillamux matches any scheme and host.
	doc3.Servers = nil
	router, err := gorillamux.NewRouter(doc3)
	if err != nil {
		return nil, fmt.Errorf("apispec: build router: %w", err)
	}
	return &Spec{Doc: doc3, router: router}, nil
}

// Operation identifies one API operation: the HTTP method and the spec's path
// template, e.g. {Method: "GET", Path: "/api/v2/users/{userId}"}.
type Operation struct {
	Method string
	Path   string
}

// String renders the operation as "METHOD /path/template".
func (o Operation) String() string { return o.Method + " " + o.Path }

// ParseOperation parses "METHOD /path/template".
func ParseOperation(s string) (Operation, error) {
	method, path, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/") {
		return Operation{}, fmt.Errorf("apispec: operation %q is not of the form \"METHOD /path\"", s)
	}
	return Operation{Method: strings.ToUpper(method), Path: path}, nil
}

// Has reports whether the spec defines the operation.
func (s *Spec) Has(op Operation) bool {
	item := s.Doc.Paths.Value(op.Path)
	return item != nil && item.GetOperation(op.Method) != nil
}

// Operations lists every operation the spec defines, sorted.
func (s *Spec) Operations() []Operation {
	var ops []Operation
	for path, item := range s.Doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, Operation{Method: method, Path: path})
		}
	}
	sortOperations(ops)
	return ops
}

// FindRoute maps a request to its operation. The error says whether the path
// or the method is unknown.
func (s *Spec) FindRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	return s.router.FindRoute(req)
}

func sortOperations(ops []Operation) {
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
}
