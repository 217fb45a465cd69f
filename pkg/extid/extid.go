// Package extid builds and parses orgsync's deterministic external ids,
// "<source org>|<TYPE>|<name>": the translation key of every object across
// organizations. The same source object always gets the same id, so a re-run,
// a replay or a lost bbolt file finds what an earlier run made instead of
// creating it again.
package extid

import (
	"fmt"
	"strings"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Authority is the external-id authority name orgsync stamps on users in
// Genesys (POST /api/v2/users/{id}/externalid).
const Authority = "orgsync"

const sep = "|"

// TypeName is the TYPE token of a resource type, e.g. "SKILL".
func TypeName(t orgsyncv1.ResourceType) string {
	return strings.TrimPrefix(t.String(), "RESOURCE_TYPE_")
}

// ParseType is the inverse of TypeName.
func ParseType(s string) (orgsyncv1.ResourceType, error) {
	v, ok := orgsyncv1.ResourceType_value["RESOURCE_TYPE_"+s]
	if !ok || v == 0 {
		return 0, fmt.Errorf("extid: unknown resource type %q", s)
	}
	return orgsyncv1.ResourceType(v), nil
}

// Resource is the external id of a named resource of the source org.
func Resource(sourceOrg string, t orgsyncv1.ResourceType, name string) string {
	return sourceOrg + sep + TypeName(t) + sep + name
}

// User is the external id of a source user. Users are keyed by their
// lower-cased source email: unique per org, unlike display names.
func User(sourceOrg, email string) string {
	return Resource(sourceOrg, orgsyncv1.ResourceType_RESOURCE_TYPE_USER, strings.ToLower(strings.TrimSpace(email)))
}

// ID is a parsed external id.
type ID struct {
	SourceOrg string
	Type      orgsyncv1.ResourceType
	Name      string
}

// Parse splits an external id. Names may contain "|"; the first two
// separators delimit the org and the type.
func Parse(s string) (ID, error) {
	parts := strings.SplitN(s, sep, 3)
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return ID{}, fmt.Errorf("extid: %q is not <source org>|<TYPE>|<name>", s)
	}
	t, err := ParseType(parts[1])
	if err != nil {
		return ID{}, fmt.Errorf("extid: %q: %w", s, err)
	}
	return ID{SourceOrg: parts[0], Type: t, Name: parts[2]}, nil
}

// String renders the id.
func (id ID) String() string { return Resource(id.SourceOrg, id.Type, id.Name) }
