package genesys

import (
	"net/http"
	"sort"
	"strings"
	"sync"
)

// operation is one Platform API operation the client calls: the method and
// the spec's path template. Every request the client sends goes through an
// operation declared with op(), so Operations() is the exact list of what the
// client implements and the conformance test can demand coverage of each.
type operation struct {
	Method string
	Path   string
}

func (o operation) String() string { return o.Method + " " + o.Path }

var (
	registryMu sync.Mutex
	registry   = map[operation]bool{}
)

func op(method, path string) operation {
	o := operation{Method: method, Path: path}
	registryMu.Lock()
	registry[o] = true
	registryMu.Unlock()
	return o
}

// Operations lists every operation the client implements as
// "METHOD /path/template", sorted.
func Operations() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]string, 0, len(registry))
	for o := range registry {
		out = append(out, o.String())
	}
	sort.Strings(out)
	return out
}

// readOnlyPosts are the operations that POST a query and change nothing.
var readOnlyPosts = map[string]bool{
	opSearchUsers.String():       true,
	opBatchUserLicenses.String(): true,
}

// IsRead reports whether operation ("METHOD /path/template", as in Call)
// only reads: GET and HEAD, and the POSTs that carry a query (user search,
// batched license reads).
func IsRead(operation string) bool {
	method, _, _ := strings.Cut(operation, " ")
	return method == http.MethodGet || method == http.MethodHead || readOnlyPosts[operation]
}
