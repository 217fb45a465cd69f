// Package component holds what the resolver (which writes plans) and the
// provisioner (which applies them) must agree on about a clone request's
// components.
package component

import (
	"slices"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Included reports whether a component is part of the include list (empty = all).
func Included(include []orgsyncv1.Component, c orgsyncv1.Component) bool {
	return len(include) == 0 || slices.Contains(include, c)
}
